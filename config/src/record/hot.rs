//! What a login changes, as an overlay on the record last written whole.
//!
//! A login moves the TOTP step or the HOTP counter, counts a failure or
//! clears it, locks the account, or uses up a backup or sent code. None of
//! that needs the whole file rewritten: [`Hot`] holds those fields and, for
//! each list of the record, which of its entries are still there. The file
//! store writes it in place (docs/ARCHITECTURE.md §5.4); anything it cannot
//! express (a new code, a new trusted host, a changed secret) is a rewrite
//! of the record itself.

use super::{Backup, HotpConfig, State, UserRecord};

/// A list an overlay covers, by its position in [`Hot::kept`].
const LISTS: usize = 4;

/// The login state of a record, relative to one version of it (the base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hot {
    state: State,
    /// The HOTP counter; `None` for a record without `[hotp]`.
    hotp_counter: Option<u64>,
    /// Which entries of the base's backup codes, sent codes, sends and
    /// trusted hosts are left.
    kept: [Kept; LISTS],
}

/// Which entries of a list of `len` are left, one bit each.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    len: u16,
    bits: Vec<u8>,
}

impl Hot {
    /// The overlay that turns `base` into `now`, when `now` is `base` with
    /// only login state changed and list entries removed; `None` when it
    /// differs in anything else (the record must then be rewritten).
    pub(crate) fn between(base: &UserRecord, now: &UserRecord) -> Option<Hot> {
        let hot = Hot {
            state: now.state.clone(),
            hotp_counter: now.hotp.as_ref().map(|h| h.counter),
            kept: [
                Kept::between(&base.backup.codes, &now.backup.codes)?,
                Kept::between(&base.sent_codes, &now.sent_codes)?,
                Kept::between(&base.sends, &now.sends)?,
                Kept::between(&base.trusted_hosts, &now.trusted_hosts)?,
            ],
        };
        // Whatever the fields above do not cover must be the base's: only
        // an overlay that gives `now` back exactly is one.
        (hot.apply(base).as_ref() == Some(now)).then_some(hot)
    }

    /// `base` with this overlay's state; `None` when the overlay does not
    /// fit it (list lengths, HOTP or not), which a reader treats as
    /// damage.
    pub(crate) fn apply(&self, base: &UserRecord) -> Option<UserRecord> {
        // Built field by field, the lists filtered from `base` rather than
        // cloned and then replaced (the backup codes are most of a record's
        // bytes); with no `..base`, a new field cannot be forgotten here.
        let hotp = match (&base.hotp, self.hotp_counter) {
            (Some(h), Some(counter)) => Some(HotpConfig {
                counter,
                ..h.clone()
            }),
            (None, None) => None,
            _ => return None,
        };
        Some(UserRecord {
            version: base.version,
            serial: base.serial.clone(),
            totp: base.totp.clone(),
            hotp,
            backup: Backup {
                codes: self.kept[0].filter(&base.backup.codes)?,
            },
            state: self.state.clone(),
            trusted_hosts: self.kept[3].filter(&base.trusted_hosts)?,
            email: base.email.clone(),
            sms: base.sms.clone(),
            sent_codes: self.kept[1].filter(&base.sent_codes)?,
            sends: self.kept[2].filter(&base.sends)?,
            source_failures: base.source_failures.clone(),
        })
    }

    /// Little-endian: last_step u64, failures u32, locked_until u64, a
    /// HOTP flag byte and counter u64, then per list its length u16 and
    /// its bits.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.state.last_step.to_le_bytes());
        out.extend_from_slice(&self.state.failures.to_le_bytes());
        out.extend_from_slice(&self.state.locked_until.to_le_bytes());
        out.push(u8::from(self.hotp_counter.is_some()));
        out.extend_from_slice(&self.hotp_counter.unwrap_or(0).to_le_bytes());
        for kept in &self.kept {
            out.extend_from_slice(&kept.len.to_le_bytes());
            out.extend_from_slice(&kept.bits);
        }
        out
    }

    /// The overlay [`Hot::encode`] wrote; `None` for anything else
    /// (trailing bytes, a flag other than 0 or 1, bits past a list's end).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Hot> {
        let mut at = Reader { bytes };
        let state = State {
            last_step: u64::from_le_bytes(at.take()?),
            failures: u32::from_le_bytes(at.take()?),
            locked_until: u64::from_le_bytes(at.take()?),
        };
        let [flag] = at.take::<1>()?;
        let counter = u64::from_le_bytes(at.take()?);
        let hotp_counter = match flag {
            0 if counter == 0 => None,
            1 => Some(counter),
            _ => return None,
        };
        let mut kept = Vec::with_capacity(LISTS);
        for _ in 0..LISTS {
            let len = u16::from_le_bytes(at.take()?);
            let bits = at.slice(usize::from(len).div_ceil(8))?.to_vec();
            kept.push(Kept::checked(len, bits)?);
        }
        if !at.bytes.is_empty() {
            return None;
        }
        Some(Hot {
            state,
            hotp_counter,
            kept: kept.try_into().ok()?,
        })
    }
}

