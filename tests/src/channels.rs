//! Helpers for the sent-code tests (issue #8): an outbox directory the
//! channel commands (run as `nobody`) can reach, an SMS command that writes
//! each message there, a minimal SMTP server on 127.0.0.1 that msmtp
//! delivers to, and pamtester driven line by line.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `nobody`, the channel commands' `run_as` in most of these tests.
pub const NOBODY: u32 = 65534;

/// The default `run_as` user, [`otpgate_config::channel::DEFAULT_RUN_AS`],
/// created (a system user, no home, nologin) when missing, as the packages
/// do; never deleted (another test or the package may own it). The account, or
/// `None` (after SKIP) when not root or `useradd` fails.
pub fn send_user() -> Option<otpgate_config::Account> {
    use otpgate_config::channel::DEFAULT_RUN_AS;
    otpgate_test_support::system_account(DEFAULT_RUN_AS, "/nonexistent", "otpgate code sender")
        .map(|(account, _, _)| account)
}

/// A directory (0755) with `out/` owned by nobody: scripts and configs for
/// the channel commands, and the messages they write.
pub struct Outbox {
    dir: tempfile::TempDir,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        let dir = tempfile::Builder::new()
            .prefix("otpgate-outbox")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
        Outbox { dir }
    }

    /// Gives `out/` to `uid`:`gid` (the channel command's user, when not
    /// nobody).
    pub fn out_for(&self, uid: u32, gid: u32) {
        std::os::unix::fs::chown(self.path("out"), Some(uid), Some(gid)).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes an executable script (0755, root's) and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The SMS gateway of the tests: records its argument (`{to}`), who it
    /// runs as, its whole environment and the message it read.
    pub fn sms_command(&self) -> PathBuf {
        let out = self.path("out");
        self.script(
            "send-sms",
            &format!(
                r#"n=$(date +%s%N)
{{ printf 'to=%s\n' "$1"; printf 'uid=%s groups=%s\n' "$(id -u)" "$(id -G)"
   printf 'env:\n'; env | sort; printf 'message:\n'; cat; }} > "{out}/.tmp.$n"
mv "{out}/.tmp.$n" "{out}/msg.$n""#,
                out = out.display()
            ),
        )
    }

    /// Messages written so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.path("out"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("msg."))
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Waits (up to `timeout`) until there are `n` messages; the `n`th.
    pub fn wait_message(&self, n: usize, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let all = self.messages();
            if all.len() >= n {
                return all.get(n - 1).cloned();
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The first run of 6 to 8 digits after `message:` (or anywhere, for mail).
pub fn code_in(message: &str) -> String {
    let body = message.split_once("message:\n").map_or(message, |(_, b)| b);
    let body = body.split_once("\r\n\r\n").map_or(body, |(_, b)| b);
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| (6..=8).contains(&w.len()))
        .unwrap_or_else(|| panic!("no code in {message}"))
        .to_string()
}

/// A minimal SMTP server on 127.0.0.1: accepts every message and hands it
/// over with the time it arrived; optionally writes each message's code to
/// a file (for the ssh client's askpass script).
pub struct Smtp {
    pub port: u16,
    received: mpsc::Receiver<(Instant, String)>,
}

impl Smtp {
    pub fn start(code_file: Option<PathBuf>) -> Smtp {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind smtp");
        let port = listener.local_addr().unwrap().port();
        let (tx, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(message) = session(stream) {
                    let at = Instant::now();
                    if let Some(f) = &code_file {
                        let tmp = f.with_extension("tmp");
                        std::fs::write(&tmp, format!("{}\n", code_in(&message))).unwrap();
                        std::fs::rename(&tmp, f).unwrap();
                    }
                    if tx.send((at, message)).is_err() {
                        return;
                    }
                }
            }
        });
        Smtp { port, received }
    }

    /// The next message, with the instant it was fully received.
    pub fn next(&self, timeout: Duration) -> Option<(Instant, String)> {
        self.received.recv_timeout(timeout).ok()
    }

    /// An msmtp config (owned by nobody, 0600) delivering to this server.
    pub fn msmtp_config(&self, outbox: &Outbox) -> PathBuf {
        let path = outbox.path("msmtprc");
        std::fs::write(
            &path,
            format!(
                "account default\nhost 127.0.0.1\nport {}\nfrom otpgate@gate.test\n\
                 auth off\ntls off\nsyslog off\n",
                self.port
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        path
    }
}

/// One SMTP conversation; the message (headers and body) if one came.
fn session(stream: TcpStream) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut w = stream.try_clone().ok()?;
    let mut r = BufReader::new(stream);
    let mut say = |text: &str| w.write_all(text.as_bytes()).is_ok();
    say("220 127.0.0.1 ESMTP otpgate-test\r\n");
    let mut message = None;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return message;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => say("250-127.0.0.1\r\n250 8BITMIME\r\n"),
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => say("250 OK\r\n"),
            "DATA" => {
                say("354 go on\r\n");
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).ok()? == 0 {
                        return None;
                    }
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    data.push_str(
                        l.strip_prefix('.')
                            .filter(|_| l.starts_with(".."))
                            .unwrap_or(&l),
                    );
                }
                message = Some(data);
                say("250 queued\r\n")
            }
            "QUIT" => {
                say("221 bye\r\n");
                return message;
            }
            _ => say("502 not here\r\n"),
        };
    }
}

/// pamtester (pam_wrapper, the harness's services) answering line by line.
pub struct Pamtester {
    child: Child,
}

impl Pamtester {
    pub fn start(pam_dir: &Path, service: &str, user: &str, rhost: &str) -> Pamtester {
        let child = Command::new("pamtester")
            .args(["-v", "-I", &format!("rhost={rhost}"), service, user])
            .arg("authenticate")
            .env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", pam_dir)
            // Must never reach a channel command.
            .env("OTPGATE_TEST_MARKER", "inherited")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pamtester");
        Pamtester { child }
    }

    /// Types `line` and Enter.
    pub fn line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to pamtester");
        stdin.flush().unwrap();
    }

    /// Closes stdin and waits: (authenticated, everything it printed).
    pub fn finish(mut self) -> (bool, String) {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().expect("pamtester");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}
