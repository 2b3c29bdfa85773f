//! Secrets the daemon made for enrollments (`new-secret`), kept until the
//! enrollment is saved (`enroll-issued`) or [`LIFETIME`] passes. The
//! secret leaves the daemon once, for the enrolling user's QR code; the
//! enrollment that saves it names no secret, only which peer and account
//! it was issued to, and the daemon checks the confirmation code itself.

use std::sync::Mutex;

use otpgate_config::UserRecord;

/// Seconds an issued secret waits for its enrollment (scanning a QR code
/// and typing one code takes a minute or two).
pub const LIFETIME: u64 = 15 * 60;
/// Secrets kept at most; the oldest go first.
const MAX_ISSUED: usize = 1024;

struct Issued {
    uid: u32,
    user: String,
    record: UserRecord,
    expires: u64,
}

/// The secrets issued and not saved yet.
#[derive(Default)]
pub struct IssuedSecrets {
    issued: Mutex<Vec<Issued>>,
}

impl IssuedSecrets {
    /// Keeps `record` (a fresh enrollment) for `uid` enrolling `user`, in
    /// place of any earlier one.
    pub fn keep(&self, uid: u32, user: &str, record: UserRecord, now: u64) {
        let mut issued = self.lock();
        issued.retain(|i| i.expires > now && !(i.uid == uid && i.user == user));
        if issued.len() >= MAX_ISSUED {
            issued.remove(0);
        }
        issued.push(Issued {
            uid,
            user: user.to_string(),
            record,
            expires: now.saturating_add(LIFETIME),
        });
    }

    /// The enrollment issued to `uid` for `user`, taken: it is saved once.
    pub fn take(&self, uid: u32, user: &str, now: u64) -> Option<UserRecord> {
        let mut issued = self.lock();
        let at = issued.iter().position(|i| i.uid == uid && i.user == user)?;
        let entry = issued.remove(at);
        (entry.expires > now).then_some(entry.record)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Issued>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }
}
