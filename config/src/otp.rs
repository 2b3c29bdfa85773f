//! One-time passwords: secrets, RFC 6238 TOTP and RFC 4226 HOTP checks,
//! secret generation and `otpauth://` URIs.
//!
//! The time is always a parameter: nothing here reads the clock, so the
//! module decides once per login what "now" is and tests are exact.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// Fewest secret bytes accepted: 80 bits, what old Google Authenticator
/// files hold. New secrets are 160 bits.
pub const MIN_SECRET_BYTES: usize = 10;
/// Most secret bytes accepted (a SHA-512 block).
pub const MAX_SECRET_BYTES: usize = 128;
/// Default size of a generated secret: 160 bits, as RFC 4226 recommends.
pub const DEFAULT_SECRET_BYTES: usize = 20;

/// The HMAC hash of a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Algorithm {
    #[default]
    SHA1,
    SHA256,
    SHA512,
}

impl Algorithm {
    fn to_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
            Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
            Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
        }
    }

    /// The name used in files and URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::SHA1 => "SHA1",
            Algorithm::SHA256 => "SHA256",
            Algorithm::SHA512 => "SHA512",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Ok(Algorithm::SHA1),
            "SHA256" => Ok(Algorithm::SHA256),
            "SHA512" => Ok(Algorithm::SHA512),
            _ => Err(Error::BadSecret {
                message: format!("unknown algorithm `{s}` (SHA1, SHA256 or SHA512)"),
            }),
        }
    }
}

/// A shared secret. Kept as raw bytes that are wiped on drop; written to
/// files as unpadded RFC 4648 base32. `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps raw bytes, checking the length.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_SECRET_BYTES || bytes.len() > MAX_SECRET_BYTES {
            return Err(Error::BadSecret {
                message: format!(
                    "{} bits; between {} and {} bits are accepted",
                    bytes.len() * 8,
                    MIN_SECRET_BYTES * 8,
                    MAX_SECRET_BYTES * 8
                ),
            });
        }
        Ok(Secret(bytes))
    }

    /// A fresh secret of `len` bytes from the operating system's CSPRNG.
    pub fn generate(len: usize) -> Result<Self> {
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        getrandom::fill(&mut bytes).map_err(|source| Error::Random {
            what: "a secret",
            source,
        })?;
        Secret::from_bytes(bytes.to_vec())
    }

    /// Decodes base32 as people type it: any case, spaces, dashes and `=`
    /// padding ignored.
    pub fn from_base32(text: &str) -> Result<Self> {
        Secret::from_bytes(base32_decode(text)?.to_vec())
    }

    /// Unpadded upper-case base32.
    pub fn to_base32(&self) -> Zeroizing<String> {
        base32_encode(&self.0)
    }

    /// Base32 in groups of four, for typing into an app by hand.
    pub fn to_base32_grouped(&self) -> Zeroizing<String> {
        let plain = self.to_base32();
        let mut out = Zeroizing::new(String::with_capacity(plain.len() * 5 / 4 + 1));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([{} bytes redacted])", self.0.len())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base32())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Secret::from_base32(&text).map_err(serde::de::Error::custom)
    }
}

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(5) * 8));
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    buffer.zeroize();
    out
}

