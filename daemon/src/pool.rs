//! The threads that serve connections. A connection is handed to an idle
//! worker; when none is idle a new one starts (the connection limits bound
//! how many: each connection holds a slot, `server.rs`). A worker idle for
//! [`IDLE`] ends unless it is one of the last [`KEEP`], so a burst of
//! logins leaves no crowd of threads behind. Starting a thread per
//! connection cost a login's two requests about a tenth of a millisecond
//! (clone, a stack, its teardown); a waiting worker costs one wake-up.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a worker waits for work before it may end.
const IDLE: Duration = Duration::from_secs(30);
/// Workers kept however long they are idle.
const KEEP: usize = 4;
/// Stack of a worker: a request needs a few tens of KiB.
const STACK: usize = 512 * 1024;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    idle: usize,
    workers: usize,
}

/// A pool of workers running jobs in arrival order.
#[derive(Clone, Default)]
pub struct Pool {
    inner: Arc<(Mutex<State>, Condvar)>,
}

impl Pool {
    /// Runs `job` on an idle worker, or on a new one when every worker is
    /// busy.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let mut state = self.lock();
        state.queue.push_back(Box::new(job));
        if state.idle >= state.queue.len() {
            self.inner.1.notify_one();
            return;
        }
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("worker".into())
            .stack_size(STACK)
            .spawn(move || pool.work());
        match started {
            Ok(_) => state.workers += 1,
            // The job waits for a worker that is busy now.
            Err(e) => crate::log::line(&format!("cannot start a worker thread: {e}")),
        }
    }

    /// Worker threads alive, busy or idle.
    pub fn workers(&self) -> usize {
        self.lock().workers
    }

    /// A worker: the next job, until idle too long.
    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // A panic ends the request (its connection closes, its slot
                // is freed by unwinding), not the worker.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    crate::log::line("a request panicked; its connection was closed");
                }
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .inner
                .1
                .wait_timeout(state, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.queue.is_empty() && state.workers > KEEP {
                state.workers -= 1;
                return;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A job that panicked released the lock long before; a poisoned
        // lock holds a usable queue.
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_and_busy_workers_do_not_hold_up_others() {
        let pool = Pool::default();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // One job blocks until the end; the others must still run.
        pool.run(move || {
            let _ = rx.recv();
        });
        for _ in 0..100 {
            let done = Arc::clone(&done);
            pool.run(move || {
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let start = std::time::Instant::now();
        while done.load(Ordering::SeqCst) < 100 {
            assert!(start.elapsed() < Duration::from_secs(10), "jobs stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = tx.send(());
        let workers = pool.lock().workers;
        assert!(workers < 100, "workers are reused: {workers}");
    }
}
