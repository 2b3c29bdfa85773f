//! Real logins end to end (issue #5): Debian's sshd, unpacked and run on a
//! loopback port with the module in its PAM service (pam_wrapper, no change
//! to /etc), driven by the real OpenSSH client; and console-style logins
//! (pamtester with a tty and no remote host, `su` to the test user).
//! Codes come from oathtool; passwords are checked by pam_matrix.
#![forbid(unsafe_code)]

use std::process::Command;

use otpgate_tests::sshd::*;
use otpgate_tests::*;

const CODE_PROMPT: &str = "Verification code";

/// A harness plus an sshd with `AuthenticationMethods keyboard-interactive`
/// and the stack "password (pam_matrix), then our module".
fn password_then_code(config: &str, module_extra: &str) -> Option<(Harness, Sshd)> {
    let h = Harness::new(config)?;
    let auth = vec![password_line(&h), h.module_line("required", module_extra)];
    let sshd = Sshd::start(&h, &SshdSetup::new("keyboard-interactive", auth))?;
    Some((h, sshd))
}

/// `AuthenticationMethods publickey,keyboard-interactive` and a PAM stack
/// of our module alone (the common "key plus code" setup), with `more`
/// lines after it.
fn key_then_code(config: &str, more: &[&str]) -> Option<(Harness, Sshd)> {
    let h = Harness::new(config)?;
    let mut auth = vec![h.module_line("required", "")];
    auth.extend(more.iter().map(|l| l.to_string()));
    let sshd = Sshd::start(&h, &SshdSetup::new("publickey,keyboard-interactive", auth))?;
    Some((h, sshd))
}

/// A 6-digit code that is none of `secret`'s codes around now.
fn wrong_code(secret: &str) -> String {
    avoid_step_edge();
    let t = now();
    (1..)
        .map(|i| format!("{:06}", (i * 7919) % 1_000_000))
        .find(|c| {
            ![t - 60, t - 30, t, t + 30, t + 60]
                .iter()
                .any(|&s| &totp_at(secret, s) == c)
        })
        .unwrap_or_default()
}

// --- keyboard-interactive: password, then code ------------------------------

#[test]
fn ssh_password_then_right_code_logs_in_and_the_command_runs() {
    let (h, sshd) = need!(password_then_code("", ""));
    let secret = h.enroll();
    let run = sshd.ssh("root").code(&totp_at(&secret, now())).run();
    run.assert_logged_in();
    assert_eq!(run.prompts.len(), 2, "{run:#?}");
    assert!(run.prompts[0].ends_with("Password: "), "{run:#?}");
    assert!(run.prompts[1].ends_with("Verification code: "), "{run:#?}");
    assert!(
        run.server_log
            .contains("Accepted keyboard-interactive/pam for root")
    );
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("service=sshd-otp-test")
            && l.contains("rhost=127.0.0.1")
            && l.contains("method=totp")
            && l.contains("outcome=success")),
        "{log:#?}"
    );
}

#[test]
fn ssh_wrong_code_is_refused() {
    let (h, sshd) = need!(password_then_code("max_attempts = 1", ""));
    let secret = h.enroll();
    let run = sshd.ssh("root").code(&wrong_code(&secret)).run();
    run.assert_refused();
    assert!(run.prompted(CODE_PROMPT), "{run:#?}");
    assert!(run.stderr.contains("Wrong code."), "{run:#?}");
}

#[test]
fn ssh_wrong_code_then_right_code_in_one_login_logs_in() {
    let (h, sshd) = need!(password_then_code("max_attempts = 3", ""));
    let secret = h.enroll();
    let run = sshd
        .ssh("root")
        .code(&wrong_code(&secret))
        .code(&totp_at(&secret, now()))
        .run();
    run.assert_logged_in();
    let asked = run
        .prompts
        .iter()
        .filter(|p| p.contains(CODE_PROMPT))
        .count();
    assert_eq!(asked, 2, "{run:#?}");
    assert!(run.shown("Wrong code; 2 tries left."), "{run:#?}");
}

