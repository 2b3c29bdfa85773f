//! Running a channel's command to deliver one message.
//!
//! - no shell: the configured argv, `{to}` filled in;
//! - a cleared environment (only `PATH` is set) and `/` as working
//!   directory;
//! - as the channel's `run_as` user (uid, gid, no supplementary groups) when
//!   the caller is root; a uid of 0 is refused;
//! - the message on standard input from an anonymous memory file
//!   (`memfd`), so writing it can neither block nor raise `SIGPIPE` in the
//!   process that loaded us, whatever the command does; standard output
//!   discarded; standard error kept in another memory file and its first
//!   line reported;
//! - its own process group, killed (`SIGKILL`) at the timeout, then reaped:
//!   a dead mail server never hangs a login.
//!
//! The caller may adjust the command before it starts (the PAM module marks
//! every inherited descriptor close-on-exec, so the command never sees
//! sshd's sockets).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use zeroize::Zeroizing;

use crate::account::Account;
use crate::channel::{self, COMMAND_PATH, Kind, Settings, Vars};

/// Most bytes of the command's standard error kept for the log.
const STDERR_KEPT: u64 = 512;

/// One message ready to go.
pub struct Message {
    /// The program and its arguments, placeholders filled in.
    pub argv: Vec<String>,
    pub run_as: String,
    /// What the command reads on standard input (holds the code).
    pub stdin: Zeroizing<Vec<u8>>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("argv", &self.argv)
            .field("run_as", &self.run_as)
            .field(
                "stdin",
                &format_args!("[{} bytes redacted]", self.stdin.len()),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Builds the message for `settings` to `to`: for email the headers
/// (`To`, `From`, `Subject`, MIME, `Auto-Submitted`) and the body, as
/// `sendmail -t` reads them; for SMS the rendered text alone. `to` must be
/// a destination that passed [`channel::normalize_email`] or
/// [`channel::normalize_number`].
pub fn compose(settings: &Settings<'_>, to: &str, vars: &Vars<'_>) -> Message {
    let vars = Vars { to, ..*vars };
    let body = Zeroizing::new(channel::render(settings.template, &vars));
    let mut text = Zeroizing::new(String::new());
    if settings.kind == Kind::Email {
        text.push_str(&format!("To: {to}\n"));
        if let Some(from) = settings.from.filter(|f| !f.is_empty()) {
            text.push_str(&format!("From: {from}\n"));
        }
        let subject = channel::render(settings.subject.unwrap_or_default(), &vars);
        text.push_str(&format!("Subject: {}\n", encode_header(&subject)));
        text.push_str("MIME-Version: 1.0\n");
        text.push_str("Content-Type: text/plain; charset=UTF-8\n");
        text.push_str("Content-Transfer-Encoding: 8bit\n");
        text.push_str("Auto-Submitted: auto-generated\n\n");
    }
    text.push_str(&body);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Message {
        argv: settings
            .command
            .iter()
            .map(|a| channel::render(a, &vars))
            .collect(),
        run_as: settings.run_as.to_string(),
        stdin: Zeroizing::new(text.as_bytes().to_vec()),
        timeout: Duration::from_secs(settings.timeout),
    }
}

/// A header value: as is when ASCII, else RFC 2047 base64 words.
fn encode_header(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("=?UTF-8?B?");
    for chunk in value.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("?=");
    out
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited 0 after this long.
    Sent(Duration),
    /// It did not; the reason is for the log (never holds the code).
    Failed(String),
}

/// Runs the command for `message`; `prepare` may adjust it before it
/// starts. Never waits longer than the message's timeout (plus the time to
/// kill and reap).
pub fn send(message: &Message, prepare: &dyn Fn(&mut Command)) -> Outcome {
    match run(message, prepare) {
        Ok(elapsed) => Outcome::Sent(elapsed),
        Err(reason) => Outcome::Failed(reason),
    }
}

fn run(message: &Message, prepare: &dyn Fn(&mut Command)) -> Result<Duration, String> {
    let (program, args) = message
        .argv
        .split_first()
        .ok_or_else(|| "no command".to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .current_dir("/")
        .process_group(0)
        .stdout(Stdio::null());
    if nix::unistd::geteuid().is_root() {
        run_as(&mut cmd, &message.run_as)?;
    }
    let mut stderr = attach_stdio(&mut cmd, message)?;
    prepare(&mut cmd);

    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // The child's copies are its own now; ours go with `cmd`.
    drop(cmd);
    let status = wait(
        &mut child,
        program,
        start + message.timeout,
        message.timeout,
    )?;
    let elapsed = start.elapsed();
    if status.success() {
        return Ok(elapsed);
    }
    Err(failure(program, status, &mut stderr))
}

/// Makes `cmd` run as user `name` (never root).
fn run_as(cmd: &mut Command, name: &str) -> Result<(), String> {
    let account = Account::lookup(name).map_err(|e| format!("run_as user `{name}`: {e}"))?;
    if account.uid == 0 {
        return Err(format!(
            "run_as user `{name}` has uid 0; refusing to run the command as root"
        ));
    }
    // std drops the supplementary groups when a root parent sets a uid.
    cmd.uid(account.uid).gid(account.gid);
    Ok(())
}

/// Gives `cmd` the message on standard input and a memory file as standard
/// error; returns that file, to read after the command is done.
fn attach_stdio(cmd: &mut Command, message: &Message) -> Result<File, String> {
    let mut stdin = memory_file("otpgate-message")?;
    stdin
        .write_all(&message.stdin)
        .and_then(|()| stdin.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| format!("preparing the message: {e}"))?;
    let stderr = memory_file("otpgate-stderr")?;
    let stderr_child = stderr
        .try_clone()
        .map_err(|e| format!("preparing stderr: {e}"))?;
    cmd.stdin(Stdio::from(stdin))
        .stderr(Stdio::from(stderr_child));
    Ok(stderr)
}

/// Waits for `child` until `deadline`; then kills its process group and
/// reaps it.
fn wait(
    child: &mut Child,
    program: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<ExitStatus, String> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            // Reaped by someone else (a SIGCHLD handler of the host
            // process): the outcome is unknown.
            Err(e) => return Err(format!("{program}: lost track of the command: {e}")),
        }
        let now = Instant::now();
        if now >= deadline {
            // The whole group: a shell script's children too.
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{program} timed out after {} s and was killed",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Why the command failed: its exit status and the first line of its
/// standard error.
fn failure(program: &str, status: ExitStatus, stderr: &mut File) -> String {
    let why = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "failed".to_string(),
    };
    let mut text = String::new();
    let _ = stderr.seek(SeekFrom::Start(0));
    let _ = stderr.take(STDERR_KEPT).read_to_string(&mut text);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if first.is_empty() {
        format!("{program} {why}")
    } else {
        format!("{program} {why}: {first}")
    }
}

fn memory_file(name: &str) -> Result<File, String> {
    memfd_create(name, MFdFlags::MFD_CLOEXEC)
        .map(File::from)
        .map_err(|e| format!("memfd_create: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Channels, EmailChannel, SmsChannel};

    fn vars() -> Vars<'static> {
        Vars {
            code: "424242",
            user: "alice",
            host: "gate",
            service: "sshd",
            minutes: 10,
            to: "",
        }
    }

    #[test]
    fn an_email_message_has_headers_for_sendmail_t_and_the_code_only_in_the_body() {
        let channels = Channels {
            email: Some(EmailChannel {
                from: "otpgate@gate.example".into(),
                ..EmailChannel::default()
            }),
            ..Channels::default()
        };
        let s = channels.get(Kind::Email).unwrap();
        let m = compose(&s, "alice@example.org", &vars());
        let text = String::from_utf8(m.stdin.to_vec()).unwrap();
        let (headers, body) = text.split_once("\n\n").unwrap();
        assert!(headers.starts_with("To: alice@example.org\nFrom: otpgate@gate.example\n"));
        assert!(headers.contains("Subject: Verification code for gate\n"));
        assert!(headers.contains("Auto-Submitted: auto-generated"));
        assert!(
            body.contains("424242") && body.contains("10 minutes"),
            "{body}"
        );
        assert_eq!(m.argv, ["/usr/sbin/sendmail", "-t", "-i"]);
        assert!(!format!("{m:?}").contains("424242"));
    }

    #[test]
    fn non_ascii_subjects_are_encoded_words() {
        assert_eq!(encode_header("Code für"), "=?UTF-8?B?Q29kZSBmw7xy?=");
        assert_eq!(encode_header("plain"), "plain");
    }

    #[test]
    fn an_sms_message_is_the_text_and_the_number_an_argument() {
        let channels = Channels {
            sms: Some(SmsChannel {
                command: vec!["/usr/local/bin/sms".into(), "--to={to}".into()],
                ..SmsChannel::default()
            }),
            ..Channels::default()
        };
        let s = channels.get(Kind::Sms).unwrap();
        let m = compose(&s, "+441632960961", &vars());
        assert_eq!(m.argv, ["/usr/local/bin/sms", "--to=+441632960961"]);
        assert_eq!(
            String::from_utf8(m.stdin.to_vec()).unwrap(),
            "424242 is your gate login code (10 min).\n"
        );
    }

    fn script(body: &str) -> (tempfile::TempDir, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("cmd");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path.display().to_string())
    }

    fn message(program: &str, timeout: u64) -> Message {
        Message {
            argv: vec![program.to_string()],
            run_as: "nobody".into(),
            stdin: Zeroizing::new(b"hello\n".to_vec()),
            timeout: Duration::from_secs(timeout),
        }
    }

    #[test]
    fn a_failing_command_reports_its_status_and_first_stderr_line() {
        let (_d, cmd) = script("cat >/dev/null; echo 'relay refused' >&2; exit 75");
        match send(&message(&cmd, 5), &|_| {}) {
            Outcome::Failed(why) => {
                assert!(
                    why.contains("status 75") && why.contains("relay refused"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hanging_command_is_killed_at_the_timeout_with_its_children() {
        let (_d, cmd) = script("sleep 30 & sleep 30");
        let start = Instant::now();
        let out = send(&message(&cmd, 1), &|_| {});
        let took = start.elapsed();
        assert!(
            matches!(&out, Outcome::Failed(w) if w.contains("timed out")),
            "{out:?}"
        );
        assert!(took < Duration::from_millis(1900), "{took:?}");
    }

    #[test]
    fn a_missing_command_is_a_clear_failure() {
        let out = send(&message("/nonexistent/sendmail", 1), &|_| {});
        assert!(
            matches!(&out, Outcome::Failed(w) if w.contains("cannot run /nonexistent/sendmail")),
            "{out:?}"
        );
    }
}
