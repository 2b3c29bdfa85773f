//! The password before a first enrollment (`enroll_password_check`),
//! checked by the daemon: a user who is not root and has no enrollment
//! sends it with the change that would create one, and the daemon asks the
//! PAM service `otpgate` (the distribution's common auth and account
//! stacks, as the `otpgate` command does with the file store). A program of
//! the user's that talks to the socket cannot enroll an account without
//! its password, which is what stops someone at an unlocked session from
//! owning its second factor.

use std::ffi::{CStr, CString};

use pam_client2::{Context as Pam, ConversationHandler, ErrorCode, Flag};
use zeroize::Zeroizing;

/// The PAM service the password is checked with.
pub const SERVICE: &str = "otpgate";

/// Answers the stack's first hidden prompt with the password; any other
/// question is one the daemon cannot answer, and fails the check.
struct Conversation {
    password: Option<CString>,
}

impl ConversationHandler for Conversation {
    fn prompt_echo_on(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        Err(ErrorCode::CONV_ERR)
    }

    fn prompt_echo_off(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        self.password.take().ok_or(ErrorCode::CONV_ERR)
    }

    fn text_info(&mut self, _msg: &CStr) {}

    fn error_msg(&mut self, _msg: &CStr) {}
}

/// `Ok(())` when `password` is `user`'s; `Err` with why not, for the
/// client (never the password).
pub fn check(user: &str, password: &str) -> Result<(), String> {
    let refused = || format!("the password of {user} was not confirmed");
    let password = Zeroizing::new(password.as_bytes().to_vec());
    let password = CString::new(password.to_vec()).map_err(|_| refused())?;
    let conversation = Conversation {
        password: Some(password),
    };
    let mut pam = Pam::new(SERVICE, Some(user), conversation)
        .map_err(|e| format!("PAM service `{SERVICE}`: {e}"))?;
    let result = pam
        .authenticate(Flag::DISALLOW_NULL_AUTHTOK)
        .and_then(|()| {
            // An expired password was still the right one.
            match pam.acct_mgmt(Flag::NONE) {
                Err(e) if e.code() == ErrorCode::NEW_AUTHTOK_REQD => Ok(()),
                other => other,
            }
        });
    // Whatever the stack left of the password goes with the handle.
    drop(pam);
    result.map_err(|e| match e.code() {
        ErrorCode::AUTH_ERR
        | ErrorCode::MAXTRIES
        | ErrorCode::USER_UNKNOWN
        | ErrorCode::CRED_INSUFFICIENT
        | ErrorCode::CONV_ERR => refused(),
        _ => format!("PAM service `{SERVICE}` refused {user}: {e}"),
    })
}
