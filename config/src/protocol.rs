//! The protocol between `otpgated` and its clients (the PAM module, the
//! CLI): one request, one reply, each in a frame (docs/ARCHITECTURE.md,
//! §5.5).
//!
//! A frame is a 9-byte header, `OTPG`, the protocol version (one byte) and
//! the payload's length (four bytes, big-endian), then the payload: a TOML
//! document of at most [`MAX_PAYLOAD`] bytes. A peer reads the header
//! first and refuses a wrong magic, another version or a length over the
//! cap before it reads or allocates the payload, so garbage costs nine
//! bytes of reading. TOML because every message is a small table of
//! strings and numbers that the crates here parse already, and a person
//! can read it in a trace.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::change::{Change, Changed};
use crate::channel::Kind;
use crate::otp::{Algorithm, Secret};
use crate::record::{DeviceName, Method, UserRecord, View};
use crate::service::Trust;
use crate::verification::{Checked, PendingCheck, Refusal, SendOutcome};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"OTPG";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Largest payload accepted (a request is under 1 KiB; a view with every
/// list full is under 32 KiB).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 9;

/// A request: what to do, for which user. The daemon decides from the
/// peer's credentials whether this peer may ask it (`otpgated`'s `peer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The user's record without secrets.
    View { user: String },
    /// Checks an answer: every candidate (one answer, or the splits of a
    /// `forward_pass` answer) in one transaction.
    Check {
        user: String,
        candidates: Vec<Zeroizing<String>>,
        /// Confirm a backup code without using it up (`otpgate verify`).
        #[serde(default)]
        keep_backup: bool,
        /// Count a wrong answer against this source only (`forward_pass`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// The PAM service of the login, for `[[policy.override]]`; taken
        /// only from root and `daemon.login_users`/`login_groups` peers
        /// (anyone else's checks are the `otpgate` service's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// The time of a request from root (root sets the clock anyway: a
        /// test or benchmark clock); from anyone else the daemon's clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
    },
    /// Creates a code and sends it by `channel` to `to` (the destination
    /// the login offered; refused if it changed meanwhile).
    SendCode {
        user: String,
        channel: Kind,
        to: String,
        /// The PAM service, for the message.
        service: String,
        /// The time of a request from root (root sets the clock anyway: a
        /// test or benchmark clock); from anyone else the daemon's clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
    },
    /// Remembers a host after a code from the app.
    TrustHost {
        user: String,
        trust: Trust,
        /// The time of a request from root (root sets the clock anyway: a
        /// test or benchmark clock); from anyone else the daemon's clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
    },
    /// Sends a code to `to`, a destination being enrolled (`otpgate enroll
    /// email|sms`); the daemon keeps it, hashed, until it comes back.
    SendConfirmation {
        user: String,
        channel: Kind,
        to: String,
    },
    /// The code sent by `SendConfirmation`, typed back; right, it lets one
    /// `SetDestination` change of that destination be made.
    CheckConfirmation {
        user: String,
        channel: Kind,
        to: String,
        code: Zeroizing<String>,
    },
    /// A new secret for an enrollment of `user` (`otpgate enroll` without
    /// `--secret`), made by the daemon and kept there; the reply carries it
    /// once, for the QR code, and `EnrollIssued` saves it.
    NewSecret { user: String, app: NewApp },
    /// Saves the enrollment of the secret `NewSecret` gave this peer for
    /// `user`, after checking `confirm` (a code of it from the app) when
    /// given. `proof`, `password`: as for `Change`.
    EnrollIssued {
        user: String,
        replacing: bool,
        /// Save it as a new device of this name (`otpgate devices add`,
        /// a `Change::AddDevice`: `replacing` is then not looked at)
        /// rather than as the whole enrollment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<DeviceName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirm: Option<Zeroizing<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<Zeroizing<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Zeroizing<String>>,
        /// The time of a request from root (root sets the clock anyway: a
        /// test or benchmark clock); from anyone else the daemon's clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
    },
    /// An account change of the `otpgate` command. `proof`: the token of
    /// an accepted check, for a change that needs a current code.
    Change {
        user: String,
        change: Change,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<Zeroizing<String>>,
        /// The user's password, for a change that makes a first
        /// enrollment when `enroll_password_check` is on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Zeroizing<String>>,
        /// The time of a request from root (root sets the clock anyway: a
        /// test or benchmark clock); from anyone else the daemon's clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
    },
    /// The users with a record, by name, after `after`: one page of at
    /// most [`USERS_PAGE`] (root only; `otpgate users`).
    Users {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
}

/// Names per `Users` reply: a page of the longest names (256 bytes) stays
/// well under the frame's 64 KiB.
pub const USERS_PAGE: usize = 100;

impl Request {
    /// The user the request is about (none: `Users`).
    pub fn user(&self) -> Option<&str> {
        let user = match self {
            Request::View { user }
            | Request::Check { user, .. }
            | Request::SendCode { user, .. }
            | Request::TrustHost { user, .. }
            | Request::SendConfirmation { user, .. }
            | Request::CheckConfirmation { user, .. }
            | Request::NewSecret { user, .. }
            | Request::EnrollIssued { user, .. }
            | Request::Change { user, .. } => user,
            Request::Users { .. } => return None,
        };
        Some(user)
    }

    /// The time the client asks the request to be judged at, if any.
    pub fn now(&self) -> Option<u64> {
        match self {
            Request::Check { now, .. }
            | Request::SendCode { now, .. }
            | Request::TrustHost { now, .. }
            | Request::EnrollIssued { now, .. }
            | Request::Change { now, .. } => *now,
            _ => None,
        }
    }

    /// The operation's name, for log lines.
    pub fn op(&self) -> &'static str {
        match self {
            Request::View { .. } => "view",
            Request::Check { .. } => "check",
            Request::SendCode { .. } => "send-code",
            Request::TrustHost { .. } => "trust-host",
            Request::SendConfirmation { .. } => "send-confirmation",
            Request::CheckConfirmation { .. } => "check-confirmation",
            Request::NewSecret { .. } => "new-secret",
            Request::EnrollIssued { .. } => "enroll-issued",
            Request::Change { .. } => "change",
            Request::Users { .. } => "users",
        }
    }
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Reply {
    /// `View`: the view, or none (not enrolled).
    View {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        view: Option<Box<View>>,
    },
    Checked {
        checked: WireChecked,
        /// For a user who is not root, after an accepted code: the token
        /// that lets one following change that needs a code be made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<Zeroizing<String>>,
    },
    Changed {
        changed: Changed,
    },
    /// `NewSecret`: the secret, base32, the only time it leaves the daemon.
    NewSecret {
        secret: Zeroizing<String>,
    },
    /// `SendConfirmation`.
    ConfirmationSent {
        outcome: WireConfirmation,
    },
    /// `CheckConfirmation`.
    ConfirmationChecked {
        check: WirePendingCheck,
    },
    Sent {
        outcome: WireSent,
    },
    Trusted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// `Users`: names in order; `more` when another page follows.
    Users {
        users: Vec<String>,
        more: bool,
    },
    /// The request was not carried out.
    Error {
        kind: Failure,
        message: String,
    },
}

/// Why a request was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// This peer may not ask this (the permission table).
    Forbidden,
    /// No such user.
    UnknownUser,
    /// A frame or request the daemon cannot read.
    BadRequest,
    /// Another protocol version.
    Version,
    /// The daemon's store failed (I/O, a damaged record, a lock timeout).
    Store,
    /// The daemon is at its connection limit.
    Busy,
}

