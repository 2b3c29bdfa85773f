//! `pam_otpgate.so` through real libpam (`pam_start_confdir` in the C
//! driver), with codes from oathtool. One test per behaviour of issue #3.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use otpgate_config::otp::Algorithm;
use otpgate_tests::*;

const PROMPT: &str = "Verification code: ";
const FORWARD_PROMPT: &str = "Password & verification code: ";
const TRUST_7: &str = "Skip the code for logins from 203.0.113.7 for 7 days? [y/N] ";

fn harness(config: &str, extra_args: &str) -> Option<Harness> {
    let h = Harness::new(config)?;
    h.otp_service(extra_args);
    Some(h)
}

/// The one log line of the last login (asserts there is exactly one
/// decision line; the lines of refused answers are not decisions).
fn decision(h: &Harness) -> String {
    let lines: Vec<String> = h
        .log()
        .into_iter()
        .filter(|l| l.contains("outcome=") && !l.contains(" outcome=refused "))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    lines.into_iter().next().unwrap_or_default()
}

// --- TOTP -----------------------------------------------------------------

#[test]
fn correct_totp_code_from_oathtool_succeeds() {
    let h = need!(harness("", ""));
    let secret = h.enroll();
    let code = totp_at(&secret, now());
    let run = h.login().rhost("192.0.2.10").answer(&code).run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [PROMPT]);
    let line = decision(&h);
    for want in [
        "pam_otpgate[",
        "user=root",
        "service=otp-test",
        "rhost=192.0.2.10",
        "method=totp",
        "outcome=success",
        "reason=",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(!line.contains(&code), "the code must never be logged");
    assert!(!line.contains(&secret), "the secret must never be logged");
    // authpriv.info
    assert!(line.starts_with("<86>"), "{line}");
}

/// A six-digit code that is not the code of `secret` one step around now
/// (call [`avoid_step_edge`] first).
fn wrong_code(secret: &str) -> String {
    let t = now();
    (0..)
        .map(|i| format!("{:06}", (i * 7919) % 1_000_000))
        .find(|c| {
            ![t - 30, t, t + 30]
                .iter()
                .any(|&s| &totp_at(secret, s) == c)
        })
        .unwrap_or_default()
}

