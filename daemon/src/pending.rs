//! Codes sent to destinations being enrolled (`otpgate enroll email|sms`
//! through the daemon), held hashed (`verification::Pending`) until they
//! come back. A code typed back right marks the destination confirmed for
//! the uid that asked, and the `SetDestination` change of a user who is
//! not root needs that mark (used up by the change): a program of the
//! user's cannot name an address it does not read. Each entry takes at
//! most [`MAX_TRIES`] wrong codes and dies with its code's lifetime.

use std::sync::Mutex;

use otpgate_config::Answer;
use otpgate_config::channel::Kind;
use otpgate_config::verification::{Pending, PendingCheck};

/// Wrong codes an entry takes before it is dropped.
pub const MAX_TRIES: u32 = 3;
/// Entries kept at most; the oldest go first.
const MAX_ENTRIES: usize = 1024;

struct Entry {
    uid: u32,
    user: String,
    kind: Kind,
    to: String,
    pending: Pending,
    wrong: u32,
    confirmed: bool,
}

impl Entry {
    fn is(&self, uid: u32, user: &str, kind: Kind, to: &str) -> bool {
        self.uid == uid && self.user == user && self.kind == kind && self.to == to
    }
}

/// The codes sent and not confirmed or used yet.
#[derive(Default)]
pub struct Confirmations {
    entries: Mutex<Vec<Entry>>,
}

impl Confirmations {
    /// Keeps `pending`, the code just sent to `to` for `uid` about `user`,
    /// in place of any earlier one for the same destination.
    pub fn hold(&self, uid: u32, user: &str, kind: Kind, to: &str, pending: Pending, now: u64) {
        let mut entries = self.lock();
        entries.retain(|e| e.pending.expires() > now && !e.is(uid, user, kind, to));
        if entries.len() >= MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push(Entry {
            uid,
            user: user.to_string(),
            kind,
            to: to.to_string(),
            pending,
            wrong: 0,
            confirmed: false,
        });
    }

    /// Compares `code` with the code sent to `to`; right marks it
    /// confirmed, expired or too many wrong ones drop it.
    pub fn check(
        &self,
        uid: u32,
        user: &str,
        kind: Kind,
        to: &str,
        code: &str,
        now: u64,
    ) -> PendingCheck {
        let mut entries = self.lock();
        let Some(at) = entries
            .iter()
            .position(|e| e.is(uid, user, kind, to) && !e.confirmed)
        else {
            return PendingCheck::Wrong;
        };
        let answer = Answer::parse(code.as_bytes());
        let check = entries[at].pending.check(answer.as_ref(), now);
        match check {
            PendingCheck::Right => entries[at].confirmed = true,
            PendingCheck::Expired => {
                entries.remove(at);
            }
            PendingCheck::Wrong => {
                entries[at].wrong += 1;
                if entries[at].wrong >= MAX_TRIES {
                    entries.remove(at);
                }
            }
        }
        check
    }

    /// Uses up the confirmation of `to`: true when its code came back.
    pub fn take_confirmed(&self, uid: u32, user: &str, kind: Kind, to: &str) -> bool {
        let mut entries = self.lock();
        match entries
            .iter()
            .position(|e| e.is(uid, user, kind, to) && e.confirmed)
        {
            Some(at) => {
                entries.remove(at);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
