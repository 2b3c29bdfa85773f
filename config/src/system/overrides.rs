//! `[[policy.override]]`: settings that differ by group or PAM service
//! (docs/ARCHITECTURE.md, §5.1, "Policy overrides").
//!
//! ```toml
//! [[policy.override]]
//! services = ["sudo"]
//! remember_days = 0            # sudo never honours a remembered host
//!
//! [[policy.override]]
//! groups = ["wheel"]
//! methods = ["app", "backup"]  # no SMS for admins
//! ```
//!
//! One function resolves them: [`SystemConfig::for_login`] gives the
//! settings of one login (an account on a PAM service), the base config
//! with the first matching entry applied, and everything downstream (the
//! module's flow, the verification service, the daemon) reads only that
//! resolved config, so each rule keeps its one home.
//!
//! - An entry matches when the service is one of its `services` (or it
//!   names none) **and** the user is in one of its `groups` (or it names
//!   none). An entry with neither is refused when the config is read: it
//!   would match every login, which is what the base settings are for.
//! - The first entry that matches wins, in file order; it sets the
//!   settings it names, the others stay at the base.
//! - `policy.exempt_groups` and `policy.require_groups` are not settings an
//!   entry can change: an exempt member stays exempt and a required one
//!   required, whatever an entry's `require` says (it replaces
//!   `policy.require` only).
//! - When it cannot be known whether an entry matches (group membership
//!   unreadable, a directory service down; or no service named), each
//!   setting takes the strictest value among every way the login could go:
//!   an entry that would tighten a setting applies, one that would loosen
//!   it does not (fail closed, as [`SystemConfig::requirement`] does).
#![forbid(unsafe_code)]

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::channel::{self, Kind};
use crate::error::{Error, Result};
use crate::record::Method;

use super::{Require, SystemConfig};

/// The PAM service name the `otpgate` command's own checks count as (a
/// user's `otpgate verify`, the confirmations before a change), and what
/// `otpgated` uses for any peer whose word on the service it does not take.
pub const SELF_SERVICE: &str = "otpgate";

/// Entries a config may have (a bound on the work of every login).
pub const MAX_OVERRIDES: usize = 64;

/// A way to pass the second factor, as `methods` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Factor {
    /// A code from the authenticator app (TOTP or HOTP).
    App,
    /// A backup code.
    Backup,
    /// A code sent by email.
    Email,
    /// A code sent by SMS.
    Sms,
    /// An SSH key that counts as the second factor (`policy.trusted_ssh_keys`).
    SshKey,
}

impl Factor {
    /// Every factor: what `methods` allows when it is not set.
    pub const ALL: [Factor; 5] = [
        Factor::App,
        Factor::Backup,
        Factor::Email,
        Factor::Sms,
        Factor::SshKey,
    ];

    /// The word in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::App => "app",
            Factor::Backup => "backup",
            Factor::Email => "email",
            Factor::Sms => "sms",
            Factor::SshKey => "ssh-key",
        }
    }
}

impl From<Method> for Factor {
    fn from(method: Method) -> Factor {
        match method {
            Method::Totp | Method::Hotp => Factor::App,
            Method::Backup => Factor::Backup,
            Method::Email => Factor::Email,
            Method::Sms => Factor::Sms,
        }
    }
}

impl From<Kind> for Factor {
    fn from(kind: Kind) -> Factor {
        match kind {
            Kind::Email => Factor::Email,
            Kind::Sms => Factor::Sms,
        }
    }
}

/// One `[[policy.override]]` entry: what it matches, and the settings it
/// sets (absent: the base's).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Override {
    /// Members of any of these groups (primary or supplementary).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Logins through any of these PAM services (`PAM_SERVICE`: `sshd`,
    /// `sudo`, `login`...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Replaces `policy.require`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require: Option<Require>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remember_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout_minutes: Option<u32>,
    /// Replaces `policy.methods`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<Factor>>,
    /// Minutes a sent code stays valid, for every configured channel
    /// (replaces `channels.email.code_lifetime` and
    /// `channels.sms.code_lifetime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_lifetime: Option<u32>,
    /// Replaces `channels.verification_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_time: Option<u64>,
}