#[test]
fn wrong_code_fails() {
    let h = need!(harness("max_attempts = 1", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let wrong = wrong_code(&secret);
    let run = h.login().answer(&wrong).run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.messages(), ["Wrong code."]);
    let line = decision(&h);
    assert!(
        line.contains("outcome=deny") && line.contains("wrong code"),
        "{line}"
    );
    assert!(!line.contains(&wrong));
    assert_eq!(h.record("root").state.failures, 1);
}

#[test]
fn the_same_code_twice_fails_the_second_time() {
    let h = need!(harness("max_attempts = 1", ""));
    let secret = h.enroll();
    let code = totp_at(&secret, now());
    h.login().answer(&code).run().assert("PAM_SUCCESS");
    h.log();
    let run = h.login().answer(&code).run();
    run.assert("PAM_AUTH_ERR");
    assert!(decision(&h).contains("code already used"));
    // The user is told why, not just "Wrong code".
    assert_eq!(
        run.messages(),
        ["That code was already used; wait for the next one."]
    );
}

#[test]
fn a_code_one_step_old_succeeds() {
    let h = need!(harness("", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let code = totp_at(&secret, now() - 30);
    h.login().answer(&code).run().assert("PAM_SUCCESS");
}

#[test]
fn a_code_three_steps_old_fails() {
    let h = need!(harness("max_attempts = 1", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let t = now();
    let old = totp_at(&secret, t - 90);
    // (One in a million: the old code equals a valid one.)
    if [t - 30, t, t + 30]
        .iter()
        .any(|&s| totp_at(&secret, s) == old)
    {
        return;
    }
    h.login().answer(&old).run().assert("PAM_AUTH_ERR");
}

#[test]
fn sha256_eight_digit_secret_succeeds() {
    let h = need!(harness("", ""));
    let secret = new_secret();
    h.write_record("root", &totp_record_with(&secret, Algorithm::SHA256, 8));
    let code = totp_with(&secret, "sha256", 8, now());
    assert_eq!(code.len(), 8);
    h.login().answer(&code).run().assert("PAM_SUCCESS");
    // The SHA-1 code of the same secret is not accepted.
    let sha1 = totp_with(&secret, "sha1", 8, now());
    h.login()
        .answer(&sha1)
        .answer(&sha1)
        .answer(&sha1)
        .run()
        .assert("PAM_AUTH_ERR");
}

// --- HOTP and backup codes ------------------------------------------------

#[test]
fn hotp_counter_advances_and_resyncs_within_the_look_ahead() {
    let h = need!(harness("max_attempts = 1\nhotp_lookahead = 10", ""));
    let secret = new_secret();
    let record = otpgate_config::UserRecord::new_hotp(
        otpgate_config::otp::Secret::from_base32(&secret).unwrap(),
        Algorithm::SHA1,
        6,
        0,
    );
    h.write_record("root", &record);
    let counter = |h: &Harness| h.record("root").hotp().unwrap().counter;

    h.login()
        .answer(hotp(&secret, 0))
        .run()
        .assert("PAM_SUCCESS");
    assert_eq!(counter(&h), 1);
    h.log();
    h.login()
        .answer(hotp(&secret, 0))
        .run()
        .assert("PAM_AUTH_ERR");
    assert_eq!(counter(&h), 1);
    // The button was pressed a few times in between: resync.
    h.login()
        .answer(hotp(&secret, 6))
        .run()
        .assert("PAM_SUCCESS");
    assert_eq!(counter(&h), 7);
    h.log();
    assert!(h.login().answer(hotp(&secret, 7)).run().result == "PAM_SUCCESS");
    assert!(decision(&h).contains("method=hotp"));
    // Beyond the look-ahead (next expected is 8; 8 + 10 is the last).
    h.login()
        .answer(hotp(&secret, 19))
        .run()
        .assert("PAM_AUTH_ERR");
    assert_eq!(counter(&h), 8);
    h.login()
        .answer(hotp(&secret, 18))
        .run()
        .assert("PAM_SUCCESS");
    assert_eq!(counter(&h), 19);
}

/// Attack (issue #12, item 6): an HOTP counter at its maximum stopped
/// advancing, and the code of the last counter then worked at every login.
/// The last counter is now never accepted; the one before it works once.
#[test]
fn an_hotp_counter_at_its_maximum_accepts_no_code_forever() {
    let h = need!(harness(
        "max_attempts = 1\nhotp_lookahead = 3\nlockout_after = 0",
        ""
    ));
    let secret = new_secret();
    let record = otpgate_config::UserRecord::new_hotp(
        otpgate_config::otp::Secret::from_base32(&secret).unwrap(),
        Algorithm::SHA1,
        6,
        u64::MAX - 1,
    );
    h.write_record("root", &record);
    let before_last = hotp(&secret, u64::MAX - 1);
    let last = hotp(&secret, u64::MAX);
    h.login().answer(&before_last).run().assert("PAM_SUCCESS");
    assert_eq!(h.record("root").hotp().unwrap().counter, u64::MAX);
    for _ in 0..3 {
        h.login().answer(&last).run().assert("PAM_AUTH_ERR");
        h.login().answer(&before_last).run().assert("PAM_AUTH_ERR");
    }
    assert_eq!(h.record("root").hotp().unwrap().counter, u64::MAX);
}

#[test]
fn a_backup_code_succeeds_once_and_the_remaining_count_drops_by_one() {
    let h = need!(harness("max_attempts = 1", ""));
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    let codes = record.new_backup_codes(10, 8).unwrap();
    h.write_record("root", &record);

    let run = h.login().answer(codes[4].as_str()).run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.messages(), ["Backup code used; 9 left."]);
    assert_eq!(h.record("root").backup.codes.len(), 9);
    let line = decision(&h);
    assert!(line.contains("method=backup"), "{line}");
    assert!(!line.contains(codes[4].as_str()));

    h.login()
        .answer(codes[4].as_str())
        .run()
        .assert("PAM_AUTH_ERR");
    assert_eq!(h.record("root").backup.codes.len(), 9);
    // Typed the way people type it.
    let dashed = format!("{}-{}", &codes[5][..4], &codes[5][4..]);
    h.login().answer(dashed).run().assert("PAM_SUCCESS");
    assert_eq!(h.record("root").backup.codes.len(), 8);
}

// --- Networks and remembered hosts ----------------------------------------

#[test]
fn a_trusted_network_rhost_succeeds_without_a_prompt() {
    let h = need!(harness(
        "trusted_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]",
        ""
    ));
    h.enroll();
    for rhost in ["10.20.30.40", "2001:db8::7", "::ffff:10.1.1.1"] {
        let run = h.login().rhost(rhost).run();
        run.assert("PAM_SUCCESS");
        assert!(run.prompts().is_empty(), "{rhost}: {run:?}");
        let line = decision(&h);
        assert!(line.contains("method=trusted-network"), "{line}");
    }
}

#[test]
fn an_rhost_outside_the_trusted_networks_is_prompted() {
    let h = need!(harness(
        "trusted_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nmax_attempts = 1",
        ""
    ));
    h.enroll();
    for rhost in ["11.0.0.1", "2001:db9::1", "::ffff:11.1.1.1", "host.example"] {
        let run = h.login().rhost(rhost).answer("000000").run();
        assert_eq!(run.prompts(), [PROMPT], "{rhost}");
    }
    // No rhost at all is the local console: prompted by default.
    let run = h.login().answer("000000").run();
    assert_eq!(run.prompts(), [PROMPT]);
}

/// `pamtester` (real libpam under pam_wrapper) with no PAM_RHOST and the
/// given PAM_TTY, typing `stdin`.
fn pamtester_on_tty(h: &Harness, tty: &str, stdin: &str) -> (bool, String) {
    let tty = format!("tty={tty}");
    let out = h.run_wrapped(
        std::process::Command::new("pamtester").args([
            "-v",
            "-I",
            &tty,
            SERVICE,
            "root",
            "authenticate",
        ]),
        stdin,
    );
    (out.status.success(), printed(&out))
}

/// Attack (issue #12, item 6): `local_console = "skip"` skipped the code for
/// every login without PAM_RHOST, e.g. `su` or `sudo` inside an SSH session
/// (a pseudo-terminal). Only a console, serial line or local display skips.
#[test]
fn local_console_skip_asks_a_pseudo_terminal_and_skips_a_virtual_console() {
    need!(require_tool("pamtester", "pamtester"));
    let h = need!(harness("local_console = \"skip\"\nmax_attempts = 1", ""));
    h.enroll();
    for tty in ["/dev/pts/3", "pts/0"] {
        let (ok, out) = pamtester_on_tty(&h, tty, "000000\n");
        assert!(!ok, "{tty}: {out}");
        assert!(out.contains(PROMPT), "{tty} was not asked: {out}");
        assert!(decision(&h).contains("outcome=deny"));
    }
    for tty in ["tty1", "/dev/tty1", ":0"] {
        let (ok, out) = pamtester_on_tty(&h, tty, "");
        assert!(ok, "{tty}: {out}");
        assert!(!out.contains(PROMPT), "{tty}: {out}");
        assert!(decision(&h).contains("method=local-console"));
    }
}

/// Attack (issue #12, item 5): with `10.0.0.0/8` trusted, PAM_RHOST values
/// that only look like a trusted address skipped the code. Each is now a
/// host name: the login is asked for a code, and a wrong one is refused.
#[test]
fn rhosts_that_only_look_like_a_trusted_address_are_asked_for_a_code() {
    let h = need!(harness(
        "trusted_networks = [\"10.0.0.0/8\", \"fe80::/64%eth0\"]\nmax_attempts = 1\nlockout_after = 0",
        ""
    ));
    h.enroll();
    for rhost in [
        "10.0.0.1%evil.example.com",
        "[10.0.0.1]",
        " 10.0.0.1 ",
        "::ffff:a00:1",
        "010.0.0.1",
        "fe80::1%eth1",
        "fe80::1",
    ] {
        let run = h.login().rhost(rhost).answer("000000").run();
        run.assert("PAM_AUTH_ERR");
        assert_eq!(run.prompts(), [PROMPT], "{rhost:?}");
    }
    for rhost in ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0"] {
        let run = h.login().rhost(rhost).run();
        run.assert("PAM_SUCCESS");
        assert!(run.prompts().is_empty(), "{rhost:?}: {run:?}");
    }
}

#[test]
fn a_remembered_host_is_not_prompted_until_the_trust_expires_and_other_hosts_are() {
    let h = need!(harness("remember_days = 3", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let run = h
        .login()
        .rhost("203.0.113.7")
        .answer(totp_at(&secret, now()))
        .answer("y")
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(
        run.prompts(),
        [
            PROMPT,
            "Skip the code for logins from 203.0.113.7 for 3 days? [y/N] "
        ]
    );
    assert_eq!(h.record("root").trusted_hosts.len(), 1);
    h.log();

    let run = h.login().rhost("203.0.113.7").run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    assert!(decision(&h).contains("method=remembered-host"));

    let run = h
        .login()
        .rhost("203.0.113.8")
        .answer(totp_at(&secret, now() + 30))
        .answer("n")
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts().len(), 2);

    // Expire the trust (as if 3 days had passed): prompted again.
    let mut record = h.record("root");
    record.trusted_hosts[0].until = now() - 1;
    h.write_record("root", &record);
    let run = h
        .login()
        .rhost("203.0.113.7")
        .answer("000000")
        .answer("000000")
        .answer("000000")
        .run();
    assert_eq!(run.prompts()[0], PROMPT);
}

/// Trusts 203.0.113.7 for root on `service` with an app code and `y`.
fn trust_203(h: &Harness, secret: &str, service: &str) {
    let run = h
        .login()
        .service(service)
        .rhost("203.0.113.7")
        .answer(totp_at(secret, now()))
        .answer("y")
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [PROMPT, TRUST_7]);
    assert_eq!(h.record("root").trusted_hosts.len(), 1);
}

/// Attack (issue #12, item 4): trust was granted after a backup code (a
/// printout anyone may have read), and the address then skipped the code.
/// Now only an app code offers trust: the next login there is asked.
#[test]
fn a_backup_code_is_not_offered_trust_and_the_next_login_from_there_is_asked() {
    let h = need!(harness("remember_days = 7\nmax_attempts = 1", ""));
    let mut record = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    let codes = record.new_backup_codes(3, 8).unwrap();
    h.write_record("root", &record);
    let run = h
        .login()
        .rhost("203.0.113.7")
        .answer(codes[0].as_str())
        .answer("y")
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(
        run.prompts(),
        [PROMPT],
        "no trust offered after a backup code"
    );
    assert!(h.record("root").trusted_hosts.is_empty());
    let run = h.login().rhost("203.0.113.7").run();
    assert_ne!(run.result, "PAM_SUCCESS", "{run:?}");
    assert_eq!(run.prompts(), [PROMPT]);
}

/// Attack (issue #12, item 4): while the account was locked, a remembered
/// address still got in without a code. The lockout now comes first.
#[test]
fn a_locked_account_is_denied_even_from_a_remembered_address() {
    let h = need!(harness("remember_days = 7", ""));
    let secret = h.enroll();
    trust_203(&h, &secret, SERVICE);
    let mut record = h.record("root");
    record.state.locked_until = now() + 900;
    h.write_record("root", &record);
    h.log();
    let run = h.login().rhost("203.0.113.7").run();
    run.assert("PAM_MAXTRIES");
    assert!(run.prompts().is_empty(), "{run:?}");
    assert!(
        run.messages()[0].starts_with("Account locked until "),
        "{run:?}"
    );
    assert!(decision(&h).contains("locked out"));
}

/// Attack (issue #12, item 4): an address remembered at one service skipped
/// the code on every other (sshd's trust let su in). A trust now names its
/// service: the same address on another service is asked for a code.
#[test]
fn an_address_remembered_for_one_service_is_asked_on_another() {
    let h = need!(harness("remember_days = 7", ""));
    let secret = h.enroll();
    h.service("otp-other", &[h.module_line("required", "")]);
    trust_203(&h, &secret, SERVICE);
    let run = h.login().service("otp-other").rhost("203.0.113.7").run();
    assert_ne!(run.result, "PAM_SUCCESS", "{run:?}");
    assert_eq!(run.prompts(), [PROMPT]);
    // The service it was granted for still skips, also when sshd writes the
    // same address as IPv4-mapped IPv6.
    h.log();
    let run = h.login().rhost("::ffff:203.0.113.7").run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    assert!(decision(&h).contains("method=remembered-host"));
}

/// Issue #12, item 4: granting a trust is a decision of its own, logged
/// with the user, the service, the address and the days.
#[test]
fn granting_trust_is_logged_with_user_service_address_and_days() {
    let h = need!(harness("remember_days = 7", ""));
    let secret = h.enroll();
    trust_203(&h, &secret, SERVICE);
    let log = h.log();
    let granted: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("outcome=trust-granted"))
        .collect();
    assert_eq!(granted.len(), 1, "{log:#?}");
    for want in [
        "user=root",
        "service=otp-test",
        "rhost=203.0.113.7",
        "method=totp",
        "user trusted logins from 203.0.113.7 for 7 days",
    ] {
        assert!(granted[0].contains(want), "{want} not in {}", granted[0]);
    }
}

// --- Lockout ----------------------------------------------------------------

#[test]
fn lockout_after_n_failures_shows_when_it_ends_and_refuses_a_correct_code() {
    let h = need!(harness("lockout_after = 3\nlockout_minutes = 15", ""));
    let secret = h.enroll();
    let run = h
        .login()
        .answer("000001")
        .answer("000002")
        .answer("000003")
        .run();
    // A lockout says "do not try again" (sshd then ends the connection).
    run.assert("PAM_MAXTRIES");
    let last = *run.messages().last().unwrap();
    assert!(
        last.starts_with("Too many wrong codes. Account locked until "),
        "{last}"
    );
    // `HH:MM ZONE`: a user in another zone must read it right.
    let hhmm = last
        .strip_prefix("Too many wrong codes. Account locked until ")
        .unwrap();
    let (time, zone) = hhmm.split_once(' ').expect("a zone after the time");
    assert!(
        time.len() == 5 && time.as_bytes()[2] == b':' && !zone.is_empty(),
        "HH:MM ZONE expected: {hhmm}"
    );
    let until = h.record("root").state.locked_until;
    assert!(until >= now() + 14 * 60, "{until}");
    // The log says when in UTC, not as a raw Unix time.
    let stamp = otpgate_config::texts::utc_timestamp(until);
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("locked out until {stamp}"))),
        "{stamp} not in {log:?}"
    );

    let run = h.login().answer(totp_at(&secret, now())).run();
    run.assert("PAM_MAXTRIES");
    assert!(run.prompts().is_empty(), "no prompt while locked");
    assert_eq!(run.messages(), [format!("Account locked until {hhmm}")]);
    assert!(decision(&h).contains("locked out"));
}

