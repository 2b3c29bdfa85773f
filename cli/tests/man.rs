//! The hand-written pages `cli/doc/pam_otpgate.8` and
//! `cli/doc/otpgate.toml.5` document every module argument (the table in
//! config/src/args.rs) and every config key with its default
//! (`SystemConfig::default()`); `otpgate man --dir` writes otpgate.1 and a
//! page per subcommand.

mod common;

use std::path::PathBuf;

use common::*;
use otpgate_config::SystemConfig;
use otpgate_test_support::{need, require_tool};

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("doc")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The arguments in the doc table of config/src/args.rs.
fn module_arguments() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/src/args.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let args: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    assert!(
        args.len() >= 9,
        "the table in args.rs changed shape: {args:?}"
    );
    args
}

#[test]
fn the_module_page_documents_every_module_argument() {
    let page = doc("pam_otpgate.8");
    for arg in module_arguments() {
        // `config=PATH` is written `.BI config= PATH`, `KEY=VALUE` `.IB KEY = VALUE`.
        let (name, value) = arg.split_once('=').unwrap_or((&arg, ""));
        let written = if value.is_empty() {
            format!("\n.B {name}\n")
        } else if name == "KEY" {
            format!("\n.IB {name} = {value}\n")
        } else {
            format!("\n.BI {name}= {value}\n")
        };
        assert!(
            page.contains(&written),
            "pam_otpgate.8 lacks {arg} ({written:?})"
        );
    }
    assert!(page.contains("debug_panic_for_tests"));
}

/// A default as the page writes it.
fn roff_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("\\(dq{s}\\(dq"),
        serde_json::Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

#[test]
fn the_config_page_documents_every_key_with_its_default() {
    let page = doc("otpgate.toml.5");
    let defaults = serde_json::to_value(SystemConfig::default()).unwrap();
    let mut keys = Vec::new();
    for (key, value) in defaults.as_object().unwrap() {
        match value.as_object() {
            Some(table) => {
                assert!(
                    page.contains(&format!("The [{key}] table")),
                    "no [{key}] section"
                );
                keys.extend(table.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            None => keys.push((key.clone(), value.clone())),
        }
    }
    assert!(keys.len() >= 19, "{keys:?}");
    for (key, value) in keys {
        let head = format!(".TP\n.B {key}\n");
        let start = page
            .find(&head)
            .unwrap_or_else(|| panic!("otpgate.toml.5 lacks key {key}"));
        let rest = &page[start + head.len()..];
        let end = rest
            .find("\n.TP\n")
            .or(rest.find("\n.S"))
            .unwrap_or(rest.len());
        let paragraph = &rest[..end];
        let default = format!("Default:\n.BR {} .", roff_value(&value));
        assert!(
            paragraph.contains(&default),
            "{key}: the page lacks {default:?}\n{paragraph}"
        );
    }
}

#[test]
fn the_config_page_documents_every_channel_key() {
    use otpgate_config::channel::{EmailChannel, SmsChannel};
    let page = doc("otpgate.toml.5");
    assert!(page.contains("The [channels.email] and [channels.sms] tables"));
    let email = serde_json::to_value(EmailChannel::default()).unwrap();
    let sms = serde_json::to_value(SmsChannel::default()).unwrap();
    for table in [email, sms] {
        for (key, value) in table.as_object().unwrap() {
            let head = format!(".TP\n.B {key}\n");
            let start = page
                .find(&head)
                .unwrap_or_else(|| panic!("otpgate.toml.5 lacks channel key {key}"));
            if value.is_number() {
                let rest = &page[start + head.len()..];
                let end = rest.find("\n.TP\n").unwrap_or(rest.len());
                assert!(
                    rest[..end].contains(&format!("Default:\n.BR {value} .")),
                    "{key}: default {value}"
                );
            }
        }
    }
}

#[test]
fn the_pages_render_without_warnings() {
    need!(require_tool("groff", "groff-base"));
    for name in ["pam_otpgate.8", "otpgate.toml.5"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("doc")
            .join(name);
        let out = std::process::Command::new("groff")
            .env("LC_ALL", "C.UTF-8")
            .args(["-ww", "-z", "-man"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}");
        assert!(
            out.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn man_dir_writes_the_command_page_and_one_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    run(BIN, &["man", "--dir", dir.path().to_str().unwrap()], "").ok();
    for page in [
        "otpgate.1",
        "otpgate-enroll.1",
        "otpgate-check.1",
        "otpgate-import-oath.1",
        "otpgate-import-google-authenticator.1",
        "otpgate-trusted-list.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page} not written");
    }
    let main = std::fs::read_to_string(dir.path().join("otpgate.1")).unwrap();
    assert!(main.contains("check"), "otpgate.1 lacks check");
    assert!(
        main.contains("8  `otpgate check` found"),
        "otpgate.1 lacks exit 8"
    );
}