/// A setting an entry can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Require,
    RememberDays,
    MaxAttempts,
    LockoutAfter,
    LockoutMinutes,
    Methods,
    CodeLifetime,
    VerificationTime,
}

impl Setting {
    /// Every setting, in the order `otpgate check` lists them.
    pub const ALL: [Setting; 8] = [
        Setting::Require,
        Setting::RememberDays,
        Setting::MaxAttempts,
        Setting::LockoutAfter,
        Setting::LockoutMinutes,
        Setting::Methods,
        Setting::CodeLifetime,
        Setting::VerificationTime,
    ];

    /// The key in an override entry.
    pub fn key(self) -> &'static str {
        match self {
            Setting::Require => "require",
            Setting::RememberDays => "remember_days",
            Setting::MaxAttempts => "max_attempts",
            Setting::LockoutAfter => "lockout_after",
            Setting::LockoutMinutes => "lockout_minutes",
            Setting::Methods => "methods",
            Setting::CodeLifetime => "code_lifetime",
            Setting::VerificationTime => "verification_time",
        }
    }

    /// The key of the base config it replaces.
    pub fn base_key(self) -> &'static str {
        match self {
            Setting::Require => "policy.require",
            Setting::RememberDays => "remember_days",
            Setting::MaxAttempts => "max_attempts",
            Setting::LockoutAfter => "lockout_after",
            Setting::LockoutMinutes => "lockout_minutes",
            Setting::Methods => "policy.methods",
            Setting::CodeLifetime => "channels.*.code_lifetime",
            Setting::VerificationTime => "channels.verification_time",
        }
    }
}

/// Which part of the config decided a setting of one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The base config (no entry matched, or the matching one leaves it).
    Base,
    /// `policy.override[index]`, the first entry that matched.
    Entry(usize),
    /// `policy.override[index]` may match (group membership or the service
    /// unknown), and its value is the stricter one, so it holds.
    Uncertain(usize),
}

/// The settings of one login, and where each came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The base config with the entries applied; it has no entries left,
    /// so resolving it again changes nothing.
    pub config: SystemConfig,
    /// The first entry that matched for certain, if any.
    pub matched: Option<usize>,
    /// Entries before `matched` (or all, without one) that may match:
    /// membership or service unknown.
    pub uncertain: Vec<usize>,
    /// One per [`Setting::ALL`], in that order.
    pub sources: Vec<(Setting, Source)>,
}

/// The overridable values, to compare and merge them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Values {
    require: Require,
    remember_days: u32,
    max_attempts: u32,
    lockout_after: u32,
    lockout_minutes: u32,
    methods: Vec<Factor>,
    /// Email's and SMS's, when configured.
    code_lifetime: [Option<u32>; 2],
    verification_time: u64,
}

impl Values {
    fn of(config: &SystemConfig) -> Values {
        Values {
            require: config.policy.require,
            remember_days: config.remember_days,
            max_attempts: config.max_attempts,
            lockout_after: config.lockout_after,
            lockout_minutes: config.lockout_minutes,
            methods: config.allowed_methods(),
            code_lifetime: [
                config.channels.email.as_ref().map(|e| e.code_lifetime),
                config.channels.sms.as_ref().map(|s| s.code_lifetime),
            ],
            verification_time: config.channels.verification_time,
        }
    }

    /// These values with `entry`'s set.
    fn with(&self, entry: &Override) -> Values {
        let mut v = self.clone();
        v.require = entry.require.unwrap_or(v.require);
        v.remember_days = entry.remember_days.unwrap_or(v.remember_days);
        v.max_attempts = entry.max_attempts.unwrap_or(v.max_attempts);
        v.lockout_after = entry.lockout_after.unwrap_or(v.lockout_after);
        v.lockout_minutes = entry.lockout_minutes.unwrap_or(v.lockout_minutes);
        if let Some(methods) = &entry.methods {
            v.methods = normalized(methods);
        }
        if let Some(minutes) = entry.code_lifetime {
            for lifetime in v.code_lifetime.iter_mut().flatten() {
                *lifetime = minutes;
            }
        }
        v.verification_time = entry.verification_time.unwrap_or(v.verification_time);
        v
    }

