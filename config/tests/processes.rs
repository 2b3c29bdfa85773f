//! Separate processes racing through `UserFile::update`, as concurrent
//! logins do (sshd forks a process per connection; flock must serialize
//! them, not just threads of one process).
//!
//! This file is its own test harness: run without arguments it is the
//! parent and runs each scenario; run as `processes child <scenario> <dir>
//! [code]` it is one racing login.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use otpgate_config::record::{LockoutPolicy, VerifyPolicy};
use otpgate_config::{Answer, Store, StoreExt, UserFile, Verdict};
use otpgate_test_support::{failing_fdatasync_library, totp_record};

const PROCESSES: usize = 100;
const UPDATES_PER_PROCESS: usize = 20;
const POLICY: VerifyPolicy = VerifyPolicy {
    totp_window: 1,
    hotp_lookahead: 10,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        std::process::exit(child(&args[2], Path::new(&args[3]), args.get(4)));
    }
    // libtest-style filtering so `cargo test NAME` still selects.
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 4] = [
        (
            "hundred_processes_updating_one_file_lose_nothing",
            counters_are_exact,
        ),
        (
            "a_backup_code_raced_by_hundred_processes_works_once",
            backup_code_once,
        ),
        (
            "killed_mid_update_a_thousand_times_the_state_is_never_lost_or_torn",
            killed_mid_update,
        ),
        (
            "a_failing_fdatasync_fails_the_update_and_is_named",
            failing_fdatasync,
        ),
    ];
    let mut passed = 0;
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        test();
        println!("test {name} ... ok ({:.2?})", start.elapsed());
        passed += 1;
    }
    println!("\n{passed} passed, 0 failed");
}

/// One racing process. Exit 0 = did its work (for `backup`: accepted),
/// 1 = code refused, 2 = error.
fn child(scenario: &str, dir: &Path, code: Option<&String>) -> i32 {
    if scenario == "loop" {
        return update_until_killed(dir);
    }
    if scenario == "sync" {
        return update_once_expecting_failure(dir);
    }
    // Start together: wait for the parent's signal file.
    while !dir.join("go").exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let f = home_file(dir);
    let result = match scenario {
        "count" => (0..UPDATES_PER_PROCESS).try_for_each(|_| {
            f.update(|r| {
                let lockout = LockoutPolicy {
                    after: 0,
                    minutes: 1,
                };
                r.as_mut().expect("enrolled").record_failure(0, lockout);
                Ok(())
            })
        }),
        "backup" => {
            let answer = Answer::parse(code.expect("code").as_bytes()).expect("digits");
            match f.update(|r| {
                r.as_mut()
                    .expect("enrolled")
                    .verify(&answer, 1_700_000_000, POLICY)
            }) {
                Ok(Verdict::Accepted(_)) => Ok(()),
                Ok(_) => return 1,
                Err(e) => Err(e),
            }
        }
        _ => return 2,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child error: {e}");
            2
        }
    }
}

fn spawn_all(scenario: &str, dir: &Path, code: Option<&str>) -> Vec<i32> {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let mut c = Command::new(&exe);
            c.args(["child", scenario, dir.to_str().unwrap()]);
            if let Some(code) = code {
                c.arg(code);
            }
            c.stdout(Stdio::null()).spawn().unwrap()
        })
        .collect();
    std::fs::write(dir.join("go"), "").unwrap();
    children
        .into_iter()
        .map(|mut c| c.wait().unwrap().code().unwrap_or(-1))
        .collect()
}

fn counters_are_exact() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let codes = spawn_all("count", dir.path(), None);
    assert!(codes.iter().all(|&c| c == 0), "exit codes {codes:?}");
    let failures = f.read().unwrap().unwrap().state.failures as usize;
    assert_eq!(failures, PROCESSES * UPDATES_PER_PROCESS);
}

fn backup_code_once() {
    let dir = private_dir();
    let f = UserFile::new(dir.path().join("user.toml"), &me(), true).unwrap();
    let mut record = totp_record();
    let codes = record.new_backup_codes(10, 8).unwrap();
    f.update(|r| {
        *r = Some(record.clone());
        Ok(())
    })
    .unwrap();
    let exits = spawn_all("backup", dir.path(), Some(codes[5].as_str()));
    let accepted = exits.iter().filter(|&&c| c == 0).count();
    let refused = exits.iter().filter(|&&c| c == 1).count();
    assert_eq!(
        (accepted, refused),
        (1, PROCESSES - 1),
        "exit codes {exits:?}"
    );
    assert_eq!(f.read().unwrap().unwrap().backup.codes.len(), 9);
}

