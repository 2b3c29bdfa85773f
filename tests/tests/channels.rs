//! Codes by email and SMS end to end (issue #8), through the real module:
//! email through Debian's msmtp (the sendmail interface) to a real SMTP
//! server on 127.0.0.1, read back by the test, typed into pamtester and into
//! the real OpenSSH client against a real sshd; SMS through a command the
//! test provides. The commands run as `nobody` (run_as) with a cleared
//! environment, as the module runs them inside a root process.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otpgate_config::UserRecord;
use otpgate_config::channel::Kind;
use otpgate_tests::channels::*;
use otpgate_tests::sshd::*;
use otpgate_tests::*;

const SMS: &str = "+441632960961";
const EMAIL: &str = "alice@example.test";

/// `[channels.sms]` with the outbox's command and `extra` keys.
fn sms_config(outbox: &Outbox, extra: &str) -> String {
    format!(
        "[channels.sms]\ncommand = [\"{}\", \"{{to}}\"]\nrun_as = \"nobody\"\n{extra}\n",
        outbox.sms_command().display()
    )
}

fn sms_record() -> UserRecord {
    let mut r = UserRecord::new_channels_only();
    r.set_destination(Kind::Sms, Some(SMS.into()));
    r
}

fn email_config(smtp: &Smtp, outbox: &Outbox) -> String {
    format!(
        "[channels.email]\ncommand = [\"/usr/bin/msmtp\", \"-C\", \"{}\", \"-t\", \"-i\"]\n\
         run_as = \"nobody\"\nfrom = \"otpgate@gate.test\"\n",
        smtp.msmtp_config(outbox).display()
    )
}

fn email_record() -> UserRecord {
    let mut r = UserRecord::new_channels_only();
    r.set_destination(Kind::Email, Some(EMAIL.into()));
    r
}

// --- email: msmtp and a real SMTP server ------------------------------------

#[test]
fn email_code_through_msmtp_and_smtp_logs_in_with_pamtester() {
    need!(require_tool("pamtester", "pamtester"));
    need!(require_tool("msmtp", "msmtp"));
    let outbox = Outbox::new();
    let smtp = Smtp::start(None);
    let h = need!(Harness::new(&email_config(&smtp, &outbox)));
    h.otp_service("");
    h.write_record("root", &email_record());

    let mut p = Pamtester::start(&h.path("pam.d"), SERVICE, "root", "198.51.100.7");
    let enter = Instant::now();
    p.line("");
    let (arrived, message) = smtp
        .next(Duration::from_secs(20))
        .expect("no mail arrived at the SMTP server");
    let took = arrived - enter;
    println!(
        "FIGURE channels.email_delivery: Enter to delivered mail on loopback (msmtp, SMTP): {} ms",
        took.as_millis()
    );
    assert!(message.contains("To: alice@example.test"), "{message}");
    assert!(message.contains("From: otpgate@gate.test"), "{message}");
    assert!(
        message.contains("Subject: Verification code for "),
        "{message}"
    );
    let code = code_in(&message);
    p.line(&code);
    let (ok, out) = p.finish();
    assert!(ok, "{out}");
    assert!(
        out.contains("Verification code (Enter: send a code by email): "),
        "{out}"
    );
    assert!(
        out.contains("A code was sent by email to a***@example.test"),
        "{out}"
    );
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains("method=email outcome=sent") && l.contains("command exited 0")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("method=email outcome=success")),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|l| !l.contains(&code)),
        "the code was logged"
    );
    assert!(h.record("root").sent_codes.is_empty());
}

#[test]
fn ssh_login_with_a_code_sent_by_email() {
    need!(require_tool("msmtp", "msmtp"));
    let outbox = Outbox::new();
    let code_file = outbox.path("code");
    let smtp = Smtp::start(Some(code_file.clone()));
    let h = need!(Harness::new(&email_config(&smtp, &outbox)));
    let auth = vec![password_line(&h), h.module_line("required", "")];
    let sshd = need!(Sshd::start(
        &h,
        &SshdSetup::new("keyboard-interactive", auth)
    ));
    h.write_record("root", &email_record());
    let run = sshd.ssh("root").code("").code_from_file(&code_file).run();
    run.assert_logged_in();
    assert!(
        run.prompted("Verification code (Enter: send a code by email): "),
        "{run:#?}"
    );
    assert!(run.shown("A code was sent by email"), "{run:#?}");
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("service=sshd-otp-test")
            && l.contains("method=email")
            && l.contains("outcome=success")),
        "{log:#?}"
    );
}

// --- SMS through a command the test provides --------------------------------

