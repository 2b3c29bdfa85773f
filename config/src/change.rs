//! The account changes the `otpgate` command makes to a record, as values:
//! new backup codes, forgetting remembered hosts, disabling, unlocking,
//! saving an enrollment. [`Change::apply`] is the one place each is done,
//! whether the command changes its own file store or `otpgated` does it
//! for the command (docs/ARCHITECTURE.md, §3.1).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::channel::Kind;
use crate::error::Result;
use crate::record::{Device, DeviceName, MAX_DEVICES, UserRecord};
use crate::system::SystemConfig;

/// One change to a user's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Change {
    /// Replaces the backup codes (count and digits from the config).
    NewBackupCodes,
    /// Forgets every remembered trust of `host`.
    ForgetHost { host: String },
    /// Forgets every remembered host.
    ForgetAllHosts,
    /// Removes the enrollment.
    Disable,
    /// Ends a lockout and clears the failure count.
    Unlock,
    /// Saves a new enrollment, with fresh backup codes; `replacing` says
    /// whether the caller saw one already (someone else enrolling
    /// meanwhile wins: nothing is overwritten). The email address and
    /// phone number of the enrollment replaced are kept.
    Enroll {
        record: Box<UserRecord>,
        replacing: bool,
    },
    /// Saves an enrollment imported from another tool (`otpgate import`):
    /// like `Enroll`, but the backup codes are the record's own (the
    /// other tool's scratch codes, hashed).
    Import {
        record: Box<UserRecord>,
        replacing: bool,
    },
    /// Takes over a record from the file store (`otpgate store import`),
    /// state and backup codes included. Held already (an earlier import of
    /// the same enrollment): what was used in either copy stays used
    /// ([`UserRecord::fold_used`]); a different enrollment is a conflict,
    /// never overwritten.
    Adopt { record: Box<UserRecord> },
    /// Sets the destination of sent codes by `channel` (`otpgate enroll
    /// email|sms`, once a code sent there came back); `creating` says the
    /// caller saw no record (a channel-only enrollment is made), and as
    /// with `Enroll` an enrollment made or removed meanwhile wins.
    SetDestination {
        channel: Kind,
        to: String,
        creating: bool,
    },
    /// Removes one way to log in (`otpgate disable app|email|sms`); the
    /// last one removes the enrollment. `app` removes every device.
    RemoveMethod { method: MethodName },
    /// Adds an authenticator (`otpgate devices add`) to an enrollment;
    /// its name must be free and the record below [`MAX_DEVICES`].
    AddDevice { device: Box<Device> },
    /// Removes the device `name` (`otpgate devices remove`); the last one
    /// removes the app method, as `RemoveMethod { app }` does.
    RemoveDevice { name: DeviceName },
    /// Renames a device (`otpgate devices rename`).
    RenameDevice { from: DeviceName, to: DeviceName },
}

/// A way to log in that `otpgate disable METHOD` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodName {
    App,
    Email,
    Sms,
}

/// What a change came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "changed", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Changed {
    /// There is no record to change.
    NotEnrolled,
    /// `NewBackupCodes`, `Enroll`: the new backup codes, in clear, the
    /// only time they exist so.
    BackupCodes { codes: Vec<Zeroizing<String>> },
    /// `ForgetHost`: whether the host was remembered.
    Forgot { found: bool },
    /// `ForgetAllHosts`: how many trusts were forgotten.
    ForgotAll { count: u32 },
    /// `Disable`.
    Disabled,
    /// `Unlock`: whether the account was locked or had failures.
    Unlocked { was_locked: bool },
    /// `Enroll`: someone else enrolled or disabled meanwhile; nothing saved.
    Raced,
    /// `Adopt`: saved; `merged` when a copy was held already.
    Adopted { merged: bool },
    /// `Adopt`: the record held is another enrollment; nothing changed.
    Conflict { why: String },
    /// `SetDestination`: saved.
    DestinationSet,
    /// `RemoveMethod`, `RemoveDevice`: removed; `removed_all` when it was
    /// the last one and the enrollment is gone.
    MethodRemoved { removed_all: bool },
    /// `AddDevice`: saved.
    DeviceAdded,
    /// `RenameDevice`: done.
    DeviceRenamed,
    /// `AddDevice`, `RenameDevice`: a device has that name already.
    DeviceNameTaken,
    /// `AddDevice`: the record has [`MAX_DEVICES`] already.
    TooManyDevices,
    /// `RemoveDevice`, `RenameDevice`: no device has that name.
    NoSuchDevice,
}

