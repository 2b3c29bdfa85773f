//! `[[policy.override]]` (issue #17, part 3) through real libpam: each
//! overridable setting differs between two PAM services, or two users,
//! of one config, and the daemon applies the service's entry too.
#![forbid(unsafe_code)]

use otpgate_config::UserRecord;
use otpgate_config::channel::Kind;
use otpgate_config::otp::Algorithm;
use otpgate_tests::channels::Outbox;
use otpgate_tests::daemon::{Otpgated, daemon_config};
use otpgate_tests::*;

const PROMPT: &str = "Verification code: ";
const TRUST_7: &str = "Skip the code for logins from 203.0.113.7 for 7 days? [y/N] ";
const SMS: &str = "+441632960961";

/// A harness with `config` and the services `sshd` and `sudo`, each our
/// module alone, and `with-permit` (our module, then pam_permit, so that
/// `PAM_IGNORE` shows as a success).
fn harness(config: &str) -> Option<Harness> {
    let h = Harness::new(config)?;
    services(&h);
    Some(h)
}

fn services(h: &Harness) {
    h.otp_service("");
    for name in ["sshd", "sudo"] {
        h.service(name, &[h.module_line("required", "")]);
    }
    h.service(
        "with-permit",
        &[
            h.module_line("required", ""),
            "auth required pam_permit.so".into(),
        ],
    );
}

/// Decision lines (not the lines of refused answers) since the last call.
fn decisions(h: &Harness) -> Vec<String> {
    h.log()
        .into_iter()
        .filter(|l| l.contains("outcome=") && !l.contains(" outcome=refused "))
        .collect()
}

/// `[channels.sms]` with the outbox's command (run as nobody).
fn sms_config(outbox: &Outbox, extra: &str) -> String {
    format!(
        "[channels.sms]\ncommand = [\"{}\", \"{{to}}\"]\nrun_as = \"nobody\"\n{extra}\n",
        outbox.sms_command().display()
    )
}

/// Root enrolled with an app (returned secret) and an SMS number.
fn enroll_app_and_sms(h: &Harness) -> (String, UserRecord) {
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    record.set_destination(Kind::Sms, Some(SMS.into()));
    h.write_record("root", &record);
    (secret, record)
}

#[test]
fn sudo_with_remember_days_0_never_honours_a_remembered_host_while_sshd_does() {
    let h = need!(harness("remember_days = 7"));
    let secret = h.enroll();
    avoid_step_edge();
    // Before the override: the user trusts 203.0.113.7 on both services.
    for (service, at) in [("sshd", now()), ("sudo", now() + 30)] {
        let run = h
            .login()
            .service(service)
            .rhost("203.0.113.7")
            .answer(totp_at(&secret, at))
            .answer("y")
            .run();
        run.assert("PAM_SUCCESS");
        assert_eq!(run.prompts(), [PROMPT, TRUST_7], "{service}");
    }
    assert_eq!(h.record("root").trusted_hosts.len(), 2);
    h.write_config(
        "remember_days = 7\n[[policy.override]]\nservices = [\"sudo\"]\nremember_days = 0",
    );
    h.log();
    // sshd still honours its remembered host...
    let run = h.login().service("sshd").rhost("203.0.113.7").run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    assert!(decisions(&h).concat().contains("method=remembered-host"));
    // ...sudo asks for a code, from the same address, with the trust in
    // the record.
    let run = h
        .login()
        .service("sudo")
        .rhost("203.0.113.7")
        .answer("000000")
        .answer("000000")
        .answer("000000")
        .run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.prompts()[0], PROMPT);
    assert_eq!(h.record("root").trusted_hosts.len(), 2);
    // And a right code on sudo offers no trust.
    let secret = h.enroll();
    let run = h
        .login()
        .service("sudo")
        .rhost("203.0.113.7")
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(run.prompts(), [PROMPT]);
    assert!(h.record("root").trusted_hosts.is_empty());
}

#[test]
fn a_group_override_without_sms_neither_offers_nor_accepts_sms_codes() {
    let outbox = Outbox::new();
    // root is in the group root; nobody logs in as a member of nogroup.
    let config = |group: &str| {
        format!(
            "max_attempts = 1\n{}\n[[policy.override]]\ngroups = [\"{group}\"]\nmethods = [\"app\", \"backup\"]\n",
            sms_config(&outbox, "")
        )
    };
    let h = need!(harness(&config("root")));
    let (_, mut record) = enroll_app_and_sms(&h);
    let code = record
        .new_sent_code(Kind::Sms, 6, now(), 600)
        .expect("sent code");
    h.write_record("root", &record);
    // A member: a plain prompt, Enter sends nothing, a pending SMS code is
    // a wrong code and stays unused.
    let run = h.login().answer("").run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.prompts(), [PROMPT]);
    let run = h.login().answer(code.as_str()).run();
    run.assert("PAM_AUTH_ERR");
    assert!(outbox.messages().is_empty(), "nothing sent");
    let after = h.record("root");
    assert_eq!(after.sent_codes.len(), 1, "the SMS code was not used up");
    assert_eq!(after.state.failures, 2);
    // Not a member: SMS is offered, and the same code works.
    h.write_config(&config("nogroup"));
    let run = h.login().answer(code.as_str()).run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts()[0].contains("SMS"), "{:?}", run.prompts());
    assert!(decisions(&h).concat().contains("method=sms"));
}