/// [`Checked`] as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WireChecked {
    Accepted {
        method: WireMethod,
        /// The device whose code it was (TOTP, HOTP).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<DeviceName>,
        backups_left: u32,
        candidate: u32,
    },
    Refused {
        why: WireRefusal,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tried: Option<WireMethod>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked_until: Option<u64>,
    },
    Locked {
        until: u64,
    },
    NotEnrolled,
}

/// [`Method`] as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireMethod {
    Totp,
    Hotp,
    Backup,
    Email,
    Sms,
}

/// [`Refusal`] as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireRefusal {
    Wrong,
    Replayed,
    Expired,
}

/// [`SendOutcome`] as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WireSent {
    Sent { took_ms: u64, minutes: u32 },
    Failed { why: String },
    Limited { next: u64, max: u32 },
    Locked { until: u64 },
    Gone,
}

impl From<Method> for WireMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Totp => WireMethod::Totp,
            Method::Hotp => WireMethod::Hotp,
            Method::Backup => WireMethod::Backup,
            Method::Email => WireMethod::Email,
            Method::Sms => WireMethod::Sms,
        }
    }
}

impl From<WireMethod> for Method {
    fn from(m: WireMethod) -> Self {
        match m {
            WireMethod::Totp => Method::Totp,
            WireMethod::Hotp => Method::Hotp,
            WireMethod::Backup => Method::Backup,
            WireMethod::Email => Method::Email,
            WireMethod::Sms => Method::Sms,
        }
    }
}

