//! Codes from an independent implementation: OATH Toolkit's `oathtool`
//! must agree with ours for random secrets, every algorithm, digit count
//! and period, and what it prints must verify through a user record.

use std::process::Command;

use otpgate_config::otp::{Algorithm, Generator, Secret, time_step};
use otpgate_config::record::VerifyPolicy;
use otpgate_config::{Answer, UserRecord, Verdict};
use otpgate_test_support::{need, require_tool};

fn oathtool(args: &[&str]) -> Option<String> {
    let out = Command::new("oathtool").args(args).output().ok()?;
    assert!(
        out.status.success(),
        "oathtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// A reproducible spread of times: 1970 to 2100.
fn times(seed: u64) -> impl Iterator<Item = u64> {
    (0..5u64)
        .map(move |i| (seed.wrapping_mul(2654435761).wrapping_add(i * 977_000_003)) % 4_102_444_800)
}

#[test]
fn totp_codes_agree_with_oathtool_for_random_secrets() {
    need!(require_tool("oathtool", "oathtool"));
    let algorithms = [
        (Algorithm::SHA1, "sha1", 20),
        (Algorithm::SHA256, "sha256", 32),
        (Algorithm::SHA512, "sha512", 64),
    ];
    let mut checked = 0;
    for round in 0..12u64 {
        let (alg, name, len) = algorithms[(round % 3) as usize];
        let digits = 6 + (round % 3) as u8;
        let period = [30u64, 60, 15][(round / 3 % 3) as usize];
        let secret = Secret::generate(len).unwrap();
        let b32 = secret.to_base32();
        let g = Generator::totp(&secret, alg, digits, period).unwrap();
        for t in times(round + 1) {
            let theirs = oathtool(&[
                &format!("--totp={name}"),
                "-d",
                &digits.to_string(),
                "-s",
                &format!("{period}s"),
                "-N",
                &format!("@{t}"),
                "-b",
                &b32,
            ])
            .unwrap();
            let ours = g.code_at_step(time_step(t, period));
            assert_eq!(
                ours.as_str(),
                theirs,
                "{name} {digits} digits {period}s at {t}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 60);
}

#[test]
fn hotp_codes_agree_with_oathtool() {
    need!(require_tool("oathtool", "oathtool"));
    for _ in 0..5 {
        let secret = Secret::generate(20).unwrap();
        let g = Generator::hotp(&secret, Algorithm::SHA1, 6).unwrap();
        for counter in [0u64, 1, 7, 1000, 123_456_789] {
            let theirs =
                oathtool(&["-c", &counter.to_string(), "-b", &secret.to_base32()]).unwrap();
            assert_eq!(g.code_at_step(counter).as_str(), theirs);
        }
    }
}

#[test]
fn an_oathtool_code_logs_in_once_through_a_user_record() {
    need!(require_tool("oathtool", "oathtool"));
    let secret = Secret::generate(20).unwrap();
    let b32 = secret.to_base32().to_string();
    let mut record = UserRecord::new_totp(secret, Algorithm::SHA1, 6, 30);
    let policy = VerifyPolicy {
        totp_window: 1,
        hotp_lookahead: 10,
    };
    let now = 1_790_000_000;
    let code = oathtool(&["--totp", "-N", &format!("@{now}"), "-b", &b32]).unwrap();
    let answer = Answer::parse(code.as_bytes()).unwrap();
    assert!(matches!(
        record.verify(&answer, now, policy).unwrap(),
        Verdict::Accepted(_)
    ));
    assert!(matches!(
        record.verify(&answer, now + 5, policy).unwrap(),
        Verdict::Replayed { .. }
    ));
    // A code from 30 s ago (the phone's clock slightly behind) is accepted;
    // one from 3 steps ago is not.
    let old = oathtool(&["--totp", "-N", &format!("@{}", now + 30), "-b", &b32]).unwrap();
    let mut fresh = record.clone();
    fresh.devices[0].last_step = 0;
    assert!(matches!(
        fresh
            .verify(&Answer::parse(old.as_bytes()).unwrap(), now + 60, policy)
            .unwrap(),
        Verdict::Accepted(_)
    ));
    let stale = oathtool(&["--totp", "-N", &format!("@{}", now - 90), "-b", &b32]).unwrap();
    let mut fresh = record.clone();
    fresh.devices[0].last_step = 0;
    assert_eq!(
        fresh
            .verify(&Answer::parse(stale.as_bytes()).unwrap(), now, policy)
            .unwrap(),
        Verdict::Wrong
    );
}
