//! The test record for this crate's own unit tests.
//!
//! Every other test takes it from `otpgate-test-support`. Unit tests cannot:
//! they build this crate a second time (with `cfg(test)`), and the support
//! crate's `UserRecord` is the one of the normal build, another type here. So
//! the record is rebuilt from the support crate's secret with this build's
//! types; the secret and the defaults stay the support crate's.

use otpgate_test_support::TEST_SECRET;

use crate::UserRecord;
use crate::otp::{Algorithm, Generator, Secret};

/// The support crate's `test_secret()`, as this build's type.
pub(crate) fn secret() -> Secret {
    Secret::from_bytes(TEST_SECRET.to_vec()).unwrap()
}

/// The support crate's `totp_record()`: SHA-1, 6 digits, 30-second steps.
pub(crate) fn totp_record() -> UserRecord {
    UserRecord::new_totp(secret(), Algorithm::SHA1, 6, 30)
}

/// The code of [`totp_record`] at Unix time `unix`, as typed at a prompt.
pub(crate) fn code_at(unix: u64) -> Vec<u8> {
    let g = Generator::totp(&secret(), Algorithm::SHA1, 6, 30).unwrap();
    g.code_at_step(unix / 30).as_bytes().to_vec()
}

/// A small deterministic random source for the fuzz tests (xorshift64).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (> 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Up to `max` bytes of noise.
    pub(crate) fn noise(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// One to `edits` random edits of `bytes`: a byte changed, the rest cut
    /// off, or a byte put in.
    pub(crate) fn mutate(&mut self, bytes: &mut Vec<u8>, edits: usize) {
        for _ in 0..1 + self.below(edits) {
            if bytes.is_empty() {
                return;
            }
            let at = self.below(bytes.len());
            match self.below(3) {
                0 => bytes[at] = self.next() as u8,
                1 => bytes.truncate(at),
                _ => bytes.insert(at, self.next() as u8),
            }
        }
    }
}

#[test]
fn the_same_code_as_the_support_crate() {
    for unix in [0, 59, 1_700_000_010] {
        assert_eq!(code_at(unix), otpgate_test_support::code_at(unix));
    }
    assert_eq!(
        totp_record().to_toml(),
        otpgate_test_support::totp_record().to_toml()
    );
}
