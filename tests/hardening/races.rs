//! Races through the real module: every login is its own `pam_driver`
//! process (real libpam, `pam_start_confdir`), as sshd forks one process
//! per connection, so only the store's `flock` can serialize them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use otpgate_config::UserRecord;
use otpgate_config::otp::{Algorithm, Generator, Secret, time_step};
use otpgate_tests::*;

use crate::{Rng, figure, keep_log, pool, secret};

const RHOST: &str = "198.51.100.77";

/// A harness (root's central file, its own service) with `config`.
fn harness(config: &str) -> Option<Harness> {
    let h = Harness::new(config)?;
    h.otp_service("");
    Some(h)
}

/// Enrolls root with a fresh TOTP secret and `backups` backup codes; the
/// secret and the codes go to the suite's list of things never to log.
fn enroll(h: &Harness, backups: usize) -> (String, Vec<String>) {
    let secret_b32 = new_secret();
    let mut record = totp_record_with(&secret_b32, Algorithm::SHA1, 6);
    let codes: Vec<String> = if backups > 0 {
        record
            .new_backup_codes(backups, 8)
            .expect("backup codes")
            .iter()
            .map(|c| c.to_string())
            .collect()
    } else {
        Vec::new()
    };
    h.write_record("root", &record);
    secret(&secret_b32);
    codes.iter().for_each(secret);
    (secret_b32, codes)
}

/// Starts `n` logins at once (all threads released by one barrier) and
/// returns their transcripts, draining the log socket meanwhile so no
/// line is lost to a full socket queue.
fn race(h: &Harness, n: usize, answer: impl Fn(usize) -> String + Sync) -> Vec<Run> {
    let barrier = Barrier::new(n);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let drain = s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                h.log();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let runs: Vec<Run> = (0..n)
            .map(|i| {
                let (barrier, answer) = (&barrier, &answer);
                s.spawn(move || {
                    let a = answer(i);
                    barrier.wait();
                    h.login().rhost(RHOST).answer(a).run()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("login thread"))
            .collect();
        done.store(true, Ordering::SeqCst);
        drain.join().expect("drain");
        runs
    })
}

/// Denials that were checked (wrong or replayed code, the last of them
/// locking the account) and denials refused as already locked.
fn refusals(runs: &[Run]) -> (usize, usize) {
    let denied: Vec<&Run> = runs.iter().filter(|r| r.result != "PAM_SUCCESS").collect();
    let checked = denied
        .iter()
        .filter(|r| {
            said(r, "Wrong code")
                || said(r, "That code was already used")
                || said(r, "Too many wrong codes")
        })
        .count();
    let locked = denied
        .iter()
        .filter(|r| !said(r, "Too many") && said(r, "Account locked until"))
        .count();
    assert_eq!(checked + locked, denied.len(), "{denied:#?}");
    (checked, locked)
}

fn count(runs: &[Run], result: &str) -> usize {
    runs.iter().filter(|r| r.result == result).count()
}

/// Denied logins: refused (`PAM_AUTH_ERR`) or refused as locked out
/// (`PAM_MAXTRIES`, "do not try again").
fn denied(runs: &[Run]) -> usize {
    count(runs, "PAM_AUTH_ERR") + count(runs, "PAM_MAXTRIES")
}

fn said(run: &Run, text: &str) -> bool {
    run.messages().iter().any(|m| m.contains(text))
}

pub fn backup_code_raced_by_100_logins_works_once() {
    let h = need!(harness("max_attempts = 1"));
    let (_, codes) = enroll(&h, 10);
    let code = codes[3].clone();
    let t = Instant::now();
    let runs = race(&h, 100, |_| code.clone());
    let took = t.elapsed();
    let ok = count(&runs, "PAM_SUCCESS");
    let refused = denied(&runs);
    assert_eq!(ok, 1, "{runs:#?}");
    assert_eq!(refused, 99, "{runs:#?}");
    // With the default lockout_after = 10 the ten wrong tries lock the
    // account and the rest are refused as locked.
    let (wrong, locked) = refusals(&runs);
    assert_eq!((wrong, locked), (10, 89), "{runs:#?}");
    let record = h.record("root");
    assert_eq!(record.backup.codes.len(), 9);
    assert!(otpgate_config::backup::find(&record.backup.codes, &code).is_none());
    keep_log(&h);
    figure(
        "races.backup_code",
        format!(
            "100 concurrent logins (processes) with one backup code: {ok} accepted, {refused} refused ({wrong} checked as wrong, locking the account at the default lockout_after=10, {locked} refused as locked), code burned ({took:.1?})"
        ),
    );
}

pub fn totp_code_raced_by_100_logins_works_once() {
    let h = need!(harness("max_attempts = 1"));
    let (secret_b32, _) = enroll(&h, 0);
    avoid_step_edge();
    let at = now();
    let code = totp_at(&secret_b32, at);
    secret(&code);
    let t = Instant::now();
    let runs = race(&h, 100, |_| code.clone());
    let took = t.elapsed();
    let ok = count(&runs, "PAM_SUCCESS");
    assert_eq!(ok, 1, "{runs:#?}");
    assert_eq!(denied(&runs), 99, "{runs:#?}");
    assert_eq!(h.record("root").devices[0].last_step, time_step(at, 30));
    let (replayed, locked) = refusals(&runs);
    assert_eq!((replayed, locked), (10, 89), "{runs:#?}");
    keep_log(&h);
    figure(
        "races.totp_code",
        format!(
            "100 concurrent logins (processes) with one TOTP code: {ok} accepted, 99 refused ({replayed} checked as replays, locking the account at lockout_after=10, {locked} refused as locked) ({took:.1?})"
        ),
    );
}

pub fn concurrent_wrong_codes_count_exactly_lockout_after_failures() {
    let h = need!(harness(
        "max_attempts = 1\nlockout_after = 10\nlockout_minutes = 15"
    ));
    let (secret_b32, _) = enroll(&h, 0);
    avoid_step_edge();
    let at = now();
    let wrong = wrong_codes(&secret_b32, at, 100, &mut Rng::new("races.lockout"));
    let runs = race(&h, 100, |i| wrong[i].clone());
    let wrong_counted = runs.iter().filter(|r| said(r, "Wrong code.")).count();
    let locking = runs
        .iter()
        .filter(|r| said(r, "Too many wrong codes"))
        .count();
    let refused_locked = runs
        .iter()
        .filter(|r| !said(r, "Too many") && said(r, "Account locked until"))
        .count();
    assert_eq!(denied(&runs), 100, "{runs:#?}");
    assert_eq!(wrong_counted, 9, "{runs:#?}");
    assert_eq!(locking, 1, "{runs:#?}");
    assert_eq!(refused_locked, 90, "{runs:#?}");
    let state = h.record("root").state;
    assert_eq!(state.failures, 0);
    assert!(
        (at + 900..=now() + 900).contains(&state.locked_until),
        "{state:?}"
    );
    // Locked: the right code is refused too, without a prompt.
    let code = totp_at(&secret_b32, now());
    secret(&code);
    let run = h.login().rhost(RHOST).answer(&code).run();
    run.assert("PAM_MAXTRIES");
    assert!(run.prompts().is_empty() && said(&run, "Account locked until"));
    keep_log(&h);
    figure(
        "races.lockout",
        format!(
            "100 concurrent wrong-code logins, lockout_after=10: {} checked (9 wrong + 1 locking), {refused_locked} refused as locked; then the right code is refused",
            wrong_counted + locking
        ),
    );
}

/// `n` six-digit codes (and some junk answers) that match no step near `at`.
pub fn wrong_codes(secret_b32: &str, at: u64, n: usize, rng: &mut Rng) -> Vec<String> {
    let secret = Secret::from_base32(secret_b32).expect("secret");
    let g = Generator::totp(&secret, Algorithm::SHA1, 6, 30).expect("generator");
    let step = time_step(at, 30);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let code = format!("{:06}", rng.below(1_000_000));
        // Valid steps during the whole test (minutes at most) are refused.
        if g.matching_steps(&code, step - 4, step + 20).is_empty() {
            out.push(code);
        }
    }
    out
}