/// Issue #13, item 3, as it was seen: one wrong code over ssh, then the
/// client disconnects. The failure was counted in the file and not one
/// line was logged (sshd's PAM process went away with the login). Now the
/// refused answer's line is written before the "Wrong code" message.
#[test]
fn ssh_one_wrong_code_then_a_disconnect_is_logged_as_refused() {
    let (h, sshd) = need!(password_then_code("", ""));
    let secret = h.enroll();
    let wrong = wrong_code(&secret);
    let run = sshd.ssh("root").code(&wrong).then_disconnect().run();
    assert_ne!(run.status, Some(0), "{run:#?}");
    let asked = run
        .prompts
        .iter()
        .filter(|p| p.contains(CODE_PROMPT))
        .count();
    assert_eq!(asked, 2, "asked again, then gone: {run:#?}");
    // sshd's PAM process may still be winding down.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut log = Vec::new();
    while h.record("root").state.failures == 0 || log.is_empty() {
        log.extend(
            h.log()
                .into_iter()
                .filter(|l| l.contains(" outcome=refused ")),
        );
        if std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(h.record("root").state.failures, 1);
    assert_eq!(log.len(), 1, "{log:#?}");
    for want in [
        "user=root service=sshd-otp-test rhost=127.0.0.1 ",
        " method=- outcome=refused why=wrong reason=\"wrong code\"",
    ] {
        assert!(log[0].contains(want), "{want} not in {}", log[0]);
    }
    assert!(!log[0].contains(&wrong), "the code must never be logged");
}

#[test]
fn ssh_reused_code_is_refused() {
    let (h, sshd) = need!(password_then_code("max_attempts = 1", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let code = totp_at(&secret, now());
    sshd.ssh("root").code(&code).run().assert_logged_in();
    let again = sshd.ssh("root").code(&code).run();
    again.assert_refused();
    assert!(again.prompted(CODE_PROMPT), "{again:#?}");
}

#[test]
fn ssh_wrong_password_never_reaches_the_code_prompt() {
    let (h, sshd) = need!(password_then_code("", ""));
    let secret = h.enroll();
    let run = sshd
        .ssh("root")
        .password(Some("not the password"))
        .code(&totp_at(&secret, now()))
        .run();
    run.assert_refused();
    assert!(!run.prompted(CODE_PROMPT), "{run:#?}");
    assert_eq!(h.record("root").devices[0].last_step, 0, "code not used up");
}

// --- Debian's stock sshd_config and the shipped drop-in ---------------------

/// The drop-in the packages ship as an example.
fn shipped_drop_in() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/examples/sshd_config.d/otpgate.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `dir` with the shipped drop-in as `otpgate.conf`, for the stock
/// `Include`.
fn drop_in_dir(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("otpgate.conf"), shipped_drop_in()).unwrap();
}

/// Debian's stock sshd_config, as a real install has it, says
/// `KbdInteractiveAuthentication no` after its `Include`: with the shipped
/// drop-in in the included directory, keyboard-interactive is on and the
/// code is asked. (Without the drop-in the stock `no` comes first, and sshd
/// refuses to start with `AuthenticationMethods keyboard-interactive`.)
#[test]
fn ssh_with_debians_stock_sshd_config_and_the_shipped_drop_in_asks_for_the_code() {
    let h = need!(Harness::new(""));
    let drop_ins = h.path("sshd_config.d");
    let stock = need!(stock_sshd_config(&drop_ins));
    drop_in_dir(&drop_ins);
    let auth = vec![password_line(&h), h.module_line("required", "")];
    let mut setup = SshdSetup::new("keyboard-interactive", auth);
    setup.head = stock;
    let sshd = need!(Sshd::start(&h, &setup));
    let secret = h.enroll();
    let run = sshd.ssh("root").code(&totp_at(&secret, now())).run();
    run.assert_logged_in();
    assert!(run.prompted(CODE_PROMPT), "{run:#?}");
    assert!(
        run.server_log
            .contains("Accepted keyboard-interactive/pam for root"),
        "{run:#?}"
    );
}

/// The drop-in's other setup, as its comments say to switch to it: its
/// `publickey,keyboard-interactive` line instead of the first, and a PAM
/// stack of our module then `pam_permit.so`: the key, then only the code.
#[test]
fn ssh_with_the_drop_ins_key_then_code_line_asks_only_for_the_code_after_the_key() {
    let h = need!(Harness::new(""));
    let drop_ins = h.path("sshd_config.d");
    let stock = need!(stock_sshd_config(&drop_ins));
    let drop_in = shipped_drop_in()
        .replace(
            "\nAuthenticationMethods keyboard-interactive\n",
            "\n#AuthenticationMethods keyboard-interactive\n",
        )
        .replace(
            "\n#AuthenticationMethods publickey,keyboard-interactive\n",
            "\nAuthenticationMethods publickey,keyboard-interactive\n",
        );
    assert_ne!(drop_in, shipped_drop_in());
    std::fs::create_dir_all(&drop_ins).unwrap();
    std::fs::write(drop_ins.join("otpgate.conf"), drop_in).unwrap();
    let auth = vec![
        h.module_line("required", ""),
        "auth required pam_permit.so".to_string(),
    ];
    // The harness's own line says otherwise: the drop-in's, read first, wins.
    let mut setup = SshdSetup::new("keyboard-interactive", auth);
    setup.head = stock;
    let sshd = need!(Sshd::start(&h, &setup));
    let secret = h.enroll();
    let run = sshd
        .ssh("root")
        .with_key()
        .code(&totp_at(&secret, now()))
        .run();
    run.assert_logged_in();
    assert_eq!(run.prompts.len(), 1, "{run:#?}");
    assert!(run.prompts[0].ends_with("Verification code: "), "{run:#?}");
    assert!(
        run.server_log
            .contains("Partial publickey for root from 127.0.0.1"),
        "{}",
        run.server_log
    );
}

/// The trap and the fix, as sshd itself reads them (`sshd -T`): lines
/// appended to the stock file lose to its `KbdInteractiveAuthentication
/// no` (with `AuthenticationMethods keyboard-interactive` too, sshd refuses
/// the whole file: a reload fails); the same lines as a drop-in win.
#[test]
fn appended_lines_lose_to_debians_stock_sshd_config_and_the_drop_in_wins() {
    let dir = tempfile::tempdir().unwrap();
    let drop_ins = dir.path().join("sshd_config.d");
    let stock = need!(stock_sshd_config(&drop_ins));
    std::fs::create_dir_all(&drop_ins).unwrap();
    let appended = format!("{stock}\nUsePAM yes\nKbdInteractiveAuthentication yes\n");
    let (accepted, effective) = need!(effective_sshd_config(dir.path(), &appended));
    assert!(accepted, "{effective}");
    assert!(
        effective
            .lines()
            .any(|l| l == "kbdinteractiveauthentication no"),
        "{effective}"
    );
    let appended = format!("{stock}\n{}", shipped_drop_in());
    let (accepted, printed) = need!(effective_sshd_config(dir.path(), &appended));
    assert!(!accepted, "{printed}");
    assert!(
        printed.contains("Disabled method \"keyboard-interactive\""),
        "{printed}"
    );

    drop_in_dir(&drop_ins);
    let (accepted, effective) = need!(effective_sshd_config(dir.path(), &stock));
    assert!(accepted, "{effective}");
    for line in [
        "usepam yes",
        "kbdinteractiveauthentication yes",
        "authenticationmethods keyboard-interactive",
    ] {
        assert!(
            effective.lines().any(|l| l == line),
            "{line} missing:\n{effective}"
        );
    }
}

// --- publickey, then keyboard-interactive ----------------------------------

#[test]
fn ssh_key_then_code_logs_in_without_a_password_prompt() {
    let (h, sshd) = need!(key_then_code("", &[]));
    let secret = h.enroll();
    let run = sshd
        .ssh("root")
        .with_key()
        .code(&totp_at(&secret, now()))
        .run();
    run.assert_logged_in();
    assert_eq!(run.prompts.len(), 1, "{run:#?}");
    assert!(run.prompts[0].ends_with("Verification code: "), "{run:#?}");
    assert!(!run.prompted("assword"), "{run:#?}");
    assert!(
        run.server_log
            .contains("Partial publickey for root from 127.0.0.1"),
        "{}",
        run.server_log
    );
    assert!(
        run.server_log
            .contains("Accepted keyboard-interactive/pam for root"),
        "{}",
        run.server_log
    );
}

#[test]
fn ssh_key_with_wrong_code_is_refused() {
    let (h, sshd) = need!(key_then_code("max_attempts = 1", &[]));
    let secret = h.enroll();
    let run = sshd.ssh("root").with_key().code(&wrong_code(&secret)).run();
    run.assert_refused();
    assert!(
        run.server_log.contains("Partial publickey"),
        "the key was fine"
    );
    assert!(!run.prompted("assword"), "{run:#?}");
}

#[test]
fn ssh_without_the_key_is_refused_before_any_code_prompt() {
    let (h, sshd) = need!(key_then_code("", &[]));
    let secret = h.enroll();
    // keyboard-interactive alone does not satisfy publickey,keyboard-interactive.
    let run = sshd.ssh("root").code(&totp_at(&secret, now())).run();
    run.assert_refused();
    assert!(!run.prompted(CODE_PROMPT), "{run:#?}");
}

// --- backup codes, trusted networks, remembered hosts ------------------------

#[test]
fn ssh_backup_code_from_the_cli_logs_in_once() {
    let (h, sshd) = need!(password_then_code("max_attempts = 1", ""));
    let codes = enroll_with_cli(&h, "root", &new_secret());
    assert_eq!(codes.len(), 10, "{codes:?}");
    let backup = &codes[3];
    let first = sshd.ssh("root").code(backup).with_tty().run();
    first.assert_logged_in();
    let shown = format!("{}{}", first.stderr, first.stdout);
    assert_eq!(
        shown.matches("Backup code used; 9 left.").count(),
        1,
        "shown once: {first:#?}"
    );
    let second = sshd.ssh("root").code(backup).run();
    second.assert_refused();
    // The other codes still work.
    sshd.ssh("root").code(&codes[7]).run().assert_logged_in();
}

#[test]
fn ssh_from_a_trusted_network_logs_in_without_a_code_prompt() {
    let (h, sshd) = need!(password_then_code(
        "trusted_networks = [\"127.0.0.0/8\"]",
        ""
    ));
    h.enroll();
    let run = sshd.ssh("root").run();
    run.assert_logged_in();
    assert!(run.prompted("Password"), "{run:#?}");
    assert!(!run.prompted(CODE_PROMPT), "{run:#?}");
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains("method=trusted-network") && l.contains("outcome=success")),
        "{log:#?}"
    );
}