impl From<Refusal> for WireRefusal {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Wrong => WireRefusal::Wrong,
            Refusal::Replayed => WireRefusal::Replayed,
            Refusal::Expired => WireRefusal::Expired,
        }
    }
}

impl From<WireRefusal> for Refusal {
    fn from(r: WireRefusal) -> Self {
        match r {
            WireRefusal::Wrong => Refusal::Wrong,
            WireRefusal::Replayed => Refusal::Replayed,
            WireRefusal::Expired => Refusal::Expired,
        }
    }
}

impl From<Checked> for WireChecked {
    fn from(c: Checked) -> Self {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match c {
            Checked::Accepted {
                method,
                device,
                backups_left,
                candidate,
            } => WireChecked::Accepted {
                method: method.into(),
                device,
                backups_left: count(backups_left),
                candidate: count(candidate),
            },
            Checked::Refused {
                why,
                tried,
                locked_until,
            } => WireChecked::Refused {
                why: why.into(),
                tried: tried.map(Into::into),
                locked_until,
            },
            Checked::Locked(until) => WireChecked::Locked { until },
            Checked::NotEnrolled => WireChecked::NotEnrolled,
        }
    }
}

impl From<WireChecked> for Checked {
    fn from(c: WireChecked) -> Self {
        match c {
            WireChecked::Accepted {
                method,
                device,
                backups_left,
                candidate,
            } => Checked::Accepted {
                method: method.into(),
                device,
                backups_left: backups_left as usize,
                candidate: candidate as usize,
            },
            WireChecked::Refused {
                why,
                tried,
                locked_until,
            } => Checked::Refused {
                why: why.into(),
                tried: tried.map(Into::into),
                locked_until,
            },
            WireChecked::Locked { until } => Checked::Locked(until),
            WireChecked::NotEnrolled => Checked::NotEnrolled,
        }
    }
}

impl From<SendOutcome> for WireSent {
    fn from(s: SendOutcome) -> Self {
        match s {
            SendOutcome::Sent { took, minutes } => WireSent::Sent {
                took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                minutes,
            },
            SendOutcome::Failed(why) => WireSent::Failed { why },
            SendOutcome::Limited { next, max } => WireSent::Limited { next, max },
            SendOutcome::Locked(until) => WireSent::Locked { until },
            SendOutcome::Gone => WireSent::Gone,
        }
    }
}

impl From<WireSent> for SendOutcome {
    fn from(s: WireSent) -> Self {
        match s {
            WireSent::Sent { took_ms, minutes } => SendOutcome::Sent {
                took: std::time::Duration::from_millis(took_ms),
                minutes,
            },
            WireSent::Failed { why } => SendOutcome::Failed(why),
            WireSent::Limited { next, max } => SendOutcome::Limited { next, max },
            WireSent::Locked { until } => SendOutcome::Locked(until),
            WireSent::Gone => SendOutcome::Gone,
        }
    }
}

/// The app a new secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// HOTP (counter) instead of TOTP (time).
    #[serde(default)]
    pub hotp: bool,
    pub algorithm: Algorithm,
    pub digits: u8,
    /// TOTP: seconds per step.
    pub period: u64,
}

impl NewApp {
    /// The record of a fresh enrollment of `secret` for this app.
    pub fn record(&self, secret: Secret) -> UserRecord {
        if self.hotp {
            UserRecord::new_hotp(secret, self.algorithm, self.digits, 0)
        } else {
            UserRecord::new_totp(secret, self.algorithm, self.digits, self.period)
        }
    }
}

