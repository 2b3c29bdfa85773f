//! The per-user file: one TOML document holding the secret, the hashed
//! backup codes, the login state and the remembered hosts. The file store
//! rewrites it (atomic rename) when the enrollment changes; what a login
//! changes goes to the state file beside it as a [`hot::Hot`] overlay on
//! this record (docs/ARCHITECTURE.md §5.4).
//!
//! ```toml
//! version = 2
//! serial = "9f3c2a1b7e5d4c60" # names this version (state file)
//! [totp]                      # or [hotp] with `counter`
//! secret = "BASE32..."
//! algorithm = "SHA1"
//! digits = 6
//! period = 30
//! [backup]
//! codes = ["sha256$<salt>$<digest>", "..."]
//! [state]
//! last_step = 58966342
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

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::backup;
use crate::channel::{self, Kind};
use crate::error::{Error, Result};
use crate::net;
use crate::otp::{self, Algorithm, Generator, Secret};

pub(crate) mod hot;
mod sends;
mod sources;
mod view;

pub use sends::EnrollmentSends;
pub use sources::{MAX_SOURCES, SourceFailures, source_key};
pub use view::{App, AppMethod, View};

/// The file version this build writes. Version 2 files may have newer
/// login state in `<name>.state` (docs/ARCHITECTURE.md §5.4), so a build
/// that knows only version 1 must refuse them rather than read old state.
pub const VERSION: u32 = 2;
/// The oldest version still read (migrated on the next write).
pub const OLDEST_VERSION: u32 = 1;
/// Most remembered hosts kept per user; the oldest expiry goes first.
pub const MAX_TRUSTED_HOSTS: usize = 64;

/// A whole user file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub version: u32,
    /// Names this version of the file, for the state file's slots: set by
    /// the file store at every rewrite and taken off again when it reads
    /// the file (callers never see it); absent in files it did not write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotp: Option<HotpConfig>,
    #[serde(default)]
    pub backup: Backup,
    #[serde(default)]
    pub state: State,
    #[serde(
        default,
        rename = "trusted_host",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trusted_hosts: Vec<TrustedHost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailDestination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsDestination>,
    /// Codes sent by email or SMS, not used yet.
    #[serde(default, rename = "sent_code", skip_serializing_if = "Vec::is_empty")]
    pub sent_codes: Vec<SentCode>,
    /// When codes were sent, for the per-hour limit (older ones pruned).
    #[serde(default, rename = "send", skip_serializing_if = "Vec::is_empty")]
    pub sends: Vec<Send>,
    /// Wrong answers counted per source address (`forward_pass`), so that
    /// guesses without a proven password lock only their own source.
    #[serde(
        default,
        rename = "source_failure",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub source_failures: Vec<SourceFailures>,
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

