//! The client of `otpgated`: a [`Service`] that asks the daemon over its
//! Unix socket. Small and blocking (no async runtime) on purpose: it runs inside sshd,
//! login and sudo (docs/ARCHITECTURE.md, §3, "The daemon store").
//!
//! Every request opens its own connection and has one deadline
//! (`store.timeout`) for connecting, writing and reading the reply
//! together: a daemon that is down, stopped or slow costs a login at most
//! that long, then denies it. The connect is non-blocking, because a
//! stopped daemon's full listen queue would otherwise block `connect`
//! without limit. Before a request is written the server is checked: the
//! process on the other end must be root or the owner of the socket's
//! directory, and that directory must be writable by nobody else, so a
//! socket put in place by another user is never believed.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
use nix::sys::stat::stat;
use zeroize::Zeroizing;

use crate::change::{Change, Changed};
use crate::error::{Error, Result};
use crate::protocol::{self, FrameError, Reply, Request, Timed};
use crate::record::View;
use crate::service::{Check, Service, Trust};
use crate::system::SystemConfig;
use crate::verification::{BackupUse, Checked, Offer, Recipient, SendOutcome};

/// How long to wait between connection attempts while the daemon's listen
/// queue is full.
const RETRY: Duration = Duration::from_millis(5);

/// The records of one user, held by `otpgated`.
#[derive(Debug)]
pub struct Daemon {
    socket: PathBuf,
    user: String,
    timeout: Duration,
    /// Added to the deadline of a send: the channel's own timeout.
    send_timeout: Duration,
    /// The token of the last accepted check (a user who is not root),
    /// sent with the next change.
    proof: Mutex<Option<Zeroizing<String>>>,
}

impl Daemon {
    /// The daemon the config names, asked about `user`.
    pub fn new(config: &SystemConfig, user: &str) -> Daemon {
        let send_timeout = config
            .channels
            .enabled()
            .iter()
            .map(|s| Duration::from_secs(s.timeout))
            .max()
            .unwrap_or_default();
        Daemon {
            socket: PathBuf::from(&config.store.socket),
            user: user.to_string(),
            timeout: config.daemon_timeout(),
            send_timeout,
            proof: Mutex::new(None),
        }
    }

    /// Sends `request` and reads the reply within `timeout`.
    pub fn call(&self, request: &Request, timeout: Duration) -> Result<Reply> {
        let deadline = Instant::now() + timeout;
        let mut stream = connect(&self.socket, deadline).map_err(|e| self.failed(e))?;
        self.check_server(&stream)?;
        let mut timed = Timed::new(&mut stream, deadline);
        protocol::write_frame(&mut timed, request).map_err(|e| self.frame_failed(e))?;
        let reply: Reply = protocol::read_frame(&mut timed).map_err(|e| self.frame_failed(e))?;
        match reply {
            Reply::Error { kind, message } => Err(Error::DaemonRefused {
                socket: self.socket.clone(),
                kind,
                message,
            }),
            reply => Ok(reply),
        }
    }

    fn failed(&self, cause: impl ToString) -> Error {
        Error::Daemon {
            socket: self.socket.clone(),
            cause: cause.to_string(),
        }
    }

    fn frame_failed(&self, e: FrameError) -> Error {
        match e {
            FrameError::Io(e) if protocol::is_timeout(&e) => {
                self.failed(format!("no reply within {} s", self.timeout.as_secs_f32()))
            }
            FrameError::Closed => self.failed("closed the connection without a reply"),
            e => self.failed(e),
        }
    }

    /// The server must be root or own the socket's directory, which only
    /// it (or root) may write.
    fn check_server(&self, stream: &UnixStream) -> Result<()> {
        let peer = socket::getsockopt(&stream.as_fd(), sockopt::PeerCredentials)
            .map_err(|e| self.failed(format!("cannot read the server's credentials: {e}")))?;
        let dir = self.socket.parent().unwrap_or(Path::new("/"));
        let st = stat(dir).map_err(|e| self.failed(format!("{}: {e}", dir.display())))?;
        let (server, owner) = (peer.uid(), st.st_uid);
        if st.st_mode & 0o022 != 0 {
            return Err(self.failed(format!(
                "{} is writable by group or others: not trusting a socket there",
                dir.display()
            )));
        }
        // Root's directory, or the server's own; a server that is root or
        // that directory's owner.
        let trusted_owner = owner == 0 || owner == server;
        let trusted_server = server == 0 || server == owner;
        if !(trusted_owner && trusted_server) {
            return Err(self.failed(format!(
                "the server runs as uid {server}, not root or the owner (uid {owner}) of {}",
                dir.display()
            )));
        }
        Ok(())
    }

