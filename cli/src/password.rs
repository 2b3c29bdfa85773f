//! The password check before a first enrollment: whoever sits at an
//! unlocked session must not be able to enroll (and so own) someone else's
//! second factor. The invoking user's password is checked through the PAM
//! service `otpgate` (`/etc/pam.d/otpgate`, shipped as
//! `cli/doc/pam.d-otpgate`: the distribution's common auth and account
//! stacks). Root, who may provision anyone, is not asked; the config key
//! `enroll_password_check = false` turns the check off.

use std::ffi::{CStr, CString};

use pam_client2::{Context as Pam, ConversationHandler, Flag};

use crate::context::Context;
use crate::error::{CliError, Result};
use crate::input::Input;

/// The PAM service the password is checked with.
pub const SERVICE: &str = "otpgate";
/// Password tries before the enrollment is refused.
const TRIES: u32 = 3;

/// Answers PAM's prompts from the command's input (echo off on a
/// terminal, one line per prompt from a pipe) and shows its messages on
/// stderr.
struct Conversation<'a> {
    input: &'a mut Input,
    /// Set when the input ended or failed, so the caller stops asking.
    ended: bool,
}

impl Conversation<'_> {
    fn answer(&mut self, prompt: &CStr) -> std::result::Result<CString, pam_client2::ErrorCode> {
        let conv_err = pam_client2::ErrorCode::CONV_ERR;
        let prompt = prompt.to_string_lossy();
        let line = match self.input.secret_line(&prompt) {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => {
                self.ended = true;
                return Err(conv_err);
            }
        };
        // An answer with a NUL byte cannot be a password.
        CString::new(line.as_bytes()).map_err(|_| conv_err)
    }
}

impl ConversationHandler for Conversation<'_> {
    fn prompt_echo_on(
        &mut self,
        prompt: &CStr,
    ) -> std::result::Result<CString, pam_client2::ErrorCode> {
        self.answer(prompt)
    }

    fn prompt_echo_off(
        &mut self,
        prompt: &CStr,
    ) -> std::result::Result<CString, pam_client2::ErrorCode> {
        self.answer(prompt)
    }

    fn text_info(&mut self, msg: &CStr) {
        eprintln!("{}", msg.to_string_lossy());
    }

    fn error_msg(&mut self, msg: &CStr) {
        eprintln!("{}", msg.to_string_lossy());
    }
}

/// True when `otpgate enroll` (or an import) must confirm the password
/// before saving a first enrollment.
pub fn needed(ctx: &Context, already_enrolled: bool) -> bool {
    ctx.config.enroll_password_check && !already_enrolled && !ctx.is_root
}

/// Asks for the invoking user's password through PAM (up to three tries).
pub fn confirm(ctx: &mut Context) -> Result<()> {
    let user = ctx.account.name.clone();
    eprintln!("Before the first enrollment, confirm the password of {user}.");
    let refused = || {
        CliError::CodeRefused(format!(
            "the password of {user} was not confirmed; nothing was saved"
        ))
    };
    if ctx.daemon().is_some() {
        // otpgated checks it (with the same PAM service) when the
        // enrollment is saved: a check here could be skipped by a program
        // talking to the daemon directly.
        let password = ctx.input.secret_line("Password: ")?.ok_or_else(refused)?;
        if let Some(daemon) = ctx.daemon() {
            daemon.set_password(password);
        }
        return Ok(());
    }
    for attempt in 1..=TRIES {
        let conversation = Conversation {
            input: &mut ctx.input,
            ended: false,
        };
        let mut pam =
            Pam::new(SERVICE, Some(&user), conversation).map_err(|source| CliError::PamStart {
                service: SERVICE,
                source,
            })?;
        let result = pam
            .authenticate(Flag::DISALLOW_NULL_AUTHTOK)
            .and_then(|()| {
                // An expired password was still the right one.
                match pam.acct_mgmt(Flag::NONE) {
                    Err(e) if e.code() == pam_client2::ErrorCode::NEW_AUTHTOK_REQD => Ok(()),
                    other => other,
                }
            });
        let ended = pam.conversation().ended;
        drop(pam);
        let error = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let code = error.code();
        if ended {
            // No answer to give (end of input): whatever PAM made of it.
            return Err(refused());
        }
        use pam_client2::ErrorCode as E;
        match code {
            E::AUTH_ERR | E::MAXTRIES | E::USER_UNKNOWN | E::CRED_INSUFFICIENT
                if attempt < TRIES =>
            {
                eprintln!("Wrong password, try again.");
            }
            E::AUTH_ERR
            | E::MAXTRIES
            | E::USER_UNKNOWN
            | E::CRED_INSUFFICIENT
            | E::CONV_ERR
            | E::ABORT => return Err(refused()),
            E::ACCT_EXPIRED | E::PERM_DENIED => {
                return Err(CliError::CodeRefused(format!(
                    "PAM service `{SERVICE}` does not let {user} in ({error}); nothing was saved"
                )));
            }
            _ => {
                return Err(CliError::PamFailed {
                    service: SERVICE,
                    source: error,
                });
            }
        }
    }
    Err(refused())
}
