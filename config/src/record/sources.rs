//! Wrong answers counted per source, for `forward_pass` (issue #12, item
//! 3). There the code is checked before any password, so a wrong answer
//! proves nothing about who sent it: counted on the account, four
//! connections of anyone who knows the user name locked the real user out.
//! Counted per source, such guesses lock only the source they came from.
//!
//! The table is bounded ([`MAX_SOURCES`]); when it is full the stalest
//! unlocked entry goes first. An attacker with many addresses therefore
//! gets more guesses than with one: the trade `forward_pass` makes, written
//! in the README.

use serde::{Deserialize, Serialize};

use super::{LockoutPolicy, UserRecord};
use crate::net;

/// Most sources kept per user.
pub const MAX_SOURCES: usize = 64;
/// The source of a login without a remote host.
const LOCAL: &str = "local";
/// Longest host name kept as a source (longer ones are cut).
const MAX_NAME: usize = 255;

/// `[[source_failure]]`: wrong answers from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFailures {
    /// [`source_key`] of the rhost.
    pub source: String,
    /// Wrong answers since the last lock or right code from this source.
    #[serde(default)]
    pub failures: u32,
    /// Unix time until which this source is refused; 0 = not locked.
    #[serde(default)]
    pub locked_until: u64,
    /// Unix time of the last wrong answer, to pick what to drop when full.
    #[serde(default)]
    pub last: u64,
}

/// The source a login counts against: the canonical address
/// ([`net::canonical_rhost`]), `name:<rhost>` for a host name (so a name
/// cannot pose as an address or as `local`), `local` without a remote host.
pub fn source_key(rhost: Option<&str>) -> String {
    match rhost.filter(|r| !r.is_empty()) {
        None => LOCAL.to_string(),
        Some(r) => net::canonical_rhost(r).unwrap_or_else(|| {
            let name: String = r.chars().take(MAX_NAME).collect();
            format!("name:{name}")
        }),
    }
}

impl UserRecord {
    /// `Some(until)` while `source` is locked out at `now`.
    pub fn source_locked_until(&self, source: &str, now: u64) -> Option<u64> {
        self.source_failures
            .iter()
            .find(|s| s.source == source && s.locked_until > now)
            .map(|s| s.locked_until)
    }

    /// Counts a wrong answer from `source`; returns the end of the lock if
    /// this one locked the source. The account itself is not touched.
    pub fn record_source_failure(
        &mut self,
        source: &str,
        now: u64,
        policy: LockoutPolicy,
    ) -> Option<u64> {
        let i = self.source_entry(source, now);
        let entry = &mut self.source_failures[i];
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if policy.after > 0 && entry.failures >= policy.after {
            entry.failures = 0;
            entry.locked_until = now.saturating_add(u64::from(policy.minutes) * 60);
            return Some(entry.locked_until);
        }
        None
    }

    /// Forgets `source`'s count after a right code from it.
    pub fn clear_source(&mut self, source: &str) {
        self.source_failures.retain(|s| s.source != source);
    }

    /// The index of `source`'s entry, made when missing; drops entries
    /// that hold nothing any more, then, when full, the stalest unlocked
    /// one (a locked one only when every entry is locked).
    fn source_entry(&mut self, source: &str, now: u64) -> usize {
        self.source_failures
            .retain(|s| s.failures > 0 || s.locked_until > now);
        if let Some(i) = self.source_failures.iter().position(|s| s.source == source) {
            return i;
        }
        if self.source_failures.len() >= MAX_SOURCES
            && let Some(stalest) = self
                .source_failures
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| (s.locked_until > now, s.last))
                .map(|(i, _)| i)
        {
            self.source_failures.remove(stalest);
        }
        self.source_failures.push(SourceFailures {
            source: source.to_string(),
            failures: 0,
            locked_until: 0,
            last: now,
        });
        self.source_failures.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::totp_record;

    const NOW: u64 = 1_700_000_010;
    const POLICY: LockoutPolicy = LockoutPolicy {
        after: 3,
        minutes: 15,
    };

    #[test]
    fn keys_are_canonical_addresses_names_or_local() {
        assert_eq!(source_key(None), "local");
        assert_eq!(source_key(Some("")), "local");
        assert_eq!(source_key(Some("::ffff:198.51.100.4")), "198.51.100.4");
        assert_eq!(source_key(Some("local")), "name:local");
        assert_eq!(source_key(Some(&"a".repeat(1000))).len(), 5 + MAX_NAME);
    }

    #[test]
    fn failures_lock_only_their_source_and_not_the_account() {
        let mut r = totp_record();
        assert_eq!(r.record_source_failure("198.51.100.4", NOW, POLICY), None);
        assert_eq!(r.record_source_failure("198.51.100.4", NOW, POLICY), None);
        let until = r.record_source_failure("198.51.100.4", NOW, POLICY);
        assert_eq!(until, Some(NOW + 900));
        assert_eq!(r.source_locked_until("198.51.100.4", NOW), until);
        assert_eq!(r.source_locked_until("198.51.100.4", NOW + 900), None);
        assert_eq!(r.source_locked_until("203.0.113.9", NOW), None);
        assert_eq!(r.locked_until(NOW), None, "the account is not locked");
        assert_eq!(r.state.failures, 0);
        // The file keeps it.
        let back = UserRecord::from_toml(Path::new("u.toml"), &r.to_toml()).unwrap();
        assert_eq!(back.source_locked_until("198.51.100.4", NOW), until);
        r.clear_source("198.51.100.4");
        assert!(r.source_failures.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_locked_sources_first() {
        let mut r = totp_record();
        let locked = POLICY.after;
        for _ in 0..locked {
            r.record_source_failure("198.51.100.1", NOW, POLICY);
        }
        for i in 0..200u64 {
            r.record_source_failure(&format!("10.0.{}.{}", i / 256, i % 256), NOW + i, POLICY);
        }
        assert_eq!(r.source_failures.len(), MAX_SOURCES);
        assert!(r.source_locked_until("198.51.100.1", NOW + 300).is_some());
        let p = Path::new("u.toml");
        assert!(UserRecord::from_toml(p, &r.to_toml()).is_ok());
        r.source_failures.push(r.source_failures[0].clone());
        assert!(
            UserRecord::from_toml(p, &r.to_toml()).is_err(),
            "over the bound"
        );
    }
}