// --- No user file and policy ----------------------------------------------

#[test]
fn no_user_file_is_pam_ignore_when_enrollment_is_optional() {
    let h = need!(harness("", ""));
    // Our module then a module that succeeds: IGNORE leaves the stack's
    // decision to it.
    h.service(
        "with-permit",
        &[
            h.module_line("required", ""),
            "auth required pam_permit.so".into(),
        ],
    );
    let run = h.login().service("with-permit").run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    assert!(decision(&h).contains("outcome=ignore"));
    // Alone in the stack, PAM_IGNORE is not a success.
    let run = h.login().run();
    assert_ne!(run.result, "PAM_SUCCESS");
}

#[test]
fn no_user_file_is_denied_with_the_enroll_hint_when_policy_requires_it_for_all() {
    let h = need!(harness("[policy]\nrequire = \"all\"", ""));
    let run = h.login().run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(
        run.messages(),
        ["2FA is required for this account: run `otpgate enroll`"]
    );
    assert!(decision(&h).contains("outcome=deny"));
}

/// Attack (issue #12, item 6): with the directory service that holds a
/// `require_groups` group down, NSS reports the group as not found, and an
/// unenrolled member logged in with the password alone. A group that is not
/// found now counts as possibly required: denied, told to enroll.
#[test]
fn a_required_group_that_cannot_be_found_still_requires_a_second_factor() {
    let h = need!(harness(
        "[policy]\nrequire_groups = [\"otpgate-no-such-group\"]",
        ""
    ));
    let run = h.login().run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(
        run.messages(),
        ["2FA is required for this account: run `otpgate enroll`"]
    );
    // An exempt group that cannot be found exempts nobody.
    let h = need!(harness(
        "[policy]\nrequire = \"all\"\nexempt_groups = [\"otpgate-no-such-group\"]",
        ""
    ));
    h.login().run().assert("PAM_AUTH_ERR");
}

