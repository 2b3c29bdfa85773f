//! SSH keys (issue #17, part 2): `policy.trusted_ssh_keys` and remembered
//! hosts bound to the key sshd reports in `SSH_AUTH_INFO_0`.

use super::*;

/// `ssh-keygen -t ed25519` public keys and what `ssh-keygen -l` prints.
const KEY_1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIEGPYUXTgiBeolS4qMUL9f2FHb+VG6OEuWxEzm7sAHxs";
const FP_1: &str = "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU";
const KEY_2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIO3pxtV8zPuxR+y3oZmh/X9j5MtCUL/WCuSt/8qNgcEM";
/// A FIDO `sk-ssh-ed25519@openssh.com` key in the form sshd writes (made
/// by hand: ssh-keygen needs the hardware; `ssh-keygen -l` reads it and
/// prints `SHA256:/p0CbeE3dk2SyW1OXXsThGc12ezDVD8eGw2/vtztDfk`).
const SK_KEY: &str = "AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fAAAABHNzaDo=";

const HOST: &str = "203.0.113.7";

/// `fake` for root from [`HOST`] with `SSH_AUTH_INFO_0` set to `info`
/// (`None`: unset).
fn from_host(info: Option<&str>, answers: &[&[u8]]) -> Fake {
    let mut h = fake(Some(HOST), answers);
    if let Some(info) = info {
        h.env.push((ssh_auth::ENV_NAME.into(), info.into()));
    }
    h
}

fn publickey(kind: &str, blob: &str) -> String {
    format!("publickey {kind} {blob}\n")
}

fn ed25519(blob: &str) -> String {
    publickey("ssh-ed25519", blob)
}

#[test]
fn a_listed_key_fingerprint_skips_the_code_and_is_logged_as_ssh_key() {
    let s = Setup::new(&format!("[policy]\ntrusted_ssh_keys = [\"{FP_1}\"]\n"));
    s.enroll(&totp_record());
    let mut h = from_host(Some(&ed25519(KEY_1)), &[]);
    let ((rc, log), reasons) = s.run_logged(Some(NOW), &mut h, &s.args(&[]), false, false);
    assert_eq!(rc, Code::Success);
    assert!(h.transcript.is_empty(), "{:?}", h.transcript);
    assert_eq!(
        reasons,
        [Reason::TrustedSshKey {
            kind: "ssh-ed25519".into(),
            fingerprint: FP_1.into(),
            rule: FP_1.into(),
        }]
    );
    assert!(
        log[0].contains("rhost=203.0.113.7")
            && log[0].contains("method=ssh-key outcome=success")
            && log[0].contains(FP_1),
        "{log:?}"
    );
    // Nothing was counted or used up.
    assert_eq!(s.record(), totp_record());
}

