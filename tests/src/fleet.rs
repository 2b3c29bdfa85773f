//! "Hosts" of a fleet in one test (issue #16): each its own config, socket
//! and PAM service (`host-a`...), all in one harness, and the commands
//! root runs on one of them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{
    Harness, new_secret, otpgate_binary, otpgated_binary, output_with_stdin, printed, write_private,
};

/// The hosts' names.
pub const HOSTS: [&str; 3] = ["a", "b", "c"];

/// A host: its config, socket and PAM service.
pub struct Host {
    pub config: PathBuf,
    pub socket: PathBuf,
    pub service: String,
}

impl Host {
    /// Host `name` of `h`: its config is what `config` makes of its
    /// socket's path; its PAM service `host-NAME` runs the module on it.
    pub fn new(h: &Harness, name: &str, config: impl FnOnce(&Path) -> String) -> Host {
        std::fs::create_dir_all(h.path("run")).expect("run dir");
        let socket = h.path(&format!("run/host-{name}.sock"));
        let path = h.path(&format!("host-{name}.toml"));
        write_private(&path, config(&socket).as_bytes());
        let service = format!("host-{name}");
        h.service(
            &service,
            &[format!(
                "auth required {} config={} syslog_socket={}",
                h.module.display(),
                path.display(),
                h.path("log.sock").display()
            )],
        );
        Host {
            config: path,
            socket,
            service,
        }
    }
}

/// The three hosts, each with `top` top-level keys, the `[daemon]` table
/// `daemon` (the database keys) and `tables` more tables.
pub fn hosts_on(h: &Harness, top: &str, daemon: &str, tables: &str) -> Vec<Host> {
    HOSTS
        .iter()
        .map(|name| {
            Host::new(h, name, |socket| {
                format!(
                    "{top}\n[store]\nkind = \"daemon\"\nsocket = \"{}\"\n\n[daemon]\n{daemon}\n{tables}",
                    socket.display()
                )
            })
        })
        .collect()
}

/// `otpgated --config CONFIG migrate`: whether it worked, what it said.
pub fn migrate(config: &Path) -> (bool, String) {
    let mut cmd = Command::new(otpgated_binary());
    cmd.arg("--config").arg(config).arg("migrate");
    let out = output_with_stdin(&mut cmd, "");
    (out.status.success(), printed(&out))
}

/// `otpgate --config CONFIG ARGS` as root.
pub fn otpgate_with(config: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(otpgate_binary());
    cmd.arg("--config").arg(config).args(args);
    let out = output_with_stdin(&mut cmd, "");
    (out.status.success(), printed(&out))
}

/// Enrolls root with the CLI under `config`: the secret and backup codes.
pub fn enroll_root(config: &Path) -> (String, Vec<String>) {
    let secret = new_secret();
    let args = [
        "enroll",
        "--user",
        "root",
        "--secret",
        &secret,
        "--no-confirm",
        "--json",
        "--no-qr",
    ];
    let (ok, text) = otpgate_with(config, &args);
    assert!(ok, "{text}");
    let codes = text
        .split("\"backup_codes\":[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_default()
        .split(',')
        .map(|c| c.trim_matches('"').to_string())
        .filter(|c| !c.is_empty())
        .collect();
    (secret, codes)
}