    fn lock_proof(&self) -> std::sync::MutexGuard<'_, Option<Zeroizing<String>>> {
        self.proof.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reply of another kind than the request's is a broken daemon.
    fn unexpected(&self, reply: &Reply) -> Error {
        self.failed(format!("unexpected reply {reply:?}"))
    }
}

impl Service for Daemon {
    fn describe(&self) -> String {
        format!("otpgated at {}", self.socket.display())
    }

    fn view(&self) -> Result<Option<View>> {
        let request = Request::View {
            user: self.user.clone(),
        };
        match self.call(&request, self.timeout)? {
            Reply::View { view } => Ok(view.map(|v| *v)),
            other => Err(self.unexpected(&other)),
        }
    }

    fn check(&self, check: Check<'_>, _now: u64) -> Result<Checked> {
        // The daemon reads its own clock: a client must not choose the
        // time a lockout or a code is judged at.
        let candidates = check
            .candidates
            .iter()
            .map(|c| Zeroizing::new(String::from_utf8_lossy(c).into_owned()))
            .collect();
        let request = Request::Check {
            user: self.user.clone(),
            candidates,
            keep_backup: check.backup == BackupUse::Keep,
            source: check.source.map(str::to_string),
        };
        match self.call(&request, self.timeout)? {
            Reply::Checked { checked, proof } => {
                if proof.is_some() {
                    *self.lock_proof() = proof;
                }
                Ok(checked.into())
            }
            other => Err(self.unexpected(&other)),
        }
    }

    fn change(&self, change: &Change, _now: u64) -> Result<Changed> {
        let request = Request::Change {
            user: self.user.clone(),
            change: change.clone(),
            proof: self.lock_proof().take(),
        };
        match self.call(&request, self.timeout)? {
            Reply::Changed { changed } => Ok(changed),
            other => Err(self.unexpected(&other)),
        }
    }

    fn send_code(&self, offer: &Offer, _now: u64, recipient: Recipient<'_>) -> Result<SendOutcome> {
        let request = Request::SendCode {
            user: self.user.clone(),
            channel: offer.kind,
            to: offer.to.clone(),
            service: recipient.service.to_string(),
        };
        match self.call(&request, self.timeout + self.send_timeout)? {
            Reply::Sent { outcome } => Ok(outcome.into()),
            other => Err(self.unexpected(&other)),
        }
    }

    fn trust_host(&self, trust: &Trust, _now: u64) -> Result<Option<String>> {
        let request = Request::TrustHost {
            user: self.user.clone(),
            trust: trust.clone(),
        };
        match self.call(&request, self.timeout)? {
            Reply::Trusted { host } => Ok(host),
            other => Err(self.unexpected(&other)),
        }
    }
}

/// Connects without blocking past `deadline`.
fn connect(path: &Path, deadline: Instant) -> std::result::Result<UnixStream, String> {
    let addr = UnixAddr::new(path).map_err(|e| format!("bad socket path: {e}"))?;
    loop {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream
                    .set_nonblocking(false)
                    .map_err(|e| format!("socket: {e}"))?;
                return Ok(stream);
            }
            // The listen queue is full (a stopped or swamped daemon).
            Err(Errno::EAGAIN) if Instant::now() + RETRY < deadline => {
                std::thread::sleep(RETRY);
            }
            Err(Errno::EAGAIN) => return Err("not accepting connections (timed out)".into()),
            Err(Errno::ENOENT) => return Err("no socket (is otpgated running?)".into()),
            Err(Errno::ECONNREFUSED) => {
                return Err("connection refused (is otpgated running?)".into());
            }
            Err(e) => return Err(format!("connect: {e}")),
        }
    }
}
