//! The per-user file: one TOML document holding the secret, the hashed
//! backup codes, the login state and the remembered hosts. The file store
//! rewrites it (atomic rename) when the enrollment changes; what a login
//! changes goes to the state file beside it as a [`hot::Hot`] overlay on
//! this record (docs/ARCHITECTURE.md §5.4).
//!
//! ```toml
//! version = 3
//! serial = "9f3c2a1b7e5d4c60" # names this version (state file)
//! [[device]]                  # one per authenticator (at most 8)
//! name = "phone"
//! last_step = 58966342        # this device's last TOTP step
//! [device.totp]               # or [device.hotp] with `counter`
//! secret = "BASE32..."
//! algorithm = "SHA1"
//! digits = 6
//! period = 30
//! [backup]
//! codes = ["sha256$<salt>$<digest>", "..."]
//! [state]
//! failures = 0
//! locked_until = 0
//! [[trusted_host]]             # logins from an address to one service
//! host = "203.0.113.7"
//! service = "sshd"
//! key = "SHA256:..."          # and with this SSH key, when one was used
//! since = 1766620800
//! until = 1767225600
//! [email]                     # codes by email (needs [channels.email])
//! address = "alice@example.org"
//! [sms]                       # codes by SMS (needs [channels.sms])
//! number = "+441632960961"
//! [[sent_code]]               # codes sent and not yet used, hashed
//! channel = "email"
//! code = "sha256$<salt>$<digest>"
//! expires = 1767225600
//! [[send]]                    # sends in the last hour (rate limit)
//! channel = "email"
//! at = 1767225000
//! [[source_failure]]          # forward_pass: wrong answers per source
//! source = "198.51.100.4"
//! failures = 2
//! locked_until = 0
//! last = 1767225000
//! ```
//!
//! Files of version 1 and 2 hold one `[totp]` or `[hotp]` and its step in
//! `state.last_step`: they read as one device named `app` (`record/device.rs`) and
//! are written in this form at their next rewrite.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::backup;
use crate::channel::{self, Kind};
use crate::error::{Error, Result};
use crate::net;
use crate::otp::{self, Algorithm, Secret};

mod device;
pub(crate) mod hot;
mod sends;
mod sources;
mod view;

pub use device::{Device, DeviceName, LEGACY_DEVICE, MAX_DEVICES, MAX_NAME};
pub use sends::EnrollmentSends;
pub use sources::{MAX_SOURCES, SourceFailures, source_key};
pub use view::{App, AppMethod, View};

/// The file version this build writes. Version 2 files may have newer
/// login state in `<name>.state` (docs/ARCHITECTURE.md §5.4), so a build
/// that knows only version 1 must refuse them rather than read old state.
/// Version 3 keeps the apps in `[[device]]`, each with its own replay
/// state: a build that knows only version 2 must refuse it rather than
/// read a file without an app.
pub const VERSION: u32 = 3;
/// The oldest version still read (migrated on the next write).
pub const OLDEST_VERSION: u32 = 1;
/// Most remembered hosts kept per user; the oldest expiry goes first.
pub const MAX_TRUSTED_HOSTS: usize = 64;

/// A whole user file. Read through `RecordFile` (`record/device.rs`), so files of
/// every version come out in this one form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "device::RecordFile")]
pub struct UserRecord {
    /// The version of the file it was read from ([`VERSION`] for a record
    /// made here). Always written as [`VERSION`]: the text is in this
    /// build's form whatever form the file was in (the migration).
    #[serde(serialize_with = "write_version")]
    pub version: u32,
    /// Names this version of the file, for the state file's slots: set by
    /// the file store at every rewrite and taken off again when it reads
    /// the file (callers never see it); absent in files it did not write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The authenticators, in the order codes are tried.
    #[serde(rename = "device", skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    pub backup: Backup,
    pub state: State,
    #[serde(rename = "trusted_host", skip_serializing_if = "Vec::is_empty")]
    pub trusted_hosts: Vec<TrustedHost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailDestination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsDestination>,
    /// Codes sent by email or SMS, not used yet.
    #[serde(rename = "sent_code", skip_serializing_if = "Vec::is_empty")]
    pub sent_codes: Vec<SentCode>,
    /// When codes were sent, for the per-hour limit (older ones pruned).
    #[serde(rename = "send", skip_serializing_if = "Vec::is_empty")]
    pub sends: Vec<Send>,
    /// Wrong answers counted per source address (`forward_pass`), so that
    /// guesses without a proven password lock only their own source.
    #[serde(rename = "source_failure", skip_serializing_if = "Vec::is_empty")]
    pub source_failures: Vec<SourceFailures>,
}

fn write_version<S: serde::Serializer>(_: &u32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u32(VERSION)
}

/// `[email]`: where email codes go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailDestination {
    pub address: String,
}

/// `[sms]`: where SMS codes go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsDestination {
    pub number: String,
}

/// A code sent and not used yet: hashed like a backup code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentCode {
    pub channel: Kind,
    pub code: String,
    /// Unix time from which the code is refused.
    pub expires: u64,
}

/// A user file's value that is not acceptable, at `key`.
fn invalid(path: &Path, key: &str, message: String) -> Error {
    Error::Invalid {
        source: path.into(),
        key: key.to_string(),
        message,
    }
}

/// `Err(why)` unless `value` is what `normalize` makes of it.
fn in_normal_form(
    value: &str,
    normalize: fn(&str) -> std::result::Result<String, String>,
) -> std::result::Result<(), String> {
    match normalize(value) {
        Ok(normal) if normal == value => Ok(()),
        Ok(_) => Err("not in normal form".into()),
        Err(why) => Err(why),
    }
}

/// One send, for the rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    pub channel: Kind,
    pub at: u64,
}

/// Most pending sent codes and send times kept (far above any allowed
/// rate; a bound on the file's size).
pub const MAX_SENT: usize = 128;

/// Time-based codes (RFC 6238).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpConfig {
    pub secret: Secret,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default = "default_digits")]
    pub digits: u8,
    #[serde(default = "default_period")]
    pub period: u64,
    /// Steps accepted either side of now; unset = the system `totp_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
}

/// Counter-based codes (RFC 4226).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotpConfig {
    pub secret: Secret,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default = "default_digits")]
    pub digits: u8,
    /// The next counter value expected.
    #[serde(default)]
    pub counter: u64,
    /// Counters accepted ahead of `counter`; unset = the system `hotp_lookahead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead: Option<u32>,
}