/// `otpgate enroll sms` for root through the real command, typing back the
/// code the outbox received; checks nothing is saved before the code came
/// back and the number is saved after. Returns what the command printed.
fn enroll_sms_with_the_cli(h: &Harness, outbox: &Outbox) -> String {
    let mut cli = Command::new(otpgate_cli())
        .args(["--config"])
        .arg(h.config_path())
        .args(["enroll", "sms", "+44 1632 960961"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otpgate enroll sms");
    let message = outbox
        .wait_message(1, Duration::from_secs(10))
        .expect("no SMS at enrollment");
    assert!(message.contains(&format!("to={SMS}\n")), "{message}");
    assert!(
        !h.user_file("root").exists(),
        "saved before the code came back"
    );
    let code = code_in(&message);
    cli.stdin
        .as_mut()
        .unwrap()
        .write_all(format!("{code}\n").as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(&code), "the code is not printed back");
    assert_eq!(h.record("root").destination(Kind::Sms), Some(SMS));
    text
}

#[test]
fn sms_enrollment_through_the_cli_then_login_with_a_sent_code() {
    need!(require_tool("pamtester", "pamtester"));
    let outbox = Outbox::new();
    let h = need!(Harness::new(&sms_config(&outbox, "")));
    h.otp_service("");

    // Enrollment: nothing is saved until the code comes back.
    enroll_sms_with_the_cli(&h, &outbox);

    // Status shows the method.
    let status = Command::new(otpgate_cli())
        .arg("--config")
        .arg(h.config_path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&status.stdout);
    assert!(
        json.contains("\"methods\":[\"sms\"]") && json.contains(SMS),
        "{json}"
    );

    // Login: Enter sends, the code logs in.
    let mut p = Pamtester::start(&h.path("pam.d"), SERVICE, "root", "198.51.100.7");
    p.line("");
    let message = outbox
        .wait_message(2, Duration::from_secs(10))
        .expect("no SMS at login");
    p.line(&code_in(&message));
    let (ok, text) = p.finish();
    assert!(ok, "{text}");
    assert!(
        text.contains("A code was sent by SMS to +44*******961"),
        "{text}"
    );
}

#[test]
fn the_command_runs_as_run_as_never_root_with_a_cleared_environment() {
    need!(require_tool("pamtester", "pamtester"));
    let outbox = Outbox::new();
    let h = need!(Harness::new(&sms_config(&outbox, "")));
    h.otp_service("");
    h.write_record("root", &sms_record());
    let mut p = Pamtester::start(&h.path("pam.d"), SERVICE, "root", "198.51.100.7");
    p.line("");
    let message = outbox
        .wait_message(1, Duration::from_secs(10))
        .expect("no SMS");
    p.line("000000");
    let _ = p.finish();
    assert!(message.contains("uid=65534 groups=65534\n"), "{message}");
    let env: Vec<&str> = message
        .split_once("env:\n")
        .unwrap()
        .1
        .split_once("message:\n")
        .unwrap()
        .0
        .lines()
        .collect();
    // PATH is set; PWD is the shell's own (the working directory is /).
    for line in &env {
        assert!(
            line.starts_with("PATH=") || *line == "PWD=/",
            "inherited environment: {line}\n{message}"
        );
    }
    assert!(!message.contains("OTPGATE_TEST_MARKER"));
    assert!(!message.contains("LD_PRELOAD"));
}

#[test]
fn an_expired_sent_code_is_refused_through_the_module() {
    let outbox = Outbox::new();
    let h = need!(Harness::new(&format!(
        "max_attempts = 1\n{}",
        sms_config(&outbox, "")
    )));
    h.otp_service("");
    let mut r = sms_record();
    let code = r.new_sent_code(Kind::Sms, 6, now() - 700, 600).unwrap();
    h.write_record("root", &r);
    let run = h.login().answer(code.as_str()).run();
    run.assert("PAM_AUTH_ERR");
    assert!(
        run.messages()
            .iter()
            .any(|m| m.starts_with("That code has expired")),
        "{run:#?}"
    );
    assert_eq!(h.record("root").state.failures, 1);
    assert!(h.record("root").sent_codes.is_empty(), "pruned");
}

#[test]
fn sends_beyond_the_hourly_limit_are_refused_through_the_module() {
    let outbox = Outbox::new();
    let h = need!(Harness::new(&format!(
        "max_attempts = 2\n{}",
        sms_config(&outbox, "max_sends_per_hour = 1")
    )));
    h.otp_service("");
    h.write_record("root", &sms_record());
    let run = h.login().answer("").answer("").answer("000000").run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(outbox.messages().len(), 1);
    assert!(
        run.messages()
            .iter()
            .any(|m| m.starts_with("Too many codes were sent by SMS")),
        "{run:#?}"
    );
    // A later login is refused a send too.
    let again = h.login().answer("").run();
    assert_eq!(outbox.messages().len(), 1, "{again:#?}");
    assert!(
        h.log()
            .iter()
            .any(|l| l.contains("method=sms outcome=rate-limited"))
    );
}

/// Before: `otpgate enroll sms NUMBER` by a user with no enrollment sent a
/// code on every run, so a loop could flood any number (and the SMS bill).
/// Now the sends are counted beside the record that does not exist yet.
#[test]
fn enrolling_a_destination_in_a_loop_is_limited_per_hour_before_enrollment() {
    let outbox = Outbox::new();
    let h = need!(Harness::new(&sms_config(&outbox, "max_sends_per_hour = 2")));
    let enroll = || {
        Command::new(otpgate_cli())
            .arg("--config")
            .arg(h.config_path())
            .args(["enroll", "sms", "+44 1632 960961"])
            .stdin(Stdio::null())
            .output()
            .expect("otpgate enroll sms")
    };
    for n in 1..=2 {
        let out = enroll();
        assert!(!out.status.success(), "no code came back, nothing saved");
        assert_eq!(outbox.messages().len(), n, "send {n} went out");
    }
    let out = enroll();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("too many codes were sent by SMS; try again after"),
        "{stderr}"
    );
    assert_eq!(outbox.messages().len(), 2, "the third run sent nothing");
    assert!(!h.user_file("root").exists(), "still not enrolled");
    assert!(h.path("users/root.toml.sends").is_file());
    // Not enrolled still means not enrolled at login.
    h.otp_service("");
    let run = h.login().run();
    assert_ne!(run.result, "PAM_SUCCESS");
    assert!(
        h.log()
            .iter()
            .any(|l| l.contains("reason=\"not enrolled\""))
    );
}

#[test]
fn wrong_codes_after_a_send_count_toward_the_lockout() {
    let outbox = Outbox::new();
    let h = need!(Harness::new(&format!(
        "lockout_after = 2\n{}",
        sms_config(&outbox, "")
    )));
    h.otp_service("");
    h.write_record("root", &sms_record());
    let run = h.login().answer("").answer("000000").answer("000001").run();
    // A lockout is PAM_MAXTRIES: "do not try again".
    run.assert("PAM_MAXTRIES");
    let message = outbox.messages().pop().expect("sent");
    assert!(h.record("root").locked_until(now()).is_some());
    // Locked: even the right code is refused now.
    let run = h.login().answer(code_in(&message).as_str()).run();
    run.assert("PAM_MAXTRIES");
    assert!(run.prompts().is_empty(), "{run:#?}");
}

#[test]
fn a_hanging_command_is_killed_at_the_timeout_and_the_login_denied_in_time() {
    // The default run_as.
    need!(send_user());
    let outbox = Outbox::new();
    let hang = outbox.script("hang", "sleep 60");
    let h = need!(Harness::new(&format!(
        "max_attempts = 1\n[channels.sms]\ncommand = [\"{}\"]\ntimeout = 2\n",
        hang.display()
    )));
    h.otp_service("");
    h.write_record("root", &sms_record());
    let start = Instant::now();
    let run = h.login().answer("").answer("123456").run();
    let took = start.elapsed();
    run.assert("PAM_AUTH_ERR");
    println!(
        "FIGURE channels.hanging_command: login with a hanging SMS command denied after {} ms (timeout 2 s)",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        run.messages()
            .iter()
            .any(|m| m.starts_with("The code could not be sent by SMS")),
        "{run:#?}"
    );
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains("outcome=send-failed") && l.contains("timed out after 2 s")),
        "{log:#?}"
    );
    // The whole process group is gone.
    let ps = Command::new("pgrep")
        .args(["-f", &hang.display().to_string()])
        .output();
    if let Ok(ps) = ps {
        assert!(ps.stdout.is_empty(), "still running: {ps:?}");
    }
}