/// Updates until killed, printing the failure count each update left once
/// it returned: what a login would have acknowledged. Every 25th update
/// rewrites the record (new backup codes) so a kill also lands in a
/// rename, not only in an in-place slot write.
fn update_until_killed(dir: &Path) -> i32 {
    use std::io::Write;
    let f = home_file(dir);
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let written = f.update(|r| {
            let r = r.as_mut().expect("enrolled");
            if i % 25 == 24 {
                r.new_backup_codes(2, 8)?;
            }
            r.record_failure(
                0,
                LockoutPolicy {
                    after: 0,
                    minutes: 1,
                },
            );
            Ok(r.state.failures)
        });
        match written {
            Ok(n) => {
                if writeln!(out, "{n}").and_then(|()| out.flush()).is_err() {
                    return 2;
                }
            }
            Err(e) => {
                eprintln!("child error: {e}");
                return 2;
            }
        }
    }
    0
}

/// kill -9 lands at random points of an update, over 1,000+ updates: the
/// next reader always finds an intact record holding every acknowledged
/// update (at most one more: the one that finished but was not yet
/// printed).
fn killed_mid_update() {
    use std::io::Read;
    let dir = private_dir();
    let f = enrolled(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = 0u32;
    let mut kills = 0;
    while acknowledged < 1_000 || kills < 40 {
        let mut c = Command::new(&exe)
            .args(["child", "loop", dir.path().to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Let it run 1 to 40 ms, so the kill lands anywhere in an update.
        std::thread::sleep(std::time::Duration::from_micros(
            1_000 + u64::from(random_below(39_000)),
        ));
        let _ = c.kill();
        let _ = c.wait();
        kills += 1;
        let mut printed = String::new();
        c.stdout
            .take()
            .unwrap()
            .read_to_string(&mut printed)
            .unwrap();
        if let Some(last) = printed.lines().filter_map(|l| l.parse().ok()).next_back() {
            acknowledged = last;
        }
        let found = f.read().expect("an intact record after kill -9").unwrap();
        let on_disk = found.state.failures;
        assert!(
            on_disk == acknowledged || on_disk == acknowledged + 1,
            "after kill {kills}: {on_disk} on disk, {acknowledged} acknowledged"
        );
        acknowledged = on_disk;
    }
    println!("  {kills} kills over {acknowledged} updates");
}

fn random_below(n: u32) -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    u32::from_ne_bytes(b) % n
}

/// One login's update with `fdatasync` failing under it (the parent
/// preloads a library that makes it return EIO): exit 0 when the update
/// failed and said so, 1 when it claimed success.
fn update_once_expecting_failure(dir: &Path) -> i32 {
    let f = home_file(dir);
    let result = f.update(|r| {
        r.as_mut().expect("enrolled").record_failure(
            0,
            LockoutPolicy {
                after: 0,
                minutes: 1,
            },
        );
        Ok(())
    });
    match result {
        Err(e) if e.to_string().contains("fdatasync") => {
            eprintln!("refused as expected: {e}");
            0
        }
        Err(e) => {
            eprintln!("failed, but not naming fdatasync: {e}");
            2
        }
        Ok(()) => 1,
    }
}

/// A disk that fails the flush (EIO from fdatasync, as a dying disk or a
/// lost NFS server gives) must fail the update, so the login is denied
/// rather than accepted on a state that may not be on disk. The failure
/// is real: a preloaded library returns EIO from the `fdatasync` the store
/// calls, in a process of its own.
fn failing_fdatasync() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    f.update(|r| {
        r.as_mut().unwrap().record_failure(
            0,
            LockoutPolicy {
                after: 0,
                minutes: 1,
            },
        );
        Ok(())
    })
    .unwrap(); // the state file exists: the next login writes in place
    let shim_dir = private_dir();
    let Some(shim) = failing_fdatasync_library(shim_dir.path()) else {
        return;
    };
    let exit = Command::new(std::env::current_exe().unwrap())
        .args(["child", "sync", dir.path().to_str().unwrap()])
        .env("LD_PRELOAD", &shim)
        .status()
        .unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "the update must fail, naming fdatasync"
    );
}