/// A confirmation send, as it travels (the code stays in the daemon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WireConfirmation {
    Sent { minutes: u32 },
    Failed { why: String },
    Limited { next: u64, max: u32 },
    NotConfigured,
}

/// [`PendingCheck`] as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WirePendingCheck {
    Right,
    Expired,
    Wrong,
}

impl From<PendingCheck> for WirePendingCheck {
    fn from(c: PendingCheck) -> Self {
        match c {
            PendingCheck::Right => WirePendingCheck::Right,
            PendingCheck::Expired => WirePendingCheck::Expired,
            PendingCheck::Wrong => WirePendingCheck::Wrong,
        }
    }
}

impl From<WirePendingCheck> for PendingCheck {
    fn from(c: WirePendingCheck) -> Self {
        match c {
            WirePendingCheck::Right => PendingCheck::Right,
            WirePendingCheck::Expired => PendingCheck::Expired,
            WirePendingCheck::Wrong => PendingCheck::Wrong,
        }
    }
}

/// What can go wrong reading a frame.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection before a frame began.
    Closed,
    Io(io::Error),
    /// Not `OTPG`.
    Magic,
    /// A version this build does not speak.
    Version(u8),
    /// A declared payload over [`MAX_PAYLOAD`].
    TooLarge(u64),
    /// A payload that is not UTF-8 or not a message of ours.
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed"),
            FrameError::Io(e) if is_timeout(e) => write!(f, "timed out"),
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::Magic => write!(f, "not an otpgate frame (bad magic)"),
            FrameError::Version(v) => write!(
                f,
                "protocol version {v} is not supported (this build speaks version {VERSION})"
            ),
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes is over the limit of {MAX_PAYLOAD}")
            }
            FrameError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

/// A stream whose every read and write gives up at one deadline, so a peer
/// that sends a byte at a time cannot stretch a request past it.
pub struct Timed<'a> {
    stream: &'a mut UnixStream,
    deadline: Instant,
}

impl<'a> Timed<'a> {
    pub fn new(stream: &'a mut UnixStream, deadline: Instant) -> Self {
        Timed { stream, deadline }
    }

    fn left(&self) -> io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// True for the errors a socket timeout gives.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes `message` as one frame (header and payload in one write).
pub fn write_frame<T: Serialize>(w: &mut impl Write, message: &T) -> Result<(), FrameError> {
    let text =
        Zeroizing::new(toml::to_string(message).map_err(|e| FrameError::Malformed(e.to_string()))?);
    write_payload(w, text.as_bytes())
}

/// Writes a frame around `payload`, which the caller checked for size.
pub fn write_payload(w: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLarge(payload.len() as u64))?;
    let mut frame = Zeroizing::new(Vec::with_capacity(HEADER_LEN + payload.len()));
    frame.extend_from_slice(&MAGIC);
    frame.push(VERSION);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads one frame's payload: the header checked before anything else is
/// read or allocated.
pub fn read_payload(r: &mut impl Read) -> Result<Zeroizing<String>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    read_header(r, &mut header)?;
    let len = parse_header(&header)?;
    let mut payload = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Malformed("truncated payload".into()),
        _ => FrameError::Io(e),
    })?;
    let text = String::from_utf8(std::mem::take(&mut *payload))
        .map_err(|_| FrameError::Malformed("payload is not UTF-8".into()))?;
    Ok(Zeroizing::new(text))
}

/// Reads and parses one frame.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, FrameError> {
    let text = read_payload(r)?;
    parse_message(&text)
}

/// Parses a payload as a message.
pub fn parse_message<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, FrameError> {
    toml::from_str(text).map_err(|e| FrameError::Malformed(e.message().to_string()))
}

/// Fills `header`; a peer that closes before the first byte is
/// [`FrameError::Closed`], one that closes in the middle is malformed.
fn read_header(r: &mut impl Read, header: &mut [u8; HEADER_LEN]) -> Result<(), FrameError> {
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Malformed("truncated header".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// The payload length a header announces, if the header is ours.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if header[..4] != MAGIC {
        return Err(FrameError::Magic);
    }
    if header[4] != VERSION {
        return Err(FrameError::Version(header[4]));
    }
    let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len.into()));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests;