fn base32_decode(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 5 / 8));
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    let mut padding = false;
    for c in text.bytes() {
        let value = match c {
            b' ' | b'-' | b'\t' => continue,
            b'=' => {
                padding = true;
                continue;
            }
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => {
                return Err(Error::BadSecret {
                    message: "not base32 (letters A-Z and digits 2-7)".into(),
                });
            }
        };
        if padding {
            return Err(Error::BadSecret {
                message: "base32 text after `=` padding".into(),
            });
        }
        buffer = (buffer << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    buffer.zeroize();
    Ok(out)
}

/// Code lengths RFC 4226 allows.
pub const DIGITS: std::ops::RangeInclusive<u64> = 6..=8;

/// TOTP periods accepted, in seconds.
pub const PERIOD: std::ops::RangeInclusive<u64> = 1..=3600;

/// Validates the code length ([`DIGITS`]).
pub fn check_digits(digits: u8) -> Result<()> {
    Error::check_range("", "digits", digits, DIGITS)
}

/// Validates a TOTP period in seconds ([`PERIOD`]).
pub fn check_period(period: u64) -> Result<()> {
    Error::check_range("", "period", period, PERIOD)
}

/// A code generator for one secret. Checking never panics: digits and
/// period are validated when the generator is built.
pub struct Generator {
    inner: totp_rs::Totp,
}

impl Generator {
    /// A TOTP generator with `period`-second steps.
    pub fn totp(secret: &Secret, algorithm: Algorithm, digits: u8, period: u64) -> Result<Self> {
        check_digits(digits)?;
        check_period(period)?;
        Ok(Generator {
            inner: Self::build(secret, algorithm, digits, period),
        })
    }

    /// An HOTP generator: the "time" is the counter itself.
    pub fn hotp(secret: &Secret, algorithm: Algorithm, digits: u8) -> Result<Self> {
        check_digits(digits)?;
        Ok(Generator {
            inner: Self::build(secret, algorithm, digits, 1),
        })
    }

    fn build(secret: &Secret, algorithm: Algorithm, digits: u8, step: u64) -> totp_rs::Totp {
        // build_noncompliant: 80-bit Google Authenticator secrets are below
        // totp-rs's RFC minimum; the other checks are ours above.
        totp_rs::Builder::new()
            .with_algorithm(algorithm.to_totp_rs())
            .with_digits(digits)
            .with_skew(0)
            .with_step_duration(step)
            .with_secret(secret.as_bytes().to_vec())
            .build_noncompliant()
    }

    /// The code for counter (HOTP) or time step (TOTP) `step`.
    pub fn code_at_step(&self, step: u64) -> Zeroizing<String> {
        Zeroizing::new(
            self.inner
                .generate(step.saturating_mul(self.inner.step()))
                .to_string(),
        )
    }

    /// Every step in `first..=last` whose code equals `code`, compared in
    /// constant time; all steps are computed, whatever matches.
    pub fn matching_steps(&self, code: &str, first: u64, last: u64) -> Vec<u64> {
        let mut found = Vec::new();
        if code.len() != usize::from(self.inner.digits()) {
            return found;
        }
        for step in first..=last {
            let expected = self.code_at_step(step);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                found.push(step);
            }
        }
        found
    }
}

/// The TOTP time step that `now` falls in.
pub fn time_step(now: u64, period: u64) -> u64 {
    now / period.max(1)
}

/// What goes into an `otpauth://` URI besides the secret.
#[derive(Debug, Clone)]
pub struct UriParams<'a> {
    pub issuer: &'a str,
    pub account: &'a str,
    pub algorithm: Algorithm,
    pub digits: u8,
    /// `Some(period)` for TOTP.
    pub period: Option<u64>,
    /// `Some(counter)` for HOTP.
    pub counter: Option<u64>,
}