#[test]
fn no_user_file_is_denied_when_a_group_of_the_user_requires_it() {
    let h = need!(harness("[policy]\nrequire_groups = [\"root\"]", ""));
    let run = h.login().run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(
        run.messages(),
        ["2FA is required for this account: run `otpgate enroll`"]
    );
    // The same policy given as a module argument.
    let h = need!(harness("", "policy.require_groups=root"));
    h.login().run().assert("PAM_AUTH_ERR");
    // nullok keeps enrollment optional.
    let h = need!(harness("", "nullok"));
    h.service(
        "with-permit",
        &[
            h.module_line("required", "nullok"),
            "auth required pam_permit.so".into(),
        ],
    );
    h.login().service("with-permit").run().assert("PAM_SUCCESS");
}

// --- Hostile files and configs ----------------------------------------------

/// Sets up a hostile user file with `make`, then checks that the login is
/// denied, the reason logged, and nothing in the users directory changed.
fn hostile(make: impl FnOnce(&Harness, &std::path::Path), reason: &str) {
    let h = need!(harness("", ""));
    let secret = new_secret();
    let file = h.user_file("root");
    make(&h, &file);
    let before = h.users_snapshot();
    let run = h.login().answer(totp_at(&secret, now())).run();
    assert!(
        run.result == "PAM_SYSTEM_ERR" || run.result == "PAM_AUTH_ERR",
        "{reason}: {run:?}"
    );
    assert!(run.prompts().is_empty(), "{reason}: {run:?}");
    let line = decision(&h);
    assert!(line.contains("outcome=error"), "{line}");
    assert!(line.contains(reason), "{reason} not in {line}");
    assert_eq!(h.users_snapshot(), before, "nothing written");
}

fn valid_file_text() -> String {
    totp_record_with(&new_secret(), Algorithm::SHA1, 6).to_toml()
}

#[test]
fn a_symlinked_user_file_is_denied_and_logged() {
    hostile(
        |h, file| {
            let target = h.path("elsewhere.toml");
            write_private(&target, valid_file_text().as_bytes());
            std::os::unix::fs::symlink(&target, file).unwrap();
        },
        "symbolic link",
    );
}

#[test]
fn a_user_file_of_another_owner_is_denied_and_logged() {
    hostile(
        |_, file| {
            write_private(file, valid_file_text().as_bytes());
            std::os::unix::fs::chown(file, Some(65534), Some(65534)).unwrap();
        },
        "owned by uid 65534",
    );
}

#[test]
fn a_user_file_with_mode_0644_is_denied_and_logged() {
    hostile(
        |_, file| {
            write_private(file, valid_file_text().as_bytes());
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        },
        "mode 0644",
    );
}

#[test]
fn a_fifo_as_user_file_is_denied_without_hanging() {
    let start = Instant::now();
    hostile(
        |_, file| {
            let ok = std::process::Command::new("mkfifo")
                .args(["-m", "600"])
                .arg(file)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        },
        "FIFO",
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_one_megabyte_user_file_is_denied_and_logged() {
    hostile(
        |_, file| {
            let mut text = valid_file_text();
            text.push_str(&"#".repeat(1 << 20));
            write_private(file, text.as_bytes());
        },
        "limit",
    );
}

#[test]
fn a_garbage_user_file_is_denied_and_logged() {
    hostile(
        |_, file| write_private(file, b"version = 1\n[totp\nsecret = \"x\n"),
        "root.toml:",
    );
}

#[test]
fn a_broken_or_missing_config_denies() {
    let h = need!(harness("", ""));
    let secret = h.enroll();
    std::fs::write(h.config_path(), "max_attempts = \"many\"\n").unwrap();
    let run = h.login().answer(totp_at(&secret, now())).run();
    assert_ne!(run.result, "PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    let line = decision(&h);
    assert!(line.contains("config.toml:1"), "{line}");

    std::fs::remove_file(h.config_path()).unwrap();
    let run = h.login().answer(totp_at(&secret, now())).run();
    assert_ne!(run.result, "PAM_SUCCESS");
    assert!(decision(&h).contains("outcome=error"));

    // Writable by others: whoever can write it could turn 2FA off.
    h.write_config("");
    std::fs::set_permissions(h.config_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = h.login().answer(totp_at(&secret, now())).run();
    assert_ne!(run.result, "PAM_SUCCESS");
}

/// `echo 'remember_days = 7' >> config.toml` on a file that ends in a
/// table puts the key in that table: the login is denied, and the log line
/// says where the key landed and what to do.
#[test]
fn a_top_level_key_appended_below_a_table_denies_and_the_log_says_where() {
    let h = need!(harness(
        "[channels]\nverification_time = 600\nremember_days = 7",
        ""
    ));
    let secret = h.enroll();
    let run = h.login().answer(totp_at(&secret, now())).run();
    assert_ne!(run.result, "PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    let line = decision(&h);
    assert!(
        line.contains(
            "config.toml:4: `remember_days` is a top-level key but stands inside `[channels]` \
             (line 2); move it above the first table"
        ),
        "{line}"
    );
}

/// The config the packages ship, with a key appended as an admin would:
/// the key holds and logins work.
#[test]
fn the_shipped_config_with_a_key_appended_logs_in() {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/config.toml"),
    )
    .unwrap();
    let h = need!(harness(&format!("{shipped}max_attempts = 1"), ""));
    let secret = h.enroll();
    let run = h
        .login()
        .answer("000000")
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.prompts().len(), 1, "max_attempts = 1 holds");
    let run = h.login().answer(totp_at(&secret, now())).run();
    run.assert("PAM_SUCCESS");
}

#[test]
fn an_unknown_module_argument_is_logged_and_denies() {
    let h = need!(harness("", "nulok"));
    let secret = h.enroll();
    let run = h.login().answer(totp_at(&secret, now())).run();
    run.assert("PAM_SERVICE_ERR");
    assert!(run.prompts().is_empty());
    let line = decision(&h);
    assert!(line.contains("nulok"), "{line}");
}

// --- First pass and forward pass --------------------------------------------

#[test]
fn use_first_pass_takes_the_code_from_an_earlier_module() {
    let h = need!(harness("", ""));
    let secret = h.enroll();
    h.service(
        "first-pass",
        &[
            format!("auth required {PAM_WRAPPER_MODULES}/pam_set_items.so"),
            h.module_line("required", "use_first_pass"),
        ],
    );
    let run = h
        .login()
        .service("first-pass")
        .env("PAM_AUTHTOK", &totp_at(&secret, now()))
        .run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    // Without a token there is nothing to check, and no prompt.
    let run = h.login().service("first-pass").answer("000000").run();
    run.assert("PAM_AUTH_ERR");
    assert!(run.prompts().is_empty());
}

#[test]
fn try_first_pass_uses_an_earlier_code_and_prompts_after_a_password() {
    let h = need!(harness("", ""));
    let secret = h.enroll();
    h.service(
        "try-pass",
        &[
            format!("auth required {PAM_WRAPPER_MODULES}/pam_set_items.so"),
            h.module_line("required", "try_first_pass"),
        ],
    );
    avoid_step_edge();
    let run = h
        .login()
        .service("try-pass")
        .env("PAM_AUTHTOK", &totp_at(&secret, now() - 30))
        .run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    let run = h
        .login()
        .service("try-pass")
        .env("PAM_AUTHTOK", "correct horse")
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [PROMPT]);
    assert_eq!(h.record("root").state.failures, 0);
}

#[test]
fn forward_pass_asks_once_and_passes_the_password_on_in_pam_authtok() {
    let h = need!(harness("", ""));
    let secret = h.enroll();
    std::fs::write(h.path("passdb"), "root:s3cret 42:forward\n").unwrap();
    h.service(
        "forward",
        &[
            h.module_line("required", "forward_pass"),
            format!("auth required {PAM_WRAPPER_MODULES}/pam_get_items.so"),
        ],
    );
    let run = h
        .login()
        .service("forward")
        .answer(format!("s3cret 42{}", totp_at(&secret, now())))
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), ["Password & verification code: "]);
    assert_eq!(run.env("PAM_AUTHTOK"), Some("s3cret 42"));
}

