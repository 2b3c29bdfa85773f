//! A clock tests set by hand.

use std::cell::Cell;
use std::time::Duration;

/// A clock a test sets by hand: a wall time (seconds since 1970, or none: a
/// clock before the epoch) and a monotonic reading, independent of each
/// other, both in `Cell`s so the test moves them while the code under test
/// holds a shared reference. Starts at no wall time and a monotonic zero.
///
/// The login flow's `Clock` trait is `pam-module`'s (this crate must not
/// depend on it); each user implements it by forwarding to the methods of
/// the same names.
#[derive(Debug, Default)]
pub struct FakeClock {
    unix: Cell<Option<u64>>,
    monotonic: Cell<Duration>,
}

impl FakeClock {
    /// A clock at `unix` seconds since 1970.
    pub fn at(unix: u64) -> FakeClock {
        let clock = FakeClock::default();
        clock.set_now(unix);
        clock
    }

    /// Seconds since 1970; `None` when the clock is before the epoch.
    pub fn unix_now(&self) -> Option<u64> {
        self.unix.get()
    }

    /// The wall time; panics when the clock is set before the epoch.
    #[track_caller]
    pub fn now(&self) -> u64 {
        self.unix.get().expect("the fake clock is set before 1970")
    }

    /// Sets the wall time to `unix` seconds since 1970.
    pub fn set_now(&self, unix: u64) {
        self.set_unix_now(Some(unix));
    }

    /// Sets the wall time; `None`: a clock before the epoch.
    pub fn set_unix_now(&self, unix: Option<u64>) {
        self.unix.set(unix);
    }

    /// The monotonic reading.
    pub fn monotonic(&self) -> Duration {
        self.monotonic.get()
    }

    /// Moves the monotonic reading on by `by` (time spent at a prompt); the
    /// wall time stays where the test set it.
    pub fn advance_monotonic(&self, by: Duration) {
        self.monotonic.set(self.monotonic.get() + by);
    }

    /// `HH:MM` of `unix` in UTC: tests do not depend on the machine's zone.
    pub fn local_hhmm(&self, unix: u64) -> String {
        format!("{:02}:{:02} UTC", unix / 3600 % 24, unix / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_and_monotonic_time_move_separately() {
        let c = FakeClock::at(1_700_000_010);
        c.advance_monotonic(Duration::from_secs(61));
        assert_eq!(
            (c.now(), c.monotonic()),
            (1_700_000_010, Duration::from_secs(61))
        );
        c.set_unix_now(None);
        assert_eq!(c.unix_now(), None);
        assert_eq!(c.local_hhmm(1_700_000_010), "22:13 UTC");
    }
}
