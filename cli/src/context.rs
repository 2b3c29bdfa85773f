//! What every account command works on: the system config, the target
//! account and its store, who is asking, the time, and the input.

use std::path::Path;

use otpgate_config::system::{ConfigOwner, DEFAULT_PATH};
use otpgate_config::verification::{BackupUse, Checked, Refusal, Verifier};
use otpgate_config::{
    Account, Answer, Error, Method, Store, SystemConfig, UserRecord, store, texts,
};

use crate::error::{CliError, Result};
use crate::input::Input;

pub struct Context {
    pub config: SystemConfig,
    pub account: Account,
    /// Where the account's record is; commands never build its path.
    pub store: Box<dyn Store>,
    /// The real uid running the command is root.
    pub is_root: bool,
    /// The clock, read once for the whole command.
    pub now: u64,
    pub json: bool,
    pub input: Input,
}

/// The outcome of checking one code against the stored enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Accepted(Method),
    Wrong,
    Replayed,
    /// This wrong code locked the account until then.
    LockedNow(u64),
    /// Already locked until then; the code was not looked at.
    LockedOut(u64),
    NotEnrolled,
}

/// The system config, from a file root owns whoever runs the command: a
/// user's own file could switch off checks meant for them (the password
/// before a first enrollment, the send limit...).
fn load_config(path: Option<&Path>) -> Result<SystemConfig> {
    let (path, required) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_PATH), false),
    };
    SystemConfig::load_owned_by(path, required, ConfigOwner::Root).map_err(|e| match e {
        Error::WrongOwner { .. } => {
            CliError::NotPermitted(texts::config_not_root(&path.display().to_string()))
        }
        e => e.into(),
    })
}

impl Context {
    /// Resolves `--user` (refusing other users unless root) before reading
    /// anything, then loads the config.
    pub fn new(config: Option<&Path>, user: Option<&str>, json: bool, now: u64) -> Result<Self> {
        let uid = nix::unistd::getuid();
        let is_root = uid.is_root();
        let account = match user {
            None => Account::current()?,
            Some(name) => {
                let account = Account::lookup(name)?;
                if account.uid != uid.as_raw() && !is_root {
                    return Err(CliError::NotPermitted(format!(
                        "only root may act on another user (--user {name})"
                    )));
                }
                account
            }
        };
        let config = load_config(config)?;
        let store = store::open(&config, &account)?;
        Ok(Context {
            config,
            account,
            store,
            is_root,
            now,
            json,
            input: Input::new(),
        })
    }

    /// Fails unless the command runs as root.
    pub fn require_root(&self, what: &str) -> Result<()> {
        if self.is_root {
            Ok(())
        } else {
            Err(CliError::NotPermitted(format!("{what} needs root")))
        }
    }

    /// The stored record, or [`CliError::NotEnrolled`].
    pub fn enrolled(&self) -> Result<UserRecord> {
        self.store.read()?.ok_or_else(|| self.not_enrolled())
    }

    pub fn not_enrolled(&self) -> CliError {
        CliError::NotEnrolled {
            user: self.account.name.clone(),
        }
    }

    /// Checks `answer` (`None`: not a code at all) as a login would,
    /// through the verification service: a good code is used up (its TOTP
    /// step or HOTP counter; a backup code only when `consume_backup`), a
    /// wrong one is counted towards the lockout.
    pub fn check_code(&self, answer: Option<&Answer>, consume_backup: bool) -> Result<Check> {
        let backup = if consume_backup {
            BackupUse::Consume
        } else {
            BackupUse::Keep
        };
        // Not a code at all is a wrong answer too, and counts.
        let code: &[u8] = answer.map_or(b"", |a| a.as_str().as_bytes());
        let checked = self.verifier().check(&[code], self.now, backup)?;
        Ok(match checked {
            Checked::Accepted { method, .. } => Check::Accepted(method),
            Checked::Refused {
                locked_until: Some(until),
                ..
            } => Check::LockedNow(until),
            Checked::Refused {
                why: Refusal::Replayed,
                ..
            } => Check::Replayed,
            Checked::Refused { .. } => Check::Wrong,
            Checked::Locked(until) => Check::LockedOut(until),
            Checked::NotEnrolled => Check::NotEnrolled,
        })
    }

    /// The verification service on this user's store.
    pub fn verifier(&self) -> Verifier<'_> {
        Verifier::new(&self.config, self.store.as_ref())
    }
}
