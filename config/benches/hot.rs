//! Micro-benchmarks of the pieces every login runs: checking a TOTP code
//! over the window, parsing and writing the user file, matching PAM_RHOST
//! against 1,000 trusted networks, and a backup-code lookup.
//!
//!   cargo bench -p otpgate-config --bench hot

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use otpgate_config::net::Networks;
use otpgate_config::otp::{Algorithm, Generator, Secret};
use otpgate_config::record::VerifyPolicy;
use otpgate_config::{Answer, Store, StoreExt, UserFile, UserRecord};

const NOW: u64 = 1_800_000_000;

fn record_with_codes(n: usize) -> (UserRecord, Vec<String>) {
    let secret = Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
    let mut r = UserRecord::new_totp(secret, Algorithm::SHA1, 6, 30);
    let codes = r.new_backup_codes(n, 8).unwrap();
    (r, codes.iter().map(|c| c.to_string()).collect())
}

fn verify(c: &mut Criterion) {
    let (record, codes) = record_with_codes(10);
    let g = Generator::totp(
        &Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap(),
        Algorithm::SHA1,
        6,
        30,
    )
    .unwrap();
    let right = Answer::parse(g.code_at_step(NOW / 30).as_bytes()).unwrap();
    let wrong = Answer::parse(b"000000").unwrap();
    let backup = Answer::parse(codes[9].as_bytes()).unwrap();
    let policy = VerifyPolicy {
        totp_window: 1,
        hotp_lookahead: 10,
    };
    c.bench_function("verify right TOTP code (window ±1)", |b| {
        b.iter(|| black_box(record.clone()).verify(black_box(&right), NOW, policy))
    });
    c.bench_function("verify wrong code (window ±1 + 10 backup codes)", |b| {
        b.iter(|| black_box(record.clone()).verify(black_box(&wrong), NOW, policy))
    });
    c.bench_function("verify last of 10 backup codes", |b| {
        b.iter(|| black_box(record.clone()).verify(black_box(&backup), NOW, policy))
    });
}

fn file(c: &mut Criterion) {
    let (mut record, _) = record_with_codes(10);
    record.trust_host("203.0.113.7", "sshd", None, NOW + 86_400, NOW);
    let text = record.to_toml();
    let path = std::path::Path::new("user.toml");
    c.bench_function("parse user file", |b| {
        b.iter(|| UserRecord::from_toml(path, black_box(&text)).unwrap())
    });
    c.bench_function("serialize user file", |b| {
        b.iter(|| black_box(&record).to_toml())
    });

    // A whole locked update on disk: lock, re-read, write temp, fsync,
    // rename, fsync directory. Dominated by the two fsyncs.
    let dir = tempfile::tempdir().unwrap();
    let me = otpgate_config::Account::for_tests(
        "bench",
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
        "/nonexistent",
        &[],
    );
    let f = UserFile::new(dir.path().join("user.toml"), &me, true).unwrap();
    f.update(|r| {
        *r = Some(record.clone());
        Ok(())
    })
    .unwrap();
    let mut group = c.benchmark_group("disk");
    group.sample_size(20);
    group.bench_function("locked atomic update (2 fsyncs)", |b| {
        b.iter(|| {
            f.update(|r| {
                r.as_mut().unwrap().state.failures += 1;
                Ok(())
            })
            .unwrap()
        })
    });
    group.bench_function(
        "read user file again, unchanged (open + fstat, parse reused)",
        |b| b.iter(|| f.read().unwrap()),
    );
    group.finish();
}

fn cidr(c: &mut Criterion) {
    let list: Vec<String> = (0..1000u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .chain(std::iter::once("2001:db8::/32".to_string()))
        .collect();
    let nets = Networks::parse(&list).unwrap();
    c.bench_function("CIDR match, 1,000 networks, miss", |b| {
        b.iter(|| nets.contains(black_box("192.0.2.1")))
    });
    c.bench_function("CIDR match, 1,000 networks, last hit", |b| {
        b.iter(|| nets.contains(black_box("10.3.231.7")))
    });
    c.bench_function("parse 1,000 networks", |b| {
        b.iter(|| Networks::parse(black_box(&list)).unwrap())
    });
}

criterion_group!(benches, verify, file, cidr);
criterion_main!(benches);
