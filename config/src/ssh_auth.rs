//! What sshd tells PAM about the methods a login passed before ours:
//! `SSH_AUTH_INFO_0` in the PAM environment, and the rules of
//! `policy.trusted_ssh_keys` that decide whether the key it names counts as
//! the second factor (docs/ARCHITECTURE.md §2, step 6).
//!
//! sshd writes one line per method passed, each ended by `\n`: the method
//! (`publickey`, `password`, `keyboard-interactive/pam`, `hostbased`, ...),
//! then for methods with a key the key in `authorized_keys` form (type and
//! base64 blob), then for some methods more words for its log (a
//! certificate's ID and CA, a hostbased client). With
//! `AuthenticationMethods publickey,publickey` there are two `publickey`
//! lines, in the order they passed. Only `publickey` lines name the user's
//! key (a `hostbased` line names the client host's key).
//!
//! Pure: the text comes in, nothing is read or written. Anything not in the
//! form sshd writes is [`LoginKey::Unparsable`], and an unparsable or
//! absent info never makes a key count (fail closed).
#![forbid(unsafe_code)]

use sha2::{Digest, Sha256};

/// The PAM environment variable sshd sets before `pam_authenticate`.
pub const ENV_NAME: &str = "SSH_AUTH_INFO_0";
/// Longer info is not sshd's (a line is under 20 KiB even for a large
/// certificate, and a login passes a few methods).
pub const MAX_INFO_BYTES: usize = 64 * 1024;
/// At most this many lines (methods passed).
const MAX_LINES: usize = 32;
/// A key blob larger than this is not a key sshd accepted.
const MAX_BLOB_BYTES: usize = 16 * 1024;
/// The prefix of a fingerprint rule and of every fingerprint here.
pub const FINGERPRINT_PREFIX: &str = "SHA256:";
/// Base64 characters of a SHA-256 digest without padding.
const FINGERPRINT_B64_LEN: usize = 43;

/// Public key types OpenSSH accepts for user keys: the only words a type
/// rule of `policy.trusted_ssh_keys` may be (a typo must not pass).
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// A public key a login used: its type and its fingerprint as `ssh-keygen
/// -l` prints it (`SHA256:` and the unpadded base64 of the SHA-256 digest
/// of the key blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key type as sshd wrote it (`sk-ssh-ed25519@openssh.com`).
    pub kind: String,
    /// `SHA256:...`. For a certificate, the certificate blob's, which is not
    /// what `ssh-keygen -l` prints for it.
    pub fingerprint: String,
}

impl Key {
    /// An OpenSSH certificate (`...-cert-v01@openssh.com`): never counts
    /// for `policy.trusted_ssh_keys`.
    pub fn is_certificate(&self) -> bool {
        self.kind.contains("-cert-")
    }
}

/// What a login's `SSH_AUTH_INFO_0` says about the user's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginKey {
    /// No `SSH_AUTH_INFO_0` at all: not sshd, or an sshd that does not
    /// say. A key may have been used; nobody said which.
    Unknown,
    /// The info names no public key (a password or keyboard-interactive
    /// login, or no method passed before ours).
    NoKey,
    /// Exactly one `publickey` line: the key that authenticated.
    One(Key),
    /// Several `publickey` lines (`AuthenticationMethods
    /// publickey,publickey`): no single key to bind to or trust.
    Several,
    /// Not in the form sshd writes; the reason, for the log.
    Unparsable(String),
}

impl LoginKey {
    /// Reads the value of `SSH_AUTH_INFO_0` (`None`: unset).
    pub fn from_env(value: Option<&str>) -> LoginKey {
        let Some(text) = value else {
            return LoginKey::Unknown;
        };
        match parse(text) {
            Err(why) => LoginKey::Unparsable(why),
            Ok(keys) => match keys.len() {
                0 => LoginKey::NoKey,
                1 => keys
                    .into_iter()
                    .next()
                    .map_or(LoginKey::NoKey, LoginKey::One),
                _ => LoginKey::Several,
            },
        }
    }

