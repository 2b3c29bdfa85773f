//! Proof of a current code, for the changes that need one
//! (`Change::needs_proof`: new backup codes, disabling, replacing an
//! enrollment). The `otpgate` command asks for a code and has the daemon
//! check it; when a user who is not root gets a code accepted, the daemon
//! hands back a token, and the one change that follows must carry it. The
//! token is bound to the uid that asked and the account checked, works
//! once, and expires after [`LIFETIME`]; a client that skips the code (a
//! user's own program on the socket) has no token and gets `forbidden`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How long a token may wait for its change.
pub const LIFETIME: Duration = Duration::from_secs(120);
/// Tokens kept at most (each is a few dozen bytes); the oldest go first.
const MAX_TOKENS: usize = 4096;
/// Decimal digits of a token: about 106 bits.
const TOKEN_DIGITS: u8 = 32;

struct Issued {
    token: Zeroizing<String>,
    uid: u32,
    user: String,
    expires: Instant,
}

/// The tokens handed out and not yet used.
#[derive(Default)]
pub struct Proofs {
    tokens: Mutex<Vec<Issued>>,
}

impl Proofs {
    /// A new token for `uid` about `user`.
    pub fn issue(&self, uid: u32, user: &str) -> otpgate_config::Result<Zeroizing<String>> {
        let token = otpgate_config::backup::random_code(TOKEN_DIGITS)?;
        let now = Instant::now();
        let mut tokens = self.lock();
        tokens.retain(|t| t.expires > now);
        if tokens.len() >= MAX_TOKENS {
            // Issued in order: the first is the oldest.
            tokens.remove(0);
        }
        tokens.push(Issued {
            token: token.clone(),
            uid,
            user: user.to_string(),
            expires: now + LIFETIME,
        });
        Ok(token)
    }

    /// Uses `token` up: true when it was issued to `uid` about `user` and
    /// has not expired.
    pub fn redeem(&self, token: Option<&str>, uid: u32, user: &str) -> bool {
        let Some(token) = token else {
            return false;
        };
        let mut tokens = self.lock();
        // Compared in constant time, every entry looked at.
        let mut found = None;
        for (i, t) in tokens.iter().enumerate() {
            if bool::from(t.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(i);
            }
        }
        match found.map(|i| tokens.remove(i)) {
            Some(t) => t.uid == uid && t.user == user && t.expires > Instant::now(),
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Issued>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_for_its_uid_and_user() {
        let p = Proofs::default();
        let t = p.issue(1000, "alice").unwrap();
        assert!(!p.redeem(Some(&t), 1001, "alice"));
        let t = p.issue(1000, "alice").unwrap();
        assert!(!p.redeem(Some(&t), 1000, "bob"));
        let t = p.issue(1000, "alice").unwrap();
        assert!(p.redeem(Some(&t), 1000, "alice"));
        assert!(!p.redeem(Some(&t), 1000, "alice"), "used up");
        assert!(!p.redeem(None, 1000, "alice"));
        assert!(!p.redeem(Some("0"), 1000, "alice"));
    }
}
