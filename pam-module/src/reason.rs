//! Why the module decided what it did: the `reason=` of its log lines,
//! and the `why=` of a refused answer's line.
//! One variant per reason, its `Display` the words in the log, so tests
//! assert a variant and the wording lives here once.
#![forbid(unsafe_code)]

use std::fmt;

use otpgate_config::texts;
use otpgate_config::verification::Refusal;

/// The reason of a decision or a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Module arguments that are not understood, joined.
    BadArguments(String),
    ClockBeforeEpoch,
    /// The system config (or an override) is wrong.
    Config(String),
    NoUserName,
    UnknownUser,
    UserLookup(String),
    TrustedNetwork,
    LocalConsole,
    Exempt,
    /// The user's record could not be opened, read or written.
    Store(String),
    NotEnrolled,
    NotEnrolledButRequired,
    /// Enrolled (root's registry says so) but the record is not there.
    SettingsUnavailable(String),
    RememberedHost,
    /// The SSH key sshd reported is listed in `policy.trusted_ssh_keys`
    /// (by `rule`: its type or its fingerprint).
    TrustedSshKey {
        kind: String,
        fingerprint: String,
        rule: String,
    },
    LockedOut {
        seconds_left: u64,
    },
    /// `forward_pass`: wrong answers from this source locked it (the
    /// account is not locked).
    SourceLockedOut {
        seconds_left: u64,
    },
    /// Enrolled, but only through channels this system lacks.
    NoUsableMethod,
    /// `use_first_pass` and no `PAM_AUTHTOK`.
    NoAuthTok,
    ConversationFailed,
    AnsweredLate {
        waited: u64,
        limit: u64,
    },
    OutOfTime {
        spent: u64,
        limit: u64,
    },
    Refused(Refusal),
    RefusedAndLocked {
        why: Refusal,
        until: u64,
    },
    /// Another login locked the account while we asked.
    LockedMeanwhile,
    /// The record was removed while we asked.
    RemovedMeanwhile,
    /// The record or the destination was removed while we offered a send.
    DestinationRemovedMeanwhile,
    SetAuthTok,
    Accepted,
    /// An earlier instance of the module in the same stack run accepted a
    /// code (by `method`) for this user.
    AlreadyVerified {
        method: String,
    },
    /// A code was sent: the command exited 0 after this many ms.
    Sent {
        millis: u128,
    },
    RateLimited {
        max: u32,
    },
    SendFailed(String),
    CouldNotRemember(String),
    /// The user chose to skip the code for logins from `host` (canonical)
    /// to this service for `days`.
    HostTrusted {
        host: String,
        /// The SSH key the trust is bound to (its fingerprint), if any.
        key: Option<String>,
        days: u32,
    },
    Panic(String),
}

/// Why one answer was refused: the `why=` word of its `outcome=refused`
/// line (the `reason=` says it in words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Wrong,
    Replayed,
    Expired,
    /// The account (or, with `forward_pass`, the source) is locked: the
    /// answer was not looked at.
    Locked,
}

impl Why {
    /// The word of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Wrong => "wrong",
            Why::Replayed => "replayed",
            Why::Expired => "expired",
            Why::Locked => "locked",
        }
    }
}

impl From<Refusal> for Why {
    fn from(refusal: Refusal) -> Why {
        match refusal {
            Refusal::Wrong => Why::Wrong,
            Refusal::Replayed => Why::Replayed,
            Refusal::Expired => Why::Expired,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::BadArguments(e) => write!(f, "bad module arguments: {e}"),
            Reason::ClockBeforeEpoch => f.write_str("system clock is before 1970"),
            Reason::Config(e) => write!(f, "config: {e}"),
            Reason::NoUserName => f.write_str("could not get the user name"),
            Reason::UnknownUser => f.write_str("unknown user"),
            Reason::UserLookup(e) => write!(f, "user lookup: {e}"),
            Reason::TrustedNetwork => f.write_str("rhost is in trusted_networks"),
            Reason::LocalConsole => {
                f.write_str("no rhost, local terminal and local_console = skip")
            }
            Reason::Exempt => f.write_str("member of an exempt group"),
            Reason::Store(e) => write!(f, "user file: {e}"),
            Reason::NotEnrolled => f.write_str("not enrolled"),
            Reason::NotEnrolledButRequired => f.write_str("not enrolled and 2FA is required"),
            Reason::SettingsUnavailable(e) => write!(f, "settings unavailable: {e}"),
            Reason::RememberedHost => f.write_str("rhost remembered by the user"),
            Reason::TrustedSshKey {
                kind,
                fingerprint,
                rule,
            } => write!(
                f,
                "SSH key {kind} {fingerprint} is trusted by policy.trusted_ssh_keys ({rule})"
            ),
            Reason::LockedOut { seconds_left } => {
                write!(f, "locked out for {seconds_left} more seconds")
            }
            Reason::SourceLockedOut { seconds_left } => write!(
                f,
                "this source locked out for {seconds_left} more seconds (forward_pass)"
            ),
            Reason::NoUsableMethod => {
                f.write_str("no usable method: the user's channels are not configured ([channels])")
            }
            Reason::NoAuthTok => {
                f.write_str("use_first_pass and no PAM_AUTHTOK from an earlier module")
            }
            Reason::ConversationFailed => f.write_str("conversation failed"),
            Reason::AnsweredLate { waited, limit } => {
                write!(f, "answered after {waited} s (prompt_timeout {limit} s)")
            }
            Reason::OutOfTime { spent, limit } => write!(
                f,
                "verification took {spent} s (channels.verification_time {limit} s)"
            ),
            Reason::Refused(why) => f.write_str(why.as_str()),
            Reason::RefusedAndLocked { why, until } => {
                write!(
                    f,
                    "{}; locked out until {}",
                    why.as_str(),
                    texts::utc_timestamp(*until)
                )
            }
            Reason::LockedMeanwhile => f.write_str("locked out by a concurrent login"),
            Reason::RemovedMeanwhile => f.write_str("user file removed during login"),
            Reason::DestinationRemovedMeanwhile => {
                f.write_str("user file or destination removed during login")
            }
            Reason::SetAuthTok => f.write_str("set PAM_AUTHTOK"),
            Reason::Accepted => f.write_str("code accepted"),
            Reason::AlreadyVerified { method } => write!(
                f,
                "already verified in this transaction ({method} code accepted by an earlier pam_otpgate line)"
            ),
            Reason::Sent { millis } => write!(f, "command exited 0 after {millis} ms"),
            Reason::RateLimited { max } => {
                write!(f, "{max} sends in the last hour (max_sends_per_hour)")
            }
            Reason::SendFailed(why) => f.write_str(why),
            Reason::CouldNotRemember(e) => write!(f, "could not remember host: {e}"),
            Reason::HostTrusted {
                host,
                key: None,
                days,
            } => write!(f, "user trusted logins from {host} for {days} days"),
            Reason::HostTrusted {
                host,
                key: Some(key),
                days,
            } => write!(
                f,
                "user trusted logins from {host} with SSH key {key} for {days} days"
            ),
            Reason::Panic(what) => write!(f, "internal error (panic): {what}"),
        }
    }
}
