//! The socket: set up, accept, one thread per connection within limits.
//!
//! Each connection is served by a worker thread (`pool.rs`), because a
//! request is short and synchronous work (a locked file change) and
//! threads keep the code plain. What bounds memory is the connection
//! limits: at most
//! `daemon.max_connections` at once, and `daemon.max_connections_per_user`
//! from any one user who is not root or a listed PAM application, so one
//! user's thousand idle connections cannot crowd out sshd's logins. A
//! connection must deliver each whole request within
//! `daemon.client_timeout` seconds (idle time included) or it is closed,
//! and a frame is at most 64 KiB. Over a limit, the client is told "busy"
//! and the connection closed.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otpgate_config::protocol::{self, FrameError, Reply, Request, Timed};

use crate::answer::{Context, answer};
use crate::error::Error;
use crate::log;
use crate::metrics::{self, Dropped, Gauges};
use crate::peer::Peer;
use crate::pool::Pool;

/// Connections being served, in total and by uid.
#[derive(Default)]
struct Count {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// Frees a connection's place when its thread ends.
struct Slot {
    counts: Arc<Mutex<Count>>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_uid.remove(&self.uid);
            }
        }
    }
}

fn lock(counts: &Mutex<Count>) -> std::sync::MutexGuard<'_, Count> {
    // A thread that panicked while counting leaves the count usable.
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes the state directory (0700, ours) or checks the one there.
pub fn prepare_state_dir(dir: &Path, owner: u32) -> Result<(), Error> {
    let setup = |why: String| Error::Setup {
        path: dir.to_path_buf(),
        why,
    };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| setup(format!("cannot create: {e}")))?,
        Err(e) => return Err(setup(e.to_string())),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| setup(e.to_string()))?;
    if !meta.file_type().is_dir() {
        return Err(setup("not a directory (a symlink is not followed)".into()));
    }
    if meta.uid() != owner {
        return Err(setup(format!(
            "owned by uid {}, not by this daemon (uid {owner})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(setup(format!(
            "mode {:o}: group and others must have no access (chmod 700)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Binds the socket: its directory made if missing and checked as clients
/// check it, a stale socket replaced, a running daemon left alone.
pub fn bind(path: &Path) -> Result<UnixListener, Error> {
    let setup = |path: &Path, why: String| Error::Setup {
        path: path.to_path_buf(),
        why,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| setup(dir, format!("cannot create: {e}")))?;
    }
    let meta = fs::metadata(dir).map_err(|e| setup(dir, e.to_string()))?;
    if meta.mode() & 0o022 != 0 {
        return Err(setup(
            dir,
            "writable by group or others: clients refuse a socket there".into(),
        ));
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(setup(path, "exists and is not a socket".into()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(setup(
                path,
                "another otpgated is serving this socket".into(),
            ));
        }
        fs::remove_file(path)
            .map_err(|e| setup(path, format!("cannot remove stale socket: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| setup(path, format!("bind: {e}")))?;
    // Anyone may connect; what they may ask is decided per request.
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))
        .map_err(|e| setup(path, format!("chmod: {e}")))?;
    Ok(listener)
}

/// Accepts connections until the process is stopped; serves the metrics
/// endpoint too when `daemon.metrics` bound one.
pub fn serve(listener: UnixListener, endpoint: Option<TcpListener>, ctx: Arc<Context>) -> ! {
    let counts = Arc::new(Mutex::new(Count::default()));
    let pool = Pool::default();
    if let Some(endpoint) = endpoint {
        metrics::spawn(endpoint, metrics_page(&ctx, &counts, &pool));
    }
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or memory: wait rather than spin.
                log::line(&format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        admit(stream, &ctx, &counts, &pool);
    }
}

/// Hands a connection to a worker, or tells it the daemon is busy.
fn admit(mut stream: UnixStream, ctx: &Arc<Context>, counts: &Arc<Mutex<Count>>, pool: &Pool) {
    let peer = match Peer::of(&stream, &ctx.config) {
        Ok(peer) => peer,
        Err(e) => return refuse(&mut stream, &e),
    };
    let Some(slot) = take_slot(counts, &peer, &ctx.config.daemon) else {
        log::peer(&peer, "refused: over the connection limit");
        ctx.metrics.dropped(Dropped::Busy);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        return refuse(&mut stream, &Error::Busy);
    };
    let ctx = Arc::clone(ctx);
    pool.run(move || {
        let _slot = slot;
        connection(stream, &ctx, &peer);
    });
}

/// A place for `peer` within the limits, or `None`.
fn take_slot(
    counts: &Arc<Mutex<Count>>,
    peer: &Peer,
    limits: &otpgate_config::system::DaemonConfig,
) -> Option<Slot> {
    let mut c = lock(counts);
    let mine = c.by_uid.get(&peer.uid).copied().unwrap_or(0);
    if c.total >= limits.max_connections as usize
        || (peer.is_limited() && mine >= limits.max_connections_per_user as usize)
    {
        return None;
    }
    c.total += 1;
    *c.by_uid.entry(peer.uid).or_insert(0) += 1;
    Some(Slot {
        counts: Arc::clone(counts),
        uid: peer.uid,
    })
}

/// Requests and replies on one connection until it closes, times out or
/// sends something that is not a request.
fn connection(mut stream: UnixStream, ctx: &Context, peer: &Peer) {
    let timeout = Duration::from_secs(ctx.config.daemon.client_timeout.into());
    loop {
        let deadline = Instant::now() + timeout;
        let mut timed = Timed::new(&mut stream, deadline);
        let request: Request = match protocol::read_frame(&mut timed) {
            Ok(request) => request,
            Err(FrameError::Closed) => return,
            Err(FrameError::Io(e)) if protocol::is_timeout(&e) => return,
            Err(e) => {
                let error = Error::Frame(e);
                log::peer(peer, &format!("bad request: {}", summary(&error)));
                ctx.metrics.dropped(Dropped::BadRequest);
                return refuse(&mut timed, &error);
            }
        };
        let started = Instant::now();
        let answered = answer(ctx, peer, &request);
        ctx.metrics.answered(&request, &answered, started.elapsed());
        let reply = match answered {
            Ok(reply) => reply,
            Err(e) => {
                log::request(peer, &request, &e.to_string());
                Reply::Error {
                    kind: e.failure(),
                    message: e.to_string(),
                }
            }
        };
        let mut timed = Timed::new(&mut stream, Instant::now() + timeout);
        if protocol::write_frame(&mut timed, &reply).is_err() {
            return;
        }
    }
}

/// The metrics page: the counters, and what is open at the scrape.
fn metrics_page(
    ctx: &Arc<Context>,
    counts: &Arc<Mutex<Count>>,
    pool: &Pool,
) -> impl Fn() -> String + Send + 'static {
    let (ctx, counts, pool) = (Arc::clone(ctx), Arc::clone(counts), pool.clone());
    move || {
        let gauges = Gauges {
            connections: lock(&counts).total,
            workers: pool.workers(),
            db_idle: ctx.db.as_ref().map(|db| db.idle_connections()),
        };
        ctx.metrics.render(&gauges)
    }
}

/// What the log says about a bad frame: never the payload, which may hold
/// a code.
fn summary(e: &Error) -> String {
    match e {
        Error::Frame(FrameError::Malformed(_)) => "malformed message".into(),
        e => e.to_string(),
    }
}

/// Tells the client why it is being dropped, best effort.
fn refuse(w: &mut impl Write, e: &Error) {
    let reply = Reply::Error {
        kind: e.failure(),
        message: e.to_string(),
    };
    let _ = protocol::write_frame(w, &reply);
}

/// The socket path of the config.
pub fn socket_path(ctx: &Context) -> PathBuf {
    PathBuf::from(&ctx.config.store.socket)
}
