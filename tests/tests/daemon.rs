//! Logins through `otpgated` (`store.kind = "daemon"`): the real module in
//! real libpam (the C driver) asking a real daemon started by the test,
//! which keeps the records in a directory of its own. Issue #15.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use otpgate_config::otp::Algorithm;
use otpgate_tests::daemon::{Otpgated, daemon_config};
use otpgate_tests::*;

const PROMPT: &str = "Verification code: ";

/// A harness whose module asks a daemon; `top` are top-level config keys.
fn harness(top: &str) -> Option<Harness> {
    harness_with(top, "", "")
}

/// [`harness`] with more keys for `[store]` and `[daemon]`.
fn harness_with(top: &str, store: &str, daemon: &str) -> Option<Harness> {
    let h = Harness::new("")?;
    h.write_config(&daemon_config(&h, top, store, daemon));
    h.otp_service("");
    Some(h)
}

/// Enrolls root (in the daemon's directory) with a fresh TOTP secret and
/// `backups` backup codes.
fn enroll(h: &Harness, backups: usize) -> (String, Vec<String>) {
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    let codes = record
        .new_backup_codes(backups, 8)
        .expect("backup codes")
        .iter()
        .map(|c| c.to_string())
        .collect();
    h.write_record("root", &record);
    (secret, codes)
}

/// Decision lines of the module's log since the last call.
fn decisions(h: &Harness) -> Vec<String> {
    h.log()
        .into_iter()
        .filter(|l| l.contains("outcome=") && !l.contains(" outcome=refused "))
        .collect()
}

#[test]
fn through_the_daemon_a_code_works_once_and_a_wrong_one_counts() {
    let h = need!(harness("max_attempts = 1"));
    let d = Otpgated::start(&h);
    let (secret, backups) = enroll(&h, 2);
    avoid_step_edge();
    let code = totp_at(&secret, now());
    let run = h.login().rhost("192.0.2.10").answer(&code).run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [PROMPT]);
    let line = decisions(&h).concat();
    assert!(
        line.contains("method=totp") && line.contains("outcome=success"),
        "{line}"
    );
    assert!(!line.contains(&code) && !line.contains(&secret), "{line}");
    // The daemon recorded the step: the same code again is a replay.
    h.login().answer(&code).run().assert("PAM_AUTH_ERR");
    assert!(h.log().concat().contains("code already used"));
    // A wrong code is counted in the daemon's record.
    h.login().answer("000000").run().assert("PAM_AUTH_ERR");
    assert_eq!(h.record("root").state.failures, 2);
    // A backup code works once, and says how many are left.
    let run = h.login().answer(&backups[0]).run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.messages(), ["Backup code used; 1 left."]);
    h.login().answer(&backups[0]).run().assert("PAM_AUTH_ERR");
    assert_eq!(h.record("root").backup.codes.len(), 1);
    assert!(
        !d.log().contains(&backups[0]),
        "the daemon never logs a code"
    );
}

#[test]
fn through_the_daemon_a_lockout_holds_and_says_until_when() {
    let h = need!(harness("lockout_after = 2\nlockout_minutes = 15"));
    let _d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    let run = h.login().answer("000001").answer("000002").run();
    run.assert("PAM_MAXTRIES");
    assert!(
        run.messages()
            .concat()
            .contains("Too many wrong codes. Account locked until "),
        "{:?}",
        run.messages()
    );
    assert!(h.record("root").state.locked_until >= now() + 14 * 60);
    let run = h.login().answer(totp_at(&secret, now())).run();
    run.assert("PAM_MAXTRIES");
    assert!(run.prompts().is_empty(), "no prompt while locked");
}

#[test]
fn through_the_daemon_a_remembered_host_skips_the_code() {
    let h = need!(harness("remember_days = 3"));
    let _d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    let run = h
        .login()
        .rhost("203.0.113.7")
        .answer(totp_at(&secret, now()))
        .answer("y")
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(h.record("root").trusted_hosts.len(), 1);
    h.log();
    let run = h.login().rhost("203.0.113.7").run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    assert!(decisions(&h).concat().contains("method=remembered-host"));
    // Another address is asked.
    let run = h.login().rhost("203.0.113.8").answer("000000").run();
    assert_eq!(run.prompts()[0], PROMPT);
}

/// A host remembered after a login with an SSH key is bound to the key in
/// the daemon's record too (the key crosses the protocol in `[trust]`);
/// another key from the address is asked, and a trusted key skips the code.
#[test]
fn through_the_daemon_a_remembered_host_is_bound_to_the_ssh_key() {
    const KEY_1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIEGPYUXTgiBeolS4qMUL9f2FHb+VG6OEuWxEzm7sAHxs";
    const FP_1: &str = "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU";
    const KEY_2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIO3pxtV8zPuxR+y3oZmh/X9j5MtCUL/WCuSt/8qNgcEM";
    let info = |blob: &str| format!("publickey ssh-ed25519 {blob}\n");
    let h = need!(harness("remember_days = 3"));
    let _d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    avoid_step_edge();
    let t = now();
    let run = h
        .login()
        .rhost("203.0.113.7")
        .pam_env("SSH_AUTH_INFO_0", &info(KEY_1))
        .answer(totp_at(&secret, t))
        .answer("y")
        .run();
    run.assert("PAM_SUCCESS");
    let hosts = h.record("root").trusted_hosts;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].key.as_deref(), Some(FP_1));
    let run = h
        .login()
        .rhost("203.0.113.7")
        .pam_env("SSH_AUTH_INFO_0", &info(KEY_1))
        .run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    let run = h
        .login()
        .rhost("203.0.113.7")
        .pam_env("SSH_AUTH_INFO_0", &info(KEY_2))
        .answer(totp_at(&secret, t + 30))
        .answer("n")
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts()[0], PROMPT);
}