/// A `forward_pass` stack: our module, then a password check that takes
/// `PAM_AUTHTOK` as pam_unix's `use_first_pass`/`try_first_pass` do
/// (pam_exec `expose_authtok`, a script comparing it with `password`; it
/// asks `Password: ` itself when nothing was forwarded). pam_matrix cannot
/// stand there: it always asks for the password again.
fn forward_harness(config: &str, password: &str) -> Option<Harness> {
    let h = Harness::new(config)?;
    let script = h.path("check-password");
    let text = format!("#!/bin/sh\nread -r pw\n[ \"$pw\" = '{password}' ]\n");
    std::fs::write(&script, text).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    h.service(
        "forward",
        &[
            h.module_line("required", "forward_pass"),
            format!(
                "auth required pam_exec.so expose_authtok quiet {}",
                script.display()
            ),
        ],
    );
    Some(h)
}

/// Attack (issue #12, item 3): with `forward_pass` the code is checked
/// before any password, so 4 connections x 3 wrong answers from anyone who
/// knew the user name locked the real user out. Such failures now lock
/// only their source: the user from another address gets in.
#[test]
fn forward_pass_wrong_answers_from_one_address_do_not_lock_out_the_user_elsewhere() {
    let h = need!(forward_harness("", "pw"));
    let secret = h.enroll();
    for _ in 0..4 {
        let run = h
            .login()
            .service("forward")
            .rhost("198.51.100.4")
            .answer("guess000000")
            .answer("guess000001")
            .answer("guess000002")
            .run();
        assert_ne!(run.result, "PAM_SUCCESS", "{run:?}");
    }
    let record = h.record("root");
    assert_eq!(record.state.locked_until, 0, "the account is not locked");
    avoid_step_edge();
    let right = format!("pw{}", totp_at(&secret, now()));
    // The guessing address is locked (the code is not even looked at)...
    let run = h
        .login()
        .service("forward")
        .rhost("198.51.100.4")
        .answer(&right)
        .run();
    assert_ne!(run.result, "PAM_SUCCESS", "{run:?}");
    // ... the user, from elsewhere, is not.
    let run = h
        .login()
        .service("forward")
        .rhost("203.0.113.9")
        .answer(&right)
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [FORWARD_PROMPT]);
}

/// Attack (issue #12, item 3): with `forward_pass` the prompts told who
/// exists and who is enrolled (enrolled: ours; not enrolled: the next
/// module's `Password:`; unknown: none). Now everyone gets the same one.
#[test]
fn forward_pass_asks_enrolled_not_enrolled_and_unknown_users_the_same() {
    let h = need!(forward_harness("", "pw"));
    let secret = h.enroll();
    let enrolled = h
        .login()
        .service("forward")
        .answer(format!("pw{}", totp_at(&secret, now())))
        .run();
    enrolled.assert("PAM_SUCCESS");
    let unknown = h
        .login()
        .service("forward")
        .user("otpgate-no-such-user")
        .answer("pw")
        .run();
    assert_ne!(unknown.result, "PAM_SUCCESS", "{unknown:?}");
    std::fs::remove_file(h.user_file("root")).unwrap();
    let not_enrolled = h.login().service("forward").answer("nope").run();
    assert_ne!(not_enrolled.result, "PAM_SUCCESS", "{not_enrolled:?}");
    for run in [&enrolled, &unknown, &not_enrolled] {
        assert_eq!(run.prompts(), [FORWARD_PROMPT], "{run:?}");
    }
}

/// Issue #12, item 3: a user who is not enrolled answers the uniform prompt
/// with the password alone, which goes on whole to the next module.
#[test]
fn forward_pass_a_user_not_enrolled_logs_in_with_the_password_alone() {
    let h = need!(forward_harness("", "correct horse 42"));
    let run = h
        .login()
        .service("forward")
        .answer("correct horse 42")
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [FORWARD_PROMPT]);
    assert!(decision(&h).contains("outcome=ignore"));
    let run = h.login().service("forward").answer("correct horse").run();
    assert_ne!(run.result, "PAM_SUCCESS", "{run:?}");
}

// --- Refused answers and fail2ban (issue #13, item 3) --------------------

/// The `outcome=refused` lines among `log`: one per refused answer.
fn refused(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains(" outcome=refused "))
        .cloned()
        .collect()
}

/// Asserts `line` holds every one of `fields`.
#[track_caller]
fn assert_fields(line: &str, fields: &[&str]) {
    for want in fields {
        assert!(line.contains(want), "{want} not in {line}");
    }
}