/// Builds a Key URI (Google Authenticator's format):
/// `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=...&digits=...&period=...`.
pub fn otpauth_uri(secret: &Secret, p: &UriParams<'_>) -> Zeroizing<String> {
    let kind = if p.counter.is_some() { "hotp" } else { "totp" };
    let label = if p.issuer.is_empty() {
        percent_encode(p.account)
    } else {
        format!("{}:{}", percent_encode(p.issuer), percent_encode(p.account))
    };
    let mut uri = Zeroizing::new(format!(
        "otpauth://{kind}/{label}?secret={}",
        secret.to_base32().as_str()
    ));
    if !p.issuer.is_empty() {
        uri.push_str(&format!("&issuer={}", percent_encode(p.issuer)));
    }
    uri.push_str(&format!(
        "&algorithm={}&digits={}",
        p.algorithm.as_str(),
        p.digits
    ));
    if let Some(period) = p.period {
        uri.push_str(&format!("&period={period}"));
    }
    if let Some(counter) = p.counter {
        uri.push_str(&format!("&counter={counter}"));
    }
    uri
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascii_secret(s: &str) -> Secret {
        Secret::from_bytes(s.as_bytes().to_vec()).unwrap()
    }

    // RFC 6238 appendix B: the seeds are the ASCII strings below, 20, 32
    // and 64 bytes long for SHA1, SHA256 and SHA512.
    const SEED1: &str = "12345678901234567890";
    const SEED256: &str = "12345678901234567890123456789012";
    const SEED512: &str = "1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc6238_test_vectors_all_three_algorithms() {
        let cases: &[(u64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        let g1 = Generator::totp(&ascii_secret(SEED1), Algorithm::SHA1, 8, 30).unwrap();
        let g256 = Generator::totp(&ascii_secret(SEED256), Algorithm::SHA256, 8, 30).unwrap();
        let g512 = Generator::totp(&ascii_secret(SEED512), Algorithm::SHA512, 8, 30).unwrap();
        for &(t, c1, c256, c512) in cases {
            let step = time_step(t, 30);
            assert_eq!(g1.code_at_step(step).as_str(), c1, "SHA1 at T={t}");
            assert_eq!(g256.code_at_step(step).as_str(), c256, "SHA256 at T={t}");
            assert_eq!(g512.code_at_step(step).as_str(), c512, "SHA512 at T={t}");
        }
    }

    #[test]
    fn rfc4226_hotp_test_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        let g = Generator::hotp(&ascii_secret(SEED1), Algorithm::SHA1, 6).unwrap();
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(g.code_at_step(counter as u64).as_str(), *code);
        }
    }

    #[test]
    fn matching_steps_finds_only_the_right_step() {
        let g = Generator::totp(&ascii_secret(SEED1), Algorithm::SHA1, 8, 30).unwrap();
        let step = time_step(1111111109, 30);
        assert_eq!(g.matching_steps("07081804", step - 1, step + 1), vec![step]);
        assert!(g.matching_steps("07081805", step - 1, step + 1).is_empty());
        assert!(g.matching_steps("0708180", step - 1, step + 1).is_empty());
    }

    #[test]
    fn base32_round_trips_and_accepts_human_formatting() {
        let s = ascii_secret(SEED1);
        let text = s.to_base32();
        assert_eq!(text.as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let typed = "gezd gnbv-gy3t qojq gezd gnbv gy3t qojq====";
        assert_eq!(Secret::from_base32(typed).unwrap(), s);
        assert_eq!(
            s.to_base32_grouped().as_str(),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
    }

    #[test]
    fn base32_refuses_garbage_short_and_padding_in_the_middle() {
        assert!(Secret::from_base32("GEZDGNBVGY3TQOJ1").is_err());
        assert!(
            Secret::from_base32("GEZDGNBV").is_err(),
            "40 bits is too short"
        );
        assert!(Secret::from_base32("GEZDGNBV=GY3TQOJQ").is_err());
        // 16 base32 characters = 80 bits, the old Google Authenticator size.
        assert_eq!(
            Secret::from_base32("JBSWY3DPEHPK3PXP")
                .unwrap()
                .as_bytes()
                .len(),
            10
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = ascii_secret(SEED1);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("GEZD") && !shown.contains("1234"),
            "{shown}"
        );
    }

    #[test]
    fn generated_secrets_are_random_and_160_bits() {
        let a = Secret::generate(DEFAULT_SECRET_BYTES).unwrap();
        let b = Secret::generate(DEFAULT_SECRET_BYTES).unwrap();
        assert_eq!(a.as_bytes().len(), 20);
        assert_ne!(a, b);
    }

    #[test]
    fn digits_and_period_are_bounded() {
        let s = ascii_secret(SEED1);
        assert!(Generator::totp(&s, Algorithm::SHA1, 5, 30).is_err());
        assert!(Generator::totp(&s, Algorithm::SHA1, 9, 30).is_err());
        assert!(Generator::totp(&s, Algorithm::SHA1, 6, 0).is_err());
        assert!(Generator::hotp(&s, Algorithm::SHA1, 10).is_err());
    }

    #[test]
    fn otpauth_uri_follows_the_key_uri_format() {
        let s = ascii_secret(SEED1);
        let uri = otpauth_uri(
            &s,
            &UriParams {
                issuer: "ACME Co",
                account: "alice@host",
                algorithm: Algorithm::SHA256,
                digits: 8,
                period: Some(60),
                counter: None,
            },
        );
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/ACME%20Co:alice%40host?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60"
        );
        let hotp = otpauth_uri(
            &s,
            &UriParams {
                issuer: "",
                account: "bob",
                algorithm: Algorithm::SHA1,
                digits: 6,
                period: None,
                counter: Some(7),
            },
        );
        assert!(hotp.starts_with("otpauth://hotp/bob?secret="));
        assert!(hotp.ends_with("&counter=7"));
    }
}