#[test]
fn ssh_remembered_host_after_answering_y_skips_the_code() {
    let (h, sshd) = need!(password_then_code("remember_days = 7", ""));
    let secret = h.enroll();
    let first = sshd
        .ssh("root")
        .code(&totp_at(&secret, now()))
        .trust("y")
        .run();
    first.assert_logged_in();
    assert!(
        first.prompted("Skip the code for logins from 127.0.0.1 for 7 days? [y/N]"),
        "{first:#?}"
    );
    // Bound to the address and to sshd's service.
    let hosts = h.record("root").trusted_hosts;
    assert!(
        hosts
            .iter()
            .any(|t| t.host == "127.0.0.1" && !t.service.is_empty()),
        "{hosts:#?}"
    );
    let second = sshd.ssh("root").run();
    second.assert_logged_in();
    assert!(!second.prompted(CODE_PROMPT), "{second:#?}");
    assert!(!second.prompted("Skip the code"), "{second:#?}");
}

#[test]
fn ssh_answering_n_to_trust_this_host_asks_for_the_code_next_time() {
    let (h, sshd) = need!(password_then_code("remember_days = 7", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let t = now();
    sshd.ssh("root")
        .code(&totp_at(&secret, t))
        .trust("n")
        .run()
        .assert_logged_in();
    assert!(h.record("root").trusted_hosts.is_empty());
    // The next step's code: the one just used is burnt.
    let second = sshd.ssh("root").code(&totp_at(&secret, t + 30)).run();
    second.assert_logged_in();
    assert!(second.prompted(CODE_PROMPT), "{second:#?}");
}

// --- users without an enrollment ----------------------------------------------

#[test]
fn ssh_unenrolled_user_under_optional_policy_logs_in_with_the_password() {
    let (_h, sshd) = need!(password_then_code("[policy]\nrequire = \"enrolled\"", ""));
    let run = sshd.ssh("root").run();
    run.assert_logged_in();
    assert!(!run.prompted(CODE_PROMPT), "{run:#?}");
}

#[test]
fn ssh_unenrolled_user_with_a_key_under_optional_policy_needs_pam_permit_after_the_module() {
    // Our module answers PAM_IGNORE for a user without enrollment; a stack of
    // only ignores fails, so the key-plus-code setup adds pam_permit.
    let (_h, sshd) = need!(key_then_code("", &["auth required pam_permit.so"]));
    let run = sshd.ssh("root").with_key().run();
    run.assert_logged_in();
    assert!(run.prompts.is_empty(), "{run:#?}");

    let (_h2, bare) = need!(key_then_code("", &[]));
    bare.ssh("root").with_key().run().assert_refused();
}

#[test]
fn ssh_unenrolled_user_under_required_policy_is_refused_with_the_enroll_hint() {
    let (_h, sshd) = need!(password_then_code("[policy]\nrequire = \"all\"", ""));
    let run = sshd.ssh("root").run();
    run.assert_refused();
    assert!(
        run.stderr
            .contains("2FA is required for this account: run `otpgate enroll`"),
        "{run:#?}"
    );
    assert!(!run.prompted(CODE_PROMPT), "{run:#?}");
}

// --- lockout ------------------------------------------------------------------

#[test]
fn ssh_lockout_is_shown_to_the_user_and_refuses_even_the_right_code() {
    let (h, sshd) = need!(password_then_code(
        "max_attempts = 1\nlockout_after = 2\nlockout_minutes = 15",
        ""
    ));
    let secret = h.enroll();
    let wrong = wrong_code(&secret);
    let first = sshd.ssh("root").code(&wrong).run();
    first.assert_refused();
    assert!(first.stderr.contains("Wrong code."), "{first:#?}");
    let second = sshd.ssh("root").code(&wrong).run();
    second.assert_refused();
    assert!(
        second
            .stderr
            .contains("Too many wrong codes. Account locked until "),
        "{second:#?}"
    );
    let third = sshd
        .ssh("root")
        .code(&totp_at(&secret, now()))
        .tries(3)
        .run();
    third.assert_refused();
    assert_eq!(
        third.stderr.matches("Account locked until ").count(),
        1,
        "shown once: {third:#?}"
    );
    assert!(
        !third.prompted(CODE_PROMPT),
        "no prompt while locked: {third:#?}"
    );
}

// --- console-style logins -------------------------------------------------------

/// pamtester on `service` for `user` with a tty and no remote host, under
/// pam_wrapper; answers from stdin.
fn pamtester_console(h: &Harness, service: &str, user: &str, stdin: &str) -> (bool, String) {
    let out = h.run_wrapped(
        Command::new("pamtester").args(["-v", "-I", "tty=tty1", service, user, "authenticate"]),
        stdin,
    );
    (out.status.success(), printed(&out))
}

/// A `login`-like service: password (pam_matrix), then our module.
fn console(config: &str) -> Option<Harness> {
    require_tool("pamtester", "pamtester")?;
    let h = Harness::new(config)?;
    require_sshd_tools()?;
    std::fs::write(
        h.path("passdb"),
        format!("root:{PASSWORD}:login-otp-test\n"),
    )
    .expect("passdb");
    h.service(
        "login-otp-test",
        &[password_line(&h), h.module_line("required", "")],
    );
    Some(h)
}

#[test]
fn console_login_with_a_tty_asks_password_then_code() {
    let h = need!(console(""));
    let secret = h.enroll();
    let (ok, out) = pamtester_console(
        &h,
        "login-otp-test",
        "root",
        &format!("{PASSWORD}\n{}\n", totp_at(&secret, now())),
    );
    assert!(ok, "{out}");
    assert!(out.contains("Password: Verification code: "), "{out}");
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("tty=tty1")
            && l.contains("method=totp")
            && l.contains("outcome=success")),
        "{log:#?}"
    );
}

