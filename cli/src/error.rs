//! The CLI's errors: each carries the one line printed on stderr and maps
//! to a documented exit status (see `cli::EXIT_STATUS_HELP`).

use std::fmt;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The library failed: config, user file, I/O, lock.
    Library(otpgate_config::Error),
    /// Any other failure with exit status 1.
    Failed(String),
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
}

impl CliError {
    /// Another process enrolled or removed the enrollment while this one
    /// was asking for codes: nothing is saved over it.
    pub fn enrollment_raced(path: &std::path::Path) -> Self {
        CliError::Failed(format!(
            "{}: changed by another process while enrolling; nothing was saved",
            path.display()
        ))
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Library(_) | CliError::Failed(_) => 1,
            CliError::CodeRefused(_) => 3,
            CliError::NotEnrolled { .. } => 4,
            CliError::NotPermitted(_) => 5,
            CliError::LockedOut { .. } => 6,
            CliError::AlreadyEnrolled { .. } => 7,
            CliError::CheckFailed(_) => 8,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Library(e) => write!(f, "{e}"),
            CliError::Failed(m) | CliError::CodeRefused(m) | CliError::NotPermitted(m) => {
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
            CliError::AlreadyEnrolled { user } => write!(
                f,
                "{user} is already enrolled; give a current code to replace it, or run `otpgate disable` first"
            ),
        }
    }
}

impl From<otpgate_config::Error> for CliError {
    fn from(e: otpgate_config::Error) -> Self {
        CliError::Library(e)
    }
}

impl From<crate::time::ClockBeforeEpoch> for CliError {
    fn from(e: crate::time::ClockBeforeEpoch) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Result alias for commands.
pub type Result<T> = std::result::Result<T, CliError>;
