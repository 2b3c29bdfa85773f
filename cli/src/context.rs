//! What every account command works on: the system config, the target
//! account and its store, who is asking, the time, and the input.

use std::path::Path;

use std::sync::Arc;

use otpgate_config::record::{DeviceName, View};
use otpgate_config::remote::Daemon;
use otpgate_config::service::{self, Local, Service};
use otpgate_config::system::{ConfigOwner, DEFAULT_PATH, SELF_SERVICE, StoreKind};
use otpgate_config::verification::{BackupUse, Checked, CommandSender, Refusal};
use otpgate_config::{Account, Answer, Error, Method, Store, SystemConfig, store, texts};

use crate::error::{CliError, Result};
use crate::input::Input;

pub struct Context {
    pub config: SystemConfig,
    pub account: Account,
    /// Where the account's record is: a store here (`store.kind =
    /// "files"`) or `otpgated`. Commands never build its path.
    records: Records,
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
    /// Accepted: by which method, and for an app code which device.
    Accepted(Method, Option<DeviceName>),
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
pub(crate) fn load_config(path: Option<&Path>) -> Result<SystemConfig> {
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
        // The command's own checks are those of the `otpgate` service
        // (`[[policy.override]]`), as otpgated judges a user's requests.
        let config = load_config(config)?.for_login(&account, Some(SELF_SERVICE));
        let records = match config.store.kind {
            StoreKind::Files => Records::Here(Arc::from(store::open(&config, &account)?)),
            StoreKind::Daemon => {
                Records::Daemon(Daemon::new(&config, &account.name).for_service(Some(SELF_SERVICE)))
            }
        };
        Ok(Context {
            config,
            account,
            records,
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

    /// The record as the command may see it (no secret), or
    /// [`CliError::NotEnrolled`].
    pub fn enrolled(&self) -> Result<View> {
        self.service().view()?.ok_or_else(|| self.not_enrolled())
    }

    /// The verification service and account changes on this user's
    /// record, wherever it is.
    pub fn service(&self) -> Box<dyn Service + '_> {
        match &self.records {
            Records::Here(store) => Box::new(Local::new(
                &self.config,
                Box::new(Arc::clone(store)),
                &SENDER,
            )),
            Records::Daemon(daemon) => Box::new(daemon),
        }
    }

    /// The store in this process, for what does not go through
    /// `otpgated` yet (codes by email/SMS at enrollment, imports, `reset`
    /// of a record that cannot be reached).
    pub fn local_store(&self, what: &str) -> Result<&dyn Store> {
        match &self.records {
            Records::Here(store) => Ok(store.as_ref()),
            Records::Daemon(_) => Err(CliError::Library(Error::Daemon {
                socket: self.config.store.socket.clone().into(),
                cause: format!(
                    "records are kept by otpgated (store.kind = \"daemon\"); {what} does not go \
                     through it yet"
                ),
            })),
        }
    }

    /// The daemon client, when `otpgated` keeps the records.
    pub fn daemon(&self) -> Option<&Daemon> {
        match &self.records {
            Records::Daemon(daemon) => Some(daemon),
            Records::Here(_) => None,
        }
    }

    /// Where the record is, for messages.
    pub fn describe(&self) -> String {
        self.service().describe()
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
        let check = service::Check {
            candidates: &[code],
            backup,
            source: None,
        };
        let checked = self.service().check(check, self.now)?;
        Ok(match checked {
            Checked::Accepted { method, device, .. } => Check::Accepted(method, device),
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
}

/// Where an account command finds the record.
enum Records {
    Here(Arc<dyn Store>),
    Daemon(Daemon),
}

/// How the command sends codes when the records are here.
static SENDER: CommandSender = CommandSender { prepare: |_| {} };