    /// The key's fingerprint when exactly one key authenticated.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            LoginKey::One(key) => Some(&key.fingerprint),
            _ => None,
        }
    }

    /// What a remembered host is bound to after this login: `Some(None)`
    /// the address alone (no key was used, or nobody said), `Some(Some(fp))`
    /// the address and this key, `None` nothing is offered (several keys,
    /// or an info that cannot be read).
    pub fn binding(&self) -> Option<Option<&str>> {
        match self {
            LoginKey::Unknown | LoginKey::NoKey => Some(None),
            LoginKey::One(key) => Some(Some(&key.fingerprint)),
            LoginKey::Several | LoginKey::Unparsable(_) => None,
        }
    }

    /// The rule of `rules` (`policy.trusted_ssh_keys`) that makes this
    /// login's key count as the second factor, if any: only one key, never
    /// a certificate, matched by its type or its fingerprint. Absent,
    /// unparsable or ambiguous info matches nothing.
    pub fn trusted_by<'r>(&self, rules: &'r [String]) -> Option<&'r str> {
        let LoginKey::One(key) = self else {
            return None;
        };
        if key.is_certificate() {
            return None;
        }
        rules
            .iter()
            .find(|rule| **rule == key.kind || **rule == key.fingerprint)
            .map(String::as_str)
    }
}

