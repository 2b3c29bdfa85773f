//! Backup codes: generated from the OS CSPRNG, stored only as salted
//! SHA-256 hashes, compared in constant time, removed when used.
//!
//! A stored entry reads `sha256$<salt hex>$<digest hex>`. The salt is per
//! code so that two users' identical codes do not hash alike.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const SCHEME: &str = "sha256";
const SALT_BYTES: usize = 16;

/// Draws `count` codes of `digits` decimal digits each, all different.
pub fn generate(count: usize, digits: u8) -> Result<Vec<Zeroizing<String>>> {
    let mut codes: Vec<Zeroizing<String>> = Vec::with_capacity(count);
    while codes.len() < count {
        let code = random_digits(digits)?;
        if !codes.iter().any(|c| c.as_str() == code.as_str()) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// One code of `digits` uniformly random decimal digits (sent codes).
pub fn random_code(digits: u8) -> Result<Zeroizing<String>> {
    random_digits(digits)
}

/// `digits` uniformly random decimal digits (rejection sampling, no bias).
fn random_digits(digits: u8) -> Result<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(usize::from(digits)));
    let mut byte = [0u8; 1];
    while out.len() < usize::from(digits) {
        fill_random(&mut byte, "a code")?;
        // 250 is the largest multiple of 10 below 256: drop 250..=255.
        if byte[0] < 250 {
            out.push(char::from(b'0' + byte[0] % 10));
        }
    }
    Ok(out)
}

fn fill_random(buf: &mut [u8], what: &'static str) -> Result<()> {
    getrandom::fill(buf).map_err(|source| Error::Random { what, source })
}

/// The stored form of `code`, with a fresh random salt.
pub fn hash(code: &str) -> Result<String> {
    let mut salt = [0u8; SALT_BYTES];
    fill_random(&mut salt, "a salt")?;
    Ok(format!(
        "{SCHEME}${}${}",
        to_hex(&salt),
        to_hex(&digest(&salt, code))
    ))
}

fn digest(salt: &[u8], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().into()
}

/// Checks that a stored entry has the form `hash` writes.
pub fn validate_entry(entry: &str) -> Result<()> {
    parse_entry(entry)
        .map(|_| ())
        .ok_or_else(|| Error::BadSecret {
            message: format!("backup code entry is not `{SCHEME}$<salt>$<digest>`"),
        })
}

fn parse_entry(entry: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = entry.split('$');
    let (scheme, salt, hash) = (parts.next()?, parts.next()?, parts.next()?);
    if scheme != SCHEME || parts.next().is_some() {
        return None;
    }
    let (salt, hash) = (from_hex(salt)?, from_hex(hash)?);
    (hash.len() == 32 && !salt.is_empty()).then_some((salt, hash))
}

/// Index of the stored entry that `code` matches. Every entry is hashed and
/// compared, whichever matches, so the time taken says nothing about which
/// code (or whether a code) was right.
pub fn find(entries: &[String], code: &str) -> Option<usize> {
    let mut found = None;
    for (i, entry) in entries.iter().enumerate() {
        let Some((salt, stored)) = parse_entry(entry) else {
            continue;
        };
        let candidate = digest(&salt, code);
        if bool::from(candidate.ct_eq(stored.as_slice())) {
            found = found.or(Some(i));
        }
    }
    found
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    // One allocation of the right size: every login decodes every stored
    // code, and collecting through `Option` grew the vector step by step.
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_have_the_asked_shape_and_differ() {
        let codes = generate(10, 8).unwrap();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 8);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        let mut sorted: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
    }

    #[test]
    fn a_hashed_code_is_found_and_others_are_not() {
        let entries = vec![hash("11112222").unwrap(), hash("33334444").unwrap()];
        assert!(!entries[0].contains("11112222"), "stored in clear");
        assert_eq!(find(&entries, "33334444"), Some(1));
        assert_eq!(find(&entries, "11112222"), Some(0));
        assert_eq!(find(&entries, "11112223"), None);
        assert_eq!(find(&entries, ""), None);
    }

    #[test]
    fn same_code_hashes_differently_each_time() {
        assert_ne!(hash("12345678").unwrap(), hash("12345678").unwrap());
    }

    #[test]
    fn malformed_entries_never_match_and_fail_validation() {
        for bad in [
            "",
            "12345678",
            "md5$00$00",
            "sha256$zz$00",
            "sha256$00$0011",
            "sha256$$",
        ] {
            assert!(validate_entry(bad).is_err(), "{bad}");
            assert_eq!(find(&[bad.to_string()], "12345678"), None);
        }
        assert!(validate_entry(&hash("1").unwrap()).is_ok());
    }

    #[test]
    fn digits_are_uniform_enough() {
        // 20,000 digits; each of 10 values expected 2,000 times. A biased
        // generator (e.g. byte % 10 without rejection) skews 0-5 upwards by
        // about 2 %, far less than this bound catches; the bound catches a
        // broken one (constant, or only some digits).
        let mut counts = [0u32; 10];
        for _ in 0..2_500 {
            for b in random_digits(8).unwrap().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        for (d, &n) in counts.iter().enumerate() {
            assert!((1_700..=2_300).contains(&n), "digit {d} seen {n} times");
        }
    }
}