impl Change {
    /// Whether a user who is not root must prove a current code before
    /// the daemon makes this change for them: it would hand them a new way
    /// in (backup codes, a new secret) or remove the second factor.
    /// Forgetting hosts only makes logins stricter.
    pub fn needs_proof(&self, enrolled: bool) -> bool {
        match self {
            Change::NewBackupCodes | Change::Disable => true,
            Change::Enroll { .. } | Change::Import { .. } => enrolled,
            Change::ForgetHost { .. } | Change::ForgetAllHosts | Change::Unlock => false,
            Change::Adopt { .. } | Change::RemoveMethod { .. } => true,
            // A new device is a new way in; removing one may remove the
            // app: both like replacing the enrollment. A name changes no
            // way in.
            Change::AddDevice { .. } | Change::RemoveDevice { .. } => true,
            Change::RenameDevice { .. } => false,
            Change::SetDestination { .. } => enrolled,
        }
    }

    /// Whether this change would make a first enrollment of a user who
    /// has none (`enrolled` false): then a user who is not root must give
    /// their password (`enroll_password_check`).
    pub fn makes_first_enrollment(&self, enrolled: bool) -> bool {
        !enrolled
            && matches!(
                self,
                Change::Enroll { .. } | Change::Import { .. } | Change::SetDestination { .. }
            )
    }

    /// Whether only root may ask for this change.
    pub fn root_only(&self) -> bool {
        matches!(self, Change::Unlock | Change::Adopt { .. })
    }

    /// A short name for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Change::NewBackupCodes => "new-backup-codes",
            Change::ForgetHost { .. } => "forget-host",
            Change::ForgetAllHosts => "forget-all-hosts",
            Change::Disable => "disable",
            Change::Unlock => "unlock",
            Change::Enroll { .. } => "enroll",
            Change::Import { .. } => "import",
            Change::Adopt { .. } => "adopt",
            Change::SetDestination { .. } => "set-destination",
            Change::RemoveMethod { .. } => "remove-method",
            Change::AddDevice { .. } => "add-device",
            Change::RemoveDevice { .. } => "remove-device",
            Change::RenameDevice { .. } => "rename-device",
        }
    }

    /// Makes the change to `slot` (inside the store's transaction; may run
    /// more than once, so it acts on the record alone).
    pub fn apply(
        &self,
        slot: &mut Option<UserRecord>,
        config: &SystemConfig,
        now: u64,
    ) -> Result<Changed> {
        match self {
            Change::Enroll { record, replacing } => {
                return enroll(slot, record, *replacing, Some(config));
            }
            Change::Import { record, replacing } => {
                return enroll(slot, record, *replacing, None);
            }
            Change::Adopt { record } => return adopt(slot, record),
            Change::SetDestination {
                channel,
                to,
                creating,
            } => {
                if slot.is_some() == *creating {
                    return Ok(Changed::Raced);
                }
                let record = slot.get_or_insert_with(UserRecord::new_channels_only);
                record.set_destination(*channel, Some(to.clone()));
                record.validate(std::path::Path::new("the new destination"))?;
                return Ok(Changed::DestinationSet);
            }
            _ => {}
        }
        let Some(record) = slot.as_mut() else {
            return Ok(Changed::NotEnrolled);
        };
        Ok(match self {
            Change::NewBackupCodes => Changed::BackupCodes {
                codes: new_backup_codes(record, config)?,
            },
            Change::ForgetHost { host } => {
                let before = record.trusted_hosts.len();
                record.trusted_hosts.retain(|h| &h.host != host);
                let found = record.trusted_hosts.len() != before;
                record.prune_trusted_hosts(now);
                Changed::Forgot { found }
            }
            Change::ForgetAllHosts => {
                record.prune_trusted_hosts(now);
                let count = u32::try_from(record.trusted_hosts.len()).unwrap_or(u32::MAX);
                record.trusted_hosts.clear();
                Changed::ForgotAll { count }
            }
            Change::Disable => {
                *slot = None;
                Changed::Disabled
            }
            Change::Unlock => {
                let was_locked = record.locked_until(now).is_some() || record.state.failures > 0;
                record.unlock();
                Changed::Unlocked { was_locked }
            }
            Change::RemoveMethod { method } => {
                match method {
                    MethodName::App => record.devices.clear(),
                    MethodName::Email => record.set_destination(Kind::Email, None),
                    MethodName::Sms => record.set_destination(Kind::Sms, None),
                }
                let removed_all = record.has_no_method();
                if removed_all {
                    *slot = None;
                }
                Changed::MethodRemoved { removed_all }
            }
            Change::AddDevice { device } => add_device(record, device)?,
            Change::RemoveDevice { name } => {
                let before = record.devices.len();
                record.devices.retain(|d| &d.name != name);
                if record.devices.len() == before {
                    return Ok(Changed::NoSuchDevice);
                }
                let removed_all = record.has_no_method();
                if removed_all {
                    *slot = None;
                }
                Changed::MethodRemoved { removed_all }
            }
            Change::RenameDevice { from, to } => {
                if from != to && record.device(to).is_some() {
                    return Ok(Changed::DeviceNameTaken);
                }
                match record.devices.iter_mut().find(|d| &d.name == from) {
                    Some(d) => {
                        d.name = *to;
                        Changed::DeviceRenamed
                    }
                    None => Changed::NoSuchDevice,
                }
            }
            Change::Enroll { .. }
            | Change::Import { .. }
            | Change::Adopt { .. }
            | Change::SetDestination { .. } => unreachable!("handled above"),
        })
    }
}

