//! The CLI's errors: each carries the one line printed on stderr and maps
//! to a documented exit status (see `cli::EXIT_STATUS_HELP`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use otpgate_config::channel::Kind;
use otpgate_config::error::Origin;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The library failed: config, user file, I/O, lock, clock, randomness.
    Library(otpgate_config::Error),
    /// A code was wrong, already used, or not given.
    CodeRefused(String),
    /// The user has no enrollment.
    NotEnrolled { user: String },
    /// The action needs root.
    NotPermitted(String),
    /// Locked out until this unix time (`now`: by the wrong code just given).
    LockedOut { until: u64, now: bool },
    /// There is an enrollment already.
    AlreadyEnrolled { user: String },
    /// `otpgate check` found this many errors and warnings.
    CheckFailed(usize),
    /// `otpgate store import` refused this many records.
    ImportRefused(usize),
    /// Another process enrolled or removed the enrollment while this one
    /// was asking for codes: nothing is saved over it. `store` describes
    /// the user's record (today the user file's path).
    EnrollmentRaced { store: String },
    /// `trusted remove HOST` named a host that is not trusted.
    NotTrusted { host: String },
    /// `enroll --secret -` read end of input instead of a secret.
    NoSecretGiven,
    /// `enroll --issuer` holds a `:`, which would split the otpauth label.
    BadIssuer { issuer: String },
    /// An import file is not what it should be: the file, with the line
    /// when the problem is on one.
    BadImport { file: Origin, message: String },
    /// An oath usersfile has no token line for this user.
    UserNotInFile { path: PathBuf, user: String },
    /// The PAM service confirming the password could not be started.
    PamStart {
        service: &'static str,
        source: pam_client2::Error,
    },
    /// The PAM service failed for another reason than a refused password
    /// (a missing or broken `/etc/pam.d` file, most often).
    PamFailed {
        service: &'static str,
        source: pam_client2::Error,
    },
    /// Reading standard input failed.
    Stdin(io::Error),
    /// Writing standard output failed.
    Stdout(io::Error),
    /// Switching terminal echo off (for a code or secret) failed.
    Terminal(io::Error),
    /// Writing the man page failed.
    ManPage(io::Error),
    /// Creating or writing an output file failed.
    Output {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// A value could not be turned into JSON.
    Json(serde_json::Error),
    /// The QR code could not be made (the URI is too long for one).
    Qr(qrcode::types::QrError),
    /// Codes by this channel are not configured on this system.
    NotConfigured { kind: Kind },
    /// An email address or phone number that does not normalize; the
    /// message says why.
    BadDestination(String),
    /// `disable --method` named a method the user does not have; `what`
    /// names it ("the authenticator app", "codes by email").
    NothingToRemove { user: String, what: &'static str },
    /// A device name that is not one (`devices add|rename`).
    BadDevice(String),
    /// A device not added or renamed: the name is taken, or the user has
    /// the most devices allowed.
    DeviceRefused(String),
    /// `devices remove|rename` of a device the user does not have.
    NoSuchDevice { user: String, name: String },
    /// The send-rate limit of the channel is reached until this unix time.
    SendLimited { kind: Kind, until: u64 },
    /// The channel's command failed to send the code (`why`: its outcome).
    SendFailed { kind: Kind, why: String },
}

impl CliError {
    /// Another process enrolled or removed the enrollment while this one
    /// was asking for codes: nothing is saved over it.
    pub fn enrollment_raced(store: &str) -> Self {
        CliError::EnrollmentRaced {
            store: store.to_string(),
        }
    }

    /// A refusal (a code, a password, a lockout, a permission), logged
    /// as `outcome=deny`; anything else is `outcome=error`.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CliError::CodeRefused(_) | CliError::NotPermitted(_) | CliError::LockedOut { .. }
        )
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::CodeRefused(_) => 3,
            CliError::NotEnrolled { .. } => 4,
            CliError::NotPermitted(_) => 5,
            CliError::LockedOut { .. } => 6,
            CliError::AlreadyEnrolled { .. } => 7,
            CliError::CheckFailed(_) => 8,
            CliError::ImportRefused(_) => 10,
            CliError::NotTrusted { .. }
            | CliError::NothingToRemove { .. }
            | CliError::NoSuchDevice { .. } => 9,
            CliError::BadDevice(_) => 2,
            // Listed, not `_`: a new variant must choose its status.
            CliError::Library(_)
            | CliError::EnrollmentRaced { .. }
            | CliError::NoSecretGiven
            | CliError::BadIssuer { .. }
            | CliError::BadImport { .. }
            | CliError::UserNotInFile { .. }
            | CliError::PamStart { .. }
            | CliError::PamFailed { .. }
            | CliError::Stdin(_)
            | CliError::Stdout(_)
            | CliError::Terminal(_)
            | CliError::ManPage(_)
            | CliError::Output { .. }
            | CliError::Json(_)
            | CliError::Qr(_)
            | CliError::NotConfigured { .. }
            | CliError::BadDestination(_)
            | CliError::DeviceRefused(_)
            | CliError::SendLimited { .. }
            | CliError::SendFailed { .. } => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Library(e) => write!(f, "{e}"),
            CliError::CodeRefused(m) | CliError::NotPermitted(m) | CliError::BadDestination(m) => {
                f.write_str(m)
            }
            CliError::NotEnrolled { user } => {
                write!(f, "{user} is not enrolled; run `otpgate enroll` first")
            }
            CliError::LockedOut { until, now } => write!(
                f,
                "{}locked out after too many wrong codes until {} (root can run `otpgate unlock --user NAME`)",
                if *now { "wrong code; " } else { "" },
                crate::time::format_local(*until)
            ),
            CliError::CheckFailed(n) => write!(
                f,
                "check found {n} problem{} (listed above)",
                if *n == 1 { "" } else { "s" }
            ),
            CliError::ImportRefused(n) => write!(
                f,
                "{n} record{} not imported (listed above)",
                if *n == 1 { " was" } else { "s were" }
            ),
            CliError::AlreadyEnrolled { user } => write!(
                f,
                "{user} is already enrolled; give a current code to replace it, or run `otpgate disable` first"
            ),
            CliError::EnrollmentRaced { store } => write!(
                f,
                "{store}: changed by another process while enrolling; nothing was saved"
            ),
            CliError::NotTrusted { host } => write!(f, "{host} is not a trusted host"),
            CliError::NoSecretGiven => f.write_str("no secret given on standard input"),
            CliError::BadIssuer { issuer } => {
                write!(f, "the issuer `{issuer}` must not contain `:`")
            }
            CliError::BadImport { file, message } => write!(f, "{file}: {message}"),
            CliError::UserNotInFile { path, user } => write!(
                f,
                "{}: no line for {user} (TYPE USER PASSWORD HEX-SECRET ...)",
                path.display()
            ),
            CliError::PamStart { service, source } => {
                write!(f, "starting PAM service `{service}`: {source}")
            }
            CliError::PamFailed { service, source } => write!(
                f,
                "PAM service `{service}` failed ({source}): is /etc/pam.d/{service} installed? \
                 (enroll_password_check = false in the system config skips this check)"
            ),
            CliError::Stdin(e) => write!(f, "reading standard input: {e}"),
            CliError::Stdout(e) => write!(f, "writing standard output: {e}"),
            CliError::Terminal(e) => write!(f, "switching terminal echo off: {e}"),
            CliError::ManPage(e) => write!(f, "writing the man page: {e}"),
            CliError::Output {
                path,
                action,
                source,
            } => write!(f, "{}: {action}: {source}", path.display()),
            CliError::Json(e) => write!(f, "JSON: {e}"),
            CliError::Qr(e) => write!(f, "cannot make a QR code: {e}"),
            CliError::NotConfigured { kind } => write!(
                f,
                "codes by {} are not configured on this system ([channels.{}] in the config)",
                kind.display(),
                kind.as_str()
            ),
            CliError::NothingToRemove { user, what } => write!(f, "{user} has no {what} to remove"),
            CliError::BadDevice(why) | CliError::DeviceRefused(why) => f.write_str(why),
            CliError::NoSuchDevice { user, name } => write!(f, "{user} has no device {name}"),
            CliError::SendLimited { kind, until } => write!(
                f,
                "too many codes were sent by {}; try again after {}",
                kind.display(),
                crate::time::format_local(*until)
            ),
            CliError::SendFailed { kind, why } => write!(
                f,
                "the code could not be sent by {}: {why}; nothing was saved",
                kind.display()
            ),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Library(e) => Some(e),
            CliError::PamStart { source, .. } | CliError::PamFailed { source, .. } => Some(source),
            CliError::Stdin(e)
            | CliError::Stdout(e)
            | CliError::Terminal(e)
            | CliError::ManPage(e)
            | CliError::Output { source: e, .. } => Some(e),
            CliError::Json(e) => Some(e),
            CliError::Qr(e) => Some(e),
            _ => None,
        }
    }
}

impl From<otpgate_config::Error> for CliError {
    fn from(e: otpgate_config::Error) -> Self {
        CliError::Library(e)
    }
}

/// Result alias for commands.
pub type Result<T> = std::result::Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_library_error_is_the_source() {
        let e = CliError::from(otpgate_config::Error::UnknownUser { name: "x".into() });
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_string(), "unknown user `x`");
        assert!(
            e.source()
                .is_some_and(|s| s.to_string() == "unknown user `x`")
        );
        let io = CliError::Stdout(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(io.source().is_some());
        assert!(io.to_string().starts_with("writing standard output: "));
    }
}