/// Issue #13, item 3: one wrong code, then the client went away (here:
/// the application has no more answers, the conversation fails). The
/// guess was counted in the file and left no log line at all.
#[test]
fn a_wrong_code_then_no_more_answers_leaves_a_refused_line() {
    let h = need!(harness("", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let wrong = wrong_code(&secret);
    let run = h.login().rhost("198.51.100.4").answer(&wrong).run();
    assert_ne!(run.result, "PAM_SUCCESS", "{run:?}");
    assert_eq!(h.record("root").state.failures, 1);
    let log = h.log();
    let lines = refused(&log);
    assert_eq!(lines.len(), 1, "{log:#?}");
    assert_fields(
        &lines[0],
        &[
            "pam_otpgate[",
            ": user=root service=otp-test rhost=198.51.100.4 ",
            " method=- outcome=refused why=wrong reason=\"wrong code\"",
        ],
    );
    assert!(!lines[0].contains(&wrong), "the code must never be logged");
    // authpriv.notice, as a denial.
    assert!(lines[0].starts_with("<85>"), "{}", lines[0]);
}

/// Issue #13, item 3: a replayed code followed by a backup code logged
/// only the success. Now both: the replay (method totp, why replayed),
/// then the decision.
#[test]
fn a_replayed_code_then_a_backup_code_logs_both() {
    let h = need!(harness("", ""));
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    let codes = record.new_backup_codes(10, 8).unwrap();
    h.write_record("root", &record);
    avoid_step_edge();
    let code = totp_at(&secret, now());
    h.login()
        .rhost("203.0.113.7")
        .answer(&code)
        .run()
        .assert("PAM_SUCCESS");
    h.log();
    let run = h
        .login()
        .rhost("203.0.113.7")
        .answer(&code)
        .answer(codes[0].as_str())
        .run();
    run.assert("PAM_SUCCESS");
    let log: Vec<String> = h
        .log()
        .into_iter()
        .filter(|l| l.contains("outcome="))
        .collect();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_fields(
        &log[0],
        &[
            "user=root service=otp-test rhost=203.0.113.7 ",
            " method=totp outcome=refused why=replayed reason=\"code already used\"",
        ],
    );
    assert_fields(
        &log[1],
        &["rhost=203.0.113.7 ", " method=backup outcome=success "],
    );
    for line in &log {
        assert!(!line.contains(&code) && !line.contains(codes[0].as_str()));
    }
}

/// A datagram the module sent, as rsyslog writes it to /var/log/auth.log
/// (and fail2ban's journal backend formats it): the `<PRI>` gone, the host
/// name after the RFC 3164 time stamp (`Dec  2 16:20:01`, 15 characters).
fn as_rsyslog_writes_it(datagram: &str) -> String {
    let rest = datagram.split_once('>').map_or(datagram, |(_, rest)| rest);
    let (stamp, tail) = rest.split_at(15);
    format!("{stamp} otpgate-host{tail}")
}

/// What `fail2ban-regex` makes of `lines` (written as rsyslog would) with
/// the shipped filter: the matched lines and the hosts it would ban, one
/// per match. `None` (after SKIP) without fail2ban.
fn fail2ban(h: &Harness, lines: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    require_tool("fail2ban-regex", "fail2ban")?;
    let common = std::path::Path::new("/etc/fail2ban/filter.d/common.conf");
    require(common.exists(), "fail2ban's filter.d/common.conf missing")?;
    // The filter includes common.conf from its own directory.
    let filters = h.path("fail2ban/filter.d");
    std::fs::create_dir_all(&filters).unwrap();
    std::fs::copy(common, filters.join("common.conf")).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/fail2ban/filter.d/otpgate.conf");
    std::fs::copy(&shipped, filters.join("otpgate.conf")).unwrap();
    let file = h.path("auth.log");
    let text: Vec<String> = lines.iter().map(|l| as_rsyslog_writes_it(l)).collect();
    std::fs::write(&file, text.join("\n") + "\n").unwrap();
    let regex = |out: &str| {
        let got = std::process::Command::new("fail2ban-regex")
            .args(["--raw", "-o", out])
            .arg(&file)
            .arg(filters.join("otpgate.conf"))
            .output()
            .expect("fail2ban-regex runs");
        assert!(got.status.success(), "fail2ban-regex: {}", printed(&got));
        String::from_utf8_lossy(&got.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    Some((regex("msg"), regex("ip")))
}

/// The shipped fail2ban filter, run by Debian's `fail2ban-regex` over lines
/// the module really wrote: one match per refused answer from a remote
/// host, with that host; no match for refused answers without one (su,
/// sudo, a console) nor for any decision line (success, deny, ignore).
#[test]
fn the_fail2ban_filter_matches_each_refused_answer_from_a_host_and_nothing_else() {
    let h = need!(harness("", ""));
    let guesser = "198.51.100.4";
    // Not enrolled yet: ignored (alone in the stack, PAM then denies).
    h.login().rhost(guesser).run();
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    let codes = record.new_backup_codes(10, 8).unwrap();
    h.write_record("root", &record);
    avoid_step_edge();
    let wrong = wrong_code(&secret);
    let code = totp_at(&secret, now());
    // One guess, then gone; three guesses, denied.
    h.login().rhost(guesser).answer(&wrong).run();
    h.login()
        .rhost(guesser)
        .answer(&wrong)
        .answer("000000x")
        .answer(&wrong)
        .run()
        .assert("PAM_AUTH_ERR");
    // The user: in, then a replay and a backup code.
    h.login()
        .rhost("203.0.113.7")
        .answer(&code)
        .run()
        .assert("PAM_SUCCESS");
    h.login()
        .rhost("203.0.113.7")
        .answer(&code)
        .answer(codes[0].as_str())
        .run()
        .assert("PAM_SUCCESS");
    // A wrong code with no remote host (su, sudo), then the right one.
    h.login()
        .answer(&wrong)
        .answer(codes[1].as_str())
        .run()
        .assert("PAM_SUCCESS");

    let log = h.log();
    for outcome in ["success", "deny", "ignore", "error"] {
        let with_host = |l: &&String| l.contains(&format!(" outcome={outcome} "));
        assert!(log.iter().any(|l| with_host(&l)), "no {outcome}: {log:#?}");
    }
    let refused = refused(&log);
    assert_eq!(refused.len(), 6, "{log:#?}");
    let from_hosts: Vec<String> = refused
        .iter()
        .filter(|l| !l.contains(" rhost=- "))
        .map(|l| as_rsyslog_writes_it(l))
        .collect();
    assert_eq!(from_hosts.len(), 5, "{refused:#?}");
    let (matched, hosts) = need!(fail2ban(&h, &log));
    assert_eq!(matched, from_hosts, "all lines: {log:#?}");
    assert_eq!(hosts, [guesser, guesser, guesser, guesser, "203.0.113.7"]);
}

/// Attack on the filter: a user name that spells out fields of its own
/// (`... rhost=192.0.2.66 ... outcome=refused ...`) must not make fail2ban
/// ban the address it names. The module quotes it; the filter reads a
/// quoted value whole, so the host banned is the real one.
#[test]
fn a_user_name_holding_rhost_does_not_choose_whom_fail2ban_bans() {
    let mut h = need!(harness("", ""));
    let name = "x service=a rhost=192.0.2.66 tty=a method=a outcome=refused why=wrong reason=";
    need!(h.fake_user(name, 4350, &[]));
    let secret = new_secret();
    h.write_record(name, &totp_record_with(&secret, Algorithm::SHA1, 6));
    avoid_step_edge();
    let wrong = wrong_code(&secret);
    h.login()
        .user(name)
        .rhost("198.51.100.4")
        .answer(&wrong)
        .run();
    h.login().user(name).answer(&wrong).run();
    let log = h.log();
    // (The name itself holds " outcome=refused ": look past it.)
    let refused: Vec<&String> = log
        .iter()
        .filter(|l| l.contains(" tty=- method=- outcome=refused "))
        .collect();
    assert_eq!(refused.len(), 2, "{log:#?}");
    assert!(
        refused[0].contains(&format!("user=\"{name}\" service=otp-test")),
        "{refused:#?}"
    );
    let (matched, hosts) = need!(fail2ban(&h, &log));
    assert_eq!(matched, [as_rsyslog_writes_it(refused[0])], "{log:#?}");
    assert_eq!(hosts, ["198.51.100.4"]);
}

// --- Hostile answers --------------------------------------------------------

#[test]
fn huge_empty_non_digit_and_nul_answers_are_wrong_codes_not_crashes() {
    let h = need!(harness("max_attempts = 3", ""));
    let secret = h.enroll();
    let big = h.path("big-answer");
    std::fs::write(&big, "1".repeat(1 << 20)).unwrap();
    let nul = h.path("nul-answer");
    // A C string ends at NUL: the module sees "123".
    std::fs::write(&nul, b"123\x00456").unwrap();

    let run = h
        .login()
        .answer(Answer::File(big))
        .answer("")
        .answer("12345a")
        .run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(
        run.messages(),
        [
            "Wrong code; 2 tries left.",
            "Wrong code; 1 try left.",
            "Wrong code."
        ]
    );
    let run = h
        .login()
        .answer(Answer::File(nul))
        .answer("\u{1b}[2J")
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts().len(), 3);
}

// --- Logging, other entry points -------------------------------------------

#[test]
fn without_a_syslog_daemon_logins_still_work_fast() {
    let h = need!(Harness::new("lockout_after = 0"));
    let secret = h.enroll();
    // The default /dev/log (absent on these machines) and a missing socket.
    let module = h.module.display().to_string();
    let config = h.config_path().display().to_string();
    h.service(
        "default-log",
        &[format!("auth required {module} config={config}")],
    );
    h.service(
        "missing-log",
        &[format!(
            "auth required {module} config={config} syslog_socket=/nonexistent/log"
        )],
    );
    let start = Instant::now();
    for service in ["default-log", "missing-log"] {
        for _ in 0..5 {
            let run = h
                .login()
                .service(service)
                .answer("000000")
                .answer("0")
                .answer("1")
                .run();
            run.assert("PAM_AUTH_ERR");
            assert!(run.stderr.is_empty(), "{}", run.stderr);
        }
    }
    let run = h
        .login()
        .service("missing-log")
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_SUCCESS");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn setcred_succeeds_and_the_other_entry_points_are_ignored() {
    let h = need!(harness("", ""));
    h.service(
        "all-types",
        &[
            h.module_line("required", ""),
            format!("account required {}", h.module.display()),
            "account required pam_permit.so".to_string(),
            format!("session required {}", h.module.display()),
            "session required pam_permit.so".to_string(),
        ],
    );
    h.login()
        .service("all-types")
        .run_op("setcred")
        .assert("PAM_SUCCESS");
    h.login()
        .service("all-types")
        .run_op("acct_mgmt")
        .assert("PAM_SUCCESS");
    h.login()
        .service("all-types")
        .run_op("open_session")
        .assert("PAM_SUCCESS");
}

#[test]
fn a_backup_code_raced_by_many_logins_works_exactly_once() {
    let h = need!(harness("max_attempts = 1\nlockout_after = 0", ""));
    let mut record = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    let codes = record.new_backup_codes(5, 8).unwrap();
    h.write_record("root", &record);
    let code = codes[2].to_string();
    let results: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| h.login().answer(&code).run().result))
            .collect();
        handles
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let wins = results.iter().filter(|r| *r == "PAM_SUCCESS").count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r == "PAM_SUCCESS" || r == "PAM_AUTH_ERR"),
        "{results:?}"
    );
    assert_eq!(h.record("root").backup.codes.len(), 4);
}