#[test]
fn a_listed_key_type_counts_and_other_types_do_not() {
    let fido = "[policy]\ntrusted_ssh_keys = [\"sk-ssh-ed25519@openssh.com\", \
                \"sk-ecdsa-sha2-nistp256@openssh.com\"]\n";
    let s = Setup::new(fido);
    s.enroll(&totp_record());
    let sk = publickey("sk-ssh-ed25519@openssh.com", SK_KEY);
    let mut h = from_host(Some(&sk), &[]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=ssh-key"), "{log:?}");
    assert!(
        log[0].contains("SHA256:/p0CbeE3dk2SyW1OXXsThGc12ezDVD8eGw2/vtztDfk"),
        "{log:?}"
    );
    // An ordinary ed25519 key is no FIDO key: asked.
    let mut h = from_host(Some(&ed25519(KEY_1)), &[&code_at(NOW)]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=totp"), "{log:?}");
    // An ordinary key's blob labelled as a FIDO key is not sshd's: asked.
    let forged = publickey("sk-ssh-ed25519@openssh.com", KEY_1);
    let mut h = from_host(Some(&forged), &[&code_at(NOW + 30)]);
    assert_eq!(
        s.run_at(Some(NOW + 30), &mut h, &s.args(&[])).0,
        Code::Success
    );
    assert_eq!(h.transcript.len(), 1, "{:?}", h.transcript);
}

/// Fail closed: only a single listed key that sshd reported, in the form
/// it writes, counts.
#[test]
fn an_unlisted_absent_unreadable_or_ambiguous_key_is_asked_for_a_code() {
    let s = Setup::new(&format!(
        "[policy]\ntrusted_ssh_keys = [\"{FP_1}\", \"ssh-rsa\"]\n"
    ));
    s.enroll(&totp_record());
    let two = format!("{}{}", ed25519(KEY_2), ed25519(KEY_1));
    let huge = ed25519(KEY_1).repeat(20_000);
    let cases: Vec<Option<String>> = vec![
        Some(ed25519(KEY_2)),
        None,
        Some(String::new()),
        Some("password\n".into()),
        Some("keyboard-interactive/pam\n".into()),
        // The key of a hostbased line is the client host's.
        Some(format!(
            "hostbased ssh-ed25519 {KEY_1} client user \"root\"\n"
        )),
        Some(two),
        Some(format!("publickey ssh-ed25519 {}\n", &KEY_1[..40])),
        Some(format!("publickey ssh-ed25519 {KEY_1} extra\n")),
        Some("garbage \u{1} \n".into()),
        Some(huge),
    ];
    for (i, info) in cases.iter().enumerate() {
        let at = NOW + 30 * i as u64;
        let mut h = from_host(info.as_deref(), &[&code_at(at)]);
        let (rc, log) = s.run_at(Some(at), &mut h, &s.args(&[]));
        assert_eq!(rc, Code::Success, "{info:?}");
        assert_eq!(
            h.transcript,
            ["prompt(echo=false): Verification code: "],
            "{i}"
        );
        assert!(log[0].contains("method=totp"), "{i}: {log:?}");
    }
}

#[test]
fn a_trusted_key_needs_a_remote_host_and_an_unlocked_account() {
    let s = Setup::new(&format!("[policy]\ntrusted_ssh_keys = [\"{FP_1}\"]\n"));
    s.enroll(&totp_record());
    // No PAM_RHOST: not an SSH login, whatever the environment says.
    let mut h = fake(None, &[&code_at(NOW)]);
    h.env.push((ssh_auth::ENV_NAME.into(), ed25519(KEY_1)));
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=totp"), "{log:?}");
    // Locked: refused before the key is looked at.
    let mut r = s.record();
    r.state.locked_until = NOW + 600;
    s.enroll(&r);
    let mut h = from_host(Some(&ed25519(KEY_1)), &[]);
    let (rc, reasons) = s.reasons(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::MaxTries);
    assert_eq!(reasons, [Reason::LockedOut { seconds_left: 600 }]);
}

#[test]
fn no_key_counts_by_default() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = from_host(Some(&ed25519(KEY_1)), &[&code_at(NOW)]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=totp"), "{log:?}");
    // A bad rule is a config error, which denies.
    let s = Setup::new("[policy]\ntrusted_ssh_keys = [\"sk-ssh-ed25519\"]\n");
    s.enroll(&totp_record());
    let mut h = from_host(Some(&ed25519(KEY_1)), &[]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::ServiceErr);
}

#[test]
fn a_host_remembered_after_a_key_login_is_bound_to_that_key() {
    let s = Setup::new("remember_days = 7");
    s.enroll(&totp_record());
    let mut h = from_host(Some(&ed25519(KEY_1)), &[&code_at(NOW), b"y"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert_eq!(
        h.transcript,
        [
            "prompt(echo=false): Verification code: ".to_string(),
            format!(
                "prompt(echo=true): Skip the code for logins from 203.0.113.7 with SSH key \
                 {FP_1} for 7 days? [y/N] "
            ),
            format!(
                "info: Logins from 203.0.113.7 with SSH key {FP_1} to otp-test skip the code \
                 for 7 days."
            ),
        ]
    );
    assert!(
        log[0].contains(&format!(
            "user trusted logins from 203.0.113.7 with SSH key {FP_1} for 7 days"
        )),
        "{log:?}"
    );
    assert_eq!(s.record().trusted_hosts[0].key.as_deref(), Some(FP_1));
    // The same key from there: no prompt.
    let later = NOW + 3600;
    let mut h = from_host(Some(&ed25519(KEY_1)), &[]);
    let (rc, log) = s.run_at(Some(later), &mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=remembered-host"), "{log:?}");
    // Another key, no key, or nobody saying which: asked (and offered
    // to remember, but for two keys).
    let other = [
        (Some(ed25519(KEY_2)), true),
        (Some(String::new()), true),
        (None, true),
        (Some(format!("{}{}", ed25519(KEY_1), ed25519(KEY_2))), false),
    ];
    for (i, (info, offered)) in other.iter().enumerate() {
        let at = later + 30 * (i as u64 + 1);
        let code = code_at(at);
        let answers: &[&[u8]] = if *offered { &[&code, b"n"] } else { &[&code] };
        let mut h = from_host(info.as_deref(), answers);
        let (rc, log) = s.run_at(Some(at), &mut h, &s.args(&[]));
        assert_eq!(rc, Code::Success);
        assert!(log[0].contains("method=totp"), "{info:?}: {log:?}");
    }
    assert_eq!(s.record().trusted_hosts.len(), 1);
}

#[test]
fn with_several_keys_or_unreadable_info_no_host_is_offered() {
    let s = Setup::new("remember_days = 7");
    s.enroll(&totp_record());
    let two = format!("{}{}", ed25519(KEY_1), ed25519(KEY_2));
    for (i, info) in [two, "publickey !\n".to_string()].iter().enumerate() {
        let at = NOW + 30 * i as u64;
        let mut h = from_host(Some(info), &[&code_at(at)]);
        assert_eq!(s.run_at(Some(at), &mut h, &s.args(&[])).0, Code::Success);
        assert_eq!(h.transcript.len(), 1, "{:?}", h.transcript);
    }
    assert!(s.record().trusted_hosts.is_empty());
    // Without a key (a password login, or an sshd that does not say), the
    // address alone is remembered, as before.
    let at = NOW + 90;
    let mut h = from_host(None, &[&code_at(at), b"y"]);
    assert_eq!(s.run_at(Some(at), &mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(s.record().trusted_hosts[0].key, None);
    // An entry without a key matches a key login too (address only).
    let mut h = from_host(Some(&ed25519(KEY_2)), &[]);
    let (rc, log) = s.run_at(Some(at + 60), &mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=remembered-host"), "{log:?}");
}
