//! Attack (issue #12, item 6): each login that waited for a held lock and
//! timed out left a thread behind, blocked in `flock` until the lock frees
//! (a user can hold their own lock file forever). A process keeps at most
//! one such waiter. Alone in its binary: it counts the process's threads.

mod common;

use std::fs::File;
use std::time::Instant;

use common::*;
use otpgate_config::store::LOCK_TIMEOUT;
use otpgate_config::{Error, StoreExt};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Four logins of one process wait at once for a lock held elsewhere, then
/// two more: all time out, and at most one waiter thread is left.
#[test]
fn timed_out_lock_waits_leave_at_most_one_thread_behind() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    // Another process's lock: a separate open file description.
    let held = File::options()
        .read(true)
        .write(true)
        .open(dir.path().join("user.toml.lock"))
        .unwrap();
    held.lock().unwrap();
    let before = threads();
    for round in [4, 2] {
        let started = Instant::now();
        std::thread::scope(|s| {
            let waits: Vec<_> = (0..round)
                .map(|_| s.spawn(|| f.update(|_| Ok(()))))
                .collect();
            for w in waits {
                let r = w.join().unwrap();
                assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
            }
        });
        assert!(started.elapsed() >= LOCK_TIMEOUT);
        let left = threads() - before;
        assert!(
            left <= 1,
            "{left} threads left behind after round of {round}"
        );
    }
    // Once the lock frees, the waiter ends and a login takes it at once.
    held.unlock().unwrap();
    let started = Instant::now();
    f.update(|_| Ok(())).unwrap();
    assert!(started.elapsed() < LOCK_TIMEOUT / 2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(threads(), before);
}