fn new_backup_codes(
    record: &mut UserRecord,
    config: &SystemConfig,
) -> Result<Vec<Zeroizing<String>>> {
    record.new_backup_codes(config.backup_codes as usize, config.backup_code_digits)
}

/// [`Change::Enroll`] (new backup codes from `config`) and
/// [`Change::Import`] (`None`: the record's own, returned as none in clear).
fn enroll(
    slot: &mut Option<UserRecord>,
    record: &UserRecord,
    replacing: bool,
    new_codes: Option<&SystemConfig>,
) -> Result<Changed> {
    if slot.is_some() != replacing {
        return Ok(Changed::Raced);
    }
    // Only the devices are taken from the caller, with the TOTP step its
    // confirmation code used (a later step can only refuse more codes):
    // failures, trusts, codes and destinations of its choosing would be a
    // way around the rules.
    let mut new = UserRecord::new_channels_only();
    new.devices = record.devices.clone();
    new.validate(std::path::Path::new("the new enrollment"))?;
    if let Some(old) = slot.as_ref() {
        new.email = old.email.clone();
        new.sms = old.sms.clone();
    }
    let codes = match new_codes {
        Some(config) => new_backup_codes(&mut new, config)?,
        None => {
            new.backup = record.backup.clone();
            new.validate(std::path::Path::new("the imported enrollment"))?;
            Vec::new()
        }
    };
    *slot = Some(new);
    Ok(Changed::BackupCodes { codes })
}

/// [`Change::AddDevice`]: only the device is taken from the caller (its
/// TOTP step stays, as with an enrollment).
fn add_device(record: &mut UserRecord, device: &Device) -> Result<Changed> {
    if record.device(&device.name).is_some() {
        return Ok(Changed::DeviceNameTaken);
    }
    if record.devices.len() >= MAX_DEVICES {
        return Ok(Changed::TooManyDevices);
    }
    let mut new = record.clone();
    new.devices.push(device.clone());
    new.validate(std::path::Path::new("the new device"))?;
    *record = new;
    Ok(Changed::DeviceAdded)
}