/// No daemon: the login is denied at once with one log line naming the
/// cause; a trusted network still passes without asking anyone.
#[test]
fn without_the_daemon_logins_are_denied_fast_and_the_log_says_why() {
    let h = need!(harness("trusted_networks = [\"10.0.0.0/8\"]"));
    enroll(&h, 0);
    let start = Instant::now();
    let run = h.login().rhost("192.0.2.10").answer("123456").run();
    run.assert("PAM_SYSTEM_ERR");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(run.prompts().is_empty(), "no prompt without the daemon");
    let lines = decisions(&h);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("otpgated at") && lines[0].contains("is otpgated running?"),
        "{}",
        lines[0]
    );
    h.login().rhost("10.1.2.3").run().assert("PAM_SUCCESS");
}

/// A daemon that is stopped (SIGSTOP: it accepts nothing, answers
/// nothing) costs a login the timeout, then a denial; continued, it
/// serves again.
#[test]
fn a_stopped_daemon_denies_within_the_timeout() {
    let h = need!(harness_with("", "timeout = 1", ""));
    let d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let start = Instant::now();
    let run = h.login().answer("123456").run();
    let took = start.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    run.assert("PAM_SYSTEM_ERR");
    assert!(
        took < Duration::from_millis(1900),
        "took {took:?} with timeout = 1"
    );
    assert!(h.log().concat().contains("no reply within 1 s"));
    avoid_step_edge();
    h.login()
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
}

/// Logins started together, one answer each.
fn race(h: &Harness, answers: &[String]) -> Vec<Run> {
    let barrier = Barrier::new(answers.len());
    std::thread::scope(|s| {
        let threads: Vec<_> = answers
            .iter()
            .map(|a| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    h.login().rhost("192.0.2.10").answer(a.as_str()).run()
                })
            })
            .collect();
        let drain = s.spawn(|| {
            for _ in 0..200 {
                h.log();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let runs = threads.into_iter().map(|t| t.join().unwrap()).collect();
        drain.join().unwrap();
        runs
    })
}

#[test]
fn a_backup_code_raced_by_100_logins_through_the_daemon_works_once() {
    let h = need!(harness("max_attempts = 1\nlockout_after = 0"));
    let _d = Otpgated::start(&h);
    let (_, backups) = enroll(&h, 1);
    let runs = race(&h, &vec![backups[0].clone(); 100]);
    let ok = runs.iter().filter(|r| r.result == "PAM_SUCCESS").count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        runs.iter().map(|r| &r.result).collect::<Vec<_>>()
    );
    assert!(
        runs.iter()
            .all(|r| r.result == "PAM_SUCCESS" || r.result == "PAM_AUTH_ERR")
    );
    assert!(h.record("root").backup.codes.is_empty());
}

