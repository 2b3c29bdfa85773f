//! The hourly limit on sent codes, and the sends of a user who is not
//! enrolled yet (`otpgate enroll email|sms`), kept beside the record that
//! does not exist yet so the limit holds from one run of the CLI to the
//! next.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{MAX_SENT, Send};
use crate::channel::Kind;
use crate::error::{Error, Result};

/// Drops sends older than an hour (and any from the future: a clock that
/// jumped back must not block sends for the jump's length).
pub(crate) fn prune(sends: &mut Vec<Send>, now: u64) {
    sends.retain(|s| s.at.saturating_add(3600) > now && s.at <= now);
}

/// `Err(next)`: `max_per_hour` sends by `kind` in the last hour; `next` is
/// the Unix time the oldest of them leaves the window.
pub(crate) fn allowed(
    sends: &[Send],
    kind: Kind,
    now: u64,
    max_per_hour: u32,
) -> std::result::Result<(), u64> {
    let recent: Vec<u64> = sends
        .iter()
        .filter(|s| s.channel == kind && s.at.saturating_add(3600) > now && s.at <= now)
        .map(|s| s.at)
        .collect();
    if recent.len() < max_per_hour as usize {
        return Ok(());
    }
    Err(recent.iter().min().map_or(now, |t| t.saturating_add(3600)))
}

/// Records a send by `kind` at `now`, keeping at most [`MAX_SENT`].
pub(crate) fn note(sends: &mut Vec<Send>, kind: Kind, now: u64) {
    sends.push(Send {
        channel: kind,
        at: now,
    });
    if sends.len() > MAX_SENT {
        sends.remove(0);
    }
}

/// Sends to destinations being enrolled by a user with no record: the file
/// store keeps them in `<user file>.sends`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentSends {
    #[serde(default, rename = "send", skip_serializing_if = "Vec::is_empty")]
    pub sends: Vec<Send>,
}

impl EnrollmentSends {
    /// Counts one send by `kind` at `now` unless `max_per_hour` were sent
    /// in the last hour (`Err(next)`, nothing counted).
    pub fn count(
        &mut self,
        kind: Kind,
        now: u64,
        max_per_hour: u32,
    ) -> std::result::Result<(), u64> {
        prune(&mut self.sends, now);
        allowed(&self.sends, kind, now, max_per_hour)?;
        note(&mut self.sends, kind, now);
        Ok(())
    }

    /// Nothing to keep: the file can go.
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty()
    }

    /// Parses the file's text; `path` is for messages.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self> {
        let sends: EnrollmentSends =
            toml::from_str(text).map_err(|e| Error::from_toml(path, text, &e))?;
        if sends.sends.len() > MAX_SENT {
            return Err(Error::Invalid {
                source: path.display().to_string().into(),
                key: "send".into(),
                message: format!("more than {MAX_SENT} entries"),
            });
        }
        Ok(sends)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_per_channel_and_frees_after_an_hour() {
        let mut s = EnrollmentSends::default();
        assert_eq!(s.count(Kind::Email, 1000, 2), Ok(()));
        assert_eq!(s.count(Kind::Email, 1010, 2), Ok(()));
        assert_eq!(s.count(Kind::Email, 1020, 2), Err(4600));
        assert_eq!(s.count(Kind::Sms, 1020, 2), Ok(()));
        assert_eq!(s.count(Kind::Email, 4600, 2), Ok(()));
        let text = s.to_toml();
        let back = EnrollmentSends::from_toml(Path::new("x.sends"), &text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_file_with_too_many_entries_or_unknown_keys_is_refused() {
        let many = "[[send]]\nchannel = \"email\"\nat = 1\n".repeat(MAX_SENT + 1);
        assert!(EnrollmentSends::from_toml(Path::new("x"), &many).is_err());
        assert!(EnrollmentSends::from_toml(Path::new("x"), "failures = 0\n").is_err());
    }
}
