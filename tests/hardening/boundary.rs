//! The C boundary: a panic anywhere in the module is caught before it
//! reaches libpam (the login fails closed with `PAM_SYSTEM_ERR` and the
//! process goes on); the panic hook exists only in debug builds; no log
//! line of the whole suite holds a secret or a code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use otpgate_config::otp::Algorithm;
use otpgate_tests::*;

use crate::{figure, keep_log, kept, secret};

const ARG: &str = "debug_panic_for_tests";

fn enrolled(config: &str) -> Option<(Harness, String)> {
    let h = Harness::new(config)?;
    let s = new_secret();
    h.write_record("root", &totp_record_with(&s, Algorithm::SHA1, 6));
    secret(&s);
    Some((h, s))
}

fn code(secret_b32: &str) -> String {
    let c = totp_at(secret_b32, now());
    secret(&c);
    c
}

pub fn a_panic_in_authenticate_is_system_err_and_the_process_survives() {
    let (h, s) = need!(enrolled(""));
    let mut seen = Vec::new();
    for (stage, op) in [
        ("start", "authenticate"),
        ("update", "authenticate"),
        ("ffi", "authenticate"),
        ("setcred", "setcred"),
    ] {
        h.otp_service(&format!("{ARG}={stage}"));
        // `Login::run_op` asserts that pam_driver exited normally after
        // printing its RESULT line: the process survived the panic.
        let run = h.login().rhost("192.0.2.1").answer(code(&s)).run_op(op);
        run.assert("PAM_SYSTEM_ERR");
        assert!(
            run.stderr.contains("injected panic"),
            "the panic happened: {run:#?}"
        );
        if stage != "ffi" && stage != "setcred" {
            // Caught by the flow's guard: logged as an internal error.
            let log = h.log();
            assert!(
                log.iter()
                    .any(|l| l.contains("outcome=error") && l.contains("internal error (panic)")),
                "{log:#?}"
            );
        }
        seen.push(format!("{stage}/{op}"));
    }
    // Without the argument the same module logs in.
    h.otp_service("");
    h.login()
        .rhost("192.0.2.1")
        .answer(code(&s))
        .run()
        .assert("PAM_SUCCESS");
    keep_log(&h);
    figure(
        "boundary.panic",
        format!(
            "panics injected at {} -> PAM_SYSTEM_ERR every time, pam_driver survived and printed its result",
            seen.join(", ")
        ),
    );
}

pub fn a_panic_inside_an_update_releases_the_lock_and_changes_nothing() {
    let (h, s) = need!(enrolled(""));
    let before = std::fs::read(h.user_file("root")).expect("read");
    h.otp_service(&format!("{ARG}=update"));
    let c = code(&s);
    h.login().answer(&c).run().assert("PAM_SYSTEM_ERR");
    assert_eq!(std::fs::read(h.user_file("root")).expect("read"), before);
    // One process, one stack: the first instance panics with the lock held
    // and the identity switched; the second, in the same process, must get
    // the lock at once and accept the very same code.
    h.service(
        SERVICE,
        &[
            h.module_line("optional", &format!("{ARG}=update")),
            h.module_line("required", ""),
        ],
    );
    let t = Instant::now();
    let run = h.login().answer(&c).answer(&c).run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts().len(), 2, "{run:#?}");
    // Well under the 10 s lock timeout: the lock was released on unwind.
    assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    assert_ne!(std::fs::read(h.user_file("root")).expect("read"), before);
    keep_log(&h);
    figure(
        "boundary.panic_in_update",
        "a panic inside UserFile::update leaves the file unchanged and frees the lock: the next module instance in the same process accepted the same code",
    );
}

/// Builds the module in release mode into its own target directory
/// (`<target>/hardening-release`), so a debug `cargo test` also proves what
/// ships.
fn release_module() -> PathBuf {
    let target = target_dir()
        .parent()
        .expect("target dir")
        .join("hardening-release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let t = Instant::now();
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "-p", "pam-module"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo build --release");
    assert!(status.success(), "cargo build --release -p pam-module");
    println!("release build of pam-module: {:.1?}", t.elapsed());
    target.join("release/libpam_otpgate.so")
}

pub fn a_release_build_rejects_the_debug_panic_argument() {
    let (mut h, s) = need!(enrolled(""));
    let debug_so = h.module.clone();
    h.module = release_module();
    let contains = |so: &Path, needle: &[u8]| {
        let bytes = std::fs::read(so).expect("read module");
        bytes.windows(needle.len()).any(|w| w == needle)
    };
    assert!(contains(&debug_so, b"injected panic at"));
    assert!(
        !contains(&h.module, b"injected panic at"),
        "the release module holds the panic hook"
    );
    for (arg, why) in [
        (ARG.to_string(), format!("unknown argument `{ARG}`")),
        (format!("{ARG}=update"), format!("unknown key `{ARG}`")),
    ] {
        h.otp_service(&arg);
        let run = h.login().answer(code(&s)).run();
        run.assert("PAM_SERVICE_ERR");
        assert!(run.prompts().is_empty());
        let log = h.log();
        assert!(log.iter().any(|l| l.contains(&why)), "{why}: {log:#?}");
    }
    h.otp_service("");
    h.login().answer(code(&s)).run().assert("PAM_SUCCESS");
    keep_log(&h);
    figure(
        "boundary.release",
        format!(
            "a release build knows no `{ARG}`: PAM_SERVICE_ERR, logged; its .so holds no panic hook"
        ),
    );
}

/// True when `line` holds `needle` as a whole token (not inside a longer
/// run of digits or base32 letters).
fn holds(line: &str, needle: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric();
    line.match_indices(needle).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + needle.len()..].chars().next();
        !before.is_some_and(token) && !after.is_some_and(token)
    })
}

pub fn no_secret_or_code_in_any_log_line_of_the_suite() {
    // A few logins of its own, so the check has lines even when run alone.
    let (h, s) = need!(enrolled("max_attempts = 2"));
    h.otp_service("debug");
    let c = code(&s);
    h.login()
        .rhost("192.0.2.9")
        .answer("123 456")
        .answer(&c)
        .run();
    h.login().rhost("192.0.2.9").answer(&c).answer(&c).run();
    keep_log(&h);
    let (lines, secrets) = kept();
    assert!(!lines.is_empty());
    let mut leaks = Vec::new();
    for line in &lines {
        // Strip `<pri>Mmm dd hh:mm:ss pam_otpgate[pid]: `: pids and times
        // are not codes.
        let body = line.split_once("]: ").map_or(line.as_str(), |(_, b)| b);
        for sec in &secrets {
            // Nor lower-cased (base32 secrets).
            if [sec.clone(), sec.to_ascii_lowercase()]
                .iter()
                .any(|form| holds(body, form))
            {
                leaks.push(format!("{sec:?} in {line:?}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
    figure(
        "logs.no_secrets",
        format!(
            "{} log lines from the suite searched for {} secrets, TOTP codes and backup codes it used: 0 found",
            lines.len(),
            secrets.len()
        ),
    );
}