/// kill -9 of the daemon while logins race with eight of ten backup
/// codes: logins meanwhile are denied, none is accepted twice, and after a
/// restart (no repair) the two codes never tried work, once each, and no
/// raced code works a second time. (A raced code whose login died with the
/// daemon may be used up or not: the daemon may have recorded it before it
/// was killed; either way it works at most once.)
#[test]
fn kill_9_of_the_daemon_during_racing_logins_accepts_no_code_twice() {
    let h = need!(harness("max_attempts = 1\nlockout_after = 0"));
    let mut d = Otpgated::start(&h);
    let (_, backups) = enroll(&h, 10);
    let (raced, untouched) = backups.split_at(8);
    // Sixteen threads log in again and again with the raced codes, from
    // before the kill until well after it.
    let stop = Instant::now() + Duration::from_millis(600);
    let runs: Vec<(usize, Run)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (h, raced) = (&h, raced);
                s.spawn(move || {
                    let mut runs = Vec::new();
                    let mut i = t;
                    while Instant::now() < stop {
                        let run = h.login().answer(raced[i % 8].as_str()).run();
                        runs.push((i % 8, run));
                        i += 16;
                    }
                    runs
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        d.kill9();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    h.log();
    let mut accepted = [0; 8];
    for (code, run) in &runs {
        assert!(
            ["PAM_SUCCESS", "PAM_AUTH_ERR", "PAM_SYSTEM_ERR"].contains(&run.result.as_str()),
            "{}",
            run.result
        );
        if run.result == "PAM_SUCCESS" {
            accepted[*code] += 1;
        }
    }
    assert!(accepted.iter().all(|&n| n <= 1), "{accepted:?}");
    assert!(
        runs.iter().any(|(_, r)| r.result == "PAM_SYSTEM_ERR"),
        "some logins met the dead daemon"
    );
    assert!(
        accepted.iter().sum::<u32>() >= 1,
        "some logins were in before the kill"
    );
    h.login()
        .answer(&untouched[0])
        .run()
        .assert("PAM_SYSTEM_ERR");
    let _d = Otpgated::start(&h);
    for code in untouched {
        h.login().answer(code).run().assert("PAM_SUCCESS");
        h.login().answer(code).run().assert("PAM_AUTH_ERR");
    }
    for (code, &n) in raced.iter().zip(&accepted) {
        let first = h.login().answer(code).run();
        if n == 1 {
            first.assert("PAM_AUTH_ERR");
        }
        h.login().answer(code).run().assert("PAM_AUTH_ERR");
    }
}

/// Sends raw bytes and returns what the daemon answered before closing.
fn raw(socket: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Garbage, a wrong version, a 4 GiB header, truncated frames, a client
/// that sends a byte a second and a thousand idle connections: each gets a
/// clear refusal or a closed connection, a login meanwhile works, and the
/// daemon's memory stays bounded.
#[test]
fn hostile_clients_do_not_stop_logins() {
    let h = need!(harness_with("", "", "client_timeout = 2"));
    let d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    let reply = |bytes: &[u8]| String::from_utf8_lossy(&raw(&d.socket, bytes)).into_owned();
    assert!(reply(b"GET / HTTP/1.0\r\n\r\n").contains("bad magic"));
    assert!(reply(b"OTPG\x07\x00\x00\x00\x02hi").contains("version 7 is not supported"));
    assert!(reply(b"OTPG\x01\xff\xff\xff\xff").contains("over the limit"));
    assert!(reply(b"OTPG\x01\x00\x00\x00\x40op").contains("truncated"));
    let mut frame = b"OTPG\x01\x00\x00\x00\x0bop = \"xyz\"".to_vec();
    assert!(reply(&frame).contains("bad-request"));
    frame.truncate(3);
    assert!(reply(&frame).contains("truncated header"));
    let base = rss_kib(d.pid());
    // A slow client and 1,000 idle ones, all held open.
    let mut idle: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    slow.write_all(b"OT").unwrap();
    avoid_step_edge();
    let start = Instant::now();
    h.login()
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let grown = rss_kib(d.pid()).saturating_sub(base);
    assert!(grown < 64 * 1024, "1,000 idle connections cost {grown} KiB");
    // The slow client is cut off at client_timeout.
    std::thread::sleep(Duration::from_millis(2500));
    let _ = slow.write_all(b"PG");
    let mut buf = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = slow.read_to_end(&mut buf);
    assert!(buf.is_empty(), "a timed-out client gets nothing: {buf:?}");
    idle.clear();
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

/// Runs the hardening helper's `ask` as `uid`: one request, the reply's
/// TOML.
fn ask_as(uid: u32, gid: u32, socket: &std::path::Path, request: &str) -> String {
    let helper = std::path::Path::new(env!("CARGO_BIN_EXE_otpgate-hardening-helper"));
    otpgate_tests::daemon::ask_as(helper, uid, gid, socket, request)
}

/// Attack: a user (or malware running as the user) reads another user's
/// state, runs a login for someone else, or grants their own account a
/// remembered host. The daemon refuses each from the peer's credentials;
/// the state directory cannot be read at all; the user's own view has no
/// secret in it.
#[test]
fn a_user_gets_only_their_own_view_and_no_secret() {
    let h = need!(harness(""));
    let user = need!(test_user());
    // The user must reach the socket (not the records): 0711 down to it.
    for dir in [h.path(""), h.path("run")] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 2);
    let mut record = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    let user_secret = record.totp().unwrap().secret.to_base32().to_string();
    record.new_backup_codes(2, 8).unwrap();
    h.write_record(&user.name, &record);
    let (uid, gid) = (user.uid, user.gid);

    let own = ask_as(
        uid,
        gid,
        &d.socket,
        &format!("op = \"view\"\nuser = \"{}\"\n", user.name),
    );
    assert!(
        own.contains("reply = \"view\"") && own.contains("method = \"totp\""),
        "{own}"
    );
    assert!(
        !own.contains(&user_secret),
        "the secret never leaves the daemon: {own}"
    );
    for hash in &record.backup.codes {
        assert!(!own.contains(hash.as_str()), "{own}");
    }
    for request in [
        "op = \"view\"\nuser = \"root\"\n".to_string(),
        "op = \"check\"\nuser = \"root\"\ncandidates = [\"000000\"]\n".to_string(),
        // Who is enrolled is root's to ask (`otpgate users`).
        "op = \"users\"\n".to_string(),
        format!(
            "op = \"trust-host\"\nuser = \"{}\"\n[trust]\nhost = \"203.0.113.9\"\nservice = \"sshd\"\ndays = 30\n",
            user.name
        ),
    ] {
        let reply = ask_as(uid, gid, &d.socket, &request);
        assert!(
            reply.contains("kind = \"forbidden\""),
            "{request} -> {reply}"
        );
    }
    // Root's record was not touched by the refused check.
    assert_eq!(h.record("root").state.failures, 0);
    assert!(h.record(&user.name).trusted_hosts.is_empty());
    // The records themselves are out of reach.
    let read = Command::new("cat")
        .arg(h.user_file("root"))
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(!read.status.success());
    assert!(!String::from_utf8_lossy(&read.stdout).contains(&secret));
    let _ = std::fs::remove_file(h.user_file(&user.name));
}

/// Runs `otpgate --config <h's config> ARGS` as `uid`, typing `stdin`.
fn otpgate_as(h: &Harness, uid: u32, gid: u32, args: &[&str], stdin: &str) -> (bool, String) {
    let mut cmd = Command::new(otpgate_binary());
    cmd.arg("--config").arg(h.config_path()).args(args);
    cmd.uid(uid).gid(gid).env("HOME", "/").current_dir("/");
    let out = output_with_stdin(&mut cmd, stdin);
    (out.status.success(), printed(&out))
}

/// A harness the test user can use: the socket and the (root-owned)
/// config readable, the records not.
fn user_harness(top: &str) -> Option<(Harness, otpgate_test_support::SystemUser)> {
    user_harness_with(&format!("enroll_password_check = false\n{top}"))
}

/// [`user_harness`] with the password check before a first enrollment on.
fn user_harness_with(top: &str) -> Option<(Harness, otpgate_test_support::SystemUser)> {
    let h = harness(top)?;
    let user = test_user()?;
    for dir in [h.path(""), h.path("run")] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(h.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let _ = std::fs::remove_file(h.user_file(&user.name));
    Some((h, user))
}

/// The unprivileged test user runs the real `otpgate` command against
/// the daemon: enrolls, sees their status (no secret), makes new backup
/// codes and disables with a current code; the records stay root's and
/// unreadable to them, and a login of theirs works through the daemon.
#[test]
fn as_the_test_user_the_command_manages_the_enrollment_through_the_daemon() {
    // Three codes of one secret are used below, a step apart each.
    let (h, user) = need!(user_harness("max_attempts = 1\ntotp_window = 2"));
    let d = Otpgated::start(&h);
    let (uid, gid) = (user.uid, user.gid);
    let secret = new_secret();
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["enroll", "--secret", &secret, "--no-confirm", "--json"],
        "",
    );
    assert!(ok, "{out}");
    assert!(out.contains("\"backup_codes\""), "{out}");
    let file = h.user_file(&user.name);
    let meta = std::fs::metadata(&file).expect("the daemon saved the record");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    assert_eq!(
        h.record(&user.name)
            .totp()
            .unwrap()
            .secret
            .to_base32()
            .as_str(),
        secret
    );

    let (ok, out) = otpgate_as(&h, uid, gid, &["status", "--json"], "");
    assert!(ok, "{out}");
    assert!(
        out.contains("\"enrolled\":true") && out.contains("\"method\":\"totp\""),
        "{out}"
    );
    assert!(out.contains("otpgated at"), "status says where: {out}");
    assert!(
        !out.contains(&secret),
        "status never shows the secret: {out}"
    );

    // New backup codes need a current code, checked by the daemon.
    avoid_step_edge();
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["backup-codes", "--json"],
        "000000\n000000\n000000\n",
    );
    assert!(!ok, "{out}");
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["backup-codes", "--json"],
        &format!("{}\n", totp_at(&secret, now())),
    );
    assert!(ok, "{out}");
    assert_eq!(h.record(&user.name).backup.codes.len(), 10);

    // A login of the user through the daemon (root's driver).
    h.login()
        .user(&user.name)
        .answer(totp_at(&secret, now() + 30))
        .run()
        .assert("PAM_SUCCESS");

    let (ok, out) = otpgate_as(&h, uid, gid, &["unlock", "--user", "root"], "");
    assert!(!ok && out.contains("only root"), "{out}");
    let (ok, out) = otpgate_as(&h, uid, gid, &["trusted", "clear"], "");
    assert!(ok, "{out}");
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["disable"],
        &format!("{}\n", totp_at(&secret, now() + 60)),
    );
    assert!(ok, "{out}");
    assert!(!file.exists(), "disabled: the record is gone");
    assert!(!d.log().contains(&secret));
}