/// The keys of the `publickey` lines of `text`, in order; `Err` with the
/// reason when `text` is not in the form sshd writes.
pub fn parse(text: &str) -> Result<Vec<Key>, String> {
    if text.len() > MAX_INFO_BYTES {
        return Err(format!("longer than {MAX_INFO_BYTES} bytes"));
    }
    // Every line ends with `\n`; the last newline may be missing.
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for (n, line) in body.split('\n').enumerate() {
        if n >= MAX_LINES {
            return Err(format!("more than {MAX_LINES} lines"));
        }
        if let Some(key) = parse_line(line).map_err(|why| format!("line {}: {why}", n + 1))? {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// One line: `Some(key)` for a `publickey` line, `None` for another
/// method.
fn parse_line(line: &str) -> Result<Option<Key>, String> {
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err("control character".into());
    }
    let mut words = line.split(' ');
    let method = words.next().unwrap_or_default();
    let valid_method = !method.is_empty()
        && method.len() <= 64
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-@./_".contains(&b));
    if !valid_method {
        return Err("not a method name".into());
    }
    if method != "publickey" && method != "hostbased" {
        // Other methods carry no key; their words are for sshd's log.
        return Ok(None);
    }
    let kind = words.next().ok_or("no key type")?;
    let blob = words.next().ok_or("no key")?;
    let key = parse_key(kind, blob)?;
    let rest: Vec<&str> = words.collect();
    // A plain key's line ends after the key; a certificate's and a
    // hostbased line carry words for sshd's log.
    if method == "publickey" && !key.is_certificate() && !rest.is_empty() {
        return Err("unexpected words after the key".into());
    }
    Ok((method == "publickey").then_some(key))
}

/// A key in `authorized_keys` form: the type, then the base64 blob whose
/// first field is the same type.
fn parse_key(kind: &str, blob: &str) -> Result<Key, String> {
    let valid_kind = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-@._".contains(&b));
    if !valid_kind {
        return Err("not a key type".into());
    }
    if blob.len() > MAX_BLOB_BYTES / 3 * 4 + 4 {
        return Err("key too long".into());
    }
    let bytes = decode_base64(blob).ok_or("key is not base64")?;
    if first_string(&bytes) != Some(kind.as_bytes()) {
        return Err("key type does not match the key".into());
    }
    let key = Key {
        kind: kind.to_string(),
        fingerprint: fingerprint(&bytes),
    };
    // A plain key is a sequence of SSH strings (type, then its fields); a
    // certificate has integers too and is not taken apart.
    if !key.is_certificate() && !all_strings(&bytes) {
        return Err("not a public key blob".into());
    }
    Ok(key)
}

/// True when `blob` is two or more SSH strings and nothing else.
fn all_strings(mut blob: &[u8]) -> bool {
    let mut count = 0;
    while !blob.is_empty() {
        let Some(field) = first_string(blob) else {
            return false;
        };
        blob = &blob[4 + field.len()..];
        count += 1;
    }
    count >= 2
}

/// The type name a key blob starts with (an SSH string: a 32-bit
/// big-endian length, then the bytes).
fn first_string(blob: &[u8]) -> Option<&[u8]> {
    let len: [u8; 4] = blob.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
    blob.get(4..4usize.checked_add(len)?)
}

/// `SHA256:` and the unpadded base64 of the SHA-256 digest of `blob`, as
/// `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(blob).into();
    let mut out = String::from(FINGERPRINT_PREFIX);
    out.push_str(&encode_base64(&digest));
    out
}

/// True for `SHA256:` and 43 base64 characters that decode to 32 bytes.
pub fn is_fingerprint(text: &str) -> bool {
    let Some(b64) = text.strip_prefix(FINGERPRINT_PREFIX) else {
        return false;
    };
    b64.len() == FINGERPRINT_B64_LEN
        && decode_base64(&format!("{b64}=")).is_some_and(|d| d.len() == 32)
}

/// Checks `policy.trusted_ssh_keys`: every entry a key type of
/// [`KEY_TYPES`] or a fingerprint `SHA256:...`; the message names the
/// first one that is neither.
pub fn validate_rules(rules: &[String]) -> Result<(), String> {
    for rule in rules {
        if rule.starts_with(FINGERPRINT_PREFIX) {
            if !is_fingerprint(rule) {
                return Err(format!(
                    "`{rule}` is not a fingerprint as `ssh-keygen -l` prints it (SHA256: and 43 base64 characters)"
                ));
            }
        } else if !KEY_TYPES.contains(&rule.as_str()) {
            return Err(format!(
                "`{rule}` is neither a key type ({}) nor a fingerprint `SHA256:...`",
                KEY_TYPES.join(", ")
            ));
        }
    }
    Ok(())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Unpadded standard base64.
fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Strict padded standard base64, as OpenSSH writes keys: a length that is
/// a multiple of 4, `=` only as the last one or two characters, and no
/// stray bits in the last character. `None` for anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| B64.iter().position(|&x| x == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let last = bytes.len() / 4 - 1;
    for (i, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i != last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        // The bits below the last byte kept must be zero (canonical).
        if got[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&got[..keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -t ed25519` public keys and the fingerprints `ssh-keygen
    /// -l` printed for them.
    const KEY_1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIEGPYUXTgiBeolS4qMUL9f2FHb+VG6OEuWxEzm7sAHxs";
    const FP_1: &str = "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU";
    const KEY_2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIO3pxtV8zPuxR+y3oZmh/X9j5MtCUL/WCuSt/8qNgcEM";
    const FP_2: &str = "SHA256:HZ2sGjPoma1GW1Qchg57ONjIIU+pAAbPR91nD5rV6qY";

    /// A blob of `kind` with arbitrary key bytes, base64 padded.
    fn blob_of(kind: &str) -> String {
        let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(kind.as_bytes());
        blob.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
        let mut b64 = encode_base64(&blob);
        while !b64.len().is_multiple_of(4) {
            b64.push('=');
        }
        b64
    }

    fn one(text: &str) -> Key {
        match LoginKey::from_env(Some(text)) {
            LoginKey::One(key) => key,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn unparsable(text: &str) -> bool {
        matches!(LoginKey::from_env(Some(text)), LoginKey::Unparsable(_))
    }

    #[test]
    fn the_fingerprint_is_the_one_ssh_keygen_prints() {
        let key = one(&format!("publickey ssh-ed25519 {KEY_1}\n"));
        assert_eq!(key.kind, "ssh-ed25519");
        assert_eq!(key.fingerprint, FP_1);
        assert!(is_fingerprint(FP_1));
        assert_eq!(
            one(&format!("publickey ssh-ed25519 {KEY_2}")).fingerprint,
            FP_2
        );
        // A FIDO key, made by hand (no hardware here); `ssh-keygen -l`
        // printed this fingerprint for it.
        let sk = "AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fAAAABHNzaDo=";
        let key = one(&format!("publickey sk-ssh-ed25519@openssh.com {sk}\n"));
        assert_eq!(
            key.fingerprint,
            "SHA256:/p0CbeE3dk2SyW1OXXsThGc12ezDVD8eGw2/vtztDfk"
        );
    }

    #[test]
    fn base64_round_trips_and_is_strict() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let mut b64 = encode_base64(&data);
            while !b64.len().is_multiple_of(4) {
                b64.push('=');
            }
            if data.is_empty() {
                assert_eq!(decode_base64(&b64), None);
            } else {
                assert_eq!(decode_base64(&b64).as_deref(), Some(&data[..]), "{b64}");
            }
        }
        for bad in [
            "A", "AA", "AAA", "AA=A", "A===", "====", "AAA=AAAA", "AB==", "AAB=", "AA-_", "AA A",
            "QUJD\n", "QUI=QUI=",
        ] {
            assert_eq!(decode_base64(bad), None, "{bad:?}");
        }
        assert_eq!(decode_base64("QUJD").as_deref(), Some(&b"ABC"[..]));
        assert_eq!(decode_base64("QUI=").as_deref(), Some(&b"AB"[..]));
        assert_eq!(decode_base64("QQ==").as_deref(), Some(&b"A"[..]));
    }

    #[test]
    fn absent_info_is_unknown_and_empty_info_names_no_key() {
        assert_eq!(LoginKey::from_env(None), LoginKey::Unknown);
        assert_eq!(LoginKey::from_env(Some("")), LoginKey::NoKey);
        assert_eq!(LoginKey::from_env(Some("\n")), LoginKey::NoKey);
        assert_eq!(LoginKey::from_env(Some("password\n")), LoginKey::NoKey);
        assert_eq!(
            LoginKey::from_env(Some("keyboard-interactive/pam\npassword\n")),
            LoginKey::NoKey
        );
        assert_eq!(LoginKey::Unknown.binding(), Some(None));
        assert_eq!(LoginKey::NoKey.binding(), Some(None));
    }

    #[test]
    fn only_publickey_lines_name_the_users_key() {
        // A hostbased line names the client host's key, with sshd's words
        // about the client after it.
        let host =
            format!("hostbased ssh-ed25519 {KEY_2} client user \"alice\", client host \"h\"\n");
        assert_eq!(LoginKey::from_env(Some(&host)), LoginKey::NoKey);
        let both = format!("{host}publickey ssh-ed25519 {KEY_1}\n");
        assert_eq!(one(&both).fingerprint, FP_1);
        let with_password = format!("password\npublickey ssh-ed25519 {KEY_1}\n");
        assert_eq!(one(&with_password).fingerprint, FP_1);
    }

    #[test]
    fn two_publickey_lines_are_several_keys_and_nothing_counts() {
        let text = format!("publickey ssh-ed25519 {KEY_1}\npublickey ssh-ed25519 {KEY_2}\n");
        let login = LoginKey::from_env(Some(&text));
        assert_eq!(login, LoginKey::Several);
        assert_eq!(login.binding(), None);
        assert_eq!(login.fingerprint(), None);
        let rules = vec![
            FP_1.to_string(),
            FP_2.to_string(),
            "ssh-ed25519".to_string(),
        ];
        assert_eq!(login.trusted_by(&rules), None);
    }

    #[test]
    fn rules_match_by_type_or_fingerprint() {
        let login = LoginKey::from_env(Some(&format!("publickey ssh-ed25519 {KEY_1}\n")));
        assert_eq!(login.binding(), Some(Some(FP_1)));
        assert_eq!(login.trusted_by(&[]), None);
        assert_eq!(login.trusted_by(&[FP_2.to_string()]), None);
        let rules = vec![FP_2.to_string(), FP_1.to_string()];
        assert_eq!(login.trusted_by(&rules), Some(FP_1));
        let fido = vec![
            "sk-ssh-ed25519@openssh.com".to_string(),
            "sk-ecdsa-sha2-nistp256@openssh.com".to_string(),
        ];
        assert_eq!(
            login.trusted_by(&fido),
            None,
            "an ordinary key is no FIDO key"
        );
        assert_eq!(
            login.trusted_by(&["ssh-ed25519".to_string()]),
            Some("ssh-ed25519")
        );
        // FIDO keys (made here: without hardware, ssh-keygen cannot).
        for kind in [
            "sk-ssh-ed25519@openssh.com",
            "sk-ecdsa-sha2-nistp256@openssh.com",
        ] {
            let sk = LoginKey::from_env(Some(&format!("publickey {kind} {}\n", blob_of(kind))));
            assert_eq!(sk.trusted_by(&fido), Some(kind));
            assert_eq!(sk.trusted_by(&["ssh-ed25519".to_string()]), None);
        }
        for login in [
            LoginKey::Unknown,
            LoginKey::NoKey,
            LoginKey::Several,
            LoginKey::Unparsable("x".into()),
        ] {
            assert_eq!(login.trusted_by(&rules), None);
            assert_eq!(login.trusted_by(&fido), None);
        }
    }

    #[test]
    fn a_certificate_never_counts() {
        let kind = "sk-ssh-ed25519-cert-v01@openssh.com";
        let text = format!(
            "publickey {kind} {} ID alice (serial 1) CA ssh-ed25519 SHA256:x\n",
            blob_of(kind)
        );
        let login = LoginKey::from_env(Some(&text));
        let LoginKey::One(key) = &login else {
            panic!("{login:?}");
        };
        assert!(key.is_certificate());
        let rules = vec![kind.to_string(), key.fingerprint.clone()];
        assert_eq!(login.trusted_by(&rules), None);
    }

    #[test]
    fn a_key_type_that_does_not_match_its_blob_is_unparsable() {
        // An ordinary key's blob labelled as a FIDO key.
        assert!(unparsable(&format!(
            "publickey sk-ssh-ed25519@openssh.com {KEY_1}\n"
        )));
        assert!(unparsable(&format!("publickey ssh-rsa {KEY_1}\n")));
    }

    #[test]
    fn unknown_key_types_parse_but_match_only_their_fingerprint() {
        let kind = "ssh-future-key@example.org";
        let login = LoginKey::from_env(Some(&format!("publickey {kind} {}\n", blob_of(kind))));
        let LoginKey::One(key) = &login else {
            panic!("{login:?}");
        };
        assert_eq!(key.kind, kind);
        let rules: Vec<String> = KEY_TYPES.iter().map(|t| t.to_string()).collect();
        assert_eq!(login.trusted_by(&rules), None);
        assert!(validate_rules(&[kind.to_string()]).is_err());
    }

    #[test]
    fn garbage_is_unparsable() {
        let cases = [
            "publickey".to_string(),
            "publickey ssh-ed25519".to_string(),
            "publickey ssh-ed25519 !!!!".to_string(),
            format!("publickey ssh-ed25519 {KEY_1} trailing words"),
            format!("publickey ssh-ed25519 {KEY_1}\n\npassword\n"),
            format!("publickey ssh-ed25519  {KEY_1}"),
            format!("publickey ssh-ed25519 {}", &KEY_1[..KEY_1.len() - 4]),
            format!("publickey ssh-ed25519 {KEY_1}="),
            format!(" publickey ssh-ed25519 {KEY_1}"),
            format!("publickey ssh-ed25519 {KEY_1}\r\n"),
            format!("publickey\tssh-ed25519 {KEY_1}"),
            format!("publickey ssh-ed25519 {KEY_1}\0"),
            format!("publickey ss h-ed25519 {KEY_1}"),
            "pass word\u{7f}".to_string(),
            "méthode".to_string(),
            "\n\n".to_string(),
            "publickey ssh-ed25519 AAAA".to_string(),
            "publickey ssh-ed25519 AAAAAAAA".to_string(),
            // A length field past the end of the blob.
            "publickey ssh-ed25519 /////w==".to_string(),
        ];
        for text in &cases {
            assert!(unparsable(text), "{text:?}");
        }
        let mut seed = 0u32;
        // Deterministic noise of every byte value.
        let noise: String = (0..4096)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from((seed >> 16) as u8 & 0x7f)
            })
            .collect();
        assert!(
            LoginKey::from_env(Some(&noise))
                .trusted_by(&["ssh-ed25519".into()])
                .is_none()
        );
    }

    /// 200,000 mutations of a real info (bytes flipped, cut, repeated,
    /// spliced): the parser never panics, and a fingerprint rule matches
    /// only when the listed key's own text is still there.
    #[test]
    fn mutated_info_never_panics_and_never_forges_a_listed_key() {
        let valid = format!("password\npublickey ssh-ed25519 {KEY_1}\n");
        let rules = vec![FP_1.to_string()];
        let mut seed = 0x2545_f491_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let alphabet = b"AZaz09+/= \n\t\0-@.publickeyssh";
        for _ in 0..200_000 {
            let mut bytes = valid.clone().into_bytes();
            for _ in 0..=next(4) {
                let at = next(bytes.len() + 1);
                match next(4) {
                    0 if at < bytes.len() => bytes[at] = alphabet[next(alphabet.len())],
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        let copy = bytes[at..].to_vec();
                        bytes.extend_from_slice(&copy[..copy.len().min(40)]);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let login = LoginKey::from_env(Some(&text));
            if login.trusted_by(&rules).is_some() {
                assert!(
                    text.contains(&format!("publickey ssh-ed25519 {KEY_1}")),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn huge_info_is_refused_at_once() {
        let line = format!("publickey ssh-ed25519 {KEY_1}\n");
        let huge = line.repeat(1024 * 1024 / line.len() + 1);
        assert!(huge.len() > 1024 * 1024);
        let start = std::time::Instant::now();
        assert!(unparsable(&huge));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // Many short lines under the byte limit: the line limit.
        assert!(unparsable(&"password\n".repeat(MAX_LINES + 1)));
        assert_eq!(
            LoginKey::from_env(Some(&"password\n".repeat(MAX_LINES))),
            LoginKey::NoKey
        );
        // One enormous key.
        let big = format!("publickey ssh-rsa {}", "A".repeat(MAX_INFO_BYTES - 100));
        assert!(unparsable(&big));
    }

    #[test]
    fn rules_are_key_types_or_fingerprints() {
        let ok: Vec<String> = vec![
            "sk-ssh-ed25519@openssh.com".into(),
            "sk-ecdsa-sha2-nistp256@openssh.com".into(),
            FP_1.into(),
        ];
        assert_eq!(validate_rules(&ok), Ok(()));
        assert_eq!(validate_rules(&[]), Ok(()));
        for bad in [
            "sk-ssh-ed25519",
            "ed25519",
            "SHA256:",
            "SHA256:short",
            "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU=",
            "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkY!",
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
            "sha256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU",
            "",
        ] {
            let err = validate_rules(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