/// Hashed one-time backup codes; a used one is removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    #[serde(default)]
    pub codes: Vec<String>,
}

/// What changes at every login besides a device's replay state (each
/// device keeps its own: [`Device::last_step`], its HOTP counter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Wrong codes since the last success or lockout.
    #[serde(default)]
    pub failures: u32,
    /// Unix time until which every code is refused; 0 = not locked.
    #[serde(default)]
    pub locked_until: u64,
}

/// Logins from one address to one PAM service that the user chose to let
/// skip the code, after a code from their app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedHost {
    /// The canonical address ([`net::canonical_rhost`]).
    pub host: String,
    /// The PAM service the trust is for. Empty in files written before
    /// trust was bound to a service: such an entry is never honoured.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// The fingerprint (`SHA256:...`, `ssh_auth::fingerprint`) of the SSH
    /// key of the login that granted the trust: only logins with this key
    /// match. Absent (every entry before keys were known, and grants after
    /// a login without a key): the address alone, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Unix time the trust was granted (0 in older files).
    #[serde(default)]
    pub since: u64,
    /// Unix time at which the trust ends.
    pub until: u64,
}

fn default_digits() -> u8 {
    6
}
fn default_period() -> u64 {
    30
}

/// How a code was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Totp,
    Hotp,
    Backup,
    Email,
    Sms,
}

impl Method {
    /// The word used in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::Hotp => "hotp",
            Method::Backup => "backup",
            Method::Email => "email",
            Method::Sms => "sms",
        }
    }
}

/// The method of a code sent by `kind`.
impl From<Kind> for Method {
    fn from(kind: Kind) -> Method {
        match kind {
            Kind::Email => Method::Email,
            Kind::Sms => Method::Sms,
        }
    }
}

/// The result of checking one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted(Method),
    /// Matches no code.
    Wrong,
    /// A TOTP code for a step already used, or older than one used: a
    /// replay, or a clock that went backwards since the last login.
    Replayed {
        step: u64,
        last_step: u64,
    },
    /// A sent code whose lifetime is over.
    Expired(Kind),
}

/// System-wide verification settings that a user file may override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    pub totp_window: u32,
    pub hotp_lookahead: u32,
}

/// Lockout settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock the account; 0 = never.
    pub after: u32,
    pub minutes: u32,
}

impl UserRecord {
    /// A fresh TOTP enrollment: one device named [`LEGACY_DEVICE`].
    pub fn new_totp(secret: Secret, algorithm: Algorithm, digits: u8, period: u64) -> Self {
        let mut r = UserRecord::new_channels_only();
        r.devices.push(Device::totp(
            DeviceName::legacy(),
            secret,
            algorithm,
            digits,
            period,
        ));
        r
    }

    /// A fresh HOTP enrollment: one device named [`LEGACY_DEVICE`].
    pub fn new_hotp(secret: Secret, algorithm: Algorithm, digits: u8, counter: u64) -> Self {
        let mut r = UserRecord::new_channels_only();
        r.devices.push(Device::hotp(
            DeviceName::legacy(),
            secret,
            algorithm,
            digits,
            counter,
        ));
        r
    }

    /// An enrollment with no authenticator app, only a destination for
    /// sent codes (set one before saving).
    pub fn new_channels_only() -> Self {
        UserRecord {
            version: VERSION,
            serial: None,
            devices: Vec::new(),
            backup: Backup::default(),
            state: State::default(),
            trusted_hosts: Vec::new(),
            email: None,
            sms: None,
            sent_codes: Vec::new(),
            sends: Vec::new(),
            source_failures: Vec::new(),
        }
    }

    /// The device named `name`.
    pub fn device(&self, name: &DeviceName) -> Option<&Device> {
        self.devices.iter().find(|d| &d.name == name)
    }

    /// The first TOTP device's settings (the one app of most records).
    pub fn totp(&self) -> Option<&TotpConfig> {
        self.devices.iter().find_map(|d| d.totp.as_ref())
    }

    /// The first TOTP device's settings, to change.
    pub fn totp_mut(&mut self) -> Option<&mut TotpConfig> {
        self.devices.iter_mut().find_map(|d| d.totp.as_mut())
    }

    /// The first HOTP device's settings.
    pub fn hotp(&self) -> Option<&HotpConfig> {
        self.devices.iter().find_map(|d| d.hotp.as_ref())
    }