/// Attack: malware running as the user skips the command and asks the
/// daemon itself for new backup codes, to disable the second factor, or to
/// replace the enrollment with a secret of its own, without a code. Each
/// is refused, and nothing changes.
#[test]
fn as_the_test_user_changes_that_need_a_code_are_refused_without_one() {
    let (h, user) = need!(user_harness(""));
    let d = Otpgated::start(&h);
    let mut record = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    record.new_backup_codes(3, 8).unwrap();
    h.write_record(&user.name, &record);
    let before = std::fs::read(h.user_file(&user.name)).unwrap();
    let name = &user.name;
    let other = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    let mut enroll = toml::Table::new();
    enroll.insert("op".into(), "change".into());
    enroll.insert("user".into(), name.as_str().into());
    let mut change = toml::Table::try_from(&otpgate_config::change::Change::Enroll {
        record: Box::new(other),
        replacing: true,
    })
    .unwrap();
    change.insert("change".into(), "enroll".into());
    enroll.insert("change".into(), change.into());
    for request in [
        format!("op = \"change\"\nuser = \"{name}\"\n[change]\nchange = \"new-backup-codes\"\n"),
        format!("op = \"change\"\nuser = \"{name}\"\n[change]\nchange = \"disable\"\n"),
        format!(
            "op = \"change\"\nuser = \"{name}\"\nproof = \"12345678901234567890123456789012\"\n[change]\nchange = \"disable\"\n"
        ),
        format!("op = \"change\"\nuser = \"{name}\"\n[change]\nchange = \"unlock\"\n"),
        format!(
            "op = \"change\"\nuser = \"{name}\"\n[change]\nchange = \"set-destination\"\nchannel = \"email\"\nto = \"mallory@example.org\"\ncreating = false\n"
        ),
        format!(
            "op = \"change\"\nuser = \"{name}\"\n[change]\nchange = \"remove-method\"\nmethod = \"app\"\n"
        ),
        toml::to_string(&enroll).unwrap(),
    ] {
        let reply = ask_as(user.uid, user.gid, &d.socket, &request);
        assert!(
            reply.contains("kind = \"forbidden\""),
            "{request} -> {reply}"
        );
    }
    assert_eq!(std::fs::read(h.user_file(&user.name)).unwrap(), before);
    let _ = std::fs::remove_file(h.user_file(&user.name));
}

/// The system config of a host moving from files (in `<tmp>/files`) to
/// the daemon: `kind` is "files" before the switch, "daemon" after.
fn moving_config(h: &Harness, kind: &str) -> String {
    format!(
        "user_file = \"{}/%u.toml\"\nmax_attempts = 1\n\n[store]\nkind = \"{kind}\"\nsocket = \"{}\"\n\n[daemon]\nstate_dir = \"{}\"\n",
        h.path("files").display(),
        otpgate_tests::daemon::socket_path(h).display(),
        h.path("users").display()
    )
}

/// `otpgate store import` as README's switch does it: import while logins
/// still use the files, switch `store.kind`, import again. Codes used in
/// the files before the switch and in the daemon after it all stay used;
/// a second import changes nothing more; another enrollment in the file
/// is refused, not written over the daemon's.
#[test]
fn store_import_before_and_after_the_switch_loses_no_used_code() {
    let h = need!(Harness::new(""));
    h.otp_service("");
    std::fs::create_dir_all(h.path("files")).unwrap();
    std::fs::set_permissions(h.path("files"), std::fs::Permissions::from_mode(0o700)).unwrap();
    h.write_config_raw(&moving_config(&h, "files"));
    let _d = Otpgated::start(&h);
    let mut record = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    let codes: Vec<String> = record
        .new_backup_codes(4, 8)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let source = h.path("files/root.toml");
    write_private(&source, record.to_toml().as_bytes());
    let import = |args: &[&str]| {
        let mut cmd = Command::new(otpgate_binary());
        cmd.arg("--config")
            .arg(h.config_path())
            .args(["store", "import"])
            .args(args);
        let out = output_with_stdin(&mut cmd, "");
        (out.status.code(), printed(&out))
    };
    let (status, out) = import(&["root"]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("root: moved"), "{out}");
    // Still on files: code 0 is used in the file only.
    h.login().answer(&codes[0]).run().assert("PAM_SUCCESS");
    h.write_config_raw(&moving_config(&h, "daemon"));
    // On the daemon: code 1 is used there only; code 0 still works there
    // until the second import (the window the second import closes).
    h.login().answer(&codes[1]).run().assert("PAM_SUCCESS");
    let (status, out) = import(&["root"]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("root: merged"), "{out}");
    for used in &codes[..2] {
        h.login().answer(used).run().assert("PAM_AUTH_ERR");
    }
    h.login().answer(&codes[2]).run().assert("PAM_SUCCESS");
    h.login().answer(&codes[2]).run().assert("PAM_AUTH_ERR");
    // Again (and --all, which finds root's file too): nothing comes back.
    let (status, out) = import(&["--all"]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("root: merged"), "{out}");
    h.login().answer(&codes[2]).run().assert("PAM_AUTH_ERR");
    h.login().answer(&codes[3]).run().assert("PAM_SUCCESS");
    // Another enrollment in the file: refused, the daemon's kept.
    let held = std::fs::read(h.user_file("root")).unwrap();
    let other = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    write_private(&source, other.to_toml().as_bytes());
    let (status, out) = import(&["root"]);
    assert_eq!(status, Some(10), "{out}");
    assert!(
        out.contains("root: refused") && out.contains("another enrollment"),
        "{out}"
    );
    assert_eq!(std::fs::read(h.user_file("root")).unwrap(), held);
    // Only root may import.
    if let Some(user) = test_user() {
        let mut cmd = Command::new(otpgate_binary());
        cmd.arg("--config")
            .arg(h.config_path())
            .args(["store", "import", "root"]);
        cmd.uid(user.uid).gid(user.gid);
        let out = output_with_stdin(&mut cmd, "");
        assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    }
}

