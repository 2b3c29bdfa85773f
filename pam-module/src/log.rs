//! Log lines: one per decision and per refused answer, sent to syslog as
//! RFC 3164 datagrams.
//!
//! We write to the syslog socket ourselves instead of calling glibc's
//! `syslog()`: that one falls back to `/dev/console` when no daemon listens
//! and keeps global `openlog` state in the process that loads us. Here a
//! missing or full socket costs one failed non-blocking `sendto` and the
//! line is dropped: logging never decides (or delays) a login.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::reason::Reason;

/// One field of a line: the rule is the CLI's too (`otpgate_config::logline`).
pub use otpgate_config::logline::field;

/// The syslog ident.
pub const IDENT: &str = "pam_otpgate";
/// `LOG_AUTHPRIV`: security messages that name users and hosts.
const FACILITY: u8 = 10;
/// Syslog severities used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// Where log lines go.
pub trait Log {
    /// Writes one line; never fails, never blocks for long.
    fn line(&mut self, severity: Severity, text: &str);

    /// Notes the reason of the line that follows (tests assert it; a real
    /// log has it in the line's text).
    fn reason(&mut self, _reason: &Reason) {}
}

/// A syslog socket (`/dev/log` unless the `syslog_socket=` argument says
/// otherwise).
pub struct Syslog {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    /// Formats the RFC 3164 timestamp (`Mmm dd hh:mm:ss`, local time).
    stamp: fn() -> String,
}

impl Syslog {
    /// A logger for `path`; nothing is opened until the first line.
    pub fn new(path: &Path, stamp: fn() -> String) -> Self {
        Syslog {
            path: path.to_path_buf(),
            socket: None,
            stamp,
        }
    }

    fn send(&mut self, datagram: &[u8]) -> std::io::Result<()> {
        if self.socket.is_none() {
            let s = UnixDatagram::unbound()?;
            s.set_nonblocking(true)?;
            self.socket = Some(s);
        }
        match &self.socket {
            Some(s) => s.send_to(datagram, &self.path).map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Log for Syslog {
    fn line(&mut self, severity: Severity, text: &str) {
        let pri = u16::from(FACILITY) * 8 + severity as u16;
        let datagram = format!(
            "<{pri}>{} {IDENT}[{}]: {text}",
            (self.stamp)(),
            std::process::id()
        );
        // Dropped on any error: no daemon, socket full, not a socket.
        let _ = self.send(datagram.as_bytes());
    }
}

/// Collects lines in memory (unit tests).
#[derive(Debug, Default)]
pub struct Memory {
    pub lines: Vec<(Severity, String)>,
    /// The reason of every decision and send, in order.
    pub reasons: Vec<Reason>,
}

impl Log for Memory {
    fn line(&mut self, severity: Severity, text: &str) {
        self.lines.push((severity, text.to_string()));
    }

    fn reason(&mut self, reason: &Reason) {
        self.reasons.push(reason.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_silent_and_fast() {
        let dir = std::env::temp_dir().join("otpgate-no-such-dir-for-log");
        let mut log = Syslog::new(&dir.join("log"), || "Jan  1 00:00:00".into());
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            log.line(Severity::Info, "hello");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn lines_arrive_as_rfc3164_datagrams() {
        let dir = std::env::temp_dir().join(format!("otpgate-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let mut log = Syslog::new(&path, || "Jan  1 00:00:00".into());
        log.line(Severity::Notice, "user=a outcome=deny");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        let want = format!(
            "<85>Jan  1 00:00:00 pam_otpgate[{}]: user=a outcome=deny",
            std::process::id()
        );
        assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