#[test]
fn a_group_override_without_backup_codes_refuses_them_and_keeps_them() {
    let h = need!(harness(
        "max_attempts = 1\n[[policy.override]]\ngroups = [\"root\"]\nservices = [\"sudo\"]\nmethods = [\"app\"]"
    ));
    let secret = new_secret();
    let mut record = totp_record_with(&secret, Algorithm::SHA1, 6);
    let backups: Vec<String> = record
        .new_backup_codes(2, 8)
        .expect("backup codes")
        .iter()
        .map(|c| c.to_string())
        .collect();
    h.write_record("root", &record);
    h.login()
        .service("sudo")
        .answer(&backups[0])
        .run()
        .assert("PAM_AUTH_ERR");
    assert_eq!(h.record("root").backup.codes.len(), 2);
    // The app still works there; the backup code works on sshd.
    h.login()
        .service("sudo")
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
    h.login()
        .service("sshd")
        .answer(&backups[0])
        .run()
        .assert("PAM_SUCCESS");
    assert_eq!(h.record("root").backup.codes.len(), 1);
}

#[test]
fn require_all_for_a_group_denies_its_unenrolled_members_and_ignores_others() {
    let mut h = need!(harness(
        "[[policy.override]]\ngroups = [\"contractors\"]\nrequire = \"all\""
    ));
    need!(h.fake_user("carol", 4361, &[("contractors", 4362)]));
    let run = h.login().service("with-permit").user("carol").run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(
        run.messages(),
        ["2FA is required for this account: run `otpgate enroll`"]
    );
    assert!(decisions(&h).concat().contains("outcome=deny"));
    // root is not a contractor: not enrolled, the stack decides.
    let run = h.login().service("with-permit").run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    assert!(decisions(&h).concat().contains("outcome=ignore"));
}

#[test]
fn max_attempts_and_the_lockout_differ_per_service() {
    let h = need!(harness(
        "max_attempts = 3\nlockout_after = 10\nlockout_minutes = 15\n\
         [[policy.override]]\nservices = [\"sudo\"]\nmax_attempts = 1\nlockout_after = 2\nlockout_minutes = 60"
    ));
    let secret = h.enroll();
    avoid_step_edge();
    // sshd: three prompts, three failures, no lockout.
    let run = h
        .login()
        .service("sshd")
        .answer("000001")
        .answer("000002")
        .answer("000003")
        .run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.prompts().len(), 3);
    let record = h.record("root");
    assert_eq!((record.state.failures, record.state.locked_until), (3, 0));
    // A right code resets the count.
    h.login()
        .service("sshd")
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
    // sudo: one prompt; the second failure locks for an hour.
    let run = h.login().service("sudo").answer("000001").answer("x").run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.prompts().len(), 1);
    let run = h.login().service("sudo").answer("000002").run();
    run.assert("PAM_MAXTRIES");
    let locked = h.record("root").state.locked_until;
    assert!(
        locked >= now() + 59 * 60 && locked <= now() + 60 * 60,
        "{locked}"
    );
    // The lockout holds on every service.
    h.login()
        .service("sshd")
        .answer(totp_at(&secret, now() + 30))
        .run()
        .assert("PAM_MAXTRIES");
}

#[test]
fn the_lifetime_of_sent_codes_differs_per_service() {
    let outbox = Outbox::new();
    let h = need!(harness(&format!(
        "max_attempts = 1\n{}\n[[policy.override]]\nservices = [\"sudo\"]\ncode_lifetime = 2\n",
        sms_config(&outbox, "code_lifetime = 10")
    )));
    for (service, minutes) in [("sshd", 10), ("sudo", 2)] {
        enroll_app_and_sms(&h);
        let start = now();
        let run = h.login().service(service).answer("").answer("x").run();
        let said = format!("valid for {minutes} minutes");
        assert!(
            run.messages().concat().contains(&said),
            "{service}: {said}: {run:#?}"
        );
        let sent = &h.record("root").sent_codes;
        assert_eq!(sent.len(), 1, "{service}");
        let lifetime = sent[0].expires - start;
        assert!(
            (minutes * 60..=minutes * 60 + 5).contains(&lifetime),
            "{service}: {lifetime}"
        );
    }
    assert_eq!(outbox.messages().len(), 2);
}

