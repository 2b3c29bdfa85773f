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
use crate::channel::Kind;
use crate::error::{Error, Result};
use crate::otp::Secret;
use crate::protocol::{self, FrameError, NewApp, Reply, Request, Timed, WireConfirmation};
use crate::record::View;
use crate::service::{Check, Service, Trust};
use crate::system::SystemConfig;
use crate::verification::{BackupUse, Checked, Offer, PendingCheck, Recipient, SendOutcome};

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
    /// The user's password, sent with the next change (a first
    /// enrollment), then forgotten.
    password: Mutex<Option<Zeroizing<String>>>,
    /// The PAM service of the login, sent with checks (`[[policy.override]]`).
    service: Option<String>,
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
            password: Mutex::new(None),
            service: None,
        }
    }

    /// Names the PAM service of the login in its checks, so the daemon
    /// applies that service's `[[policy.override]]` entry (it believes it
    /// only from root and listed PAM applications).
    pub fn for_service(mut self, service: Option<&str>) -> Daemon {
        self.service = service.map(str::to_string);
        self
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

    /// Connects and checks who serves the socket, asking nothing
    /// (`otpgate check`).
    pub fn ping(&self) -> Result<()> {
        let stream =
            connect(&self.socket, Instant::now() + self.timeout).map_err(|e| self.failed(e))?;
        self.check_server(&stream)
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

    /// Sends `password` with the next change, for the daemon to check
    /// before a first enrollment.
    pub fn set_password(&self, password: Zeroizing<String>) {
        *self.password.lock().unwrap_or_else(|p| p.into_inner()) = Some(password);
    }

    fn lock_proof(&self) -> std::sync::MutexGuard<'_, Option<Zeroizing<String>>> {
        self.proof.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every user with a record in the daemon (root), page by page.
    pub fn users(&self) -> Result<Vec<String>> {
        let mut users: Vec<String> = Vec::new();
        loop {
            let request = Request::Users {
                after: users.last().cloned(),
            };
            match self.call(&request, self.timeout)? {
                Reply::Users { users: page, more } => {
                    // A page that does not move on would loop for ever.
                    let moved = page.last().is_some_and(|l| Some(l) > users.last());
                    users.extend(page);
                    if !more || !moved {
                        return Ok(users);
                    }
                }
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// A new secret for an enrollment, made and kept by the daemon.
    pub fn new_secret(&self, app: NewApp) -> Result<Secret> {
        let request = Request::NewSecret {
            user: self.user.clone(),
            app,
        };
        match self.call(&request, self.timeout)? {
            Reply::NewSecret { secret } => Secret::from_base32(&secret),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Saves the enrollment of the secret [`Daemon::new_secret`] gave,
    /// with `confirm`, a code of it, for the daemon to check.
    /// `device`: save it as a new device of that name instead.
    pub fn enroll_issued(
        &self,
        replacing: bool,
        device: Option<crate::record::DeviceName>,
        confirm: Option<&str>,
        now: u64,
    ) -> Result<Changed> {
        let request = Request::EnrollIssued {
            user: self.user.clone(),
            replacing,
            device,
            confirm: confirm.map(|c| Zeroizing::new(c.to_string())),
            proof: self.lock_proof().take(),
            password: self.take_password(),
            now: Some(now),
        };
        self.changed(&request)
    }

    /// Sends a request answered by `Changed` (a change or an issued
    /// enrollment).
    fn changed(&self, request: &Request) -> Result<Changed> {
        match self.call(request, self.timeout)? {
            Reply::Changed { changed } => Ok(changed),
            other => Err(self.unexpected(&other)),
        }
    }

    fn take_password(&self) -> Option<Zeroizing<String>> {
        self.password
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Has the daemon send a code to `to`, a destination being enrolled,
    /// and keep it until [`Daemon::check_confirmation`].
    pub fn send_confirmation(&self, channel: Kind, to: &str) -> Result<WireConfirmation> {
        let request = Request::SendConfirmation {
            user: self.user.clone(),
            channel,
            to: to.to_string(),
        };
        match self.call(&request, self.timeout + self.send_timeout)? {
            Reply::ConfirmationSent { outcome } => Ok(outcome),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Has the daemon compare `code` with the one it sent to `to`.
    pub fn check_confirmation(&self, channel: Kind, to: &str, code: &str) -> Result<PendingCheck> {
        let request = Request::CheckConfirmation {
            user: self.user.clone(),
            channel,
            to: to.to_string(),
            code: Zeroizing::new(code.to_string()),
        };
        match self.call(&request, self.timeout)? {
            Reply::ConfirmationChecked { check } => Ok(check.into()),
            other => Err(self.unexpected(&other)),
        }
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

    fn check(&self, check: Check<'_>, now: u64) -> Result<Checked> {
        // The daemon takes the time only from root; anyone else's
        // requests are judged at its own clock.
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
            service: self.service.clone(),
            now: Some(now),
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

    fn change(&self, change: &Change, now: u64) -> Result<Changed> {
        let request = Request::Change {
            user: self.user.clone(),
            change: change.clone(),
            proof: self.lock_proof().take(),
            password: self.take_password(),
            now: Some(now),
        };
        self.changed(&request)
    }

    fn send_code(&self, offer: &Offer, now: u64, recipient: Recipient<'_>) -> Result<SendOutcome> {
        let request = Request::SendCode {
            user: self.user.clone(),
            channel: offer.kind,
            to: offer.to.clone(),
            service: recipient.service.to_string(),
            now: Some(now),
        };
        match self.call(&request, self.timeout + self.send_timeout)? {
            Reply::Sent { outcome } => Ok(outcome.into()),
            other => Err(self.unexpected(&other)),
        }
    }

    fn trust_host(&self, trust: &Trust, now: u64) -> Result<Option<String>> {
        let request = Request::TrustHost {
            user: self.user.clone(),
            trust: trust.clone(),
            now: Some(now),
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A server on a socket in a fresh private directory that answers
    /// every connection with `reply(n)` (n counts connections) and closes.
    fn server(reply: impl Fn(usize) -> Vec<u8> + Send + 'static) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut header = [0u8; protocol::HEADER_LEN];
                let _ = stream.read_exact(&mut header);
                let len = protocol::parse_header(&header).unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = stream.read_exact(&mut body);
                let _ = stream.write_all(&reply(n));
            }
        });
        (dir, path)
    }

    fn client(socket: &Path) -> Daemon {
        let mut config = SystemConfig::default();
        config.store.socket = socket.display().to_string();
        config.store.timeout = 1;
        Daemon::new(&config, "alice")
    }

    #[test]
    fn no_socket_is_a_clear_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let err = client(&dir.path().join("none.sock")).view().unwrap_err();
        assert!(err.to_string().contains("is otpgated running?"), "{err}");
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn a_server_that_never_answers_costs_the_timeout_then_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let start = Instant::now();
        let err = client(&path).view().unwrap_err();
        let took = start.elapsed();
        assert!(err.to_string().contains("no reply within 1 s"), "{err}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }

    #[test]
    fn a_reply_of_another_kind_is_an_error_not_an_answer() {
        let (_dir, path) = server(|_| {
            let mut out = Vec::new();
            protocol::write_frame(&mut out, &Reply::Trusted { host: None }).unwrap();
            out
        });
        let checked = client(&path).check(
            Check {
                candidates: &[b"123456"],
                backup: BackupUse::Consume,
                source: None,
            },
            0,
        );
        assert!(
            checked
                .unwrap_err()
                .to_string()
                .contains("unexpected reply")
        );
    }

    /// Random bytes, and random changes to a good reply, from the server:
    /// every request ends in an error or a well-formed answer, never a
    /// panic, and within the timeout.
    #[test]
    fn fuzzed_replies_never_panic_the_client() {
        let good = {
            let mut out = Vec::new();
            let reply = Reply::Checked {
                checked: Checked::Accepted {
                    method: crate::record::Method::Backup,
                    device: None,
                    backups_left: 3,
                    candidate: 0,
                }
                .into(),
                proof: None,
            };
            protocol::write_frame(&mut out, &reply).unwrap();
            out
        };
        let (_dir, path) = server(move |n| {
            let mut rng = crate::testing::Rng::new(n as u64 + 1);
            let mut bytes = if n % 3 == 0 {
                rng.noise(79)
            } else {
                good.clone()
            };
            rng.mutate(&mut bytes, 3);
            bytes
        });
        let daemon = client(&path);
        let start = Instant::now();
        for _ in 0..300 {
            let _ = daemon.check(
                Check {
                    candidates: &[b"123456"],
                    backup: BackupUse::Consume,
                    source: None,
                },
                0,
            );
        }
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}
