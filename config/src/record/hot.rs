//! What a login changes, as an overlay on the record last written whole.
//!
//! A login moves the TOTP step or the HOTP counter, counts a failure or
//! clears it, locks the account, or uses up a backup or sent code. None of
//! that needs the whole file rewritten: [`Hot`] holds those fields and, for
//! each list of the record, which of its entries are still there. The file
//! store writes it in place (docs/ARCHITECTURE.md §5.4); anything it cannot
//! express (a new code, a new trusted host, a changed secret) is a rewrite
//! of the record itself.

use super::{Backup, State, UserRecord};

/// A list an overlay covers, by its position in [`Hot::kept`].
const LISTS: usize = 4;
/// The byte after the fixed fields: 0 or 1 in the first layout (no HOTP,
/// HOTP), [`DEVICES_LAYOUT`] in the layout with one position per device.
const LAYOUT_AT: usize = 20;
const DEVICES_LAYOUT: u8 = 2;

/// The login state of a record, relative to one version of it (the base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hot {
    state: State,
    /// Each device's replay state (TOTP step, HOTP counter).
    positions: Positions,
    /// Which entries of the base's backup codes, sent codes, sends and
    /// trusted hosts are left.
    kept: [Kept; LISTS],
}

/// Where the devices' replay state is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Positions {
    /// One per device of the base, in its order (what this build writes).
    Devices(Vec<u64>),
    /// A payload of the first layout, written before devices had names:
    /// the one app's TOTP step and HOTP counter. It fits a base with at
    /// most one device (a version 1 or 2 file, read as device `app`).
    Legacy {
        last_step: u64,
        hotp_counter: Option<u64>,
    },
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
        if base.devices.len() != now.devices.len() || now.devices.len() > usize::from(u8::MAX) {
            return None;
        }
        let hot = Hot {
            state: now.state.clone(),
            positions: Positions::Devices(now.devices.iter().map(|d| d.position()).collect()),
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
    /// fit it (list lengths, number or kind of devices), which a reader
    /// treats as damage.
    pub(crate) fn apply(&self, base: &UserRecord) -> Option<UserRecord> {
        // Built field by field, the lists filtered from `base` rather than
        // cloned and then replaced (the backup codes are most of a record's
        // bytes); with no `..base`, a new field cannot be forgotten here.
        let mut devices = base.devices.clone();
        match &self.positions {
            Positions::Devices(positions) => {
                if positions.len() != devices.len() {
                    return None;
                }
                for (d, &p) in devices.iter_mut().zip(positions) {
                    d.set_position(p);
                }
            }
            Positions::Legacy {
                last_step,
                hotp_counter,
            } => match (devices.as_mut_slice(), hotp_counter) {
                ([], None) => {}
                ([d], None) if d.totp.is_some() => d.last_step = *last_step,
                ([d], Some(counter)) if d.hotp.is_some() => d.set_position(*counter),
                _ => return None,
            },
        }
        Some(UserRecord {
            version: base.version,
            serial: base.serial.clone(),
            devices,
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

    /// Little-endian: eight zero bytes (the first layout's step), failures
    /// u32, locked_until u64, the layout byte [`DEVICES_LAYOUT`], the number
    /// of devices u8 and each one's position u64, then per list its length
    /// u16 and its bits.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let (layout, last_step, positions) = match &self.positions {
            Positions::Devices(p) => (DEVICES_LAYOUT, 0, p.clone()),
            Positions::Legacy {
                last_step,
                hotp_counter,
            } => (
                u8::from(hotp_counter.is_some()),
                *last_step,
                vec![hotp_counter.unwrap_or(0)],
            ),
        };
        out.extend_from_slice(&last_step.to_le_bytes());
        out.extend_from_slice(&self.state.failures.to_le_bytes());
        out.extend_from_slice(&self.state.locked_until.to_le_bytes());
        out.push(layout);
        if layout == DEVICES_LAYOUT {
            out.push(positions.len() as u8);
        }
        for p in positions {
            out.extend_from_slice(&p.to_le_bytes());
        }
        for kept in &self.kept {
            out.extend_from_slice(&kept.len.to_le_bytes());
            out.extend_from_slice(&kept.bits);
        }
        out
    }

    /// The overlay [`Hot::encode`] wrote, or one of the first layout
    /// (layout byte 0 or 1: last_step u64, failures u32, locked_until u64,
    /// the HOTP flag and counter u64, the lists); `None` for anything else
    /// (trailing bytes, another layout byte, bits past a list's end).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Hot> {
        let mut at = Reader { bytes };
        let last_step = u64::from_le_bytes(at.take()?);
        let state = State {
            failures: u32::from_le_bytes(at.take()?),
            locked_until: u64::from_le_bytes(at.take()?),
        };
        debug_assert_eq!(bytes.len() - at.bytes.len(), LAYOUT_AT);
        let [layout] = at.take::<1>()?;
        let positions = match layout {
            DEVICES_LAYOUT if last_step == 0 => {
                let [n] = at.take::<1>()?;
                let positions = (0..n)
                    .map(|_| at.take().map(u64::from_le_bytes))
                    .collect::<Option<Vec<u64>>>()?;
                Positions::Devices(positions)
            }
            0 | 1 => {
                let counter = u64::from_le_bytes(at.take()?);
                let hotp_counter = match layout {
                    0 if counter == 0 => None,
                    1 => Some(counter),
                    _ => return None,
                };
                Positions::Legacy {
                    last_step,
                    hotp_counter,
                }
            }
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
            positions,
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
        flag[LAYOUT_AT] = 3;
        assert!(Hot::decode(&flag).is_none());
        let mut step = bytes.clone();
        step[0] = 1;
        assert!(
            Hot::decode(&step).is_none(),
            "the devices layout's first bytes are 0"
        );
        let mut count = bytes.clone();
        count[LAYOUT_AT + 1] = 2;
        assert!(
            Hot::decode(&count).is_none(),
            "one position fewer than said"
        );
        // One device: 8 bytes of position; 10 backup codes: 2 bytes of
        // bits, the top 6 bits of the second are past the end.
        let mut past_end = bytes;
        past_end[LAYOUT_AT + 2 + 8 + 2 + 1] |= 0x80;
        assert!(Hot::decode(&past_end).is_none());
    }

    fn two_devices() -> UserRecord {
        let mut r = totp_record();
        let other = crate::otp::Secret::from_bytes(vec![7; 20]).unwrap();
        r.devices.push(crate::record::Device::hotp(
            crate::record::DeviceName::parse("key").unwrap(),
            other,
            crate::otp::Algorithm::SHA1,
            6,
            5,
        ));
        r.new_backup_codes(3, 8).unwrap();
        r
    }

    #[test]
    fn each_device_keeps_its_own_position_in_the_overlay() {
        let base = two_devices();
        let mut now = base.clone();
        let answer = Answer::parse(&crate::testing::code_at(NOW)).unwrap();
        let (verdict, device) = now.verify_device(&answer, NOW, POLICY).unwrap();
        assert!(matches!(verdict, Verdict::Accepted(_)));
        assert_eq!(device.unwrap().as_str(), "app");
        now.devices[1].set_position(9);
        let hot = Hot::between(&base, &now).expect("login state only");
        let bytes = hot.encode();
        assert_eq!(bytes[LAYOUT_AT], DEVICES_LAYOUT);
        let back = Hot::decode(&bytes).unwrap();
        assert_eq!(back, hot);
        let applied = back.apply(&base).unwrap();
        assert_eq!(applied, now);
        assert_eq!(applied.devices[0].last_step, NOW / 30);
        assert_eq!(applied.devices[1].hotp.as_ref().unwrap().counter, 9);
        // Another number of devices is another base: damage, refused.
        let mut one = base.clone();
        one.devices.pop();
        assert!(back.apply(&one).is_none());
        // Adding or renaming a device is a rewrite, not an overlay.
        let mut renamed = base.clone();
        renamed.devices[1].name = crate::record::DeviceName::parse("spare").unwrap();
        assert!(Hot::between(&base, &renamed).is_none());
    }

    /// A payload of the first layout, as a build before devices wrote it:
    /// last_step, failures, locked_until, the HOTP flag and counter, then
    /// the four lists.
    fn first_layout(last_step: u64, failures: u32, hotp: Option<u64>, lists: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&last_step.to_le_bytes());
        out.extend_from_slice(&failures.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.push(u8::from(hotp.is_some()));
        out.extend_from_slice(&hotp.unwrap_or(0).to_le_bytes());
        for &len in lists {
            out.extend_from_slice(&len.to_le_bytes());
            let mut bits = vec![0xffu8; usize::from(len).div_ceil(8)];
            if len % 8 != 0 {
                *bits.last_mut().unwrap() = (1u8 << (len % 8)) - 1;
            }
            out.extend_from_slice(&bits);
        }
        out
    }

    #[test]
    fn a_payload_of_the_first_layout_still_decodes_onto_its_one_device() {
        let (base, _) = enrolled();
        let old = first_layout(NOW / 30, 2, None, &[10, 0, 0, 1]);
        let hot = Hot::decode(&old).expect("the first layout decodes");
        let applied = hot.apply(&base).unwrap();
        assert_eq!(applied.devices[0].last_step, NOW / 30);
        assert_eq!(applied.state.failures, 2);
        assert_eq!(applied.backup.codes, base.backup.codes);
        // It is written back in the devices layout.
        let again = Hot::between(&base, &applied).unwrap();
        assert_eq!(again.encode()[LAYOUT_AT], DEVICES_LAYOUT);
        // An HOTP app's counter.
        let hotp =
            UserRecord::new_hotp(crate::testing::secret(), crate::otp::Algorithm::SHA1, 6, 0);
        let old = first_layout(0, 0, Some(42), &[0, 0, 0, 0]);
        let applied = Hot::decode(&old).unwrap().apply(&hotp).unwrap();
        assert_eq!(applied.devices[0].hotp.as_ref().unwrap().counter, 42);
        // It fits one device only, of its kind.
        assert!(Hot::decode(&old).unwrap().apply(&base).is_none());
        let two = two_devices();
        let old = first_layout(5, 0, None, &[3, 0, 0, 0]);
        assert!(Hot::decode(&old).unwrap().apply(&two).is_none());
    }

    #[test]
    fn serials_are_sixteen_lowercase_hex_digits() {
        assert_eq!(parse_serial(&format_serial(0xabc)), Some(0xabc));
        assert_eq!(parse_serial("00000000000000FF"), None);
        assert_eq!(parse_serial("ff"), None);
        assert_eq!(parse_serial("+000000000000000"), None);
    }
}