/// What one login of the mixed race was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Backup code `i` (each is tried twice).
    Backup(usize),
    /// The TOTP code of step `s - 1 + k`.
    Totp(u64),
    Wrong,
    Junk,
}

pub fn mixed_logins_keep_the_file_whole_and_the_counters_exact() {
    const LOGINS: usize = 2000;
    const CONCURRENCY: usize = 64;
    const BACKUPS: usize = 100;
    const TOTP_EACH: usize = 100;
    // lockout_after = 0: every one of the 2,000 logins is checked under the
    // lock, so every counter can be added up (the lockout itself is raced
    // exactly in `races.lockout`).
    let h = need!(harness("max_attempts = 1\nlockout_after = 0"));
    let (secret_b32, codes) = enroll(&h, BACKUPS);
    avoid_step_edge();
    let at = now();
    let step = time_step(at, 30);
    let totp: Vec<String> = (0..3)
        .map(|k| totp_at(&secret_b32, (step - 1 + k) * 30))
        .collect();
    totp.iter().for_each(secret);
    let mut rng = Rng::new("races.mixed");
    let mut kinds: Vec<Kind> = Vec::with_capacity(LOGINS);
    for i in 0..BACKUPS {
        kinds.extend([Kind::Backup(i), Kind::Backup(i)]);
    }
    for k in 0..3 {
        kinds.extend(std::iter::repeat_n(Kind::Totp(k), TOTP_EACH));
    }
    let junk_n = 100;
    kinds.extend(std::iter::repeat_n(Kind::Junk, junk_n));
    kinds.resize(LOGINS, Kind::Wrong);
    // Shuffle (Fisher-Yates).
    for i in (1..kinds.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        kinds.swap(i, j);
    }
    let wrong = wrong_codes(&secret_b32, at, LOGINS, &mut rng);
    let junk = [
        "",
        "abcdef",
        "12345a",
        "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4",
        "--",
        "0000000000000000000000000000000000000000000000000000000000000000000",
    ];
    let answer = |i: usize| -> String {
        match kinds[i] {
            Kind::Backup(b) => codes[b].clone(),
            Kind::Totp(k) => totp[k as usize].clone(),
            Kind::Wrong => wrong[i].clone(),
            Kind::Junk => junk[i % junk.len()].to_string(),
        }
    };

    let path = h.user_file("root");
    let parses = AtomicUsize::new(0);
    let bad_parse: Mutex<Option<String>> = Mutex::new(None);
    let check_file = || match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| UserRecord::from_toml(&path, &t).map_err(|e| e.to_string()))
    {
        Ok(_) => {
            parses.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => *bad_parse.lock().expect("lock") = Some(e),
    };
    let done = AtomicBool::new(false);
    let t = Instant::now();
    let runs: Vec<Run> = std::thread::scope(|s| {
        // A reader parsing the file as fast as it can, as a login would.
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                check_file();
                h.log();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let runs = pool(LOGINS, CONCURRENCY, |i| {
            let run = h.login().rhost(RHOST).answer(answer(i)).run();
            // ... and after every login.
            check_file();
            run
        });
        done.store(true, Ordering::SeqCst);
        runs
    });
    let took = t.elapsed();
    assert_eq!(*bad_parse.lock().expect("lock"), None);

    // Every login ended in success or a plain denial: no lock timeouts, no
    // I/O errors.
    let ok = count(&runs, "PAM_SUCCESS");
    let denied = count(&runs, "PAM_AUTH_ERR");
    assert_eq!(ok + denied, LOGINS, "other results: {:#?}", {
        runs.iter()
            .filter(|r| r.result != "PAM_SUCCESS" && r.result != "PAM_AUTH_ERR")
            .take(3)
            .collect::<Vec<_>>()
    });
    // Which logins succeeded, by kind.
    let mut backup_ok = vec![0usize; BACKUPS];
    let mut totp_ok = [0usize; 3];
    for (i, run) in runs.iter().enumerate() {
        if run.result != "PAM_SUCCESS" {
            continue;
        }
        match kinds[i] {
            Kind::Backup(b) => {
                assert!(said(run, "Backup code used"), "{run:#?}");
                backup_ok[b] += 1;
            }
            Kind::Totp(k) => totp_ok[k as usize] += 1,
            other => panic!("a {other:?} answer succeeded: {run:#?}"),
        }
    }
    // Each backup code exactly once; each TOTP step at most once, and the
    // steps accepted are what the file remembers.
    assert!(backup_ok.iter().all(|&n| n == 1), "{backup_ok:?}");
    assert!(totp_ok.iter().all(|&n| n <= 1), "{totp_ok:?}");
    let totp_accepted: usize = totp_ok.iter().sum();
    assert!(totp_accepted >= 1, "no TOTP code was accepted");
    let record = h.record("root");
    assert!(record.backup.codes.is_empty(), "{:?}", record.backup.codes);
    let highest = (0..3).rev().find(|&k| totp_ok[k] == 1).expect("one") as u64;
    assert_eq!(record.devices[0].last_step, step - 1 + highest);
    // Failures: never more than the denials, never a lock (lockout off).
    let failures = record.state.failures as usize;
    assert!(failures <= denied, "{failures} > {denied}");
    assert_eq!(record.state.locked_until, 0);
    // One more wrong code counts exactly one more failure.
    let extra = wrong_codes(&secret_b32, now(), 1, &mut rng).remove(0);
    h.login().answer(&extra).run().assert("PAM_AUTH_ERR");
    assert_eq!(h.record("root").state.failures as usize, failures + 1);
    keep_log(&h);
    figure(
        "races.mixed",
        format!(
            "{LOGINS} mixed concurrent logins ({CONCURRENCY} at a time; {} backup, {} TOTP, {} wrong, {junk_n} junk): {ok} accepted + {denied} refused = {LOGINS}; backup codes burned {BACKUPS} = backup successes {BACKUPS}; TOTP steps accepted {totp_accepted} (each once, last_step = highest); file parsed {} times, never broken; failure counter {failures} <= {denied} ({took:.1?}, {:.1} logins/s)",
            2 * BACKUPS,
            3 * TOTP_EACH,
            LOGINS - 2 * BACKUPS - 3 * TOTP_EACH - junk_n,
            parses.load(Ordering::SeqCst),
            LOGINS as f64 / took.as_secs_f64()
        ),
    );
}
