//! Named devices: the authenticators (TOTP or HOTP) of one user, each with
//! its own secret, parameters and replay state (`[[device]]` in the user
//! file, version 3), and how a file of version 1 or 2 (one `[totp]` or
//! `[hotp]`, its step in `state.last_step`) reads as one device named
//! [`LEGACY_DEVICE`] (docs/ARCHITECTURE.md §5.2).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    Backup, EmailDestination, HotpConfig, Method, Send, SentCode, SmsDestination, SourceFailures,
    State, TotpConfig, TrustedHost, UserRecord, VERSION, Verdict, VerifyPolicy,
};
use crate::error::Result;
use crate::otp::{self, Algorithm, Generator, Secret};
use crate::record::view::AppMethod;

/// Most devices one user may have.
pub const MAX_DEVICES: usize = 8;
/// The longest device name, in bytes.
pub const MAX_NAME: usize = 32;
/// The name of the one device of a file written before devices had names
/// (version 1 or 2), and of the device `otpgate enroll` makes.
pub const LEGACY_DEVICE: &str = "app";

/// A device's name: 1 to [`MAX_NAME`] of `A-Z a-z 0-9 . _ -`. A plain
/// value (`Copy`), so that it travels in a check's outcome and a log line
/// without an allocation; it can hold nothing that needs escaping.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceName {
    bytes: [u8; MAX_NAME],
    len: u8,
}