/// A PAM application that does not run as root (OpenVPN, a mail server):
/// the daemon refuses its logins for another user until the admin lists
/// its user in `daemon.login_users`; then they work, and still may not
/// change accounts.
#[test]
fn a_non_root_pam_application_runs_logins_only_when_listed() {
    let (h, user) = need!(user_harness(""));
    std::fs::set_permissions(h.path("pam.d"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let service = h.path("pam.d").join(SERVICE);
    std::fs::set_permissions(&service, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (secret, _) = enroll(&h, 0);
    let as_user = [
        "setpriv".to_string(),
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--clear-groups".to_string(),
    ];
    let mut d = Otpgated::start(&h);
    avoid_step_edge();
    let run = h
        .login()
        .inside(&as_user)
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_SYSTEM_ERR");
    assert!(
        d.log().contains("may ask only about its own account"),
        "{}",
        d.log()
    );
    d.kill9();
    let listed = daemon_config(
        &h,
        "enroll_password_check = false",
        "",
        &format!("login_users = [\"{}\"]", user.name),
    );
    h.write_config(&listed);
    std::fs::set_permissions(h.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let _d = Otpgated::start(&h);
    h.login()
        .inside(&as_user)
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
    let reply = ask_as(
        user.uid,
        user.gid,
        &otpgate_tests::daemon::socket_path(&h),
        "op = \"change\"\nuser = \"root\"\n[change]\nchange = \"forget-all-hosts\"\n",
    );
    assert!(reply.contains("kind = \"forbidden\""), "{reply}");
    drop(_d);
    // The same through its group (the user's own, primary group).
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(user.gid))
        .unwrap()
        .unwrap()
        .name;
    h.write_config(&daemon_config(
        &h,
        "enroll_password_check = false",
        "",
        &format!("login_groups = [\"{group}\"]"),
    ));
    std::fs::set_permissions(h.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let _d = Otpgated::start(&h);
    h.login()
        .inside(&as_user)
        .answer(totp_at(&secret, now() + 30))
        .run()
        .assert("PAM_SUCCESS");
}

/// One user's connections are limited (`max_connections_per_user`): the
/// next is told the daemon is busy, while root's logins go on.
#[test]
fn one_user_cannot_take_every_connection() {
    let (h, user) = need!(user_harness(""));
    let text = std::fs::read_to_string(h.config_path()).unwrap();
    h.write_config_raw(&text.replace("[daemon]\n", "[daemon]\nmax_connections_per_user = 4\n"));
    std::fs::set_permissions(h.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    // The user's program holds four connections open, then asks a fifth.
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_otpgate-hardening-helper"))
        .arg("hold")
        .arg(&d.socket)
        .arg("5")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    assert!(out.contains("kind = \"busy\""), "{out}");
    assert!(d.log().contains("over the connection limit"), "{}", d.log());
    avoid_step_edge();
    h.login()
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
}

/// Attack: a user's own client asks the daemon to judge a code at a time
/// of its choosing, past its lockout. The daemon takes a time only from
/// root: the lockout holds.
#[test]
fn a_user_cannot_choose_the_time_a_code_is_judged_at() {
    let (h, user) = need!(user_harness(""));
    let d = Otpgated::start(&h);
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    record.state.locked_until = now() + 900;
    h.write_record(&user.name, &record);
    let later = now() + 100_000;
    let request = format!(
        "op = \"check\"\nuser = \"{}\"\ncandidates = [\"{}\"]\nnow = {later}\n",
        user.name,
        totp_at(&secret, later)
    );
    let reply = ask_as(user.uid, user.gid, &d.socket, &request);
    assert!(reply.contains("outcome = \"locked\""), "{reply}");
    let _ = std::fs::remove_file(h.user_file(&user.name));
}

/// Attack: someone at the user's unlocked session (or malware running as
/// the user) enrolls the account, so that its second factor is theirs.
/// With `enroll_password_check` the daemon itself asks the PAM service
/// `otpgate` for the user's password before a first enrollment: the
/// command passes it on; a wrong one, or a client of the user's own that
/// sends none, saves nothing.
#[test]
fn a_first_enrollment_through_the_daemon_needs_the_users_password() {
    let (h, user) = need!(user_harness_with(""));
    let matrix = std::path::Path::new(PAM_WRAPPER_MODULES).join("pam_matrix.so");
    need!(require(
        matrix.exists(),
        "pam_matrix.so missing (Debian package libpam-wrapper)"
    ));
    let passdb = h.path("passdb");
    std::fs::write(&passdb, format!("{}:right-password:otpgate\n", user.name)).unwrap();
    std::fs::write(
        h.path("pam.d").join("otpgate"),
        format!(
            "auth required {m} passdb={p}\naccount required {m} passdb={p}\n",
            m = matrix.display(),
            p = passdb.display()
        ),
    )
    .unwrap();
    let wrapper = [
        ("LD_PRELOAD".to_string(), "libpam_wrapper.so".to_string()),
        ("PAM_WRAPPER".to_string(), "1".to_string()),
        (
            "PAM_WRAPPER_SERVICE_DIR".to_string(),
            h.path("pam.d").display().to_string(),
        ),
    ];
    let d = Otpgated::start_with(&h, &wrapper);
    let (uid, gid) = (user.uid, user.gid);
    let secret = new_secret();
    let enroll = [
        "enroll",
        "--secret",
        secret.as_str(),
        "--no-confirm",
        "--json",
    ];
    let (ok, out) = otpgate_as(&h, uid, gid, &enroll, "wrong-password\n");
    assert!(!ok && out.contains("was not confirmed"), "{out}");
    assert!(!h.user_file(&user.name).exists(), "nothing saved");
    let request = format!(
        "op = \"change\"\nuser = \"{}\"\n[change]\nchange = \"enroll\"\nreplacing = false\n[change.record]\nversion = 2\n[change.record.totp]\nsecret = \"{secret}\"\n",
        user.name
    );
    let reply = ask_as(uid, gid, &d.socket, &request);
    assert!(
        reply.contains("kind = \"forbidden\"") && reply.contains("needs the password"),
        "{reply}"
    );
    assert!(!h.user_file(&user.name).exists(), "nothing saved");
    let (ok, out) = otpgate_as(&h, uid, gid, &enroll, "right-password\n");
    assert!(ok, "{out}");
    assert!(h.user_file(&user.name).exists());
    assert!(!d.log().contains("right-password"));
    let _ = std::fs::remove_file(h.user_file(&user.name));
}

/// `store.kind=daemon` as a module argument: one service asks the daemon
/// while the config (and every other service) still uses the files, as an
/// admin trying the daemon on one service first would have it.
#[test]
fn the_module_argument_store_kind_daemon_asks_the_daemon() {
    let h = need!(Harness::new(""));
    std::fs::create_dir_all(h.path("files")).unwrap();
    std::fs::set_permissions(h.path("files"), std::fs::Permissions::from_mode(0o700)).unwrap();
    h.write_config_raw(&moving_config(&h, "files"));
    let _d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    h.service("files-only", &[h.module_line("required", "")]);
    h.service(
        "via-daemon",
        &[h.module_line("required", "store.kind=daemon")],
    );
    avoid_step_edge();
    // The files have no record of root: the module ignores the login (a
    // stack of it alone is then denied by libpam).
    h.log();
    h.login()
        .service("files-only")
        .run()
        .assert("PAM_PERM_DENIED");
    assert!(decisions(&h).concat().contains("outcome=ignore"));
    h.login()
        .service("via-daemon")
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
}

/// `otpgate check` with `store.kind = "daemon"`: an error while otpgated
/// does not answer (every login needing a code would be denied), a line
/// saying it runs once it does.
#[test]
fn check_says_whether_otpgated_answers() {
    let h = need!(harness(""));
    let check = || {
        let mut cmd = Command::new(otpgate_binary());
        cmd.arg("--config")
            .arg(h.config_path())
            .args(["check", "--pam-dir"])
            .arg(h.path("pam.d"))
            .args(["--sshd-config", "/nonexistent"]);
        let out = output_with_stdin(&mut cmd, "");
        (out.status.code(), printed(&out))
    };
    let (status, out) = check();
    assert_eq!(status, Some(8), "{out}");
    assert!(
        out.contains("store.kind = \"daemon\" but otpgated at")
            && out.contains("is otpgated running?"),
        "{out}"
    );
    let _d = Otpgated::start(&h);
    let (_, out) = check();
    assert!(out.contains("which is running"), "{out}");
    assert!(!out.contains("store.kind = \"daemon\" but"), "{out}");
}

/// Something else on the daemon's socket answering garbage, or a frame
/// announcing 4 GiB: the login is denied at once, the log line names the
/// cause, and no prompt was shown.
#[test]
fn garbage_or_an_oversized_reply_denies_and_the_log_says_why() {
    let h = need!(harness(""));
    enroll(&h, 0);
    let socket = otpgate_tests::daemon::socket_path(&h);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    for (reply, cause) in [
        (&b"HTTP/1.0 200 OK\r\n\r\n"[..], "bad magic"),
        (&b"OTPG\x01\xff\xff\xff\xff"[..], "over the limit"),
        (&b"OTPG\x01\x00\x00\x00\x05hello"[..], "malformed message"),
    ] {
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut header = [0u8; 9];
            let _ = s.read_exact(&mut header);
            let mut body = vec![
                0u8;
                u32::from_be_bytes([header[5], header[6], header[7], header[8]])
                    as usize
            ];
            let _ = s.read_exact(&mut body);
            let _ = s.write_all(reply);
        });
        let start = Instant::now();
        let run = h.login().answer("123456").run();
        run.assert("PAM_SYSTEM_ERR");
        assert!(run.prompts().is_empty(), "{run:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        let lines = decisions(&h);
        assert!(lines.concat().contains(cause), "{cause}: {lines:#?}");
        server.join().unwrap();
    }
}

/// `otpgate enroll` without `--secret` through the daemon: otpgated makes
/// the secret and keeps it; it reaches the enrolling user's terminal once
/// (for the QR code), the code typed from it is checked by the daemon, and
/// the enrollment that saves it names no secret. A client that asks to
/// save an issued enrollment with a wrong code, or without asking for a
/// secret first, saves nothing.
#[test]
fn the_daemon_makes_the_secret_and_checks_the_first_code() {
    use std::io::BufRead;
    let (h, user) = need!(user_harness(""));
    let d = Otpgated::start(&h);
    let mut child = Command::new(otpgate_binary())
        .arg("--config")
        .arg(h.config_path())
        .args(["enroll", "--no-qr"])
        .uid(user.uid)
        .gid(user.gid)
        .env("HOME", "/")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut secret = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if line.starts_with("Type the secret into the app") {
            line.clear();
            stdout.read_line(&mut line).unwrap();
            secret = line.split_whitespace().collect();
            break;
        }
        line.clear();
    }
    assert_eq!(secret.len(), 32, "a 160-bit secret was shown: {secret:?}");
    avoid_step_edge();
    let code = totp_at(&secret, now());
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(format!("{code}\n").as_bytes())
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{rest}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = h.record(&user.name);
    assert_eq!(record.totp().unwrap().secret.to_base32().as_str(), secret);
    assert!(
        record.devices[0].last_step > 0,
        "the confirmation code is used"
    );
    assert!(!d.log().contains(&secret));

    // A client of the user's: a wrong first code, or no secret asked for.
    let _ = std::fs::remove_file(h.user_file(&user.name));
    let new = ask_as(
        user.uid,
        user.gid,
        &d.socket,
        &format!(
            "op = \"new-secret\"\nuser = \"{}\"\n[app]\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n",
            user.name
        ),
    );
    assert!(new.contains("reply = \"new-secret\""), "{new}");
    let save = |confirm: &str| {
        ask_as(
            user.uid,
            user.gid,
            &d.socket,
            &format!(
                "op = \"enroll-issued\"\nuser = \"{}\"\nreplacing = false\nconfirm = \"{confirm}\"\n",
                user.name
            ),
        )
    };
    let reply = save("000000");
    assert!(reply.contains("not a code of the new secret"), "{reply}");
    let reply = save("000000");
    assert!(reply.contains("no secret was issued"), "{reply}");
    assert!(!h.user_file(&user.name).exists());
}

/// A port on 127.0.0.1 that nothing listens on (now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics` on `port`: the whole answer, headers included.
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// The value of `series` (a name and its labels) on a metrics page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The TCP sockets process `pid` listens on (from /proc: its descriptors,
/// and the sockets in state LISTEN).
fn tcp_listening_sockets_of(pid: u32) -> usize {
    let listening: std::collections::HashSet<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|table| {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            text.lines()
                .skip(1)
                .filter_map(|l| {
                    let fields: Vec<&str> = l.split_whitespace().collect();
                    (fields.get(3) == Some(&"0A")).then(|| fields.get(9).map(|i| i.to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .filter(|inode| listening.contains(inode))
        .count()
}

/// `daemon.metrics`: an accepted and a wrong login are counted with their
/// method and timed, and the page names no user and no code. A client that
/// never speaks on the metrics port, and one that sends garbage, stop
/// neither the logins nor the next scrape.
#[test]
fn the_metrics_endpoint_counts_checks_and_garbage_there_stops_no_login() {
    let port = free_port();
    let h = need!(harness_with(
        "max_attempts = 1",
        "",
        &format!("metrics = \"127.0.0.1:{port}\"")
    ));
    let d = Otpgated::start(&h);
    assert!(
        d.log()
            .contains(&format!("metrics on http://127.0.0.1:{port}/metrics")),
        "{}",
        d.log()
    );
    assert_eq!(tcp_listening_sockets_of(d.pid()), 1);
    let (secret, backups) = enroll(&h, 1);
    avoid_step_edge();
    let code = totp_at(&secret, now());
    h.login().answer(&code).run().assert("PAM_SUCCESS");
    h.login().answer("000000").run().assert("PAM_AUTH_ERR");
    let page = scrape(port);
    assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{page}");
    assert!(
        page.contains("\r\nContent-Type: text/plain; version=0.0.4"),
        "{page}"
    );
    for (series, value) in [
        (
            r#"otpgate_checks_total{outcome="accepted",method="totp"}"#,
            1.0,
        ),
        (
            r#"otpgate_checks_total{outcome="wrong",method="none"}"#,
            1.0,
        ),
        (
            r#"otpgate_checks_total{outcome="accepted",method="backup"}"#,
            0.0,
        ),
        (r#"otpgate_requests_total{op="check"}"#, 2.0),
        ("otpgate_check_duration_seconds_count", 2.0),
        (r#"otpgate_check_duration_seconds_bucket{le="+Inf"}"#, 2.0),
        ("otpgate_lockouts_total", 0.0),
        ("otpgate_store_errors_total", 0.0),
    ] {
        assert_eq!(sample(&page, series), Some(value), "{series} in\n{page}");
    }
    for secret in ["root", code.as_str(), "000000", secret.as_str()] {
        assert!(!page.contains(secret), "{secret} on the page:\n{page}");
    }

    // One client holds the endpoint without a word, another sends garbage.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = garbage.write_all(&[0xff; 10_000]);
    h.login().answer(&backups[0]).run().assert("PAM_SUCCESS");
    // The silent client is dropped after its 2 s, with an answer.
    let start = Instant::now();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    silent
        .read_to_string(&mut answer)
        .expect("the daemon closes a silent client");
    assert!(answer.starts_with("HTTP/1.0 400 Bad Request"), "{answer:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let page = scrape(port);
    assert_eq!(
        sample(
            &page,
            r#"otpgate_checks_total{outcome="accepted",method="backup"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "otpgate_check_duration_seconds_count"),
        Some(3.0)
    );
    // A stray path is not found, and the daemon still serves logins.
    let mut stray = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stray.write_all(b"GET /users HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stray.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 404"), "{answer}");
    h.login().answer("000000").run().assert("PAM_AUTH_ERR");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

/// Without `daemon.metrics` (the default) the daemon listens on no TCP
/// port and its log says nothing of metrics.
#[test]
fn without_daemon_metrics_the_daemon_listens_on_no_tcp_port() {
    let h = need!(harness(""));
    let d = Otpgated::start(&h);
    let (secret, _) = enroll(&h, 0);
    avoid_step_edge();
    h.login()
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
    assert_eq!(tcp_listening_sockets_of(d.pid()), 0);
    assert!(!d.log().contains("metrics"), "{}", d.log());
}

// --- Named devices (issue #17, part 1) ---------------------------------------

/// The test user adds devices through the daemon with a current code:
/// one whose secret the daemon makes (`new-secret`, `enroll-issued` with a
/// device name) and one of their own (`add-device`); a login accepts
/// either and the log names it; removing one needs a code too, and its
/// codes then fail. The same requests sent without a proof are refused.
#[test]
fn as_the_test_user_devices_are_added_and_removed_through_the_daemon_with_a_code() {
    let (h, user) = need!(user_harness("max_attempts = 1\ntotp_window = 3"));
    let d = Otpgated::start(&h);
    let (uid, gid) = (user.uid, user.gid);
    let first = new_secret();
    h.write_record(&user.name, &totp_record_with(&first, Algorithm::SHA1, 6));
    avoid_step_edge();
    let t = now();

    // Without a right code nothing is added.
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["devices", "add", "phone", "--no-confirm"],
        "000000\n",
    );
    assert!(!ok, "{out}");
    assert_eq!(h.record(&user.name).devices.len(), 1);

    // The daemon makes the secret; it comes back once, for the QR code.
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["devices", "add", "phone", "--no-confirm", "--json"],
        &format!("{}\n", totp_at(&first, t - 60)),
    );
    assert!(ok, "{out}");
    let json: serde_json::Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let phone = json["secret"].as_str().unwrap().to_string();
    let record = h.record(&user.name);
    let names: Vec<&str> = record.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["app", "phone"]);
    assert_eq!(
        record.devices[1]
            .totp
            .as_ref()
            .unwrap()
            .secret
            .to_base32()
            .as_str(),
        phone
    );

    // A secret of the user's own (a `Change::AddDevice`).
    let key = new_secret();
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["devices", "add", "key", "--secret", &key, "--no-confirm"],
        &format!("{}\n", totp_at(&first, t - 30)),
    );
    assert!(ok, "{out}");
    assert_eq!(h.record(&user.name).devices.len(), 3);

    // The view lists them without secrets.
    let (ok, out) = otpgate_as(&h, uid, gid, &["devices", "list", "--json"], "");
    assert!(ok, "{out}");
    assert!(
        out.contains("\"name\":\"phone\"") && out.contains("\"name\":\"key\""),
        "{out}"
    );
    assert!(!out.contains(&phone) && !out.contains(&key), "{out}");

    // Logins take any device's code, each once.
    for (secret, name) in [(&phone, "phone"), (&key, "key")] {
        let code = totp_at(secret, t);
        h.login()
            .user(&user.name)
            .answer(&code)
            .run()
            .assert("PAM_SUCCESS");
        let lines = decisions(&h);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(" device={name} "))),
            "{lines:#?}"
        );
        h.login()
            .user(&user.name)
            .answer(&code)
            .run()
            .assert("PAM_AUTH_ERR");
    }

    // Straight to the daemon without a proof: refused.
    let name = &user.name;
    let mut add = toml::Table::new();
    add.insert("op".into(), "change".into());
    add.insert("user".into(), name.as_str().into());
    let evil = otpgate_config::record::Device::totp(
        otpgate_config::record::DeviceName::parse("evil").unwrap(),
        otpgate_config::otp::Secret::from_base32(&new_secret()).unwrap(),
        Algorithm::SHA1,
        6,
        30,
    );
    let change = toml::Table::try_from(&otpgate_config::change::Change::AddDevice {
        device: Box::new(evil),
    })
    .unwrap();
    add.insert("change".into(), change.into());
    for request in [
        toml::to_string(&add).unwrap(),
        format!(
            "op = \"change\"\nuser = \"{name}\"\n[change]\nchange = \"remove-device\"\nname = \"app\"\n"
        ),
    ] {
        let reply = ask_as(uid, gid, &d.socket, &request);
        assert!(
            reply.contains("kind = \"forbidden\""),
            "{request} -> {reply}"
        );
    }
    assert_eq!(h.record(&user.name).devices.len(), 3);

    // Removing needs a code; then the device's codes fail.
    let (ok, out) = otpgate_as(
        &h,
        uid,
        gid,
        &["devices", "remove", "phone"],
        &format!("{}\n", totp_at(&key, t + 30)),
    );
    assert!(ok, "{out}");
    h.login()
        .user(&user.name)
        .answer(totp_at(&phone, t + 60))
        .run()
        .assert("PAM_AUTH_ERR");
    assert!(!d.log().contains(&phone) && !d.log().contains(&key));
    let _ = std::fs::remove_file(h.user_file(&user.name));
}

/// 100 logins race through the daemon, half with a code of each of two
/// devices for the same step: exactly one per device wins.
#[test]
fn codes_of_two_devices_raced_by_100_logins_through_the_daemon_work_once_each() {
    let h = need!(harness("max_attempts = 1\nlockout_after = 0"));
    let _d = Otpgated::start(&h);
    let (a, b) = (new_secret(), new_secret());
    h.write_record("root", &two_device_record(&a, &b));
    avoid_step_edge();
    let t = now();
    let codes = [totp_at(&a, t), totp_at(&b, t)];
    let answers: Vec<String> = (0..100).map(|i| codes[i % 2].clone()).collect();
    let runs = race(&h, &answers);
    for device in 0..2 {
        let wins = runs
            .iter()
            .enumerate()
            .filter(|(i, r)| i % 2 == device && r.result == "PAM_SUCCESS")
            .count();
        assert_eq!(
            wins,
            1,
            "device {device}: {:?}",
            runs.iter().map(|r| &r.result).collect::<Vec<_>>()
        );
    }
    assert!(
        runs.iter()
            .all(|r| r.result == "PAM_SUCCESS" || r.result == "PAM_AUTH_ERR")
    );
    let record = h.record("root");
    assert_eq!(record.devices[0].last_step, t / 30);
    assert_eq!(record.devices[1].last_step, t / 30);
}
