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
    // Keys of the same name in other tables (`timeout`) come earlier.
    let section = "The [channels.email] and [channels.sms] tables";
    let page = &page[page.find(section).expect(section)..];
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
    for name in ["pam_otpgate.8", "otpgate.toml.5", "otpgated.8"] {
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

/// The `.nf`/`.RS` example blocks of a page, roff escapes undone, each
/// with the text before it (what it is an example of).
fn examples(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(".nf\n.RS\n") {
        let before = rest[..start].to_string();
        let body = &rest[start + ".nf\n.RS\n".len()..];
        let end = body.find("\n.RE\n.fi").expect("unclosed .nf block");
        let text = body[..end].replace("\\-", "-").replace("\\(dq", "\"");
        out.push((before, text));
        rest = &body[end..];
    }
    out
}

/// The README's plain ``` blocks (configuration text, not ```sh commands).
fn readme_blocks() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<(bool, Vec<&str>)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.is_empty(), Vec::new())),
            (Some((plain, lines)), Some(_)) => {
                if *plain {
                    blocks.push(lines.join("\n"));
                }
                open = None;
            }
            (Some((_, lines)), None) => lines.push(line),
            (None, None) => {}
        }
    }
    blocks
}

/// The lines sshd reads from the shipped drop-in, and its commented
/// alternative `AuthenticationMethods` line.
fn shipped_drop_in() -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/examples/sshd_config.d/otpgate.conf");
    let text = std::fs::read_to_string(path).unwrap();
    let active: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let alternative = text
        .lines()
        .find_map(|l| l.strip_prefix("#AuthenticationMethods "))
        .expect("the key-then-code line");
    (
        active.join("\n"),
        format!("AuthenticationMethods {alternative}"),
    )
}

/// The key-then-code stack of pam_otpgate(8) has `pam_permit.so` after the
/// module (the README says why it is needed), the password commented out,
/// and is the README's stack, line for line.
#[test]
fn the_key_then_code_example_has_pam_permit_after_the_module() {
    let page = doc("pam_otpgate.8");
    let stack = examples(&page)
        .into_iter()
        .map(|(_, text)| text)
        .find(|text| text.contains("# @include common-auth"))
        .expect("a key-then-code stack with the password commented out");
    let lines: Vec<&str> = stack.lines().collect();
    let module = lines
        .iter()
        .position(|l| *l == "auth required pam_otpgate.so")
        .expect("the module line");
    let permit = lines
        .iter()
        .position(|l| *l == "auth required pam_permit.so")
        .unwrap_or_else(|| panic!("no pam_permit.so in:\n{stack}"));
    assert!(module < permit, "pam_permit.so before the module:\n{stack}");
    assert!(page.contains("\n.B pam_permit.so\nis needed because"));
    assert!(
        readme_blocks().contains(&stack),
        "the README's key-then-code stack differs from:\n{stack}"
    );
}

/// pam_otpgate(8) and the README show the sshd lines as the drop-in the
/// packages ship, and say where it is installed and why not to append to
/// sshd_config.
#[test]
fn the_sshd_examples_are_the_shipped_drop_in() {
    let (active, alternative) = shipped_drop_in();
    let page = doc("pam_otpgate.8");
    let blocks = examples(&page);
    let (before, _) = blocks
        .iter()
        .find(|(_, text)| *text == active)
        .unwrap_or_else(|| panic!("pam_otpgate.8 lacks the drop-in's lines:\n{active}"));
    assert!(
        before.ends_with(".IR /etc/ssh/sshd_config.d/otpgate.conf :\n.PP\n"),
        "{before}"
    );
    assert!(blocks.iter().any(|(_, text)| *text == alternative));
    for needle in [
        "/usr/share/doc/otpgate/examples/sshd_config.d/otpgate.conf",
        ".B KbdInteractiveAuthentication no",
        ".B Include /etc/ssh/sshd_config.d/*.conf",
    ] {
        assert!(page.contains(needle), "pam_otpgate.8 lacks {needle}");
    }
    assert!(
        readme_blocks().contains(&active),
        "the README lacks the drop-in's lines:\n{active}"
    );
    // The packages install it where the page says.
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap();
    let shipped = "\"../packaging/examples/sshd_config.d/otpgate.conf\", \
                   \"usr/share/doc/otpgate/examples/sshd_config.d/otpgate.conf\"";
    assert!(
        manifest.contains(shipped),
        "the .deb does not ship the drop-in"
    );
}