#[test]
fn console_login_with_a_wrong_code_fails() {
    let h = need!(console("max_attempts = 1"));
    let secret = h.enroll();
    let (ok, out) = pamtester_console(
        &h,
        "login-otp-test",
        "root",
        &format!("{PASSWORD}\n{}\n", wrong_code(&secret)),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("Wrong code."), "{out}");
}

#[test]
fn console_login_with_local_console_skip_asks_no_code() {
    let h = need!(console("local_console = \"skip\""));
    h.enroll();
    let (ok, out) = pamtester_console(&h, "login-otp-test", "root", &format!("{PASSWORD}\n"));
    assert!(ok, "{out}");
    assert!(!out.contains("Verification code"), "{out}");
}

#[test]
fn su_login_to_the_test_user_asks_password_then_code() {
    need!(require_tool("su", "util-linux"));
    let h = need!(Harness::new(""));
    need!(require_sshd_tools());
    let user = need!(test_user());
    // The login runs in the home: no leftover of another suite in it.
    user.empty_home();
    // `su -l` (PAM service "su-l"): a login shell's clean environment, so
    // the user's shell does not inherit pam_wrapper's LD_PRELOAD (which,
    // as the user, could not read our pam.d and would abort).
    std::fs::write(h.path("passdb"), format!("{}:{PASSWORD}:su-l\n", user.name)).expect("passdb");
    // Our own service (no pam_rootok: root is asked like anyone).
    h.service(
        "su-l",
        &[
            password_line(&h),
            h.module_line("required", ""),
            "account required pam_permit.so".into(),
            "session required pam_permit.so".into(),
        ],
    );
    let secret = new_secret();
    h.write_record(
        &user.name,
        &totp_record_with(&secret, otpgate_config::otp::Algorithm::SHA1, 6),
    );
    let su = |answers: String| {
        h.run_wrapped(
            Command::new("su")
                .args(["-l", "-s", "/bin/sh", "-c", "echo hello from $(id -un)"])
                .arg(&user.name),
            &answers,
        )
    };
    avoid_step_edge();
    let out = su(format!("{PASSWORD}\n{}\n", totp_at(&secret, now())));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success() && stdout.contains(&format!("hello from {}", user.name)),
        "su failed: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("Password: ") && stderr.contains("Verification code: "),
        "prompts: {stderr}"
    );
    // The same code again is refused.
    let again = su(format!("{PASSWORD}\n{}\n", totp_at(&secret, now())));
    assert!(!again.status.success(), "{again:?}");
}