    /// Takes `other`'s value of `setting` when it is stricter; true when
    /// it did.
    fn tighten(&mut self, other: &Values, setting: Setting) -> bool {
        let before = self.clone();
        match setting {
            Setting::Require => {
                if other.require == Require::All {
                    self.require = Require::All;
                }
            }
            Setting::RememberDays => {
                self.remember_days = self.remember_days.min(other.remember_days)
            }
            Setting::MaxAttempts => self.max_attempts = self.max_attempts.min(other.max_attempts),
            // 0 = never locks: the loosest value.
            Setting::LockoutAfter => {
                self.lockout_after = match (self.lockout_after, other.lockout_after) {
                    (0, b) => b,
                    (a, 0) => a,
                    (a, b) => a.min(b),
                }
            }
            Setting::LockoutMinutes => {
                self.lockout_minutes = self.lockout_minutes.max(other.lockout_minutes)
            }
            Setting::Methods => self.methods.retain(|m| other.methods.contains(m)),
            Setting::CodeLifetime => {
                for (mine, theirs) in self.code_lifetime.iter_mut().zip(other.code_lifetime) {
                    if let (Some(a), Some(b)) = (mine.as_mut(), theirs) {
                        *a = (*a).min(b);
                    }
                }
            }
            Setting::VerificationTime => {
                self.verification_time = self.verification_time.min(other.verification_time)
            }
        }
        *self != before
    }

    fn write_into(&self, config: &mut SystemConfig) {
        config.policy.require = self.require;
        config.remember_days = self.remember_days;
        config.max_attempts = self.max_attempts;
        config.lockout_after = self.lockout_after;
        config.lockout_minutes = self.lockout_minutes;
        config.policy.methods = if self.methods == Factor::ALL {
            None
        } else {
            Some(self.methods.clone())
        };
        let [email, sms] = self.code_lifetime;
        if let (Some(e), Some(minutes)) = (config.channels.email.as_mut(), email) {
            e.code_lifetime = minutes;
        }
        if let (Some(s), Some(minutes)) = (config.channels.sms.as_mut(), sms) {
            s.code_lifetime = minutes;
        }
        config.channels.verification_time = self.verification_time;
    }
}

/// `methods` sorted, without repeats.
fn normalized(methods: &[Factor]) -> Vec<Factor> {
    let mut v = methods.to_vec();
    v.sort();
    v.dedup();
    v
}

impl Override {
    /// Whether this entry sets `setting`.
    pub fn sets(&self, setting: Setting) -> bool {
        match setting {
            Setting::Require => self.require.is_some(),
            Setting::RememberDays => self.remember_days.is_some(),
            Setting::MaxAttempts => self.max_attempts.is_some(),
            Setting::LockoutAfter => self.lockout_after.is_some(),
            Setting::LockoutMinutes => self.lockout_minutes.is_some(),
            Setting::Methods => self.methods.is_some(),
            Setting::CodeLifetime => self.code_lifetime.is_some(),
            Setting::VerificationTime => self.verification_time.is_some(),
        }
    }

