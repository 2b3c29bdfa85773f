//! The hardening suite (issue #6): the security rules of
//! docs/ARCHITECTURE.md (§6) turned into figures a reviewer can rerun. Each
//! scenario is a named test that prints its figures as `FIGURE <name>:
//! <text>` lines; the README's "Security figures" lists them.
//!
//! This file is its own test harness (`harness = false`): scenarios run one
//! after another (each one starts many processes itself, and the machine
//! may have only 2 cores), every log line the module sends is kept, and the
//! last scenario greps all of them for every secret and code the suite used.
//!
//! `cargo test -p otpgate-tests --test hardening [FILTER]` runs it; as root
//! (CI) every scenario runs, otherwise those that need root say SKIP.
#![forbid(unsafe_code)]

mod boundary;
mod brute;
mod crashes;
mod disk;
mod fuzz;
mod paths;
mod races;
mod supply;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use otpgate_tests::Harness;

static FIGURES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Prints (and keeps, for the summary) one figure.
pub fn figure(name: &str, text: impl AsRef<str>) {
    let line = format!("FIGURE {name}: {}", text.as_ref());
    println!("{line}");
    FIGURES.lock().expect("figures").push(line);
}

/// Remembers a secret or code the suite used: no log line may contain it.
pub fn secret(s: impl AsRef<str>) {
    SECRETS
        .lock()
        .expect("secrets")
        .push(s.as_ref().to_string());
}

/// Keeps every log line `h` received (call before the harness is dropped).
pub fn keep_log(h: &Harness) {
    LOG_LINES.lock().expect("log").extend(h.journal());
}

/// The log lines kept so far, and the secrets.
pub fn kept() -> (Vec<String>, Vec<String>) {
    (
        LOG_LINES.lock().expect("log").clone(),
        SECRETS.lock().expect("secrets").clone(),
    )
}

/// Runs `jobs` jobs on `workers` threads (each job usually starts a
/// process) and returns their results in job order.
pub fn pool<T: Send>(jobs: usize, workers: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..jobs).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.min(jobs) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= jobs {
                        break;
                    }
                    let r = job(i);
                    results.lock().expect("results")[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// A small deterministic PRNG (xorshift64*), seeded from the clock unless
/// `OTPGATE_HARDENING_SEED` is set; the seed is printed so a run repeats.
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("OTPGATE_HARDENING_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("{what}: seed {seed} (OTPGATE_HARDENING_SEED={seed} repeats it)");
        Rng(seed | 1)
    }

    /// A generator with a given seed (no line printed).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), near enough for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

type Test = (&'static str, fn());

/// Every scenario, in the order they run; the log check comes last.
const TESTS: &[Test] = &[
    (
        "races_a_backup_code_raced_by_100_logins_works_once",
        races::backup_code_raced_by_100_logins_works_once,
    ),
    (
        "races_a_totp_code_raced_by_100_logins_works_once",
        races::totp_code_raced_by_100_logins_works_once,
    ),
    (
        "races_100_concurrent_wrong_codes_count_exactly_lockout_after_failures",
        races::concurrent_wrong_codes_count_exactly_lockout_after_failures,
    ),
    (
        "races_2000_mixed_logins_keep_the_file_whole_and_the_counters_exact",
        races::mixed_logins_keep_the_file_whole_and_the_counters_exact,
    ),
    (
        "boundary_a_panic_in_authenticate_is_pam_system_err_and_the_process_survives",
        boundary::a_panic_in_authenticate_is_system_err_and_the_process_survives,
    ),
    (
        "boundary_a_panic_inside_an_update_releases_the_lock_and_changes_nothing",
        boundary::a_panic_inside_an_update_releases_the_lock_and_changes_nothing,
    ),
    (
        "boundary_a_release_build_rejects_the_debug_panic_argument",
        boundary::a_release_build_rejects_the_debug_panic_argument,
    ),
    (
        "crashes_kill_9_during_1000_updates_leaves_the_old_or_the_new_file",
        crashes::kill_9_during_updates_leaves_the_old_or_the_new_file,
    ),
    (
        "disk_a_full_disk_denies_logins_that_cannot_be_recorded",
        disk::a_full_disk_denies_logins_that_cannot_be_recorded,
    ),
    (
        "disk_a_read_only_mount_denies_logins_that_cannot_be_recorded",
        disk::a_read_only_mount_denies_logins_that_cannot_be_recorded,
    ),
    (
        "disk_a_failing_flush_denies_the_login_and_says_so",
        disk::a_failing_flush_denies_the_login_and_says_so,
    ),
    (
        "paths_symlinks_to_root_directories_never_make_root_write_there",
        paths::symlinks_to_root_directories_never_make_root_write_there,
    ),
    (
        "paths_a_swapper_racing_logins_never_makes_root_write_outside_the_home",
        paths::a_swapper_racing_logins_never_makes_root_write_outside_the_home,
    ),
    (
        "brute_force_the_default_limits_allow_40_guesses_an_hour",
        brute::the_default_limits_allow_40_guesses_an_hour,
    ),
    (
        "brute_force_after_lockout_after_failures_a_correct_code_is_refused",
        brute::after_lockout_after_failures_a_correct_code_is_refused,
    ),
    (
        "fuzz_a_million_generated_inputs_never_panic_a_parser",
        fuzz::a_million_generated_inputs_never_panic_a_parser,
    ),
    (
        "supply_chain_dependencies_counted_and_checked_offline",
        supply::dependencies_counted_and_checked_offline,
    ),
    (
        "logs_no_secret_or_code_in_any_log_line_of_the_suite",
        boundary::no_secret_or_code_in_any_log_line_of_the_suite,
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return;
    }
    // libtest-style: the first argument that is not a flag selects tests.
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let start = Instant::now();
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, test) in TESTS {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(test)) {
            Ok(()) => {
                println!("test {name} ... ok ({:.1?})", t.elapsed());
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED ({:.1?})", t.elapsed());
                failed.push(*name);
            }
        }
    }
    println!("\nhardening figures ({:.1?} in all):", start.elapsed());
    for f in FIGURES.lock().expect("figures").iter() {
        println!("  {f}");
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for f in &failed {
            println!("    {f}");
        }
    }
    println!("\n{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