/// What changes at every login.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Last accepted TOTP time step; that step and earlier ones are refused.
    #[serde(default)]
    pub last_step: u64,
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
    /// A fresh TOTP enrollment.
    pub fn new_totp(secret: Secret, algorithm: Algorithm, digits: u8, period: u64) -> Self {
        UserRecord::with_method(
            Some(TotpConfig {
                secret,
                algorithm,
                digits,
                period,
                window: None,
            }),
            None,
        )
    }

    /// A fresh HOTP enrollment.
    pub fn new_hotp(secret: Secret, algorithm: Algorithm, digits: u8, counter: u64) -> Self {
        UserRecord::with_method(
            None,
            Some(HotpConfig {
                secret,
                algorithm,
                digits,
                counter,
                lookahead: None,
            }),
        )
    }

    fn with_method(totp: Option<TotpConfig>, hotp: Option<HotpConfig>) -> Self {
        UserRecord {
            version: VERSION,
            serial: None,
            totp,
            hotp,
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

    /// An enrollment with no authenticator app, only a destination for
    /// sent codes (set one before saving).
    pub fn new_channels_only() -> Self {
        UserRecord::with_method(None, None)
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
        self.totp.is_some() || self.hotp.is_some()
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

    /// One OTP method at most, at least one method, destinations in normal
    /// form.
    fn validate_methods(&self, path: &Path) -> Result<()> {
        match (&self.totp, &self.hotp) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    path,
                    "totp",
                    "both [totp] and [hotp]; keep one".into(),
                ));
            }
            (None, None) if self.email.is_none() && self.sms.is_none() => {
                return Err(invalid(
                    path,
                    "totp",
                    "no method: none of [totp], [hotp], [email], [sms] is present".into(),
                ));
            }
            _ => {}
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

    /// TOTP and HOTP parameters in their ranges.
    fn validate_parameters(&self, path: &Path) -> Result<()> {
        if let Some(t) = &self.totp {
            Error::check_range(path, "totp.digits", t.digits, otp::DIGITS)?;
            Error::check_range(path, "totp.period", t.period, otp::PERIOD)?;
            if let Some(window) = t.window {
                Error::check_range(path, "totp.window", window, 0..=10)?;
            }
        }
        if let Some(h) = &self.hotp {
            Error::check_range(path, "hotp.digits", h.digits, otp::DIGITS)?;
            if let Some(lookahead) = h.lookahead {
                Error::check_range(path, "hotp.lookahead", lookahead, 0..=1000)?;
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

    /// Checks `answer` against the TOTP or HOTP secret, then the backup
    /// codes. On acceptance the record is changed so the same code never
    /// works again (step remembered, counter advanced, backup code removed);
    /// the caller must write it before granting the login.
    pub fn verify(&mut self, answer: &Answer, now: u64, policy: VerifyPolicy) -> Result<Verdict> {
        let code = answer.as_str();
        if let Some(verdict) = self.verify_totp(code, now, policy)? {
            return Ok(verdict);
        }
        if self.verify_hotp(code, policy)? {
            return Ok(Verdict::Accepted(Method::Hotp));
        }
        if let Some(i) = backup::find(&self.backup.codes, code) {
            self.backup.codes.remove(i);
            return Ok(Verdict::Accepted(Method::Backup));
        }
        if let Some(verdict) = self.verify_sent(code, now) {
            return Ok(verdict);
        }
        Ok(Verdict::Wrong)
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

    fn verify_totp(
        &mut self,
        code: &str,
        now: u64,
        policy: VerifyPolicy,
    ) -> Result<Option<Verdict>> {
        let Some(t) = &self.totp else {
            return Ok(None);
        };
        let generator = Generator::totp(&t.secret, t.algorithm, t.digits, t.period)?;
        let window = u64::from(t.window.unwrap_or(policy.totp_window));
        let current = otp::time_step(now, t.period);
        let steps = generator.matching_steps(
            code,
            current.saturating_sub(window),
            current.saturating_add(window),
        );
        let last_step = self.state.last_step;
        if let Some(&step) = steps.iter().find(|&&s| s > last_step) {
            self.state.last_step = step;
            return Ok(Some(Verdict::Accepted(Method::Totp)));
        }
        Ok(steps
            .first()
            .map(|&step| Verdict::Replayed { step, last_step }))
    }

    fn verify_hotp(&mut self, code: &str, policy: VerifyPolicy) -> Result<bool> {
        let Some(h) = &mut self.hotp else {
            return Ok(false);
        };
        // The counter must move past every accepted code. At u64::MAX it
        // cannot, and the code of the last counter would work forever:
        // that counter is never accepted (the token is worn out; enroll
        // anew).
        if h.counter == u64::MAX {
            return Ok(false);
        }
        let generator = Generator::hotp(&h.secret, h.algorithm, h.digits)?;
        let ahead = u64::from(h.lookahead.unwrap_or(policy.hotp_lookahead));
        let last = h.counter.saturating_add(ahead).min(u64::MAX - 1);
        let steps = generator.matching_steps(code, h.counter, last);
        match steps.first() {
            Some(&counter) => {
                h.counter = counter + 1;
                Ok(true)
            }
            None => Ok(false),
        }
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
        let same_totp = match (&self.totp, &other.totp) {
            (Some(a), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        };
        let same_hotp = match (&self.hotp, &other.hotp) {
            (Some(a), Some(b)) => {
                a.secret == b.secret && a.algorithm == b.algorithm && a.digits == b.digits
            }
            (None, None) => true,
            _ => false,
        };
        if !(same_totp && same_hotp) {
            return Err("another enrollment (another secret or app settings)");
        }
        let (mine, theirs) = (&self.backup.codes, &other.backup.codes);
        if !mine.is_empty() && !theirs.is_empty() && !mine.iter().any(|c| theirs.contains(c)) {
            return Err("the backup codes were made anew in one copy");
        }
        self.backup.codes.retain(|c| theirs.contains(c));
        self.sent_codes
            .retain(|c| other.sent_codes.iter().any(|o| o.code == c.code));
        self.state.last_step = self.state.last_step.max(other.state.last_step);
        if let (Some(h), Some(o)) = (self.hotp.as_mut(), other.hotp.as_ref()) {
            h.counter = h.counter.max(o.counter);
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
        assert_eq!(r.state.last_step, NOW / 30);
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
        r.totp.as_mut().unwrap().window = Some(3);
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
        assert_eq!(r.hotp.as_ref().unwrap().counter, 1);
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
        assert_eq!(r.hotp.as_ref().unwrap().counter, 6);
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
        assert_eq!(r.hotp.as_ref().unwrap().counter, 17);
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
        r.state.last_step = 42;
        r.state.failures = 2;
        r.trust_host("192.0.2.1", "sshd", None, NOW + 60, NOW);
        r.serial = Some("00000000000000ff".into());
        let text = r.to_toml();
        assert!(text.contains("version = 2"));
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

        let v3 = "version = 3\n[totp]\nsecret = \"GEZDGNBVGY3TQOJQ\"\n";
        assert!(
            UserRecord::from_toml(p, v3)
                .unwrap_err()
                .to_string()
                .contains("version 3")
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
}
