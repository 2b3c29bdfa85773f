//! Asking for a current code before a change (disable, replace, new backup
//! codes), with the sent-code menu: a short loop over the verification
//! service, as the module's prompt loop is. The wording is config's
//! `texts`, the same a login shows.

use otpgate_config::channel::{self, Kind};
use otpgate_config::verification::{Menu, Offer, Recipient, SendOutcome};
use otpgate_config::{Answer, Method, texts};

use crate::context::{Check, Context};
use crate::error::{CliError, Result};

/// What the `{service}` of a message template is for codes sent by the CLI.
pub const SERVICE: &str = "otpgate";

impl Context {
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
    /// tries); Enter or a menu number sends a code instead. Root acting
    /// with `force` skips it.
    pub fn confirm_current_code(&mut self, force: bool) -> Result<Method> {
        if force {
            self.require_root("--force")?;
            return Ok(Method::Totp);
        }
        let tries = self.config.max_attempts.max(1);
        let menu = self.menu();
        let prompt = menu.prompt(texts::CURRENT_CODE_BASE);
        let mut left = tries;
        while left > 0 {
            let line = self
                .input
                .secret_line(&prompt)?
                .ok_or_else(|| CliError::CodeRefused("no code given (end of input)".into()))?;
            if let Some(offer) = menu.choice(line.as_bytes()) {
                // Sending is not a guess; a refused send (rate limit) is.
                if !self.send_to_enrolled(offer)? {
                    left -= 1;
                }
                continue;
            }
            left -= 1;
            if let Some(method) = self.judge_current(line.trim(), left)? {
                return Ok(method);
            }
        }
        Err(CliError::CodeRefused(format!(
            "{tries} wrong codes; nothing was changed"
        )))
    }

    /// One answer to [`Context::confirm_current_code`]: the method when
    /// right, `None` to ask again.
    fn judge_current(&self, line: &str, left: u32) -> Result<Option<Method>> {
        let answer = Answer::parse(line.as_bytes());
        let check = self.check_code(answer.as_ref(), true)?;
        match check {
            Check::Accepted(method, _) => Ok(Some(method)),
            Check::NotEnrolled => Err(self.not_enrolled()),
            Check::LockedOut(until) => Err(CliError::LockedOut { until, now: false }),
            Check::LockedNow(until) => Err(CliError::LockedOut { until, now: true }),
            Check::Wrong | Check::Replayed => {
                if left > 0 {
                    let text = match check {
                        Check::Replayed => texts::used_code(left),
                        _ => texts::wrong_code(left),
                    };
                    eprintln!("{text}");
                }
                Ok(None)
            }
        }
    }

    /// Channels the user can have a code sent by now: configured here and
    /// enrolled by the user, in menu order.
    pub fn menu(&self) -> Menu {
        match self.service().view() {
            Ok(Some(view)) => Menu::for_record(&self.config, &view.record),
            _ => Menu::default(),
        }
    }

    /// Sends a new code to the user's enrolled destination through the
    /// verification service (stored hashed, rate-limited). `Ok(true)`: a
    /// send happened (delivered or not); `Ok(false)`: the limit refused it.
    pub fn send_to_enrolled(&self, offer: &Offer) -> Result<bool> {
        let now = crate::time::now()?;
        let recipient = Recipient {
            user: &self.account.name,
            service: SERVICE,
        };
        let kind: Kind = offer.kind;
        match self.service().send_code(offer, now, recipient)? {
            SendOutcome::Sent { minutes, .. } => {
                let to = channel::mask(kind, &offer.to);
                eprintln!("{}", texts::code_sent(kind, &to, minutes));
            }
            SendOutcome::Failed(why) => eprintln!("{} ({why})", texts::send_failed(kind)),
            SendOutcome::Limited { next, .. } => {
                let when = crate::time::format_local(next);
                eprintln!("{}", texts::too_many_sends(kind, &when));
                return Ok(false);
            }
            SendOutcome::Locked(until) => return Err(CliError::LockedOut { until, now: false }),
            SendOutcome::Gone => return Err(self.not_enrolled()),
        }
        Ok(true)
    }
}