impl Kept {
    /// Which entries of `base` are left in `now`, when `now` is `base`
    /// with some entries removed and the rest in order. Equal entries are
    /// interchangeable, so matching each to the first candidate is exact.
    fn between<T: PartialEq>(base: &[T], now: &[T]) -> Option<Kept> {
        let len = u16::try_from(base.len()).ok()?;
        let mut bits = vec![0u8; base.len().div_ceil(8)];
        let mut left = now.iter().peekable();
        for (i, entry) in base.iter().enumerate() {
            if left.peek() == Some(&entry) {
                left.next();
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        left.next().is_none().then_some(Kept { len, bits })
    }

    /// Refuses bits set past the end: they could only come from damage.
    fn checked(len: u16, bits: Vec<u8>) -> Option<Kept> {
        let len_bits = usize::from(len);
        let spare = bits.len() * 8 - len_bits;
        let last = bits.last().copied().unwrap_or(0);
        (spare == 0 || last >> (8 - spare) == 0).then_some(Kept { len, bits })
    }

    fn filter<T: Clone>(&self, base: &[T]) -> Option<Vec<T>> {
        if base.len() != usize::from(self.len) {
            return None;
        }
        Some(
            base.iter()
                .enumerate()
                .filter(|(i, _)| self.bits[i / 8] & (1 << (i % 8)) != 0)
                .map(|(_, e)| e.clone())
                .collect(),
        )
    }
}

/// Takes fixed-size fields off the front of a byte string.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.slice(N)?.try_into().ok()
    }

    fn slice(&mut self, n: usize) -> Option<&[u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
}

/// A record serial: 16 lowercase hex digits (a random `u64`).
pub(crate) fn parse_serial(text: &str) -> Option<u64> {
    let valid = text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

pub(crate) fn format_serial(serial: u64) -> String {
    format!("{serial:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answer;
    use crate::record::{LockoutPolicy, Verdict, VerifyPolicy};
    use crate::testing::totp_record;

    const NOW: u64 = 1_700_000_010;
    const POLICY: VerifyPolicy = VerifyPolicy {
        totp_window: 1,
        hotp_lookahead: 10,
    };

    fn enrolled() -> (UserRecord, Vec<zeroize::Zeroizing<String>>) {
        let mut r = totp_record();
        let codes = r.new_backup_codes(10, 8).unwrap();
        r.trust_host("192.0.2.1", "sshd", None, NOW + 60, NOW);
        (r, codes)
    }

    #[test]
    fn a_used_backup_code_and_a_failure_are_an_overlay_that_round_trips() {
        let (base, codes) = enrolled();
        let mut now = base.clone();
        let answer = Answer::parse(codes[3].as_bytes()).unwrap();
        assert!(matches!(
            now.verify(&answer, NOW, POLICY).unwrap(),
            Verdict::Accepted(_)
        ));
        now.record_failure(
            NOW,
            LockoutPolicy {
                after: 5,
                minutes: 1,
            },
        );
        let hot = Hot::between(&base, &now).expect("expressible");
        let back = Hot::decode(&hot.encode()).expect("decodes");
        assert_eq!(back, hot);
        assert_eq!(back.apply(&base).as_ref(), Some(&now));
        assert_eq!(now.backup.codes.len(), 9);
    }

    #[test]
    fn anything_but_login_state_and_removals_needs_a_rewrite() {
        let (base, _) = enrolled();
        let mut more_codes = base.clone();
        more_codes.new_backup_codes(10, 8).unwrap();
        assert!(Hot::between(&base, &more_codes).is_none());
        let mut trusted = base.clone();
        trusted.trust_host("192.0.2.2", "sshd", None, NOW + 60, NOW);
        assert!(Hot::between(&base, &trusted).is_none());
        let mut reordered = base.clone();
        reordered.backup.codes.swap(0, 1);
        assert!(Hot::between(&base, &reordered).is_none());
        let mut serial = base.clone();
        serial.serial = Some(format_serial(7));
        assert!(Hot::between(&base, &serial).is_none());
        assert!(Hot::between(&base, &base).is_some());
    }

    #[test]
    fn an_overlay_that_does_not_fit_its_base_or_is_malformed_is_refused() {
        let (base, _) = enrolled();
        let hot = Hot::between(&base, &base).unwrap();
        let mut fewer = base.clone();
        fewer.backup.codes.pop();
        assert!(hot.apply(&fewer).is_none());
        let bytes = hot.encode();
        assert!(Hot::decode(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Hot::decode(&longer).is_none());
        let mut flag = bytes.clone();
        flag[20] = 2;
        assert!(Hot::decode(&flag).is_none());
        // 10 backup codes: 2 bytes of bits, the top 6 bits of the second
        // are past the end.
        let mut past_end = bytes;
        past_end[32] |= 0x80;
        assert!(Hot::decode(&past_end).is_none());
    }

    #[test]
    fn serials_are_sixteen_lowercase_hex_digits() {
        assert_eq!(parse_serial(&format_serial(0xabc)), Some(0xabc));
        assert_eq!(parse_serial("00000000000000FF"), None);
        assert_eq!(parse_serial("ff"), None);
        assert_eq!(parse_serial("+000000000000000"), None);
    }
}
