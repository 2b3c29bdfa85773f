//! kill -9 during state updates: a helper process loops
//! `UserFile::update` on root's central file and is killed with SIGKILL
//! at random moments, over and over. After every kill the file must parse
//! and be the last version the helper reported or the one after it (old or
//! new, never a mix); temp files a kill leaves behind must not stop the
//! next login.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otpgate_config::otp::Algorithm;
use otpgate_tests::*;

use crate::{Rng, figure, keep_log, secret};

const KILLS: usize = 1000;
const MIN_UPDATES: u64 = 1000;

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".root.toml.tmp-"))
        .collect()
}

pub fn kill_9_during_updates_leaves_the_old_or_the_new_file() {
    let h = need!(Harness::new("max_attempts = 1"));
    h.otp_service("");
    let secret_b32 = new_secret();
    let mut record = totp_record_with(&secret_b32, Algorithm::SHA1, 6);
    let codes = record.new_backup_codes(10, 8).expect("codes");
    secret(&secret_b32);
    codes.iter().for_each(|c| secret(c.as_str()));
    h.write_record("root", &record);
    let path = h.user_file("root");
    let dir = h.path("users");
    let helper = env!("CARGO_BIN_EXE_otpgate-hardening-helper");
    let mut rng = Rng::new("crashes");

    let start = Instant::now();
    let (mut kills, mut committed, mut last) = (0usize, 0u64, 0u64);
    let (mut was_old, mut was_new, mut temps_seen, mut before_ready) = (0, 0, 0, 0);
    // Calibrate: how long one update takes, to aim the kills at them.
    let mut window_us = 4000u64;
    while kills < KILLS || committed < MIN_UPDATES {
        let mut child = Command::new(helper)
            .arg("update-loop")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start helper");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read");
        if line.trim() != "ready" {
            before_ready += 1;
        }
        std::thread::sleep(Duration::from_micros(rng.below(window_us)));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "the helper stopped by itself: {status}");
        kills += 1;
        let mut reported = Vec::new();
        for l in out.lines() {
            let l = l.expect("read");
            reported.push(l.trim().parse::<u64>().expect("a step"));
        }
        // The helper counts on from the file, one by one.
        for (i, &n) in reported.iter().enumerate() {
            assert_eq!(n, last + 1 + i as u64, "{reported:?} after {last}");
        }
        let reported_last = reported.last().copied().unwrap_or(last);
        let r = record_at(&path, "root")
            .unwrap_or_else(|e| panic!("kill {kills}: the record does not read: {e}"))
            .expect("enrolled");
        let n = r.devices[0].last_step;
        assert!(
            n == reported_last || n == reported_last + 1,
            "kill {kills}: file holds {n}, the helper had reported {reported_last}"
        );
        // Every part of the record is of the same version.
        assert!(
            r.trusted_hosts.iter().all(|t| t.until == n),
            "kill {kills}: a mixed record"
        );
        assert_eq!(r.backup.codes, record.backup.codes);
        if n == reported_last {
            was_old += 1;
        } else {
            was_new += 1;
        }
        committed += n - last;
        last = n;
        if !temp_files(&dir).is_empty() {
            temps_seen += 1;
        }
        // Aim at about two updates' time after `ready`.
        if reported.is_empty() {
            window_us = (window_us * 5 / 4).min(50_000);
        } else if reported.len() > 4 {
            window_us = (window_us * 3 / 4).max(200);
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "too slow: {kills} kills, {committed} updates"
        );
    }
    let took = start.elapsed();
    // A stale temp file, as a kill between create and rename leaves it
    // (planted when the kills happened to leave none at the end).
    let leftover = temp_files(&dir);
    if leftover.is_empty() {
        let stale = dir.join(".root.toml.tmp-999999-deadbeef");
        write_private(&stale, b"version = 1\n[totp]\nsecret = \"trunc");
    }
    let stale_before = temp_files(&dir).len();
    // The next login works beside the leftovers: it writes the state file
    // in place and makes no temp file of its own.
    let run = h
        .login()
        .rhost("192.0.2.44")
        .answer(codes[0].as_str())
        .run();
    run.assert("PAM_SUCCESS");
    assert_eq!(temp_files(&dir).len(), stale_before);
    // The next rewrite by rename (here: a host trusted, which the state
    // file cannot express) removes them.
    let account = otpgate_config::Account::lookup("root").expect("root");
    let store = otpgate_config::UserFile::new(path.clone(), &account, false).expect("store");
    otpgate_config::StoreExt::update(&store, |r| {
        let at = now();
        r.as_mut()
            .expect("enrolled")
            .trust_host("192.0.2.45", "sshd", None, at + 60, at);
        Ok(())
    })
    .expect("rewrite");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    let after = h.record("root");
    assert_eq!(after.devices[0].last_step, last);
    assert_eq!(after.backup.codes.len(), 9);
    keep_log(&h);
    figure(
        "crashes.kill9",
        format!(
            "{kills} SIGKILLs during {committed} committed updates ({took:.1?}): the file parsed after every kill and held the old version {was_old} times, the new one {was_new} times, never a mix; {temps_seen} kills left a temp file; the next login succeeded beside {stale_before} stale temp file(s), which the next rewrite removed{}",
            if before_ready > 0 {
                format!(" ({before_ready} killed before start)")
            } else {
                String::new()
            }
        ),
    );
}