// --- through otpgated (store.kind = "daemon", issue #15) ---------------------

/// The same logins with the records held by `otpgated`: sshd's module asks
/// the daemon (as root, from sshd's monitor); a code works once, a backup
/// code once, a remembered host skips the code, and with the daemon gone
/// the login is refused after the password.
#[test]
fn ssh_through_otpgated_codes_work_once_and_a_remembered_host_skips_the_code() {
    use otpgate_config::otp::Algorithm;
    use otpgate_tests::daemon::{Otpgated, daemon_config};
    let h = need!(Harness::new(""));
    h.write_config(&daemon_config(
        &h,
        "remember_days = 7\nmax_attempts = 1",
        "",
        "",
    ));
    let auth = vec![password_line(&h), h.module_line("required", "")];
    let sshd = need!(Sshd::start(
        &h,
        &SshdSetup::new("keyboard-interactive", auth)
    ));
    let mut daemon = Otpgated::start(&h);
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    let backup = record.new_backup_codes(1, 8).unwrap()[0].to_string();
    h.write_record("root", &record);
    avoid_step_edge();
    let code = totp_at(&secret, now());
    sshd.ssh("root")
        .code(&code)
        .trust("n")
        .run()
        .assert_logged_in();
    let again = sshd.ssh("root").code(&code).run();
    again.assert_refused();
    assert!(again.prompted(CODE_PROMPT), "{again:#?}");
    sshd.ssh("root").code(&backup).run().assert_logged_in();
    sshd.ssh("root").code(&backup).run().assert_refused();
    let trusted = sshd
        .ssh("root")
        .code(&totp_at(&secret, now() + 30))
        .trust("y")
        .run();
    trusted.assert_logged_in();
    let next = sshd.ssh("root").run();
    next.assert_logged_in();
    assert!(!next.prompted(CODE_PROMPT), "{next:#?}");
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("method=remembered-host")),
        "{log:#?}"
    );
    daemon.kill9();
    let down = sshd.ssh("root").code(&totp_at(&secret, now() + 60)).run();
    down.assert_refused();
    assert!(
        h.log().iter().any(|l| l.contains("is otpgated running?")),
        "the log names the cause"
    );
}