    /// Whether this entry applies to a login of `account` on `service`:
    /// `None` when that cannot be known (a group's membership unreadable,
    /// or no service named while the entry names services).
    pub fn matches(&self, account: &Account, service: Option<&str>) -> Option<bool> {
        let service = if self.services.is_empty() {
            Some(true)
        } else {
            service.map(|s| self.services.iter().any(|n| n == s))
        };
        let group = if self.groups.is_empty() {
            Some(true)
        } else {
            let each: Vec<Option<bool>> =
                self.groups.iter().map(|g| account.membership(g)).collect();
            if each.contains(&Some(true)) {
                Some(true)
            } else if each.contains(&None) {
                None
            } else {
                Some(false)
            }
        };
        match (service, group) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }
    }

    /// What the entry matches, in words (`groups wheel; services sudo`).
    pub fn describe_match(&self) -> String {
        let mut parts = Vec::new();
        if !self.groups.is_empty() {
            parts.push(format!("groups = [{}]", quoted(&self.groups)));
        }
        if !self.services.is_empty() {
            parts.push(format!("services = [{}]", quoted(&self.services)));
        }
        parts.join(", ")
    }

    /// Range and sense checks, as for the base keys; `index` names the
    /// entry in messages (`policy.override[2].max_attempts`).
    fn validate(&self, source: &str, index: usize) -> Result<()> {
        let key = |k: &str| format!("policy.override[{index}].{k}");
        let invalid = |k: &str, message: String| Error::Invalid {
            source: source.into(),
            key: key(k),
            message,
        };
        if self.groups.is_empty() && self.services.is_empty() {
            return Err(invalid(
                "groups",
                "an entry needs `groups` or `services` (or both): with neither it would match \
                 every login; set the base keys for that"
                    .into(),
            ));
        }
        for (k, names) in [("groups", &self.groups), ("services", &self.services)] {
            if let Some(bad) = names
                .iter()
                .find(|n| n.is_empty() || n.contains(|c: char| c.is_control() || c == '/'))
            {
                return Err(invalid(k, format!("`{bad}` is not a name")));
            }
        }
        // The base keys' ranges: an entry may not set what the base may not.
        let ranges: [(&str, Option<u64>, RangeInclusive<u64>); 5] = [
            (
                "remember_days",
                self.remember_days.map(u64::from),
                super::REMEMBER_DAYS,
            ),
            (
                "max_attempts",
                self.max_attempts.map(u64::from),
                super::MAX_ATTEMPTS,
            ),
            (
                "lockout_minutes",
                self.lockout_minutes.map(u64::from),
                super::LOCKOUT_MINUTES,
            ),
            (
                "code_lifetime",
                self.code_lifetime.map(u64::from),
                channel::CODE_LIFETIME,
            ),
            (
                "verification_time",
                self.verification_time,
                channel::VERIFICATION_TIME,
            ),
        ];
        for (k, value, range) in ranges {
            if let Some(value) = value {
                Error::check_range(source, &key(k), value, range)?;
            }
        }
        if self.methods.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                "methods",
                "an empty list lets nobody pass; name at least one of app, backup, email, sms, \
                 ssh-key"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `policy.methods` and every `[[policy.override]]` entry.
pub(super) fn validate(config: &SystemConfig, source: &str) -> Result<()> {
    if config.policy.methods.as_ref().is_some_and(Vec::is_empty) {
        return Err(Error::Invalid {
            source: source.into(),
            key: "policy.methods".into(),
            message: "an empty list lets nobody pass; leave it out to allow every method".into(),
        });
    }
    let entries = &config.policy.overrides;
    if entries.len() > MAX_OVERRIDES {
        return Err(Error::Invalid {
            source: source.into(),
            key: "policy.override".into(),
            message: format!(
                "{} entries; at most {MAX_OVERRIDES} are allowed",
                entries.len()
            ),
        });
    }
    for (index, entry) in entries.iter().enumerate() {
        entry.validate(source, index)?;
    }
    Ok(())
}

impl SystemConfig {
    /// The methods this config allows, in order (`policy.methods`; every
    /// one when it is not set).
    pub fn allowed_methods(&self) -> Vec<Factor> {
        match &self.policy.methods {
            Some(methods) => normalized(methods),
            None => Factor::ALL.to_vec(),
        }
    }

    /// Whether `factor` may pass a login under this config. On a config
    /// resolved by [`SystemConfig::for_login`], for that login.
    pub fn allows(&self, factor: impl Into<Factor>) -> bool {
        let factor = factor.into();
        match &self.policy.methods {
            Some(methods) => methods.contains(&factor),
            None => true,
        }
    }

    /// The settings of a login of `account` on the PAM service `service`
    /// (`None`: not known): this config with the first matching
    /// `[[policy.override]]` entry applied (see the module docs for the
    /// rules). Everything about the login reads the result.
    pub fn for_login(&self, account: &Account, service: Option<&str>) -> SystemConfig {
        self.resolve(account, service).config
    }

    /// [`SystemConfig::for_login`], saying which entry decided each
    /// setting (`otpgate check --user --service`).
    pub fn resolve(&self, account: &Account, service: Option<&str>) -> Resolved {
        let entries = &self.policy.overrides;
        let base = Values::of(self);
        let mut uncertain = Vec::new();
        let mut matched = None;
        for (index, entry) in entries.iter().enumerate() {
            match entry.matches(account, service) {
                Some(true) => {
                    matched = Some(index);
                    break;
                }
                Some(false) => {}
                None => uncertain.push(index),
            }
        }
        let (mut values, mut sources) = match matched {
            Some(i) => {
                let entry = &entries[i];
                let sources = Setting::ALL
                    .iter()
                    .map(|&s| {
                        (
                            s,
                            if entry.sets(s) {
                                Source::Entry(i)
                            } else {
                                Source::Base
                            },
                        )
                    })
                    .collect();
                (base.with(entry), sources)
            }
            None => (
                base.clone(),
                Setting::ALL
                    .iter()
                    .map(|&s| (s, Source::Base))
                    .collect::<Vec<_>>(),
            ),
        };
        // An entry that may match (before the one that does) could be the
        // one in force: each setting takes the stricter of the two.
        for &i in &uncertain {
            let maybe = base.with(&entries[i]);
            for (setting, source) in sources.iter_mut() {
                if values.tighten(&maybe, *setting) {
                    *source = Source::Uncertain(i);
                }
            }
        }
        let mut config = self.clone();
        config.policy.overrides = Vec::new();
        values.write_into(&mut config);
        Resolved {
            config,
            matched,
            uncertain,
            sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> SystemConfig {
        SystemConfig::from_toml(Path::new("/etc/otpgate/config.toml"), text)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(text: &str) -> String {
        SystemConfig::from_toml(Path::new("/etc/otpgate/config.toml"), text)
            .unwrap_err()
            .to_string()
    }

    /// A user whose groups are known to be exactly `groups` and `users`.
    fn user(groups: &[&str]) -> Account {
        let mut all = vec!["users"];
        all.extend(groups);
        Account::for_tests("alice", 1000, 1000, "/home/alice", &all)
    }

    const EXAMPLES: &str = r#"
remember_days = 7
max_attempts = 3

[channels]
verification_time = 600
[channels.email]
code_lifetime = 10
[channels.sms]
command = ["/usr/local/bin/send-sms", "{to}"]
code_lifetime = 10

[[policy.override]]
services = ["sudo"]
remember_days = 0
max_attempts = 1

[[policy.override]]
groups = ["wheel"]
methods = ["app", "backup"]

[[policy.override]]
groups = ["contractors"]
require = "all"
code_lifetime = 5
verification_time = 120

[[policy.override]]
groups = ["wheel"]
services = ["sshd"]
remember_days = 30
"#;

    #[test]
    fn the_first_matching_entry_wins_and_sets_only_what_it_names() {
        let c = config(EXAMPLES);
        // sudo: entry 0, whoever logs in; wheel's entry 1 comes later.
        let sudo = c.resolve(&user(&["wheel"]), Some("sudo"));
        assert_eq!(sudo.matched, Some(0));
        assert_eq!(sudo.config.remember_days, 0);
        assert_eq!(sudo.config.max_attempts, 1);
        assert!(sudo.config.allows(Factor::Sms), "entry 0 leaves methods");
        // wheel on sshd: entry 1 (entry 3 never gets a say).
        let admin = c.resolve(&user(&["wheel"]), Some("sshd"));
        assert_eq!(admin.matched, Some(1));
        assert_eq!(admin.config.remember_days, 7);
        assert!(admin.config.allows(Method::Totp) && admin.config.allows(Method::Backup));
        assert!(!admin.config.allows(Kind::Sms) && !admin.config.allows(Factor::Email));
        assert_eq!(
            admin.sources,
            Setting::ALL
                .iter()
                .map(|&s| (
                    s,
                    if s == Setting::Methods {
                        Source::Entry(1)
                    } else {
                        Source::Base
                    }
                ))
                .collect::<Vec<_>>()
        );
        // contractors: required, shorter codes and verification.
        let c1 = c.for_login(&user(&["users", "contractors"]), Some("sshd"));
        assert_eq!(c1.policy.require, Require::All);
        assert_eq!(c1.channels.email.as_ref().unwrap().code_lifetime, 5);
        assert_eq!(c1.channels.sms.as_ref().unwrap().code_lifetime, 5);
        assert_eq!(c1.channels.verification_time, 120);
        // Nobody's entry: the base, unchanged but for the entries.
        let plain = c.resolve(&user(&["users"]), Some("sshd"));
        assert_eq!(plain.matched, None);
        assert!(plain.sources.iter().all(|(_, s)| *s == Source::Base));
        let mut base = c.clone();
        base.policy.overrides.clear();
        assert_eq!(plain.config, base);
        // Resolving a resolved config changes nothing.
        assert_eq!(sudo.config.for_login(&user(&[]), Some("sshd")), sudo.config);
    }

    #[test]
    fn groups_and_services_must_both_match_when_both_are_named() {
        let c = config(EXAMPLES);
        let wheel_sshd = Override {
            groups: vec!["wheel".into()],
            services: vec!["sshd".into()],
            ..Override::default()
        };
        assert_eq!(
            wheel_sshd.matches(&user(&["wheel"]), Some("sshd")),
            Some(true)
        );
        assert_eq!(
            wheel_sshd.matches(&user(&["wheel"]), Some("su")),
            Some(false)
        );
        assert_eq!(wheel_sshd.matches(&user(&[]), Some("sshd")), Some(false));
        // Any listed group is enough.
        let either = Override {
            groups: vec!["a".into(), "b".into()],
            ..Override::default()
        };
        assert_eq!(either.matches(&user(&["b"]), Some("x")), Some(true));
        assert!(c.policy.overrides[3].matches(&user(&["wheel"]), Some("sshd")) == Some(true));
    }

    #[test]
    fn unknown_membership_applies_what_tightens_and_never_what_loosens() {
        let unknown = Account::with_unknown_groups("ldap-user");
        let c = config(
            r#"
remember_days = 7
lockout_after = 10
[[policy.override]]
groups = ["wheel"]
methods = ["app"]
remember_days = 30
require = "all"
[[policy.override]]
groups = ["robots"]
lockout_after = 0
lockout_minutes = 60
"#,
        );
        let r = c.resolve(&unknown, Some("sshd"));
        assert_eq!(r.matched, None);
        assert_eq!(r.uncertain, [0, 1]);
        // Tightening parts hold...
        assert_eq!(r.config.policy.require, Require::All);
        assert_eq!(r.config.allowed_methods(), [Factor::App]);
        assert_eq!(r.config.lockout_minutes, 60);
        // ...loosening ones do not.
        assert_eq!(r.config.remember_days, 7);
        assert_eq!(r.config.lockout_after, 10);
        let source = |s: Setting| r.sources.iter().find(|(x, _)| *x == s).unwrap().1;
        assert_eq!(source(Setting::Require), Source::Uncertain(0));
        assert_eq!(source(Setting::LockoutMinutes), Source::Uncertain(1));
        assert_eq!(source(Setting::RememberDays), Source::Base);
        assert_eq!(source(Setting::LockoutAfter), Source::Base);

        // A known match after an uncertain one: the stricter of the two.
        let c = config(
            r#"
[[policy.override]]
groups = ["wheel"]
max_attempts = 1
remember_days = 0
[[policy.override]]
services = ["sshd"]
max_attempts = 5
remember_days = 30
"#,
        );
        let r = c.resolve(&unknown, Some("sshd"));
        assert_eq!(r.matched, Some(1));
        assert_eq!(r.config.max_attempts, 1);
        assert_eq!(r.config.remember_days, 0);
        // An uncertain entry after the match has no say.
        let r = c.resolve(&user(&[]), Some("sshd"));
        assert_eq!((r.config.max_attempts, r.config.remember_days), (5, 30));
    }

    #[test]
    fn an_unknown_service_is_an_uncertain_match() {
        let c = config(
            "remember_days = 7\n[[policy.override]]\nservices = [\"sudo\"]\nremember_days = 0\n\
             [[policy.override]]\nservices = [\"sshd\"]\nremember_days = 30\n",
        );
        let r = c.resolve(&user(&[]), None);
        assert_eq!(r.uncertain, [0, 1]);
        assert_eq!(r.config.remember_days, 0);
    }

    #[test]
    fn exemption_and_required_groups_are_not_overridden() {
        let c = config(
            r#"
[policy]
require = "all"
require_groups = ["wheel"]
exempt_groups = ["robots"]
[[policy.override]]
services = ["cron"]
require = "enrolled"
"#,
        );
        let cron = |groups: &[&str]| {
            c.for_login(&user(groups), Some("cron"))
                .requirement(&user(groups))
        };
        assert_eq!(cron(&[]), crate::system::Requirement::IfEnrolled);
        assert_eq!(cron(&["wheel"]), crate::system::Requirement::Required);
        assert_eq!(cron(&["robots"]), crate::system::Requirement::Exempt);
    }

    #[test]
    fn bad_entries_are_refused_naming_entry_key_and_line() {
        let msg = error("[[policy.override]]\nmax_attempts = 2\n");
        assert!(
            msg.starts_with("/etc/otpgate/config.toml:1: key `policy.override[0].groups`:")
                && msg.contains("match every login"),
            "{msg}"
        );
        let msg = error(
            "[[policy.override]]\nservices = [\"sudo\"]\n\n[[policy.override]]\nservices = [\"su\"]\nmax_attempts = 0\n",
        );
        assert_eq!(
            msg,
            "/etc/otpgate/config.toml:6: key `policy.override[1].max_attempts`: 0 is outside 1..=10"
        );
        for (text, needle) in [
            ("services = [\"sudo\"]\nremember_dayz = 0", "remember_dayz"),
            (
                "services = [\"sudo\"]\nremember_days = 400",
                "remember_days",
            ),
            (
                "services = [\"sudo\"]\nlockout_minutes = 0",
                "lockout_minutes",
            ),
            ("services = [\"sudo\"]\ncode_lifetime = 61", "code_lifetime"),
            (
                "services = [\"sudo\"]\nverification_time = 5",
                "verification_time",
            ),
            ("services = [\"sudo\"]\nmethods = []", "nobody"),
            (
                "services = [\"sudo\"]\nmethods = [\"carrier-pigeon\"]",
                "carrier-pigeon",
            ),
            ("services = [\"sudo\"]\nrequire = \"some\"", "some"),
            ("services = [\"\"]", "not a name"),
            ("groups = \"wheel\"", "groups"),
            (
                "services = [\"sudo\"]\nexempt_groups = [\"x\"]",
                "exempt_groups",
            ),
        ] {
            let msg = error(&format!("[[policy.override]]\n{text}\n"));
            assert!(msg.contains(needle), "{text}: {msg}");
        }
        let msg = error("[policy]\nmethods = []\n");
        assert!(msg.contains("policy.methods"), "{msg}");
    }

    #[test]
    fn ssh_key_is_a_method_name_and_methods_default_to_every_one() {
        let c = config("[policy]\nmethods = [\"ssh-key\", \"app\"]\n");
        assert!(c.allows(Factor::SshKey) && c.allows(Method::Hotp));
        assert!(!c.allows(Factor::Backup));
        assert_eq!(SystemConfig::default().allowed_methods(), Factor::ALL);
        assert!(SystemConfig::default().allows(Factor::SshKey));
    }

    #[test]
    fn entries_survive_module_arguments() {
        let c = config(EXAMPLES)
            .with_overrides(&["max_attempts=2"])
            .unwrap();
        assert_eq!(c.policy.overrides.len(), 4);
        assert_eq!(c.for_login(&user(&[]), Some("sudo")).max_attempts, 1);
        assert_eq!(c.for_login(&user(&[]), Some("sshd")).max_attempts, 2);
    }
}