/// [`Change::Adopt`].
fn adopt(slot: &mut Option<UserRecord>, record: &UserRecord) -> Result<Changed> {
    record.validate(std::path::Path::new("the imported record"))?;
    let Some(held) = slot.as_mut() else {
        let mut new = record.clone();
        new.serial = None;
        *slot = Some(new);
        return Ok(Changed::Adopted { merged: false });
    };
    match held.fold_used(record) {
        Ok(()) => Ok(Changed::Adopted { merged: true }),
        Err(why) => Ok(Changed::Conflict { why: why.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::totp_record;

    fn config() -> SystemConfig {
        SystemConfig::default()
    }

    #[test]
    fn new_backup_codes_replace_the_old_ones() {
        let mut slot = Some(totp_record());
        let first = Change::NewBackupCodes
            .apply(&mut slot, &config(), 0)
            .unwrap();
        let Changed::BackupCodes { codes } = first else {
            panic!("{first:?}")
        };
        assert_eq!(codes.len(), 10);
        let hashes = slot.as_ref().unwrap().backup.codes.clone();
        Change::NewBackupCodes
            .apply(&mut slot, &config(), 0)
            .unwrap();
        assert_ne!(slot.unwrap().backup.codes, hashes);
    }

    #[test]
    fn an_enrollment_never_overwrites_one_made_meanwhile() {
        let change = Change::Enroll {
            record: Box::new(totp_record()),
            replacing: false,
        };
        let mut slot = Some(totp_record());
        assert_eq!(
            change.apply(&mut slot, &config(), 0).unwrap(),
            Changed::Raced
        );
        let mut empty = None;
        let done = change.apply(&mut empty, &config(), 0).unwrap();
        assert!(matches!(done, Changed::BackupCodes { codes } if codes.len() == 10));
        assert!(empty.is_some());
    }

    #[test]
    fn an_enrollment_takes_only_the_app_from_the_caller() {
        let mut offered = totp_record();
        offered.devices[0].last_step = 99;
        offered.state.failures = 3;
        offered.backup.codes = vec!["chosen".into()];
        offered.trust_host("203.0.113.7", "sshd", None, 1_000, 0);
        let change = Change::Enroll {
            record: Box::new(offered.clone()),
            replacing: false,
        };
        let mut slot = None;
        change.apply(&mut slot, &config(), 0).unwrap();
        let saved = slot.unwrap();
        assert_eq!(saved.devices, offered.devices);
        assert_eq!(
            saved.devices[0].last_step, 99,
            "the confirmation code stays used"
        );
        assert_eq!(saved.state.failures, 0);
        assert!(saved.trusted_hosts.is_empty());
        assert!(!saved.backup.codes.contains(&"chosen".to_string()));
    }

    #[test]
    fn adopting_twice_keeps_what_either_copy_used() {
        let mut source = totp_record();
        let codes = source.new_backup_codes(3, 8).unwrap();
        let adopt = |record: &UserRecord| Change::Adopt {
            record: Box::new(record.clone()),
        };
        let mut slot = None;
        let first = adopt(&source).apply(&mut slot, &config(), 0).unwrap();
        assert_eq!(first, Changed::Adopted { merged: false });
        // Meanwhile the daemon's copy used code 0 and step 100, the file's
        // copy code 1 and step 90.
        let held = slot.as_mut().unwrap();
        let at = crate::backup::find(&held.backup.codes, &codes[0]).unwrap();
        held.backup.codes.remove(at);
        held.devices[0].last_step = 100;
        let at = crate::backup::find(&source.backup.codes, &codes[1]).unwrap();
        source.backup.codes.remove(at);
        source.devices[0].last_step = 90;
        let again = adopt(&source).apply(&mut slot, &config(), 0).unwrap();
        assert_eq!(again, Changed::Adopted { merged: true });
        let held = slot.as_ref().unwrap();
        assert_eq!(held.devices[0].last_step, 100);
        assert_eq!(held.backup.codes.len(), 1);
        assert!(crate::backup::find(&held.backup.codes, &codes[2]).is_some());
        // The same again changes nothing.
        let before = held.clone();
        adopt(&source).apply(&mut slot, &config(), 0).unwrap();
        assert_eq!(slot.as_ref().unwrap(), &before);
    }

    #[test]
    fn another_enrollment_is_a_conflict_and_changes_nothing() {
        let mut slot = Some(totp_record());
        let other = UserRecord::new_totp(
            crate::otp::Secret::from_bytes(vec![7; 20]).unwrap(),
            crate::otp::Algorithm::SHA1,
            6,
            30,
        );
        let before = slot.clone();
        let change = Change::Adopt {
            record: Box::new(other),
        };
        let out = change.apply(&mut slot, &config(), 0).unwrap();
        assert!(matches!(out, Changed::Conflict { .. }), "{out:?}");
        assert_eq!(slot, before);
    }

    #[test]
    fn what_needs_a_code_first() {
        assert!(Change::NewBackupCodes.needs_proof(true));
        assert!(Change::Disable.needs_proof(true));
        let enroll = Change::Enroll {
            record: Box::new(totp_record()),
            replacing: true,
        };
        assert!(enroll.needs_proof(true) && !enroll.needs_proof(false));
        assert!(!Change::ForgetAllHosts.needs_proof(true));
        let name = DeviceName::parse("phone").unwrap();
        let add = Change::AddDevice {
            device: Box::new(totp_record().devices.remove(0)),
        };
        assert!(add.needs_proof(true) && !add.root_only());
        assert!(Change::RemoveDevice { name }.needs_proof(true));
        assert!(
            !Change::RenameDevice {
                from: name,
                to: name
            }
            .needs_proof(true)
        );
        assert!(Change::Unlock.root_only() && !Change::Disable.root_only());
    }

    fn device(name: &str, byte: u8) -> Device {
        Device::totp(
            DeviceName::parse(name).unwrap(),
            crate::otp::Secret::from_bytes(vec![byte; 20]).unwrap(),
            crate::otp::Algorithm::SHA1,
            6,
            30,
        )
    }

    #[test]
    fn devices_are_added_renamed_and_removed_and_the_last_removes_the_enrollment() {
        let mut slot = Some(totp_record());
        let add = |d: Device| Change::AddDevice {
            device: Box::new(d),
        };
        let c = config();
        assert_eq!(
            add(device("phone", 1)).apply(&mut slot, &c, 0).unwrap(),
            Changed::DeviceAdded
        );
        assert_eq!(
            add(device("phone", 2)).apply(&mut slot, &c, 0).unwrap(),
            Changed::DeviceNameTaken
        );
        for i in 2..MAX_DEVICES {
            let d = device(&format!("d{i}"), i as u8);
            assert_eq!(
                add(d).apply(&mut slot, &c, 0).unwrap(),
                Changed::DeviceAdded
            );
        }
        assert_eq!(
            add(device("one-more", 99)).apply(&mut slot, &c, 0).unwrap(),
            Changed::TooManyDevices
        );
        let name = |n: &str| DeviceName::parse(n).unwrap();
        let rename = Change::RenameDevice {
            from: name("phone"),
            to: name("app"),
        };
        assert_eq!(
            rename.apply(&mut slot, &c, 0).unwrap(),
            Changed::DeviceNameTaken
        );
        let rename = Change::RenameDevice {
            from: name("phone"),
            to: name("spare"),
        };
        assert_eq!(
            rename.apply(&mut slot, &c, 0).unwrap(),
            Changed::DeviceRenamed
        );
        let remove = |n: &str| Change::RemoveDevice { name: name(n) };
        assert_eq!(
            remove("phone").apply(&mut slot, &c, 0).unwrap(),
            Changed::NoSuchDevice
        );
        let names: Vec<String> = slot
            .as_ref()
            .unwrap()
            .devices
            .iter()
            .map(|d| d.name.to_string())
            .collect();
        for (i, n) in names.iter().enumerate() {
            let last = i == names.len() - 1;
            assert_eq!(
                remove(n).apply(&mut slot, &c, 0).unwrap(),
                Changed::MethodRemoved { removed_all: last }
            );
        }
        assert!(slot.is_none(), "no method left: no enrollment");
        // With an email address the record stays, without an app.
        let mut slot = Some(totp_record());
        slot.as_mut()
            .unwrap()
            .set_destination(Kind::Email, Some("a@example.org".into()));
        assert_eq!(
            remove("app").apply(&mut slot, &c, 0).unwrap(),
            Changed::MethodRemoved { removed_all: false }
        );
        assert!(!slot.unwrap().has_app());
    }
}