// --- SSH keys (issue #17, part 2) ----------------------------------------------

/// Key then code (the module alone in the stack), with `ExposeAuthInfo
/// expose` in sshd_config; `config(fingerprint of the client key, of the
/// other key)` becomes the system config once sshd has made the keys.
fn key_then_code_with_keys(
    expose: &str,
    config: impl Fn(&str, &str) -> String,
) -> Option<(Harness, Sshd)> {
    let h = Harness::new("")?;
    let mut setup = SshdSetup::new(
        "publickey,keyboard-interactive",
        vec![h.module_line("required", "")],
    );
    setup.extra = format!("ExposeAuthInfo {expose}\n");
    let sshd = Sshd::start(&h, &setup)?;
    h.write_config(&config(
        &fingerprint(&sshd.client_key),
        &fingerprint(&sshd.other_key),
    ));
    Some((h, sshd))
}

/// The decision lines of the logins since the last call.
fn decisions(h: &Harness) -> Vec<String> {
    h.log()
        .into_iter()
        .filter(|l| l.contains(" outcome=") && !l.contains(" outcome=refused "))
        .collect()
}

#[test]
fn ssh_a_listed_key_fingerprint_skips_the_code_and_an_unlisted_key_is_asked() {
    let (h, sshd) = need!(key_then_code_with_keys("yes", |listed, _| format!(
        "[policy]\ntrusted_ssh_keys = [\"{listed}\"]"
    )));
    let secret = h.enroll();
    let listed = fingerprint(&sshd.client_key);
    let run = sshd.ssh("root").with_key().run();
    run.assert_logged_in();
    assert!(run.prompts.is_empty(), "{run:#?}");
    let log = decisions(&h);
    assert!(
        log.iter().any(|l| l.contains("method=ssh-key")
            && l.contains("outcome=success")
            && l.contains(&listed)),
        "{log:#?}"
    );
    // The user's other key (in authorized_keys too, not listed): the code.
    let run = sshd
        .ssh("root")
        .with_key_file(&sshd.other_key)
        .code(&totp_at(&secret, now()))
        .run();
    run.assert_logged_in();
    assert!(run.prompted(CODE_PROMPT), "{run:#?}");
    let log = decisions(&h);
    assert!(log.iter().any(|l| l.contains("method=totp")), "{log:#?}");
    assert_eq!(h.record("root").state.failures, 0);
}

