//! What every account command works on: the system config, the target
//! account and its file, who is asking, the time, and the input.

use std::path::Path;

use otpgate_config::record::Verdict;
use otpgate_config::system::DEFAULT_PATH;
use otpgate_config::{Account, Answer, Method, SystemConfig, UserFile, UserRecord};

use crate::error::{CliError, Result};
use crate::input::Input;

pub struct Context {
    pub config: SystemConfig,
    pub account: Account,
    pub file: UserFile,
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
        let config = match config {
            Some(path) => SystemConfig::load(path, true)?,
            None => SystemConfig::load(Path::new(DEFAULT_PATH), false)?,
        };
        let file = UserFile::for_account(&config, &account)?;
        Ok(Context {
            config,
            account,
            file,
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
        self.file.read()?.ok_or_else(|| self.not_enrolled())
    }

    pub fn not_enrolled(&self) -> CliError {
        CliError::NotEnrolled {
            user: self.account.name.clone(),
        }
    }

    /// Checks `answer` (`None`: not a code at all) under the file's lock,
    /// as a login would: a good code is used up (its TOTP step or HOTP
    /// counter; a backup code only when `consume_backup`), a wrong one is
    /// counted towards the lockout.
    pub fn check_code(&self, answer: Option<&Answer>, consume_backup: bool) -> Result<Check> {
        let now = self.now;
        let verify_policy = self.config.verify_policy();
        let lockout_policy = self.config.lockout_policy();
        Ok(self.file.update(|record| {
            let Some(r) = record.as_mut() else {
                return Ok(Check::NotEnrolled);
            };
            if let Some(until) = r.locked_until(now) {
                return Ok(Check::LockedOut(until));
            }
            let verdict = match answer {
                Some(answer) => {
                    let mut trial = r.clone();
                    let verdict = trial.verify(answer, now, verify_policy)?;
                    if consume_backup || verdict != Verdict::Accepted(Method::Backup) {
                        *r = trial;
                    }
                    verdict
                }
                None => Verdict::Wrong,
            };
            Ok(match verdict {
                Verdict::Accepted(method) => {
                    r.record_success();
                    Check::Accepted(method)
                }
                Verdict::Wrong | Verdict::Replayed { .. } | Verdict::Expired(_) => {
                    r.prune_sent(now);
                    match r.record_failure(now, lockout_policy) {
                        Some(until) => Check::LockedNow(until),
                        None if matches!(verdict, Verdict::Replayed { .. }) => Check::Replayed,
                        None => Check::Wrong,
                    }
                }
            })
        })?)
    }

    /// Replacing an existing enrollment needs a current code (or root's
    /// `force`, checked by the caller): whoever holds an unlocked session
    /// must not swap the second factor for one they control.
    pub fn may_replace(&mut self, enrolled: bool, force: bool) -> Result<()> {
        if !enrolled || force {
            return Ok(());
        }
        eprintln!(
            "{} is already enrolled; a current code is needed to replace the enrollment.",
            self.account.name
        );
        match self.confirm_current_code(false) {
            Ok(_) => Ok(()),
            Err(e @ (CliError::LockedOut { .. } | CliError::Library(_))) => Err(e),
            Err(_) => Err(CliError::AlreadyEnrolled {
                user: self.account.name.clone(),
            }),
        }
    }

    /// Asks for a current code until one is right (up to `max_attempts`
    /// tries). Root acting with `force` skips it.
    pub fn confirm_current_code(&mut self, force: bool) -> Result<Method> {
        if force {
            self.require_root("--force")?;
            return Ok(Method::Totp);
        }
        let tries = self.config.max_attempts.max(1);
        let offers = crate::channels::offers(self);
        let prompt = crate::channels::prompt("Current verification code", &offers);
        let mut attempt = 0;
        while attempt < tries {
            attempt += 1;
            let line = self
                .input
                .secret_line(&prompt)?
                .ok_or_else(|| CliError::CodeRefused("no code given (end of input)".into()))?;
            if let Some(kind) = crate::channels::menu_choice(&offers, line.trim()) {
                // Sending is not a guess; a refused send (rate limit) is.
                if crate::channels::send_to_enrolled(self, kind)? {
                    attempt -= 1;
                }
                continue;
            }
            let answer = Answer::parse(line.trim().as_bytes());
            match self.check_code(answer.as_ref(), true)? {
                Check::Accepted(method) => return Ok(method),
                Check::NotEnrolled => return Err(self.not_enrolled()),
                Check::LockedOut(until) => {
                    return Err(CliError::LockedOut { until, now: false });
                }
                Check::LockedNow(until) => return Err(CliError::LockedOut { until, now: true }),
                Check::Wrong | Check::Replayed if attempt < tries => {
                    eprintln!("Wrong code, try again.");
                }
                Check::Wrong | Check::Replayed => {}
            }
        }
        Err(CliError::CodeRefused(format!(
            "{tries} wrong codes; nothing was changed"
        )))
    }
}
