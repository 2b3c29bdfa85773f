//! Every message a user reads at a login or a CLI confirmation, one
//! wording each. The module shows them through the PAM conversation, the
//! CLI on its terminal; times come in already formatted (the module says
//! `HH:MM`, the CLI a date with its zone).

use crate::channel::Kind;

/// The code prompt.
pub const PROMPT: &str = "Verification code: ";
/// The prompt with `forward_pass`: password and code in one answer.
pub const FORWARD_PROMPT: &str = "Password & verification code: ";
/// What the prompt asks for, before the menu of sent codes.
pub const PROMPT_BASE: &str = "Verification code";
/// The CLI's prompt base when a change needs a current code.
pub const CURRENT_CODE_BASE: &str = "Current verification code";
/// Users who must have a second factor and have none.
pub const ENROLL_HINT: &str = "2FA is required for this account: run `otpgate enroll`";
/// `use_first_pass` and no `PAM_AUTHTOK`.
pub const NO_CODE_GIVEN: &str = "No verification code was given.";
/// The user's record cannot be read.
pub const CANNOT_READ: &str = "Cannot read your 2FA settings; ask an administrator.";
/// The user is enrolled but their record cannot be found (a home not
/// mounted, a directory moved away).
pub const SETTINGS_UNAVAILABLE: &str = "Your 2FA settings are unavailable; ask your administrator.";
/// The user's record cannot be written (a used code could not be recorded).
pub const CANNOT_UPDATE: &str = "Cannot update your 2FA settings; ask an administrator.";
/// Enrolled, but every method needs a channel this system does not have.
pub const NO_METHOD: &str = "No way to get a verification code is set up; ask an administrator.";
/// One prompt answered after `prompt_timeout`.
pub const TOO_LATE_PROMPT: &str = "Too late: the code was not entered in time.";
/// The whole verification took longer than `channels.verification_time`.
pub const TOO_LATE_TOTAL: &str = "Too late: the verification took too long.";

/// A non-root user's `--config` that root does not own.
pub fn config_not_root(path: &str) -> String {
    format!(
        "--config {path}: not owned by root; a config of your own could switch checks off, \
         so only root's config files are used"
    )
}

/// The prompt `base` with the menu of channels that can send a code:
/// `Verification code (Enter: send a code by email): `, or with several
/// `Verification code (Enter: send by email, 2: send by SMS): `.
pub fn prompt(base: &str, offers: &[Kind]) -> String {
    match offers {
        [] => format!("{base}: "),
        [kind] => format!("{base} (Enter: send a code by {}): ", kind.display()),
        [first, rest @ ..] => {
            let mut menu = format!("Enter: send by {}", first.display());
            for (i, kind) in rest.iter().enumerate() {
                menu.push_str(&format!(", {}: send by {}", i + 2, kind.display()));
            }
            format!("{base} ({menu}): ")
        }
    }
}

/// A wrong code; `tries_left` more prompts follow.
pub fn wrong_code(tries_left: u32) -> String {
    refused("Wrong code", tries_left)
}

/// A code that was right once and is used up (or older than one used):
/// the user should wait for the next, not retype this one.
pub fn used_code(tries_left: u32) -> String {
    refused(
        "That code was already used; wait for the next one",
        tries_left,
    )
}

/// A sent code used after its lifetime.
pub fn expired_code(tries_left: u32) -> String {
    refused("That code has expired", tries_left)
}

fn refused(what: &str, tries_left: u32) -> String {
    match tries_left {
        0 => format!("{what}."),
        1 => format!("{what}; 1 try left."),
        n => format!("{what}; {n} tries left."),
    }
}

/// Locked out already (by earlier wrong codes or a concurrent login).
pub fn locked_until(when: &str) -> String {
    format!("Account locked until {when}")
}

/// This wrong code locked the account.
pub fn locked_now(when: &str) -> String {
    format!("Too many wrong codes. Account locked until {when}")
}

/// A backup code was used up.
pub fn backup_used(left: usize) -> String {
    format!("Backup code used; {left} left.")
}

/// The hourly send limit refused a send.
pub fn too_many_sends(kind: Kind, next: &str) -> String {
    format!(
        "Too many codes were sent by {}; the next can be sent at {next}.",
        kind.display()
    )
}

/// A code is on its way to `to` (masked at logins).
pub fn code_sent(kind: Kind, to: &str, minutes: u32) -> String {
    format!(
        "A code was sent by {} to {to}; it is valid for {minutes} minute{}.",
        kind.display(),
        if minutes == 1 { "" } else { "s" }
    )
}

/// The channel's command failed.
pub fn send_failed(kind: Kind) -> String {
    format!(
        "The code could not be sent by {}; try another way or ask an administrator.",
        kind.display()
    )
}

/// `1 day`, `7 days`.
pub fn days(n: u32) -> String {
    if n == 1 {
        "1 day".to_string()
    } else {
        format!("{n} days")
    }
}

/// After a good app code from a remote address, with `remember_days` set:
/// says exactly what would be trusted (with the SSH key's fingerprint when
/// the trust is bound to one).
pub fn trust_question(address: &str, key: Option<&str>, days_: u32) -> String {
    format!(
        "Skip the code for logins from {address}{} for {}? [y/N] ",
        with_key(key),
        days(days_)
    )
}

/// The address (and key) was remembered, for this service only.
pub fn trusted_for(address: &str, key: Option<&str>, service: &str, days_: u32) -> String {
    format!(
        "Logins from {address}{} to {service} skip the code for {}.",
        with_key(key),
        days(days_)
    )
}

/// ` with SSH key SHA256:...`, or nothing.
fn with_key(key: Option<&str>) -> String {
    key.map(|k| format!(" with SSH key {k}"))
        .unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time, for log lines: one zone for
/// every host, readable without `date -d @...`.
pub fn utc_timestamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (the civil-from-days
/// algorithm of Howard Hinnant's date library, for days >= 0).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::utc_timestamp;

    #[test]
    fn log_timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_timestamp(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    use super::*;

    #[test]
    fn refusals_count_tries_in_the_singular_and_plural() {
        assert_eq!(wrong_code(2), "Wrong code; 2 tries left.");
        assert_eq!(wrong_code(1), "Wrong code; 1 try left.");
        assert_eq!(wrong_code(0), "Wrong code.");
        assert_eq!(expired_code(0), "That code has expired.");
    }

    #[test]
    fn the_prompt_offers_one_channel_on_enter_and_several_by_number() {
        assert_eq!(prompt(PROMPT_BASE, &[]), PROMPT);
        assert_eq!(
            prompt(PROMPT_BASE, &[Kind::Email]),
            "Verification code (Enter: send a code by email): "
        );
        assert_eq!(
            prompt(PROMPT_BASE, &[Kind::Email, Kind::Sms]),
            "Verification code (Enter: send by email, 2: send by SMS): "
        );
    }
}