#[test]
fn ssh_a_host_remembered_with_one_key_asks_another_key_from_the_same_address() {
    let (h, sshd) = need!(key_then_code_with_keys("yes", |_, _| "remember_days = 7".to_string()));
    let secret = h.enroll();
    let key = fingerprint(&sshd.client_key);
    avoid_step_edge();
    let t = now();
    let first = sshd
        .ssh("root")
        .with_key()
        .code(&totp_at(&secret, t))
        .trust("y")
        .run();
    first.assert_logged_in();
    assert!(
        first.prompted(&format!(
            "Skip the code for logins from 127.0.0.1 with SSH key {key} for 7 days? [y/N]"
        )),
        "{first:#?}"
    );
    let hosts = h.record("root").trusted_hosts;
    assert_eq!(hosts.len(), 1, "{hosts:#?}");
    assert_eq!(hosts[0].host, "127.0.0.1");
    assert_eq!(hosts[0].key.as_deref(), Some(key.as_str()));
    h.log();
    // The same key from there: no code.
    let same = sshd.ssh("root").with_key().run();
    same.assert_logged_in();
    assert!(!same.prompted(CODE_PROMPT), "{same:#?}");
    assert!(
        decisions(&h)
            .iter()
            .any(|l| l.contains("method=remembered-host")),
        "remembered"
    );
    // Another key of the user from the same address: the code.
    let other = sshd
        .ssh("root")
        .with_key_file(&sshd.other_key)
        .code(&totp_at(&secret, t + 30))
        .trust("n")
        .run();
    other.assert_logged_in();
    assert!(other.prompted(CODE_PROMPT), "{other:#?}");
    assert_eq!(h.record("root").trusted_hosts.len(), 1);
}