// --- The module twice in one stack (issue #13, item 2) ----------------------

/// The decision lines of the last login, in order.
fn decisions(h: &Harness) -> Vec<String> {
    h.log()
        .into_iter()
        .filter(|l| l.contains("outcome="))
        .collect()
}

/// A service's own line plus the pam-auth-update profile's in common-auth:
/// one code, one prompt. Before, the second line asked again and refused
/// the same code as "Wrong code", counting it toward the lockout.
#[test]
fn a_stack_loading_the_module_twice_asks_once_and_counts_nothing() {
    let h = need!(Harness::new(""));
    let secret = h.enroll();
    h.service(
        "twice",
        &[h.module_line("required", ""), h.module_line("required", "")],
    );
    let run = h
        .login()
        .service("twice")
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [PROMPT]);
    assert!(run.messages().is_empty(), "{:?}", run.messages());
    assert_eq!(h.record("root").state.failures, 0);
    let lines = decisions(&h);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("method=totp"), "{}", lines[0]);
    assert!(
        lines[1].contains("method=already-verified")
            && lines[1].contains("outcome=success")
            && lines[1].contains("already verified in this transaction"),
        "{}",
        lines[1]
    );
}

/// The record is bound to a success and to its user: a first line that
/// denies lets the second ask (and count), and a `PAM_USER` changed between
/// the lines is a new user to verify.
#[test]
fn after_a_denial_or_a_changed_user_the_second_instance_verifies_again() {
    let h = need!(Harness::new("max_attempts = 1"));
    let secret = h.enroll();
    h.service(
        "optional-first",
        &[h.module_line("optional", ""), h.module_line("required", "")],
    );
    let run = h
        .login()
        .service("optional-first")
        .answer("000000")
        .answer("000000")
        .run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.prompts(), [PROMPT, PROMPT]);
    assert_eq!(h.record("root").state.failures, 2);
    h.log();

    h.service(
        "user-changes",
        &[
            h.module_line("required", ""),
            format!("auth required {PAM_WRAPPER_MODULES}/pam_set_items.so"),
            h.module_line("required", ""),
        ],
    );
    let run = h
        .login()
        .service("user-changes")
        .env("PAM_USER", "otpgate-no-such-user")
        .answer(totp_at(&secret, now()))
        .run();
    assert_ne!(run.result, "PAM_SUCCESS", "{run:#?}");
    let lines = decisions(&h);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("user=root") && lines[0].contains("method=totp"));
    assert!(
        lines[1].contains("user=otpgate-no-such-user") && lines[1].contains("unknown user"),
        "{}",
        lines[1]
    );
}

/// An application that keeps its handle for later logins (a screen locker)
/// is asked for a code again once `pam_setcred` has ended the
/// authentication: the record of the first login does not outlive it.
#[test]
fn a_kept_handle_asks_for_a_code_again_after_setcred() {
    let h = need!(harness("max_attempts = 1", ""));
    let secret = h.enroll();
    avoid_step_edge();
    let runs = h
        .login()
        .answer(totp_at(&secret, now()))
        .answer("000000")
        .run_ops(&["authenticate", "setcred", "authenticate"]);
    runs[0].assert("PAM_SUCCESS");
    runs[1].assert("PAM_SUCCESS");
    runs[2].assert("PAM_AUTH_ERR");
    assert_eq!(runs[2].prompts(), [PROMPT], "{runs:#?}");
    assert!(
        decisions(&h)
            .iter()
            .all(|l| !l.contains("already-verified")),
        "the second login skipped the code"
    );
}

// --- SSH keys (issue #17, part 2) -------------------------------------------

/// `ssh-keygen -t ed25519` public keys and what `ssh-keygen -l` prints.
const KEY_1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIEGPYUXTgiBeolS4qMUL9f2FHb+VG6OEuWxEzm7sAHxs";
const FP_1: &str = "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU";
const KEY_2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIO3pxtV8zPuxR+y3oZmh/X9j5MtCUL/WCuSt/8qNgcEM";

/// `SSH_AUTH_INFO_0` as sshd writes it after a `publickey` with `blob`.
fn info(blob: &str) -> String {
    format!("publickey ssh-ed25519 {blob}\n")
}

