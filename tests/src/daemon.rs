//! `otpgated` started by a test, in the harness's temp dir: records in the
//! harness's `users/` (so `Harness::write_record` enrolls a user for the
//! daemon and `Harness::record` reads back what it stored), the socket in
//! `run/`, its log in `otpgated.log`. Stopped (SIGKILL) when dropped.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Harness, otpgated_binary};

/// The `[store]` and `[daemon]` tables that point the module at a daemon
/// of this harness; `top` is top-level keys (TOML wants them first),
/// `store` and `daemon` more keys of those tables.
pub fn daemon_config(h: &Harness, top: &str, store: &str, daemon: &str) -> String {
    format!(
        "{top}\n[store]\nkind = \"daemon\"\nsocket = \"{}\"\n{store}\n\n[daemon]\nstate_dir = \"{}\"\n{daemon}\n",
        socket_path(h).display(),
        h.path("users").display()
    )
}

/// Where the daemon of `h` listens.
pub fn socket_path(h: &Harness) -> PathBuf {
    h.path("run/otpgated.sock")
}

/// A running `otpgated`.
pub struct Otpgated {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Otpgated {
    /// Starts the daemon on `h`'s config (written with [`daemon_config`])
    /// and waits until it accepts connections.
    pub fn start(h: &Harness) -> Otpgated {
        Otpgated::start_with(h, &[])
    }

    /// [`Otpgated::start`] with more environment (pam_wrapper, for the
    /// daemon's own PAM calls).
    pub fn start_with(h: &Harness, env: &[(String, String)]) -> Otpgated {
        Otpgated::start_as(h, &h.config_path(), &socket_path(h), env)
    }

    /// A daemon of its own config (one of several "hosts" in one harness),
    /// listening on `socket`.
    pub fn start_as(
        h: &Harness,
        config: &std::path::Path,
        socket: &std::path::Path,
        env: &[(String, String)],
    ) -> Otpgated {
        let name = socket
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = h.path(&format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("daemon log");
        let mut cmd = Command::new(otpgated_binary());
        cmd.arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out);
        cmd.envs(h.driver_env().iter().map(|(k, v)| (k, v)));
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().expect("start otpgated");
        let mut d = Otpgated {
            child,
            socket: socket.to_path_buf(),
            log,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while UnixStream::connect(&self.socket).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("otpgated exited ({status}): {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "otpgated not ready after 10 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops it with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Otpgated {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the hardening helper (`helper`, the test's
/// `CARGO_BIN_EXE_otpgate-hardening-helper`) `ask` as `uid`: one request to
/// the daemon at `socket`, the reply's TOML.
pub fn ask_as(
    helper: &std::path::Path,
    uid: u32,
    gid: u32,
    socket: &std::path::Path,
    request: &str,
) -> String {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(helper)
        .arg("ask")
        .arg(socket)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the hardening helper");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("the helper's reply");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