impl DeviceName {
    /// `text` as a name; `Err` with the reason when it is not one.
    pub fn parse(text: &str) -> std::result::Result<DeviceName, String> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if text.is_empty() || text.len() > MAX_NAME || !text.bytes().all(ok) {
            return Err(format!(
                "device name {text:?}: 1 to {MAX_NAME} of the letters A-Z a-z, digits, `.`, `_` and `-`"
            ));
        }
        let mut bytes = [0u8; MAX_NAME];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(DeviceName {
            bytes,
            len: text.len() as u8,
        })
    }

    /// [`LEGACY_DEVICE`].
    pub fn legacy() -> DeviceName {
        DeviceName::parse(LEGACY_DEVICE).expect("a valid name")
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (`parse`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::str::FromStr for DeviceName {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        DeviceName::parse(s)
    }
}

impl Serialize for DeviceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeviceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DeviceName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `[[device]]`: one authenticator. Exactly one of `totp` and `hotp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: DeviceName,
    /// TOTP: the last accepted time step of this device; that step and
    /// earlier ones are refused for it (not for the other devices).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_step: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpConfig>,
    /// HOTP: its `counter` is this device's replay state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotp: Option<HotpConfig>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Device {
    /// A TOTP device.
    pub fn totp(
        name: DeviceName,
        secret: Secret,
        algorithm: Algorithm,
        digits: u8,
        period: u64,
    ) -> Device {
        Device {
            name,
            last_step: 0,
            totp: Some(TotpConfig {
                secret,
                algorithm,
                digits,
                period,
                window: None,
            }),
            hotp: None,
        }
    }

    /// An HOTP device whose next counter is `counter`.
    pub fn hotp(
        name: DeviceName,
        secret: Secret,
        algorithm: Algorithm,
        digits: u8,
        counter: u64,
    ) -> Device {
        Device {
            name,
            last_step: 0,
            totp: None,
            hotp: Some(HotpConfig {
                secret,
                algorithm,
                digits,
                counter,
                lookahead: None,
            }),
        }
    }

    /// Checks `code` against this device: `Accepted` (its replay state
    /// moved), `Replayed` (a TOTP code of this device's used step or an
    /// earlier one), `None` (not this device's code).
    pub(super) fn check(
        &mut self,
        code: &str,
        now: u64,
        policy: VerifyPolicy,
    ) -> Result<Option<Verdict>> {
        if let Some(t) = &self.totp {
            let generator = Generator::totp(&t.secret, t.algorithm, t.digits, t.period)?;
            let window = u64::from(t.window.unwrap_or(policy.totp_window));
            let current = otp::time_step(now, t.period);
            let steps = generator.matching_steps(
                code,
                current.saturating_sub(window),
                current.saturating_add(window),
            );
            let last_step = self.last_step;
            if let Some(&step) = steps.iter().find(|&&s| s > last_step) {
                self.last_step = step;
                return Ok(Some(Verdict::Accepted(Method::Totp)));
            }
            return Ok(steps
                .first()
                .map(|&step| Verdict::Replayed { step, last_step }));
        }
        let Some(h) = &mut self.hotp else {
            return Ok(None);
        };
        // The counter must move past every accepted code. At u64::MAX it
        // cannot, and the code of the last counter would work forever:
        // that counter is never accepted (the token is worn out; enroll
        // anew).
        if h.counter == u64::MAX {
            return Ok(None);
        }
        let generator = Generator::hotp(&h.secret, h.algorithm, h.digits)?;
        let ahead = u64::from(h.lookahead.unwrap_or(policy.hotp_lookahead));
        let last = h.counter.saturating_add(ahead).min(u64::MAX - 1);
        let steps = generator.matching_steps(code, h.counter, last);
        Ok(steps.first().map(|&counter| {
            h.counter = counter + 1;
            Verdict::Accepted(Method::Hotp)
        }))
    }

    /// TOTP or HOTP.
    pub fn method(&self) -> AppMethod {
        if self.hotp.is_some() {
            AppMethod::Hotp
        } else {
            AppMethod::Totp
        }
    }

    /// Where this device's replay state is: the TOTP step last used or the
    /// HOTP counter next expected (the state file's overlay keeps it).
    pub(crate) fn position(&self) -> u64 {
        match &self.hotp {
            Some(h) => h.counter,
            None => self.last_step,
        }
    }

    pub(crate) fn set_position(&mut self, position: u64) {
        match &mut self.hotp {
            Some(h) => h.counter = position,
            None => self.last_step = position,
        }
    }

    /// The same authenticator as `other` (name, secret and parameters),
    /// whatever the replay state of either.
    pub fn same_as(&self, other: &Device) -> bool {
        let mut a = self.clone();
        a.set_position(0);
        let mut b = other.clone();
        b.set_position(0);
        a == b
    }
}

/// `[state]` as files of every version may hold it: `last_step` only in
/// version 1 and 2 files (the one app's step).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileState {
    #[serde(default)]
    last_step: Option<u64>,
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    locked_until: u64,
}

/// A user file as read: both layouts. [`UserRecord`] deserializes through
/// it (`try_from`), so every reader gets the one representation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordFile {
    version: u32,
    #[serde(default)]
    serial: Option<String>,
    #[serde(default)]
    totp: Option<TotpConfig>,
    #[serde(default)]
    hotp: Option<HotpConfig>,
    #[serde(default, rename = "device")]
    devices: Vec<Device>,
    #[serde(default)]
    backup: Backup,
    #[serde(default)]
    state: FileState,
    #[serde(default, rename = "trusted_host")]
    trusted_hosts: Vec<TrustedHost>,
    #[serde(default)]
    email: Option<EmailDestination>,
    #[serde(default)]
    sms: Option<SmsDestination>,
    #[serde(default, rename = "sent_code")]
    sent_codes: Vec<SentCode>,
    #[serde(default, rename = "send")]
    sends: Vec<Send>,
    #[serde(default, rename = "source_failure")]
    source_failures: Vec<SourceFailures>,
}

impl TryFrom<RecordFile> for UserRecord {
    type Error = String;

    /// Version 1 and 2: `[totp]` or `[hotp]` (and `state.last_step`) is
    /// one device named [`LEGACY_DEVICE`]. Version 3: `[[device]]` only.
    /// One file never mixes the two. A version past this build's is left
    /// to [`UserRecord::validate`], which refuses it by its number.
    fn try_from(file: RecordFile) -> std::result::Result<UserRecord, String> {
        let legacy = file.totp.is_some() || file.hotp.is_some() || file.state.last_step.is_some();
        let mut devices = file.devices;
        if file.version <= VERSION {
            if legacy && !devices.is_empty() {
                return Err("both [[device]] and [totp], [hotp] or state.last_step; \
                            a file keeps its apps in [[device]] only"
                    .into());
            }
            if legacy && file.version >= 3 {
                return Err(format!(
                    "[totp], [hotp] and state.last_step are of version 1 and 2 files; \
                     version {} keeps its apps in [[device]]",
                    file.version
                ));
            }
            if !devices.is_empty() && file.version < 3 {
                return Err("[[device]] needs version = 3".into());
            }
        }
        match (file.totp, file.hotp) {
            (Some(_), Some(_)) => return Err("both [totp] and [hotp]; keep one".into()),
            (Some(totp), None) => devices.push(Device {
                name: DeviceName::legacy(),
                last_step: file.state.last_step.unwrap_or(0),
                totp: Some(totp),
                hotp: None,
            }),
            (None, Some(hotp)) => devices.push(Device {
                name: DeviceName::legacy(),
                last_step: 0,
                totp: None,
                hotp: Some(hotp),
            }),
            (None, None) => {}
        }
        Ok(UserRecord {
            version: file.version,
            serial: file.serial,
            devices,
            backup: file.backup,
            state: State {
                failures: file.state.failures,
                locked_until: file.state.locked_until,
            },
            trusted_hosts: file.trusted_hosts,
            email: file.email,
            sms: file.sms,
            sent_codes: file.sent_codes,
            sends: file.sends,
            source_failures: file.source_failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["a", "phone", "spare-key_2.old", &"x".repeat(MAX_NAME)] {
            assert_eq!(DeviceName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "with space",
            "a=b",
            "ünï",
            "new\nline",
            &"x".repeat(MAX_NAME + 1),
        ] {
            assert!(DeviceName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