/// The whole verification of a user offered sent codes: 600 s on sshd, 30
/// on sudo, where a send that takes 31 s (the gateway is slow) ends it.
#[test]
fn the_verification_time_differs_per_service() {
    let outbox = Outbox::new();
    let slow = outbox.script(
        "slow-sms",
        &format!(
            "sleep 31\ncat > {}/msg.$(date +%s%N)",
            outbox.path("out").display()
        ),
    );
    let h = need!(harness(&format!(
        "[channels]\nverification_time = 600\n[channels.sms]\ncommand = [\"{}\"]\nrun_as = \"nobody\"\n\
         timeout = 60\n[[policy.override]]\nservices = [\"sudo\"]\nverification_time = 30\n",
        slow.display()
    )));
    let (secret, _) = enroll_app_and_sms(&h);
    let run = h
        .login()
        .service("sudo")
        .answer("")
        .answer(totp_at(&secret, now() + 31))
        .run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(run.prompts().len(), 1, "{run:#?}");
    assert!(
        decisions(&h)
            .concat()
            .contains("channels.verification_time 30 s"),
        "{:#?}",
        h.journal()
    );
}

/// The daemon judges checks with its own config: it applies the lockout
/// of the service the module names (root's word on it is taken).
#[test]
fn through_the_daemon_the_lockout_of_the_login_service_applies() {
    let h = need!(Harness::new(""));
    h.write_config(&daemon_config(
        &h,
        "max_attempts = 1\nlockout_after = 10\n\
         [[policy.override]]\nservices = [\"sudo\"]\nlockout_after = 2\nlockout_minutes = 60",
        "",
        "",
    ));
    services(&h);
    let _d = Otpgated::start(&h);
    let secret = new_secret();
    h.write_record("root", &totp_record_with(&secret, Algorithm::SHA1, 6));
    for _ in 0..2 {
        h.login()
            .service("sshd")
            .answer("000000")
            .run()
            .assert("PAM_AUTH_ERR");
    }
    assert_eq!(h.record("root").state.locked_until, 0, "sshd: after 10");
    h.login()
        .service("sshd")
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
    h.login()
        .service("sudo")
        .answer("000000")
        .run()
        .assert("PAM_AUTH_ERR");
    h.login()
        .service("sudo")
        .answer("000000")
        .run()
        .assert("PAM_MAXTRIES");
    let locked = h.record("root").state.locked_until;
    assert!(locked >= now() + 59 * 60, "{locked}");
}

/// Runs the hardening helper's `ask` as `uid`: one request, the reply's
/// TOML.
fn ask_as(uid: u32, gid: u32, socket: &std::path::Path, request: &str) -> String {
    let helper = std::path::Path::new(env!("CARGO_BIN_EXE_otpgate-hardening-helper"));
    otpgate_tests::daemon::ask_as(helper, uid, gid, socket, request)
}

/// Attack: a user's own check (`otpgate verify`, or a program of theirs on
/// the socket) names the PAM service whose entry is laxest. The daemon
/// takes the service from root and listed PAM applications only; the
/// user's checks are the `otpgate` service's whatever they say.
#[test]
fn through_the_daemon_a_user_cannot_choose_the_service_their_checks_count_as() {
    use std::os::unix::fs::PermissionsExt;
    let h = need!(Harness::new(""));
    let user = need!(test_user());
    h.write_config(&daemon_config(
        &h,
        "lockout_after = 10\n\
         [[policy.override]]\nservices = [\"otpgate\"]\nlockout_after = 1\nlockout_minutes = 60\n\
         [[policy.override]]\nservices = [\"sshd\"]\nlockout_after = 0",
        "",
        "",
    ));
    for dir in [h.path(""), h.path("run")] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let d = Otpgated::start(&h);
    h.write_record(
        &user.name,
        &totp_record_with(&new_secret(), Algorithm::SHA1, 6),
    );
    let check = |service: &str| {
        format!(
            "op = \"check\"\nuser = \"{}\"\ncandidates = [\"000000\"]\nservice = \"{service}\"\n",
            user.name
        )
    };
    // Root's word is taken: sshd never locks.
    for _ in 0..2 {
        let reply = ask_as(0, 0, &d.socket, &check("sshd"));
        assert!(reply.contains("outcome = \"refused\""), "{reply}");
    }
    assert_eq!(h.record(&user.name).state.locked_until, 0);
    // The user's is not: the otpgate entry locks at the first wrong code.
    let reply = ask_as(user.uid, user.gid, &d.socket, &check("sshd"));
    assert!(reply.contains("outcome = \"refused\""), "{reply}");
    let locked = h.record(&user.name).state.locked_until;
    assert!(locked >= now() + 59 * 60, "{locked}: {reply}");
    let _ = std::fs::remove_file(h.user_file(&user.name));
}