    /// The user's address or number for `kind`.
    pub fn destination(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Email => self.email.as_ref().map(|e| e.address.as_str()),
            Kind::Sms => self.sms.as_ref().map(|s| s.number.as_str()),
        }
    }

    /// Sets (`Some`) or removes (`None`) the destination for `kind`; a
    /// removed channel's pending codes go with it.
    pub fn set_destination(&mut self, kind: Kind, to: Option<String>) {
        match kind {
            Kind::Email => self.email = to.map(|address| EmailDestination { address }),
            Kind::Sms => self.sms = to.map(|number| SmsDestination { number }),
        }
        if self.destination(kind).is_none() {
            self.sent_codes.retain(|c| c.channel != kind);
        }
    }

    /// True when the record has an authenticator app (TOTP or HOTP).
    pub fn has_app(&self) -> bool {
        !self.devices.is_empty()
    }

    /// True when nothing is left to log in with.
    pub fn has_no_method(&self) -> bool {
        !self.has_app() && self.email.is_none() && self.sms.is_none()
    }

    /// Drops sent codes that expired and sends older than an hour.
    pub fn prune_sent(&mut self, now: u64) {
        self.sent_codes.retain(|c| c.expires > now);
        sends::prune(&mut self.sends, now);
    }

    /// `Err(next)`: `max_per_hour` sends by `kind` in the last hour; `next`
    /// is the Unix time the oldest of them leaves the window.
    pub fn send_allowed(
        &self,
        kind: Kind,
        now: u64,
        max_per_hour: u32,
    ) -> std::result::Result<(), u64> {
        sends::allowed(&self.sends, kind, now, max_per_hour)
    }

    /// Records a send of a new code by `kind` at `now`, valid for
    /// `lifetime` seconds. Only its hash is kept; returns the code in clear.
    pub fn new_sent_code(
        &mut self,
        kind: Kind,
        digits: u8,
        now: u64,
        lifetime: u64,
    ) -> Result<zeroize::Zeroizing<String>> {
        self.prune_sent(now);
        let code = backup::random_code(digits)?;
        self.sent_codes.push(SentCode {
            channel: kind,
            code: backup::hash(&code)?,
            expires: now.saturating_add(lifetime),
        });
        self.note_send(kind, now);
        if self.sent_codes.len() > MAX_SENT {
            self.sent_codes.remove(0);
        }
        Ok(code)
    }

    /// Counts a send by `kind` at `now` towards the per-hour limit.
    pub fn note_send(&mut self, kind: Kind, now: u64) {
        sends::note(&mut self.sends, kind, now);
    }

    /// Parses and validates a user file's text; `path` is for messages.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self> {
        let record: UserRecord =
            toml::from_str(text).map_err(|e| Error::from_toml(path, text, &e))?;
        record.validate(path).map_err(|e| e.with_line_from(text))?;
        Ok(record)
    }

    /// The TOML text of this record.
    pub fn to_toml(&self) -> String {
        // Serializing plain structs of strings and integers cannot fail;
        // should it ever, an empty string fails validation on the next read
        // instead of panicking inside a PAM module.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks what serde cannot: the version, one method, sane parameters.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if !(OLDEST_VERSION..=VERSION).contains(&self.version) {
            return Err(invalid(
                path,
                "version",
                format!(
                    "version {} is not supported (this otpgate reads versions \
                     {OLDEST_VERSION} to {VERSION})",
                    self.version
                ),
            ));
        }
        if let Some(serial) = &self.serial
            && hot::parse_serial(serial).is_none()
        {
            return Err(invalid(path, "serial", "not 16 hex digits".into()));
        }
        self.validate_methods(path)?;
        self.validate_lists(path)?;
        self.validate_parameters(path)
    }

    /// Devices well-formed and uniquely named, at least one method,
    /// destinations in normal form.
    fn validate_methods(&self, path: &Path) -> Result<()> {
        if self.has_no_method() {
            return Err(invalid(
                path,
                &self.app_key("totp"),
                "no method: none of [[device]], [email], [sms] is present".into(),
            ));
        }
        if self.devices.len() > MAX_DEVICES {
            return Err(invalid(
                path,
                "device",
                format!("more than {MAX_DEVICES} devices"),
            ));
        }
        for (i, d) in self.devices.iter().enumerate() {
            if d.totp.is_some() == d.hotp.is_some() {
                return Err(invalid(
                    path,
                    "device",
                    format!("device {}: exactly one of totp and hotp", d.name),
                ));
            }
            if d.hotp.is_some() && d.last_step != 0 {
                return Err(invalid(
                    path,
                    "device.last_step",
                    format!("device {}: an HOTP device has no last_step", d.name),
                ));
            }
            if self.devices[..i].iter().any(|e| e.name == d.name) {
                return Err(invalid(
                    path,
                    "device.name",
                    format!("two devices named {}", d.name),
                ));
            }
        }
        if let Some(e) = &self.email
            && let Err(why) = in_normal_form(&e.address, channel::normalize_email)
        {
            return Err(invalid(path, "email.address", why));
        }
        if let Some(s) = &self.sms
            && let Err(why) = in_normal_form(&s.number, channel::normalize_number)
        {
            return Err(invalid(path, "sms.number", why));
        }
        Ok(())
    }

    /// Stored hashes well-formed, every list within its bound.
    fn validate_lists(&self, path: &Path) -> Result<()> {
        for c in &self.sent_codes {
            backup::validate_entry(&c.code)
                .map_err(|e| invalid(path, "sent_code.code", e.to_string()))?;
        }
        for entry in &self.backup.codes {
            backup::validate_entry(entry)
                .map_err(|e| invalid(path, "backup.codes", e.to_string()))?;
        }
        if self.sent_codes.len() > MAX_SENT || self.sends.len() > MAX_SENT {
            return Err(invalid(
                path,
                "sent_code",
                format!("more than {MAX_SENT} entries"),
            ));
        }
        if self.source_failures.len() > MAX_SOURCES {
            return Err(invalid(
                path,
                "source_failure",
                format!("more than {MAX_SOURCES} entries"),
            ));
        }
        Ok(())
    }

    /// The key of `field` of an app in messages: `totp.digits` in the
    /// files of version 1 and 2 that spell it so, `device.totp.digits` in
    /// the others.
    fn app_key(&self, field: &str) -> String {
        let prefix = if self.version < 3 { "" } else { "device." };
        format!("{prefix}{field}").trim_end_matches('.').to_string()
    }

    /// TOTP and HOTP parameters in their ranges.
    fn validate_parameters(&self, path: &Path) -> Result<()> {
        for d in &self.devices {
            if let Some(t) = &d.totp {
                Error::check_range(path, &self.app_key("totp.digits"), t.digits, otp::DIGITS)?;
                Error::check_range(path, &self.app_key("totp.period"), t.period, otp::PERIOD)?;
                if let Some(window) = t.window {
                    Error::check_range(path, &self.app_key("totp.window"), window, 0..=10)?;
                }
            }
            if let Some(h) = &d.hotp {
                Error::check_range(path, &self.app_key("hotp.digits"), h.digits, otp::DIGITS)?;
                if let Some(lookahead) = h.lookahead {
                    Error::check_range(path, &self.app_key("hotp.lookahead"), lookahead, 0..=1000)?;
                }
            }
        }
        Ok(())
    }

    /// `Some(until)` while the account is locked out at `now`.
    pub fn locked_until(&self, now: u64) -> Option<u64> {
        (self.state.locked_until > now).then_some(self.state.locked_until)
    }

    /// Counts a wrong code; returns the lockout end if this failure locked
    /// the account.
    pub fn record_failure(&mut self, now: u64, policy: LockoutPolicy) -> Option<u64> {
        self.state.failures = self.state.failures.saturating_add(1);
        if policy.after > 0 && self.state.failures >= policy.after {
            self.state.failures = 0;
            self.state.locked_until = now.saturating_add(u64::from(policy.minutes) * 60);
            return Some(self.state.locked_until);
        }
        None
    }

    /// Clears the failure count and any expired lock after a good code.
    pub fn record_success(&mut self) {
        self.state.failures = 0;
        self.state.locked_until = 0;
    }

    /// Lifts a lockout (admin `unlock`).
    pub fn unlock(&mut self) {
        self.record_success();
    }

    /// Checks `answer` against every device (in order), then the backup
    /// codes. On acceptance the record is changed so the same code never
    /// works again (the device's step remembered or counter advanced,
    /// backup code removed); the caller must write it before granting the
    /// login.
    pub fn verify(&mut self, answer: &Answer, now: u64, policy: VerifyPolicy) -> Result<Verdict> {
        Ok(self.verify_device(answer, now, policy)?.0)
    }

    /// [`UserRecord::verify`], and the name of the device whose code it
    /// was. A TOTP step used on one device refuses that step on that
    /// device only: another device's code for the same step is its own.
    pub fn verify_device(
        &mut self,
        answer: &Answer,
        now: u64,
        policy: VerifyPolicy,
    ) -> Result<(Verdict, Option<DeviceName>)> {
        let code = answer.as_str();
        let mut replayed = None;
        for device in &mut self.devices {
            match device.check(code, now, policy)? {
                Some(Verdict::Accepted(method)) => {
                    return Ok((Verdict::Accepted(method), Some(device.name)));
                }
                Some(verdict) => replayed = replayed.or(Some(verdict)),
                None => {}
            }
        }
        if let Some(verdict) = replayed {
            return Ok((verdict, None));
        }
        if let Some(i) = backup::find(&self.backup.codes, code) {
            self.backup.codes.remove(i);
            return Ok((Verdict::Accepted(Method::Backup), None));
        }
        if let Some(verdict) = self.verify_sent(code, now) {
            return Ok((verdict, None));
        }
        Ok((Verdict::Wrong, None))
    }

    /// Checks `code` against every sent code (all hashed and compared in
    /// constant time, expired ones too, so an expired code can be told
    /// apart). A match that has not expired ends every pending code: the
    /// login they were sent for is done.
    fn verify_sent(&mut self, code: &str, now: u64) -> Option<Verdict> {
        if self.sent_codes.is_empty() {
            return None;
        }
        let hashes: Vec<String> = self.sent_codes.iter().map(|c| c.code.clone()).collect();
        let i = backup::find(&hashes, code)?;
        let sent = self.sent_codes[i].clone();
        if sent.expires <= now {
            self.sent_codes.remove(i);
            return Some(Verdict::Expired(sent.channel));
        }
        // A channel removed since the code was sent no longer counts.
        if self.destination(sent.channel).is_none() {
            self.sent_codes.remove(i);
            return None;
        }
        self.sent_codes.clear();
        Some(Verdict::Accepted(Method::from(sent.channel)))
    }

    /// True when the user trusted logins from `rhost` (an address literal,
    /// compared in its canonical form) to `service`, and the trust has not
    /// expired. A host name, an empty service and an entry without a
    /// service never match. An entry bound to an SSH key matches only a
    /// login whose one key (`key`, its fingerprint) is that key; an entry
    /// without a key matches by address alone.
    pub fn is_trusted_host(&self, rhost: &str, service: &str, key: Option<&str>, now: u64) -> bool {
        let Some(address) = net::canonical_rhost(rhost) else {
            return false;
        };
        self.honoured_trusted_hosts(now).any(|h| {
            h.host == address
                && h.service == service
                && h.key.as_deref().is_none_or(|k| Some(k) == key)
        })
    }

    /// The trusts that still let a login skip the code at `now`.
    pub fn honoured_trusted_hosts(&self, now: u64) -> impl Iterator<Item = &TrustedHost> {
        self.trusted_hosts
            .iter()
            .filter(move |h| h.until > now && !h.service.is_empty())
    }

    /// Trusts logins from `rhost` to `service` (with the SSH key `key`, a
    /// fingerprint, when given) from `now` until `until`, replacing the
    /// entry for the same address, service and key, dropping entries that
    /// no longer count and keeping at most [`MAX_TRUSTED_HOSTS`]. Returns
    /// the canonical address trusted; `None` (nothing changed) when `rhost`
    /// is not an address literal or there is no service: a name could be
    /// anyone's tomorrow.
    pub fn trust_host(
        &mut self,
        rhost: &str,
        service: &str,
        key: Option<&str>,
        until: u64,
        now: u64,
    ) -> Option<String> {
        let host = net::canonical_rhost(rhost)?;
        if service.is_empty() {
            return None;
        }
        self.trusted_hosts
            .retain(|h| !(h.host == host && h.service == service && h.key.as_deref() == key));
        self.prune_trusted_hosts(now);
        self.trusted_hosts.push(TrustedHost {
            host: host.clone(),
            service: service.to_string(),
            key: key.map(str::to_string),
            since: now,
            until,
        });
        if self.trusted_hosts.len() > MAX_TRUSTED_HOSTS {
            self.trusted_hosts
                .sort_by_key(|h| std::cmp::Reverse(h.until));
            self.trusted_hosts.truncate(MAX_TRUSTED_HOSTS);
        }
        Some(host)
    }

    /// Drops trusts that have expired at `now`, and entries without a
    /// service (never honoured).
    pub fn prune_trusted_hosts(&mut self, now: u64) {
        self.trusted_hosts
            .retain(|h| h.until > now && !h.service.is_empty());
    }

    /// Folds the use of one-time codes in `other`, another copy of this
    /// same enrollment (the file a record was imported from, still used by
    /// logins until the switch to `otpgated`), into this one: a TOTP step,
    /// HOTP counter, backup code or sent code used in either copy is used,
    /// failures and lockouts count as the higher, sends add up. Trusts,
    /// destinations and per-source failures stay this copy's (the other's
    /// newer trusts are dropped: a login is asked again). `Err` with the
    /// reason, nothing changed, when `other` is another enrollment: another
    /// app, or backup codes made anew (no code in common).
    pub fn fold_used(&mut self, other: &UserRecord) -> std::result::Result<(), &'static str> {
        let same_devices = self.devices.len() == other.devices.len()
            && self
                .devices
                .iter()
                .zip(&other.devices)
                .all(|(a, b)| a.same_as(b));
        if !same_devices {
            return Err("another enrollment (another secret, device or app settings)");
        }
        let (mine, theirs) = (&self.backup.codes, &other.backup.codes);
        if !mine.is_empty() && !theirs.is_empty() && !mine.iter().any(|c| theirs.contains(c)) {
            return Err("the backup codes were made anew in one copy");
        }
        self.backup.codes.retain(|c| theirs.contains(c));
        self.sent_codes
            .retain(|c| other.sent_codes.iter().any(|o| o.code == c.code));
        for (mine, theirs) in self.devices.iter_mut().zip(&other.devices) {
            mine.set_position(mine.position().max(theirs.position()));
        }
        self.state.failures = self.state.failures.max(other.state.failures);
        self.state.locked_until = self.state.locked_until.max(other.state.locked_until);
        for send in &other.sends {
            if !self.sends.contains(send) {
                self.sends.push(send.clone());
            }
        }
        // The newest count for the hourly limit; keep the file's bound.
        self.sends.sort_by_key(|s| s.at);
        let extra = self.sends.len().saturating_sub(MAX_SENT);
        self.sends.drain(..extra);
        Ok(())
    }

    /// Replaces the backup codes with fresh ones; returns them in clear,
    /// the only time they exist so.
    pub fn new_backup_codes(
        &mut self,
        count: usize,
        digits: u8,
    ) -> Result<Vec<zeroize::Zeroizing<String>>> {
        let codes = backup::generate(count, digits)?;
        self.backup.codes = codes
            .iter()
            .map(|c| backup::hash(c))
            .collect::<Result<_>>()?;
        Ok(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otp::Generator;

    const POLICY: VerifyPolicy = VerifyPolicy {
        totp_window: 1,
        hotp_lookahead: 10,
    };

    use crate::testing::{secret, totp_record};

    fn code_at(now: u64) -> Answer {
        Answer::parse(&crate::testing::code_at(now)).unwrap()
    }

    const NOW: u64 = 1_700_000_010;

    #[test]
    fn current_code_is_accepted_once() {
        let mut r = totp_record();
        let a = code_at(NOW);
        assert_eq!(
            r.verify(&a, NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Totp)
        );
        assert_eq!(r.devices[0].last_step, NOW / 30);
        assert_eq!(
            r.verify(&a, NOW + 1, POLICY).unwrap(),
            Verdict::Replayed {
                step: NOW / 30,
                last_step: NOW / 30
            }
        );
    }

    #[test]
    fn window_edges() {
        let mut r = totp_record();
        // One step either side is inside the default window.
        assert_eq!(
            r.verify(&code_at(NOW - 30), NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Totp)
        );
        assert_eq!(
            r.verify(&code_at(NOW + 30), NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Totp)
        );
        // Two steps away is outside.
        let mut r = totp_record();
        assert_eq!(
            r.verify(&code_at(NOW - 60), NOW, POLICY).unwrap(),
            Verdict::Wrong
        );
        assert_eq!(
            r.verify(&code_at(NOW + 60), NOW, POLICY).unwrap(),
            Verdict::Wrong
        );
        assert_eq!(
            r.verify(&code_at(NOW - 90), NOW, POLICY).unwrap(),
            Verdict::Wrong
        );
        // A per-user window widens it.
        r.totp_mut().unwrap().window = Some(3);
        assert_eq!(
            r.verify(&code_at(NOW - 90), NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Totp)
        );
    }

    #[test]
    fn an_earlier_step_than_the_last_accepted_is_refused() {
        let mut r = totp_record();
        assert!(matches!(
            r.verify(&code_at(NOW + 30), NOW, POLICY).unwrap(),
            Verdict::Accepted(_)
        ));
        // The current step's code is valid but older than the one used.
        assert!(matches!(
            r.verify(&code_at(NOW), NOW, POLICY).unwrap(),
            Verdict::Replayed { .. }
        ));
    }

    #[test]
    fn clock_jumping_back_does_not_reopen_used_steps() {
        let mut r = totp_record();
        assert!(matches!(
            r.verify(&code_at(NOW), NOW, POLICY).unwrap(),
            Verdict::Accepted(_)
        ));
        let earlier = NOW - 3600;
        assert!(matches!(
            r.verify(&code_at(NOW), earlier, POLICY).unwrap(),
            Verdict::Wrong
        ));
        // A code for the earlier time is valid there but before last_step.
        assert!(matches!(
            r.verify(&code_at(earlier), earlier, POLICY).unwrap(),
            Verdict::Replayed { .. }
        ));
    }

    #[test]
    fn a_clock_at_the_epoch_does_not_underflow() {
        // Step 0 is never accepted (`last_step` starts at 0); what matters
        // is that the window arithmetic at 0 neither panics nor wraps.
        let mut r = totp_record();
        assert!(!matches!(
            r.verify(&code_at(0), 0, POLICY).unwrap(),
            Verdict::Wrong
        ));
        assert_eq!(
            r.verify(&code_at(45), 45, POLICY).unwrap(),
            Verdict::Accepted(Method::Totp)
        );
        assert_eq!(
            r.verify(&code_at(u64::MAX), u64::MAX, POLICY).unwrap(),
            Verdict::Accepted(Method::Totp)
        );
    }

    #[test]
    fn hotp_advances_and_resyncs_within_lookahead() {
        let mut r = UserRecord::new_hotp(secret(), Algorithm::SHA1, 6, 0);
        let code = |c: &str| Answer::parse(c.as_bytes()).unwrap();
        // RFC 4226 values: 0 -> 755224, 1 -> 287082, 5 -> 254676, 20 -> ?
        assert_eq!(
            r.verify(&code("755224"), NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Hotp)
        );
        assert_eq!(r.hotp().unwrap().counter, 1);
        assert_eq!(
            r.verify(&code("755224"), NOW, POLICY).unwrap(),
            Verdict::Wrong,
            "used"
        );
        // Skipping ahead (button pressed a few times) resyncs.
        assert_eq!(
            r.verify(&code("254676"), NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Hotp)
        );
        assert_eq!(r.hotp().unwrap().counter, 6);
        // Older counters never come back.
        assert_eq!(
            r.verify(&code("287082"), NOW, POLICY).unwrap(),
            Verdict::Wrong
        );
        // Beyond the lookahead is refused.
        let g = Generator::hotp(&secret(), Algorithm::SHA1, 6).unwrap();
        let far = g.code_at_step(6 + 11);
        assert_eq!(r.verify(&code(&far), NOW, POLICY).unwrap(), Verdict::Wrong);
        let edge = g.code_at_step(6 + 10);
        assert_eq!(
            r.verify(&code(&edge), NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Hotp)
        );
        assert_eq!(r.hotp().unwrap().counter, 17);
    }

    #[test]
    fn backup_code_works_once_and_count_drops() {
        let mut r = totp_record();
        let codes = r.new_backup_codes(10, 8).unwrap();
        assert_eq!(r.backup.codes.len(), 10);
        let a = Answer::parse(codes[3].as_bytes()).unwrap();
        assert_eq!(
            r.verify(&a, NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Backup)
        );
        assert_eq!(r.backup.codes.len(), 9);
        assert_eq!(r.verify(&a, NOW, POLICY).unwrap(), Verdict::Wrong);
        // The others still work.
        let b = Answer::parse(codes[4].as_bytes()).unwrap();
        assert_eq!(
            r.verify(&b, NOW, POLICY).unwrap(),
            Verdict::Accepted(Method::Backup)
        );
    }

    #[test]
    fn lockout_after_n_failures_for_m_minutes() {
        let mut r = totp_record();
        let policy = LockoutPolicy {
            after: 3,
            minutes: 15,
        };
        assert_eq!(r.record_failure(NOW, policy), None);
        assert_eq!(r.record_failure(NOW, policy), None);
        assert_eq!(r.locked_until(NOW), None);
        let until = r.record_failure(NOW, policy).unwrap();
        assert_eq!(until, NOW + 900);
        assert_eq!(r.locked_until(NOW), Some(until));
        assert_eq!(r.locked_until(NOW + 899), Some(until));
        assert_eq!(r.locked_until(NOW + 900), None, "lock ends at `until`");
        // Success resets the count.
        r.record_failure(NOW + 901, policy);
        r.record_success();
        assert_eq!(r.state.failures, 0);
    }

    #[test]
    fn lockout_zero_never_locks() {
        let mut r = totp_record();
        let policy = LockoutPolicy {
            after: 0,
            minutes: 15,
        };
        for _ in 0..1000 {
            assert_eq!(r.record_failure(NOW, policy), None);
        }
        assert_eq!(r.locked_until(NOW), None);
    }

    #[test]
    fn trusted_hosts_expire_and_are_per_host() {
        let mut r = totp_record();
        r.trust_host("203.0.113.7", "sshd", None, NOW + 100, NOW);
        assert!(r.is_trusted_host("203.0.113.7", "sshd", None, NOW));
        assert!(r.is_trusted_host("203.0.113.7", "sshd", None, NOW + 99));
        assert!(!r.is_trusted_host("203.0.113.7", "sshd", None, NOW + 100));
        assert!(!r.is_trusted_host("203.0.113.8", "sshd", None, NOW));
        assert!(!r.is_trusted_host("", "sshd", None, NOW));
        // Re-trusting replaces, pruning drops expired entries.
        r.trust_host("203.0.113.7", "sshd", None, NOW + 500, NOW);
        r.trust_host("198.51.100.1", "sshd", None, NOW + 10, NOW);
        assert_eq!(r.trusted_hosts.len(), 2);
        r.prune_trusted_hosts(NOW + 20);
        assert_eq!(r.trusted_hosts.len(), 1);
    }

    #[test]
    fn a_trust_is_bound_to_its_service_and_the_canonical_address() {
        let mut r = totp_record();
        let got = r.trust_host("::ffff:203.0.113.7", "sshd", None, NOW + 100, NOW);
        assert_eq!(got.as_deref(), Some("203.0.113.7"));
        assert_eq!(r.trusted_hosts[0].since, NOW);
        assert!(r.is_trusted_host("203.0.113.7", "sshd", None, NOW));
        assert!(r.is_trusted_host("::ffff:203.0.113.7", "sshd", None, NOW));
        assert!(
            !r.is_trusted_host("203.0.113.7", "su", None, NOW),
            "another service"
        );
        assert!(!r.is_trusted_host("203.0.113.7", "", None, NOW));
        for name in ["host.example", "[203.0.113.7]", " 203.0.113.7"] {
            assert!(!r.is_trusted_host(name, "sshd", None, NOW), "{name:?}");
            assert_eq!(
                r.trust_host(name, "sshd", None, NOW + 100, NOW),
                None,
                "{name:?}"
            );
        }
        assert_eq!(r.trust_host("203.0.113.7", "", None, NOW + 100, NOW), None);
        assert_eq!(r.trusted_hosts.len(), 1);
    }

    #[test]
    fn an_entry_without_a_service_is_not_honoured_and_pruned() {
        let p = Path::new("u.toml");
        let mut r = totp_record();
        r.trusted_hosts.push(TrustedHost {
            host: "203.0.113.7".into(),
            service: String::new(),
            key: None,
            since: 0,
            until: NOW + 100,
        });
        let text = r.to_toml();
        assert!(!text.contains("service"), "{text}");
        let mut back = UserRecord::from_toml(p, &text).unwrap();
        assert!(!back.is_trusted_host("203.0.113.7", "sshd", None, NOW));
        assert_eq!(back.honoured_trusted_hosts(NOW).count(), 0);
        back.prune_trusted_hosts(NOW);
        assert!(back.trusted_hosts.is_empty());
    }

    #[test]
    fn a_host_remembered_with_a_key_matches_only_that_key() {
        const K1: &str = "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU";
        const K2: &str = "SHA256:HZ2sGjPoma1GW1Qchg57ONjIIU+pAAbPR91nD5rV6qY";
        let mut r = totp_record();
        r.trust_host("203.0.113.7", "sshd", Some(K1), NOW + 100, NOW);
        assert!(r.is_trusted_host("203.0.113.7", "sshd", Some(K1), NOW));
        assert!(!r.is_trusted_host("203.0.113.7", "sshd", Some(K2), NOW));
        assert!(!r.is_trusted_host("203.0.113.7", "sshd", None, NOW));
        assert!(!r.is_trusted_host("203.0.113.8", "sshd", Some(K1), NOW));
        assert!(!r.is_trusted_host("203.0.113.7", "su", Some(K1), NOW));
        // A second key from the same address is a second entry; granting
        // the first again replaces its own entry only.
        r.trust_host("203.0.113.7", "sshd", Some(K2), NOW + 50, NOW);
        r.trust_host("203.0.113.7", "sshd", Some(K1), NOW + 200, NOW);
        assert_eq!(r.trusted_hosts.len(), 2);
        assert!(r.is_trusted_host("203.0.113.7", "sshd", Some(K2), NOW + 49));
        assert!(!r.is_trusted_host("203.0.113.7", "sshd", Some(K2), NOW + 50));
        assert!(r.is_trusted_host("203.0.113.7", "sshd", Some(K1), NOW + 199));
        let text = r.to_toml();
        assert!(text.contains(&format!("key = \"{K1}\"")), "{text}");
        let back = UserRecord::from_toml(Path::new("u.toml"), &text).unwrap();
        assert_eq!(back.trusted_hosts, r.trusted_hosts);
    }

    /// Files written before keys were known hold entries without `key`:
    /// they read as before and stay address-only until they expire, so
    /// they match a login with any key, or none.
    #[test]
    fn an_entry_without_a_key_matches_by_address_alone() {
        const K1: &str = "SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU";
        let old = "version = 2\n[totp]\nsecret = \"JBSWY3DPEHPK3PXP\"\n\
                   [[trusted_host]]\nhost = \"203.0.113.7\"\nservice = \"sshd\"\n\
                   since = 1\nuntil = 1700000100\n";
        let r = UserRecord::from_toml(Path::new("u.toml"), old).unwrap();
        assert_eq!(r.trusted_hosts[0].key, None);
        assert!(r.is_trusted_host("203.0.113.7", "sshd", None, NOW));
        assert!(r.is_trusted_host("203.0.113.7", "sshd", Some(K1), NOW));
        assert!(!r.to_toml().contains("key ="));
    }

    #[test]
    fn trusted_hosts_are_capped() {
        let mut r = totp_record();
        for i in 0..100u64 {
            r.trust_host(&format!("10.0.0.{i}"), "sshd", None, NOW + 1000 + i, NOW);
        }
        assert_eq!(r.trusted_hosts.len(), MAX_TRUSTED_HOSTS);
        assert!(
            r.is_trusted_host("10.0.0.99", "sshd", None, NOW),
            "newest kept"
        );
        assert!(
            !r.is_trusted_host("10.0.0.0", "sshd", None, NOW),
            "oldest dropped"
        );
    }

    #[test]
    fn toml_round_trip_keeps_everything() {
        let mut r = totp_record();
        r.new_backup_codes(3, 8).unwrap();
        r.devices[0].last_step = 42;
        r.state.failures = 2;
        r.trust_host("192.0.2.1", "sshd", None, NOW + 60, NOW);
        r.serial = Some("00000000000000ff".into());
        let text = r.to_toml();
        assert!(text.contains("version = 3"));
        assert!(text.contains("[[device]]"));
        assert!(text.contains("[[trusted_host]]"));
        assert!(text.contains("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        let back = UserRecord::from_toml(Path::new("u.toml"), &text).unwrap();
        assert_eq!(back, r);
    }

    fn email_record() -> UserRecord {
        let mut r = UserRecord::new_channels_only();
        r.set_destination(Kind::Email, Some("alice@example.org".into()));
        r
    }

    #[test]
    fn a_sent_code_works_once_within_its_lifetime_and_is_stored_hashed() {
        let mut r = email_record();
        let code = r.new_sent_code(Kind::Email, 6, NOW, 600).unwrap();
        assert_eq!(code.len(), 6);
        let text = r.to_toml();
        assert!(!text.contains(code.as_str()), "stored in clear:\n{text}");
        let back = UserRecord::from_toml(Path::new("u.toml"), &text).unwrap();
        assert_eq!(back, r, "an email-only record round-trips and validates");
        let a = Answer::parse(code.as_bytes()).unwrap();
        assert_eq!(
            r.verify(&a, NOW + 599, POLICY).unwrap(),
            Verdict::Accepted(Method::Email)
        );
        assert_eq!(r.verify(&a, NOW + 599, POLICY).unwrap(), Verdict::Wrong);
    }

    #[test]
    fn an_expired_sent_code_is_refused() {
        let mut r = email_record();
        let code = r.new_sent_code(Kind::Email, 8, NOW, 600).unwrap();
        let a = Answer::parse(code.as_bytes()).unwrap();
        assert_eq!(
            r.verify(&a, NOW + 600, POLICY).unwrap(),
            Verdict::Expired(Kind::Email)
        );
        assert!(r.sent_codes.is_empty());
    }

    #[test]
    fn a_code_of_a_removed_channel_no_longer_works() {
        let mut r = email_record();
        r.set_destination(Kind::Sms, Some("+441632960961".into()));
        let code = r.new_sent_code(Kind::Sms, 6, NOW, 600).unwrap();
        r.set_destination(Kind::Sms, None);
        let a = Answer::parse(code.as_bytes()).unwrap();
        assert_eq!(r.verify(&a, NOW, POLICY).unwrap(), Verdict::Wrong);
    }

    #[test]
    fn sends_are_limited_per_channel_and_hour() {
        let mut r = email_record();
        for i in 0..3 {
            assert!(r.send_allowed(Kind::Email, NOW + i, 3).is_ok());
            r.new_sent_code(Kind::Email, 6, NOW + i, 600).unwrap();
        }
        assert_eq!(r.send_allowed(Kind::Email, NOW + 10, 3), Err(NOW + 3600));
        assert!(
            r.send_allowed(Kind::Sms, NOW + 10, 3).is_ok(),
            "per channel"
        );
        assert!(
            r.send_allowed(Kind::Email, NOW + 3600, 3).is_ok(),
            "an hour later"
        );
        r.prune_sent(NOW + 3602);
        assert!(r.sends.is_empty() && r.sent_codes.is_empty());
    }

    #[test]
    fn destinations_in_the_file_are_validated() {
        let p = Path::new("u.toml");
        let ok = "version = 1\n[sms]\nnumber = \"+441632960961\"\n";
        assert!(UserRecord::from_toml(p, ok).is_ok());
        for bad in [
            "version = 1\n[email]\naddress = \"a@b.org\\nBcc: c@d.org\"\n",
            "version = 1\n[email]\naddress = \"not an address\"\n",
            "version = 1\n[sms]\nnumber = \"0044 1632 960961\"\n",
            "version = 1\n[email]\naddress = \"a@b.org\"\n[[sent_code]]\nchannel = \"email\"\ncode = \"123456\"\nexpires = 1\n",
        ] {
            assert!(UserRecord::from_toml(p, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_malformed_files_with_a_position() {
        let p = Path::new("/home/a/.config/otpgate/user.toml");
        let err = UserRecord::from_toml(p, "version = 1\n[totp]\nsecret = 12\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/home/a/.config/otpgate/user.toml:3:"),
            "{msg}"
        );

        let unknown = "version = 1\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\ncolour = 1\n";
        let msg = UserRecord::from_toml(p, unknown).unwrap_err().to_string();
        assert!(msg.contains(":4:") && msg.contains("colour"), "{msg}");

        let v4 = "version = 4\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n";
        assert!(
            UserRecord::from_toml(p, v4)
                .unwrap_err()
                .to_string()
                .contains("version 4")
        );
        let bad_serial = "version = 2\nserial = \"xyz\"\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n";
        let msg = UserRecord::from_toml(p, bad_serial)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("serial"), "{msg}");

        let none = "version = 1\n";
        assert!(UserRecord::from_toml(p, none).is_err());

        let digits = "version = 1\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\ndigits = 10\n";
        let err = UserRecord::from_toml(p, digits).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfRange { source, key, value: 10, min: 6, max: 8 }
                if source.line == 4 && key == "totp.digits"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/home/a/.config/otpgate/user.toml:4: key `totp.digits`: 10 is outside 6..=8"
        );

        let backup = "version = 1\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n[backup]\ncodes = [\"12345678\"]\n";
        assert!(
            UserRecord::from_toml(p, backup).is_err(),
            "clear-text backup code"
        );

        let short = "version = 1\n[totp]\nsecret = \"GEZDGNBV\"\n";
        assert!(
            UserRecord::from_toml(p, short)
                .unwrap_err()
                .to_string()
                .contains("bits")
        );
    }

    fn name(n: &str) -> DeviceName {
        DeviceName::parse(n).unwrap()
    }

    const OTHER: &[u8] = b"abcdefghijabcdefghij";

    /// The test record plus a second TOTP device `key` of another secret.
    fn two_devices() -> UserRecord {
        let mut r = totp_record();
        r.devices[0].name = name("phone");
        r.devices.push(Device::totp(
            name("key"),
            Secret::from_bytes(OTHER.to_vec()).unwrap(),
            Algorithm::SHA1,
            6,
            30,
        ));
        r
    }

    fn other_code_at(now: u64) -> Answer {
        let g = Generator::totp(
            &Secret::from_bytes(OTHER.to_vec()).unwrap(),
            Algorithm::SHA1,
            6,
            30,
        )
        .unwrap();
        Answer::parse(g.code_at_step(now / 30).as_bytes()).unwrap()
    }

    #[test]
    fn a_version_2_file_reads_as_one_device_named_app_and_is_written_as_devices() {
        let p = Path::new("u.toml");
        let old = "version = 2\nserial = \"00000000000000ff\"\n[totp]\n\
                   secret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\ndigits = 6\n\
                   [state]\nlast_step = 56666666\nfailures = 1\n";
        let r = UserRecord::from_toml(p, old).unwrap();
        assert_eq!(r.devices.len(), 1);
        assert_eq!(r.devices[0].name.as_str(), LEGACY_DEVICE);
        assert_eq!(r.devices[0].last_step, 56666666);
        assert_eq!(r.state.failures, 1);
        assert_eq!(r.totp().unwrap().secret, secret());
        let mut written = r.clone();
        written.version = VERSION;
        let text = written.to_toml();
        assert!(text.contains("version = 3"), "{text}");
        assert!(
            text.contains("[[device]]") && text.contains("[device.totp]"),
            "{text}"
        );
        assert!(
            !text.contains("\n[totp]") && !text.contains("[state]\nlast_step"),
            "{text}"
        );
        assert_eq!(UserRecord::from_toml(p, &text).unwrap(), written);
        // An HOTP file keeps its counter on the device.
        let hotp =
            "version = 1\n[hotp]\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\ncounter = 7\n";
        let r = UserRecord::from_toml(p, hotp).unwrap();
        assert_eq!(r.hotp().unwrap().counter, 7);
        assert_eq!(r.devices[0].name.as_str(), "app");
    }

    #[test]
    fn the_two_forms_are_never_mixed_and_devices_are_validated() {
        let p = Path::new("u.toml");
        let dev = "[[device]]\nname = \"phone\"\n[device.totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n";
        let ok = format!("version = 3\n{dev}");
        assert!(UserRecord::from_toml(p, &ok).is_ok());
        for bad in [
            format!("version = 2\n{dev}"),
            "version = 3\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n".to_string(),
            format!("version = 3\n[state]\nlast_step = 5\n{dev}"),
            format!("version = 3\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n{dev}"),
            format!("version = 3\n{dev}{dev}"),
            "version = 3\n[[device]]\nname = \"bad name\"\n[device.totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n".into(),
            "version = 3\n[[device]]\nname = \"none\"\n".into(),
            "version = 3\n[[device]]\nname = \"h\"\nlast_step = 3\n[device.hotp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n".into(),
            format!("version = 3\n{}", (0..=MAX_DEVICES).map(|i| dev.replace("phone", &format!("d{i}"))).collect::<String>()),
        ] {
            assert!(UserRecord::from_toml(p, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn two_devices_each_accept_their_code_once_and_do_not_block_each_other() {
        let mut r = two_devices();
        let mine = code_at(NOW);
        let theirs = other_code_at(NOW);
        let (v, d) = r.verify_device(&mine, NOW, POLICY).unwrap();
        assert_eq!(
            (v, d),
            (Verdict::Accepted(Method::Totp), Some(name("phone")))
        );
        // The same step on the other device is that device's own.
        let (v, d) = r.verify_device(&theirs, NOW, POLICY).unwrap();
        assert_eq!((v, d), (Verdict::Accepted(Method::Totp), Some(name("key"))));
        assert_eq!(r.devices[0].last_step, NOW / 30);
        assert_eq!(r.devices[1].last_step, NOW / 30);
        // Each is refused a second time.
        assert!(matches!(
            r.verify(&mine, NOW, POLICY).unwrap(),
            Verdict::Replayed { .. }
        ));
        assert!(matches!(
            r.verify(&theirs, NOW, POLICY).unwrap(),
            Verdict::Replayed { .. }
        ));
        // A removed device's codes are refused.
        r.devices.retain(|d| d.name != name("key"));
        assert_eq!(
            r.verify(&other_code_at(NOW + 30), NOW + 30, POLICY)
                .unwrap(),
            Verdict::Wrong
        );
        assert_eq!(
            r.verify(&code_at(NOW + 30), NOW + 30, POLICY).unwrap(),
            Verdict::Accepted(Method::Totp)
        );
    }

    #[test]
    fn a_record_with_two_devices_round_trips() {
        let mut r = two_devices();
        r.devices[1].last_step = 12;
        r.devices.push(Device::hotp(
            name("token"),
            secret(),
            Algorithm::SHA256,
            8,
            4,
        ));
        r.new_backup_codes(2, 8).unwrap();
        let text = r.to_toml();
        assert_eq!(text.matches("[[device]]").count(), 3, "{text}");
        assert_eq!(
            UserRecord::from_toml(Path::new("u.toml"), &text).unwrap(),
            r
        );
    }
}
