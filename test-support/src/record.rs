//! The test secret and the TOTP records tests build from it.

use otpgate_config::UserRecord;
use otpgate_config::otp::{Algorithm, Generator, Secret};

/// The RFC 6238 (appendix B) test secret, the ASCII of `12345678901234567890`.
pub const TEST_SECRET: &[u8] = b"12345678901234567890";

/// [`TEST_SECRET`] in base32, as a user types it (`otpgate enroll --secret`).
pub const TEST_SECRET_BASE32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// [`TEST_SECRET`] as a secret.
pub fn test_secret() -> Secret {
    Secret::from_bytes(TEST_SECRET.to_vec()).expect("the test secret is valid")
}

/// A TOTP record of [`TEST_SECRET`] with the defaults: SHA-1, 6 digits,
/// 30-second steps.
pub fn totp_record() -> UserRecord {
    UserRecord::new_totp(test_secret(), Algorithm::SHA1, 6, 30)
}

/// A TOTP record (30-second steps) for `secret` (base32), with `algorithm`
/// and `digits`.
pub fn totp_record_with(secret: &str, algorithm: Algorithm, digits: u8) -> UserRecord {
    UserRecord::new_totp(
        Secret::from_base32(secret).expect("a base32 secret"),
        algorithm,
        digits,
        30,
    )
}

/// The code of [`totp_record`] at Unix time `unix`, as typed at a prompt.
pub fn code_at(unix: u64) -> Vec<u8> {
    let g = Generator::totp(&test_secret(), Algorithm::SHA1, 6, 30).expect("generator");
    g.code_at_step(unix / 30).as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_the_rfc_6238_one_in_both_spellings() {
        let from_base32 = Secret::from_base32(TEST_SECRET_BASE32).unwrap();
        assert_eq!(from_base32.to_base32().as_str(), TEST_SECRET_BASE32);
        assert_eq!(test_secret().to_base32().as_str(), TEST_SECRET_BASE32);
        // RFC 6238, appendix B: SHA-1 at T = 59 s is 94287082 (8 digits).
        assert_eq!(code_at(59), b"287082");
    }

    #[test]
    fn both_builders_make_the_same_default_record() {
        assert_eq!(
            totp_record(),
            totp_record_with(TEST_SECRET_BASE32, Algorithm::SHA1, 6)
        );
    }
}
