//! A primary with a synchronous standby, for the failover test (issue #16):
//! two throwaway clusters ([`Postgres`]), the second a streaming standby of
//! the first that the first waits for at every commit
//! (`synchronous_standby_names`, `synchronous_commit = on`).
//!
//! Why synchronous: with it, `COMMIT` returns only once the commit's WAL is
//! flushed on the standby, so every change a daemon saw committed (a backup
//! code taken out of a record, a TOTP step recorded) is on the standby
//! before the login is told "success", and promoting the standby cannot
//! bring a used code back. With asynchronous replication the last commits
//! before a crash of the primary can be missing on the standby, and the
//! codes they used work once more after the promotion.

use std::time::{Duration, Instant};

use crate::postgres::Postgres;

/// The standby's `application_name`, what the primary waits for.
pub const STANDBY: &str = "standby1";

/// A primary and its synchronous standby.
pub struct SyncPair {
    pub primary: Postgres,
    pub standby: Postgres,
}

impl SyncPair {
    /// Starts both and waits until the primary reports the standby as
    /// `sync`; `None` (after SKIP) without root or Debian's `postgresql`.
    pub fn start() -> Option<SyncPair> {
        let primary = Postgres::start()?;
        let standby = primary.start_standby(STANDBY);
        // Set after the base backup, so the standby does not copy it: once
        // promoted, alone, it must not wait for a standby of its own.
        primary.psql("postgres", "ALTER SYSTEM SET synchronous_commit = 'on'");
        let pair = SyncPair { primary, standby };
        pair.set_synchronous(true);
        Some(pair)
    }

    /// Makes commits wait for the standby (`synchronous_standby_names`
    /// naming it), or not (empty: asynchronous replication); waits until
    /// the standby is `sync` when asked for.
    pub fn set_synchronous(&self, on: bool) {
        let names = if on { STANDBY } else { "" };
        self.primary.psql(
            "postgres",
            &format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'"),
        );
        self.primary.psql("postgres", "SELECT pg_reload_conf()");
        if on {
            self.wait_sync(Duration::from_secs(20));
        }
    }

    /// The standby's `sync_state` as the primary sees it (empty while it is
    /// not connected).
    pub fn sync_state(&self) -> String {
        self.primary
            .psql(
                "postgres",
                &format!(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY}'"
                ),
            )
            .trim()
            .to_string()
    }

    fn wait_sync(&self, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let state = self.sync_state();
            if state == "sync" {
                return;
            }
            assert!(
                Instant::now() < end,
                "the standby is not a synchronous standby after {timeout:?} (sync_state {state:?})\n\
                 primary log:\n{}\nstandby log:\n{}",
                self.primary.log(),
                self.standby.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `[daemon]` lines of a host using this pair: both servers in one
    /// libpq connection string, and only the one that takes writes
    /// (`target_session_attrs=read-write`), so a daemon follows a promotion
    /// without a config change.
    pub fn daemon_keys(&self) -> String {
        format!(
            "backend = \"postgres\"\n\n[daemon.postgres]\n\
             url = \"host=127.0.0.1,127.0.0.1 port={},{} user=otpgate dbname=otpgate target_session_attrs=read-write\"\n\
             password_file = \"{}\"\n",
            self.primary.port,
            self.standby.port,
            self.primary.password_file().display()
        )
    }
}