#[test]
fn an_address_with_a_header_injection_is_refused_and_nothing_is_sent() {
    let outbox = Outbox::new();
    let h = need!(Harness::new(&sms_config(&outbox, "")));
    // Email configured with a command that would record any send.
    let cfg = format!(
        "{}\n[channels.email]\ncommand = [\"{}\"]\n",
        sms_config(&outbox, ""),
        outbox.sms_command().display()
    );
    h.write_config(&cfg);
    for bad in [
        "alice@example.test\nBcc: victim@example.test",
        "alice@example.test\r\nSubject: free money",
        "alice@example.test, victim@example.test",
        "-oQ/tmp/x@example.test",
    ] {
        let out = Command::new(otpgate_cli())
            .arg("--config")
            .arg(h.config_path())
            .args(["enroll", "email", "--", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not an email address"), "{err}");
    }
    assert!(outbox.messages().is_empty());
    assert!(!h.user_file("root").exists());
}

#[test]
fn check_reports_a_missing_command_and_an_unknown_run_as_user() {
    let h = need!(Harness::new(
        "[channels.email]\ncommand = [\"/nonexistent/sendmail\", \"-t\"]\n\
         [channels.sms]\ncommand = [\"/bin/true\"]\nrun_as = \"no-such-user-otpgate\"\n"
    ));
    h.otp_service("");
    let out = Command::new(otpgate_cli())
        .arg("--config")
        .arg(h.config_path())
        .args(["check", "--pam-dir"])
        .arg(h.path("pam.d"))
        .args(["--sshd-config", "/nonexistent"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(8), "{text}");
    assert!(
        text.contains("[channels.email]: command /nonexistent/sendmail"),
        "{text}"
    );
    assert!(
        text.contains("[channels.sms]: run_as user no-such-user-otpgate"),
        "{text}"
    );
}

#[test]
fn a_config_with_an_unknown_placeholder_denies_the_login() {
    let h = need!(Harness::new(
        "[channels.sms]\ncommand = [\"/bin/true\"]\ntemplate = \"{code} {password}\"\n"
    ));
    h.otp_service("");
    h.write_record("root", &sms_record());
    let run = h.login().answer("").run();
    run.assert("PAM_SERVICE_ERR");
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains("channels.sms.template") && l.contains("{password}")),
        "{log:#?}"
    );
}

// --- the command's isolation (issue #12, item 2) -----------------------------

/// The hostile command: reads its message, records whether `/dev/tty`
/// opens, escapes the process group three ways (setsid; a double fork with
/// setpgid; a plain background child) with processes that would sleep on,
/// and waits for the spy before it exits 0.
const HOSTILE: &str = r#"cat > OUT/message
( exec 3</dev/tty ) 2>/dev/null && echo tty-open > OUT/tty || echo no-tty > OUT/tty
setsid sleep 60 </dev/null & echo $! >> OUT/pids
perl -e 'exit if fork; setpgrp(0, 0); print "$$\n"; exec qw(sleep 60)' >> OUT/pids
sleep 60 & echo $! >> OUT/pids
echo $$ > OUT/pid.tmp; mv OUT/pid.tmp OUT/pid
i=0; while [ ! -e OUT/spied ] && [ $i -lt 60 ]; do sleep 0.05; i=$((i+1)); done
exit 0"#;

/// Issue #12, item 2, through the real module in a login that has a
/// controlling terminal (`script` gives the driver one, as su/sudo -i have):
/// the SMS command (run_as otpgate-send) cannot open `/dev/tty`, nothing it
/// started survives the login, and another process of otpgate-send cannot
/// re-read the message from the command's `/proc/<pid>/fd/0`. Before the
/// fix: `tty-open`, all three escapees still running after the login, and
/// the spy read the whole message, code included, from the memfd.
#[test]
fn the_send_command_gets_no_terminal_leaves_no_survivor_and_its_message_cannot_be_reread() {
    need!(require_tool("script", "bsdutils"));
    need!(require_tool("perl", "perl"));
    let sender = need!(send_user());
    let outbox = Outbox::new();
    outbox.out_for(sender.uid, sender.gid);
    let out = outbox.path("out");
    let o = out.display().to_string();
    let hostile = outbox.script("hostile", &HOSTILE.replace("OUT", &o));
    let h = need!(Harness::new(&format!(
        "max_attempts = 1\n[channels.sms]\ncommand = [\"{}\", \"{{to}}\"]\n\
         run_as = \"otpgate-send\"\ntimeout = 10\n",
        hostile.display()
    )));
    h.otp_service("");
    h.write_record("root", &sms_record());

    // Another process of otpgate-send, not started by the login.
    let spy = format!(
        "while [ ! -e {o}/pid ]; do sleep 0.02; done; \
         timeout 2 cat /proc/$(cat {o}/pid)/fd/0 > {o}/seen 2> {o}/err; touch {o}/spied"
    );
    let mut spy = {
        use std::os::unix::process::CommandExt;
        Command::new("/bin/sh")
            .args(["-c", &spy])
            .uid(sender.uid)
            .gid(sender.gid)
            .spawn()
            .expect("spy")
    };
    let driver = format!(
        "{} -c {} -o authenticate -a '' -a 000000 {SERVICE} root",
        h.driver.display(),
        h.path("pam.d").display()
    );
    let login = Command::new("script")
        .args(["-qec", &driver, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let said = String::from_utf8_lossy(&login.stdout);
    assert!(said.contains("PAM_AUTH_ERR"), "{said}");
    let _ = spy.wait();

    // Every fact first, and the leftovers killed, so that a failure shows
    // them all and leaves nothing running.
    let message = std::fs::read_to_string(out.join("message")).unwrap_or_default();
    let tty = std::fs::read_to_string(out.join("tty")).unwrap_or_default();
    let pids = out.join("pids");
    let listed = std::fs::read_to_string(&pids).unwrap_or_default();
    let mut left = alive_pids(&pids);
    left.extend(alive_pids(&out.join("pid")));
    for pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let seen = std::fs::read_to_string(out.join("seen")).unwrap_or_default();
    let err = std::fs::read_to_string(out.join("err")).unwrap_or_default();
    let facts = format!("tty: {tty}survivors: {left:?}\nspy read: {seen:?} ({err})");
    assert!(
        message.contains("is your"),
        "the command did not run: {message}"
    );
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert_eq!(
        tty.trim(),
        "no-tty",
        "the command opened the login's terminal; {facts}"
    );
    assert!(left.is_empty(), "survived the login; {facts}");
    assert!(
        !seen.contains("is your"),
        "another otpgate-send process re-read the message; {facts}"
    );
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("method=sms outcome=sent")),
        "{log:#?}"
    );
}

#[test]
fn a_missing_run_as_user_fails_the_send_with_a_log_line_saying_how_to_create_it() {
    let outbox = Outbox::new();
    let h = need!(Harness::new(&format!(
        "max_attempts = 1\n[channels.sms]\ncommand = [\"{}\"]\nrun_as = \"otpgate-no-such-sender\"\n",
        outbox.sms_command().display()
    )));
    h.otp_service("");
    h.write_record("root", &sms_record());
    let run = h.login().answer("").answer("123456").run();
    run.assert("PAM_AUTH_ERR");
    assert!(outbox.messages().is_empty());
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("outcome=send-failed")
            && l.contains("run_as user `otpgate-no-such-sender` does not exist")
            && l.contains("useradd --system")),
        "{log:#?}"
    );
}

