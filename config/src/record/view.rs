//! What a login may know of a record without holding a secret: the record
//! with its TOTP/HOTP secret taken out and every hashed code blanked, plus
//! which app the user has and how many digits its codes have.
//!
//! `otpgated` answers a login's first question with this, never with the
//! record itself (docs/ARCHITECTURE.md, §3, "The daemon store"): the secret
//! and the code hashes stay in the daemon. The file store gives the same
//! view, so the login flow decides on one type whichever store it has. A
//! view can accept no code: it has no app, and a blank hash matches nothing
//! (`backup::find`).

use serde::{Deserialize, Serialize};

use super::{DeviceName, Method, UserRecord};
use crate::otp::Algorithm;

/// A record as a login may see it; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    /// The user's devices (TOTP or HOTP), in order, without secrets.
    #[serde(default, rename = "device", skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<App>,
    /// The record without secrets: no devices, blank hashes.
    pub record: UserRecord,
}

/// One of the user's authenticators, without its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: DeviceName,
    pub method: AppMethod,
    pub algorithm: Algorithm,
    pub digits: u8,
    /// TOTP: seconds per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    /// HOTP: the next counter expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
}

/// An app's kind of code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppMethod {
    Totp,
    Hotp,
}

impl AppMethod {
    /// `totp` or `hotp`, as status and the logs say it.
    pub fn as_str(self) -> &'static str {
        match self {
            AppMethod::Totp => "totp",
            AppMethod::Hotp => "hotp",
        }
    }
}

impl From<AppMethod> for Method {
    fn from(m: AppMethod) -> Method {
        match m {
            AppMethod::Totp => Method::Totp,
            AppMethod::Hotp => Method::Hotp,
        }
    }
}

impl View {
    /// The view of `record`: its secret taken out, its hashes blanked.
    pub fn of(record: &UserRecord) -> View {
        let devices = record
            .devices
            .iter()
            .filter_map(|d| match (&d.totp, &d.hotp) {
                (Some(t), _) => Some(App {
                    name: d.name,
                    method: AppMethod::Totp,
                    algorithm: t.algorithm,
                    digits: t.digits,
                    period: Some(t.period),
                    counter: None,
                }),
                (None, Some(h)) => Some(App {
                    name: d.name,
                    method: AppMethod::Hotp,
                    algorithm: h.algorithm,
                    digits: h.digits,
                    period: None,
                    counter: Some(h.counter),
                }),
                (None, None) => None,
            })
            .collect();
        let mut seen = record.clone();
        seen.devices.clear();
        seen.serial = None;
        for code in &mut seen.backup.codes {
            *code = String::new();
        }
        for sent in &mut seen.sent_codes {
            sent.code = String::new();
        }
        View {
            devices,
            record: seen,
        }
    }

    /// True when the user has an authenticator app.
    pub fn has_app(&self) -> bool {
        !self.devices.is_empty()
    }

    /// The first device (the one app of most users).
    pub fn app(&self) -> Option<&App> {
        self.devices.first()
    }

    /// Backup codes left.
    pub fn backup_codes_left(&self) -> usize {
        self.record.backup.codes.len()
    }

    /// Every way this user can pass, as `status` and `users` list them:
    /// `totp` or `hotp`, `email`, `sms`, `backup` (codes left).
    pub fn methods(&self) -> Vec<&'static str> {
        let r = &self.record;
        let mut methods: Vec<&'static str> = Vec::new();
        for d in &self.devices {
            if !methods.contains(&d.method.as_str()) {
                methods.push(d.method.as_str());
            }
        }
        if r.email.is_some() {
            methods.push("email");
        }
        if r.sms.is_some() {
            methods.push("sms");
        }
        if !r.backup.codes.is_empty() {
            methods.push("backup");
        }
        methods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answer;
    use crate::backup;
    use crate::record::{Verdict, VerifyPolicy};
    use crate::testing::totp_record;

    fn record_with_backup() -> (UserRecord, Vec<zeroize::Zeroizing<String>>) {
        let mut record = totp_record();
        let codes = record.new_backup_codes(3, 8).unwrap();
        (record, codes)
    }

    #[test]
    fn a_view_holds_no_secret_and_no_hash() {
        let (record, codes) = record_with_backup();
        let view = View::of(&record);
        let text = toml::to_string(&view).unwrap();
        let secret = record.totp().unwrap().secret.to_base32();
        assert!(!text.contains(secret.as_str()), "{text}");
        for hash in &record.backup.codes {
            assert!(!text.contains(hash.as_str()));
        }
        for code in &codes {
            assert!(!text.contains(code.as_str()));
        }
        assert_eq!(view.backup_codes_left(), codes.len());
        assert_eq!(view.app().map(|a| a.method), Some(AppMethod::Totp));
        assert_eq!(view.devices[0].name.as_str(), "app");
    }

    #[test]
    fn a_view_accepts_no_code() {
        let (record, codes) = record_with_backup();
        let mut seen = View::of(&record).record;
        let policy = VerifyPolicy {
            totp_window: 1,
            hotp_lookahead: 10,
        };
        for code in &codes {
            let answer = Answer::parse(code.as_bytes()).unwrap();
            assert_eq!(
                seen.verify(&answer, 1_000_000, policy).unwrap(),
                Verdict::Wrong
            );
            assert_eq!(backup::find(&seen.backup.codes, code), None);
        }
    }

    #[test]
    fn a_view_reads_back_as_written() {
        let view = View::of(&totp_record());
        let text = toml::to_string(&view).unwrap();
        let back: View = toml::from_str(&text).unwrap();
        assert_eq!(back, view);
    }
}