#[test]
fn a_listed_key_in_the_pam_environment_skips_the_code() {
    let h = need!(harness(
        &format!("[policy]\ntrusted_ssh_keys = [\"{FP_1}\"]"),
        ""
    ));
    h.enroll();
    let run = h
        .login()
        .rhost("203.0.113.7")
        .pam_env("SSH_AUTH_INFO_0", &info(KEY_1))
        .run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty(), "{run:#?}");
    let line = decision(&h);
    assert!(
        line.contains("method=ssh-key") && line.contains(FP_1),
        "{line}"
    );
}

/// Fail closed: another key, no key, a 1 MB value, garbage, bad base64, an
/// unknown key type or two keys: the code is asked.
#[test]
fn any_other_ssh_auth_info_is_asked_for_the_code() {
    let h = need!(harness(
        &format!(
            "max_attempts = 1\nlockout_after = 0\n[policy]\ntrusted_ssh_keys = [\"{FP_1}\", \"ssh-ed25519\"]"
        ),
        ""
    ));
    // The type rule would let any ed25519 key in: only what is not one
    // single ed25519 key in sshd's form may be asked below.
    let secret = h.enroll();
    let cases = [
        String::new(),
        "password\n".to_string(),
        info(KEY_1).repeat(1024 * 1024 / info(KEY_1).len() + 1),
        "\u{1}\u{2}garbage\u{7f}".to_string(),
        format!("publickey ssh-ed25519 {}!\n", &KEY_1[..KEY_1.len() - 1]),
        format!("publickey ssh-future@example.org {KEY_1}\n"),
        format!("publickey sk-ssh-ed25519@openssh.com {KEY_1}\n"),
        format!("{}{}", info(KEY_1), info(KEY_2)),
        format!("hostbased ssh-ed25519 {KEY_1} client user \"root\"\n"),
    ];
    for value in &cases {
        avoid_step_edge();
        let run = h
            .login()
            .rhost("203.0.113.7")
            .pam_env("SSH_AUTH_INFO_0", value)
            .answer(wrong_code(&secret))
            .run();
        run.assert("PAM_AUTH_ERR");
        assert_eq!(
            run.prompts(),
            [PROMPT],
            "{:?}",
            &value[..value.len().min(80)]
        );
        h.log();
    }
    // And without the variable at all.
    let run = h
        .login()
        .rhost("203.0.113.7")
        .answer(wrong_code(&secret))
        .run();
    run.assert("PAM_AUTH_ERR");
}

#[test]
fn a_host_remembered_with_a_key_in_the_pam_environment_asks_another_key() {
    let h = need!(harness("remember_days = 7", ""));
    let secret = h.enroll();
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
    assert_eq!(
        run.prompts(),
        [
            PROMPT.to_string(),
            format!(
                "Skip the code for logins from 203.0.113.7 with SSH key {FP_1} for 7 days? [y/N] "
            )
        ]
    );
    assert_eq!(h.record("root").trusted_hosts[0].key.as_deref(), Some(FP_1));
    let run = h
        .login()
        .rhost("203.0.113.7")
        .pam_env("SSH_AUTH_INFO_0", &info(KEY_1))
        .run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty(), "{run:#?}");
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

// --- Named devices (issue #17, part 1) ---------------------------------------

/// Two devices: a code of each works once, the log names the device, and
/// a step used on one does not refuse the same step on the other.
#[test]
fn with_two_devices_each_code_works_once_and_the_log_names_the_device() {
    let h = need!(harness("max_attempts = 1", ""));
    let (a, b) = (new_secret(), new_secret());
    h.write_record("root", &two_device_record(&a, &b));
    avoid_step_edge();
    let t = now();
    let (code_a, code_b) = (totp_at(&a, t), totp_at(&b, t));
    h.login().answer(&code_b).run().assert("PAM_SUCCESS");
    let line = decision(&h);
    assert!(
        line.contains("method=totp device=key outcome=success"),
        "{line}"
    );
    assert!(!line.contains(&b) && !line.contains(&code_b), "{line}");
    // The same step on device 1 is its own.
    h.login().answer(&code_a).run().assert("PAM_SUCCESS");
    assert!(decision(&h).contains(" device=phone "));
    for code in [&code_a, &code_b] {
        h.login().answer(code).run().assert("PAM_AUTH_ERR");
        assert!(decision(&h).contains("code already used"));
    }
    let record = h.record("root");
    assert_eq!(record.devices[0].last_step, t / 30);
    assert_eq!(record.devices[1].last_step, t / 30);
}

/// A device removed: its codes are refused, the other's still work.
#[test]
fn a_removed_device_codes_are_refused() {
    let h = need!(harness("max_attempts = 1", ""));
    let (a, b) = (new_secret(), new_secret());
    let mut record = two_device_record(&a, &b);
    h.write_record("root", &record);
    avoid_step_edge();
    record.devices.retain(|d| d.name.as_str() != "key");
    h.write_record("root", &record);
    h.login()
        .answer(totp_at(&b, now()))
        .run()
        .assert("PAM_AUTH_ERR");
    assert!(decision(&h).contains("wrong code"));
    h.login()
        .answer(totp_at(&a, now()))
        .run()
        .assert("PAM_SUCCESS");
}

/// A version 2 file (one `[totp]`, its step in `[state]`) logs in as
/// device `app` and its used step stays used.
#[test]
fn a_version_2_file_logs_in_as_device_app() {
    let h = need!(harness("max_attempts = 1", ""));
    let secret = new_secret();
    avoid_step_edge();
    let t = now();
    let old = format!(
        "version = 2\n[totp]\nsecret = \"{secret}\"\n[state]\nlast_step = {}\n",
        t / 30 - 1
    );
    write_private(&h.user_file("root"), old.as_bytes());
    h.login()
        .answer(totp_at(&secret, t - 30))
        .run()
        .assert("PAM_AUTH_ERR");
    assert!(decision(&h).contains("code already used"));
    h.login()
        .answer(totp_at(&secret, t))
        .run()
        .assert("PAM_SUCCESS");
    assert!(decision(&h).contains(" device=app "));
    assert_eq!(h.record("root").devices[0].last_step, t / 30);
}

/// Many logins race with the code of each of two devices: exactly one
/// login per device wins.
#[test]
fn codes_of_two_devices_raced_by_many_logins_work_once_each() {
    let h = need!(harness("max_attempts = 1\nlockout_after = 0", ""));
    let (a, b) = (new_secret(), new_secret());
    h.write_record("root", &two_device_record(&a, &b));
    avoid_step_edge();
    let t = now();
    let codes = [totp_at(&a, t), totp_at(&b, t)];
    let results: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let (h, codes) = (&h, &codes);
                s.spawn(move || (i % 2, h.login().answer(&codes[i % 2]).run().result))
            })
            .collect();
        handles
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    for device in 0..2 {
        let wins = results
            .iter()
            .filter(|(d, r)| *d == device && r == "PAM_SUCCESS")
            .count();
        assert_eq!(wins, 1, "device {device}: {results:?}");
    }
    assert!(
        results
            .iter()
            .all(|(_, r)| r == "PAM_SUCCESS" || r == "PAM_AUTH_ERR"),
        "{results:?}"
    );
}