#[test]
fn check_warns_when_run_as_is_a_shared_user() {
    let h = need!(Harness::new(
        "[channels.sms]\ncommand = [\"/bin/true\"]\nrun_as = \"nobody\"\n"
    ));
    h.otp_service("");
    let out = Command::new(otpgate_cli())
        .arg("--config")
        .arg(h.config_path())
        .args(["check", "--pam-dir"])
        .arg(h.path("pam.d"))
        .args(["--sshd-config", "/nonexistent"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: [channels.sms]: run_as user nobody is nobody (uid 65534)")
            && text.contains("use a dedicated system user (the default, otpgate-send)"),
        "{text}"
    );
}

// --- through otpgated (store.kind = "daemon", issue #15) ---------------------

/// The SMS enrollment and a login with a sent code, with the records in
/// `otpgated`: the daemon sends both codes (its channel command, as
/// run_as), keeps them hashed, and saves the number only once the code
/// came back. A client of the user's own that names a number without the
/// code is refused.
#[test]
fn through_otpgated_sms_enrollment_and_a_login_with_a_sent_code() {
    use otpgate_tests::daemon::{Otpgated, daemon_config};
    need!(require_tool("pamtester", "pamtester"));
    let outbox = Outbox::new();
    let h = need!(Harness::new(""));
    h.write_config(&daemon_config(&h, "", "", &sms_config(&outbox, "")));
    h.otp_service("");
    let daemon = Otpgated::start(&h);
    let text = enroll_sms_with_the_cli(&h, &outbox);
    assert!(text.contains("otpgated at"), "{text}");

    let mut p = Pamtester::start(&h.path("pam.d"), SERVICE, "root", "198.51.100.7");
    p.line("");
    let message = outbox
        .wait_message(2, Duration::from_secs(10))
        .expect("no SMS at login");
    let sent = code_in(&message);
    p.line(&sent);
    let (ok, text) = p.finish();
    assert!(ok, "{text}");
    assert!(
        text.contains("A code was sent by SMS to +44*******961"),
        "{text}"
    );
    assert!(h.record("root").sent_codes.is_empty(), "used up");
    assert!(!daemon.log().contains(&sent));
}