/// What Debian 12's sshd (OpenSSH 9.2p1) does with `ExposeAuthInfo no`: it
/// still puts the methods and the key into the PAM environment
/// (`SSH_AUTH_INFO_0` is set for PAM before keyboard-interactive whatever
/// the setting; `ExposeAuthInfo` decides only whether the session gets
/// `SSH_USER_AUTH`). So the listed key counts either way, and an unlisted
/// key is asked either way. Should a later sshd stop reporting the key
/// without `ExposeAuthInfo yes`, this test fails, and the module then asks
/// for the code (an absent report never counts): README "Configure sshd"
/// must then say to set it.
#[test]
fn ssh_with_exposeauthinfo_no_debians_sshd_still_reports_the_key_to_pam() {
    let (h, sshd) = need!(key_then_code_with_keys("no", |listed, _| format!(
        "[policy]\ntrusted_ssh_keys = [\"{listed}\"]"
    )));
    let secret = h.enroll();
    let run = sshd.ssh("root").with_key().run();
    run.assert_logged_in();
    assert!(!run.prompted(CODE_PROMPT), "{run:#?}");
    assert!(
        decisions(&h).iter().any(|l| l.contains("method=ssh-key")),
        "the key counted"
    );
    let run = sshd
        .ssh("root")
        .with_key_file(&sshd.other_key)
        .code(&totp_at(&secret, now()))
        .run();
    run.assert_logged_in();
    assert!(run.prompted(CODE_PROMPT), "{run:#?}");
}

/// Password then code: no key was used, so a listed key cannot count and
/// the code is asked.
#[test]
fn ssh_a_password_login_is_asked_even_when_keys_are_trusted() {
    let (h, sshd) = need!(password_then_code("", ""));
    let listed = fingerprint(&sshd.client_key);
    h.write_config(&format!(
        "[policy]\ntrusted_ssh_keys = [\"{listed}\", \"ssh-ed25519\"]"
    ));
    let secret = h.enroll();
    let run = sshd.ssh("root").code(&totp_at(&secret, now())).run();
    run.assert_logged_in();
    assert!(run.prompted(CODE_PROMPT), "{run:#?}");
}
