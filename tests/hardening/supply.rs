//! Supply chain, offline: the module's dependency count, and cargo-deny's
//! bans/licenses/sources checks with `deny.toml` beside this file.
//! Advisories (`cargo audit`, `cargo deny check advisories`) need the
//! RustSec database from GitHub, which these machines cannot reach: that
//! part is reported, not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use otpgate_tests::require;

use crate::figure;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace());
    c
}

/// `cargo deny`, from PATH or `~/.cargo/bin` (where `cargo install` and
/// packaging/deps.sh put it).
fn cargo_deny() -> Option<PathBuf> {
    let home_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|h| h.join("bin/cargo-deny"));
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("cargo-deny"))
            .find(|p| p.exists())
    });
    on_path.or(home_bin.filter(|p| p.exists()))
}

pub fn dependencies_counted_and_checked_offline() {
    // Every package the module links, by `cargo tree` (normal edges).
    let out = cargo()
        .args([
            "tree",
            "--offline",
            "-p",
            "pam-module",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p} {f}",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut packages: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                .into()
        })
        .filter(|p: &String| !p.is_empty())
        .collect();
    packages.sort();
    packages.dedup();
    let ours = packages
        .iter()
        .filter(|p| p.starts_with("pam-module ") || p.starts_with("otpgate-config "))
        .count();
    let external = packages.len() - ours;
    // No registry dependency of the module's crates without a version.
    for manifest in ["pam-module/Cargo.toml", "config/Cargo.toml"] {
        let text = std::fs::read_to_string(workspace().join(manifest)).expect("manifest");
        assert!(!text.contains("\"*\""), "{manifest} has a wildcard version");
    }
    figure(
        "supply.dependencies",
        format!(
            "pam_otpgate.so is built from {} packages: {ours} of ours + {external} from crates.io (cargo tree -p pam-module -e normal)",
            packages.len()
        ),
    );

    let Some(deny) = cargo_deny() else {
        require(
            false,
            "cargo-deny not installed (packaging/deps.sh installs it as root: cargo install --locked cargo-deny)",
        );
        figure(
            "supply.cargo_deny",
            "not run: cargo-deny is not installed; advisories not checked (no RustSec database offline)",
        );
        return;
    };
    let out = Command::new(&deny)
        .current_dir(workspace())
        .args([
            "deny",
            "--offline",
            "--manifest-path",
            "pam-module/Cargo.toml",
        ])
        .arg("--config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("hardening/deny.toml"))
        .args(["check", "bans", "licenses", "sources"])
        .output()
        .expect("cargo deny");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo deny: {stderr}");
    // The summary line, without colours, from whichever stream has it.
    let text = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    let plain: String = text
        .split('\x1b')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once('m').map_or(part, |(_, rest)| rest)
            }
        })
        .collect();
    let summary = plain
        .lines()
        .rev()
        .find(|l| l.contains("bans") && l.contains("licenses"))
        .unwrap_or("")
        .trim()
        .to_string();
    figure(
        "supply.cargo_deny",
        format!(
            "cargo deny check bans licenses sources on the module's tree: {summary}; advisories NOT checked (the RustSec database is on GitHub, unreachable here, and no registry ships it)"
        ),
    );
}
