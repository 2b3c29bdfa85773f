//! A real OpenSSH server on a loopback port, driven by the real OpenSSH
//! client (docs/ARCHITECTURE.md, §7, "A real sshd").
//!
//! `sshd` comes from Debian's `openssh-server`, downloaded and unpacked
//! (never installed) into `<target>/openssh-server` by
//! `packaging/fetch-sshd.sh`. It runs through a symlink named
//! [`SSHD_SERVICE`], so its PAM service is that file in the harness's
//! `pam.d`, read through pam_wrapper; nss_wrapper adds the privilege
//! separation user `sshd` for sshd alone. Nothing in `/etc` changes; the
//! only system directory touched is `/run/sshd` (sshd's empty privilege
//! separation directory), created when missing.
//!
//! The client answers keyboard-interactive prompts through an askpass script
//! that picks its answer by the prompt's text and records every prompt.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Harness, PAM_WRAPPER_MODULES, require, require_tool};

/// The PAM service name: the name of the symlink sshd runs as.
pub const SSHD_SERVICE: &str = "sshd-otp-test";
/// The password pam_matrix accepts for every login of these tests.
pub const PASSWORD: &str = "secret";

const NSS_WRAPPER: &str = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so";

/// The unpacked sshd, fetched once per test binary.
pub fn sshd_binary() -> Option<PathBuf> {
    static FETCHED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = FETCHED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/fetch-sshd.sh");
        let cache = crate::target_dir()
            .parent()
            .map(|t| t.join("openssh-server"))
            .unwrap_or_else(|| std::env::temp_dir().join("otpgate-openssh-server"));
        let out = Command::new(&script)
            .arg(&cache)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    });
    match result {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            require(false, &format!("no unpacked sshd: {e}"))?;
            None
        }
    }
}

/// Everything an sshd test needs besides root and the harness: the
/// unpacked sshd, the OpenSSH client, pam_wrapper with pam_matrix,
/// nss_wrapper, ssh-keygen and setsid.
pub fn require_sshd_tools() -> Option<PathBuf> {
    require_tool("ssh", "openssh-client")?;
    require(
        Command::new("ssh-keygen")
            .arg("-?")
            .stderr(Stdio::null())
            .status()
            .is_ok(),
        "`ssh-keygen` not found (Debian package openssh-client)",
    )?;
    require(
        Path::new(PAM_WRAPPER_MODULES)
            .join("pam_matrix.so")
            .exists(),
        "pam_matrix.so missing (Debian package libpam-wrapper)",
    )?;
    require(
        Path::new(NSS_WRAPPER).exists(),
        "libnss_wrapper.so missing (Debian package libnss-wrapper)",
    )?;
    sshd_binary()
}

/// `auth requisite pam_matrix.so passdb=...`: the password step.
pub fn password_line(h: &Harness) -> String {
    format!(
        "auth requisite {}/pam_matrix.so passdb={}",
        PAM_WRAPPER_MODULES,
        h.path("passdb").display()
    )
}

/// A running sshd; killed (and waited for) on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    /// The client key accepted by `AuthorizedKeysFile`.
    pub client_key: PathBuf,
    /// A second key of the same user, accepted too (another device).
    pub other_key: PathBuf,
    runs: AtomicUsize,
}

/// How the server is set up.
pub struct SshdSetup {
    /// `AuthenticationMethods`.
    pub methods: String,
    /// The `auth` lines of the PAM service (account, session and password
    /// stacks are added: permit, permit, deny).
    pub auth: Vec<String>,
    /// More `sshd_config` lines.
    pub extra: String,
    /// `sshd_config` text before the harness's own lines: sshd keeps the
    /// first value of each keyword, so these win (Debian's stock file,
    /// [`stock_sshd_config`], with its `Include` first).
    pub head: String,
}

impl SshdSetup {
    /// `AuthenticationMethods methods` with these `auth` lines.
    pub fn new(methods: &str, auth: Vec<String>) -> SshdSetup {
        SshdSetup {
            methods: methods.into(),
            auth,
            extra: String::new(),
            head: String::new(),
        }
    }
}

/// Debian's `/etc/ssh/sshd_config` as openssh-server ships it
/// (`/usr/share/openssh/sshd_config`, from the unpacked package), its first
/// line `Include /etc/ssh/sshd_config.d/*.conf` pointed at `include_dir`.
/// `None` (after SKIP) without the unpacked sshd.
pub fn stock_sshd_config(include_dir: &Path) -> Option<String> {
    let sshd = require_sshd_tools()?;
    let root = sshd.ancestors().nth(3).expect("<root>/usr/sbin/sshd");
    let path = root.join("usr/share/openssh/sshd_config");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stock_include = "Include /etc/ssh/sshd_config.d/*.conf";
    assert!(
        text.lines().any(|l| l == stock_include),
        "{} lacks `{stock_include}`:\n{text}",
        path.display()
    );
    Some(text.replace(
        stock_include,
        &format!("Include {}/*.conf", include_dir.display()),
    ))
}

/// What sshd makes of `config` (`sshd -T -f`, keywords in lower case, one
/// `keyword value` per line), with a throwaway host key in `dir`: whether
/// sshd accepts the file, and what it printed.
pub fn effective_sshd_config(dir: &Path, config: &str) -> Option<(bool, String)> {
    let sshd = require_sshd_tools()?;
    std::fs::create_dir_all(dir).expect("mkdir");
    let host_key = dir.join("host_key");
    generate_key(&host_key);
    let passwd = privsep_passwd(dir);
    let file = dir.join("sshd_config");
    std::fs::write(&file, config).expect("sshd_config");
    let out = Command::new(&sshd)
        .arg("-T")
        .arg("-f")
        .arg(&file)
        .arg("-o")
        .arg(format!("HostKey={}", host_key.display()))
        .env("LD_PRELOAD", NSS_WRAPPER)
        .env("NSS_WRAPPER_PASSWD", passwd)
        .env("NSS_WRAPPER_GROUP", "/etc/group")
        .stdin(Stdio::null())
        .output()
        .expect("sshd -T");
    Some((out.status.success(), crate::printed(&out)))
}

/// An ed25519 key without passphrase at `path` (kept when there is one).
fn generate_key(path: &Path) {
    if path.exists() {
        return;
    }
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen: {st}");
}

/// The fingerprint of the public key of the private key `path`, as
/// `ssh-keygen -l` prints it (`SHA256:...`).
pub fn fingerprint(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(path.with_extension("pub"))
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen -l");
    assert!(
        out.status.success(),
        "ssh-keygen -l: {}",
        crate::printed(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .filter(|f| f.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
        .to_string()
}

/// `dir/passwd`: the system's users plus sshd's privilege separation user
/// `sshd` (sshd refuses to start without it), for nss_wrapper.
fn privsep_passwd(dir: &Path) -> PathBuf {
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd.lines().any(|l| l.starts_with("sshd:")) {
        passwd.push_str("sshd:x:65534:65534:sshd privsep:/run/sshd:/usr/sbin/nologin\n");
    }
    let path = dir.join("passwd");
    std::fs::write(&path, passwd).expect("passwd");
    path
}

/// A free port on 127.0.0.1 (the kernel's choice; the listener is closed
/// before sshd binds it, and sshd's start is retried if it was taken).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl Sshd {
    /// Starts sshd for `h`'s temp dir; `None` (after SKIP) when a tool is
    /// missing. Panics with sshd's own output when it does not come up.
    pub fn start(h: &Harness, setup: &SshdSetup) -> Option<Sshd> {
        let sshd = require_sshd_tools()?;
        crate::sweep_pam_wrapper_dirs();
        let dir = h.path("sshd");
        std::fs::create_dir_all(&dir).expect("mkdir sshd");
        // The privilege separation directory: root's, not group/other
        // writable. Present on any machine with openssh-server; created
        // (empty, 0755) otherwise.
        let privsep = Path::new("/run/sshd");
        if !privsep.exists() {
            std::fs::create_dir_all(privsep).expect("mkdir /run/sshd");
            std::fs::set_permissions(privsep, std::fs::Permissions::from_mode(0o755))
                .expect("chmod /run/sshd");
        }
        let link = dir.join(SSHD_SERVICE);
        if !link.exists() {
            std::os::unix::fs::symlink(&sshd, &link).expect("symlink sshd");
        }
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        let other_key = dir.join("other_key");
        for key in [&host_key, &client_key, &other_key] {
            generate_key(key);
        }
        let mut authorized = String::new();
        for key in [&client_key, &other_key] {
            authorized
                .push_str(&std::fs::read_to_string(key.with_extension("pub")).expect("public key"));
        }
        std::fs::write(dir.join("authorized_keys"), authorized).expect("authorized_keys");
        std::fs::write(
            h.path("passdb"),
            format!(
                "root:{PASSWORD}:{SSHD_SERVICE}\n{}:{PASSWORD}:{SSHD_SERVICE}\n",
                crate::TEST_USER
            ),
        )
        .expect("passdb");
        let mut pam = setup.auth.join("\n");
        pam.push_str(
            "\naccount required pam_permit.so\nsession required pam_permit.so\npassword required pam_deny.so\n",
        );
        std::fs::write(h.path("pam.d").join(SSHD_SERVICE), pam).expect("pam service");
        std::fs::write(
            h.path("pam.d").join("other"),
            "auth required pam_deny.so\naccount required pam_deny.so\n",
        )
        .expect("pam other");
        // The privilege separation user, for sshd only.
        privsep_passwd(&dir);
        std::fs::copy("/etc/group", dir.join("group")).expect("group");

        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "{head}ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\nPidFile {dir}/sshd.pid\n\
                 UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n\
                 PubkeyAuthentication yes\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 AuthenticationMethods {methods}\nPermitRootLogin yes\nStrictModes no\nUseDNS no\n\
                 LoginGraceTime 60\nMaxAuthTries 10\nLogLevel VERBOSE\n{extra}\n",
                hk = host_key.display(),
                dir = dir.display(),
                methods = setup.methods,
                extra = setup.extra,
                head = setup.head,
            );
            std::fs::write(dir.join("sshd_config"), config).expect("sshd_config");
            let log_path = dir.join("sshd.log");
            let log = std::fs::File::create(&log_path).expect("sshd.log");
            let child = Command::new(&link)
                .args(["-D", "-e", "-f"])
                .arg(dir.join("sshd_config"))
                .env("LD_PRELOAD", format!("libpam_wrapper.so {NSS_WRAPPER}"))
                .env("PAM_WRAPPER", "1")
                .env("PAM_WRAPPER_SERVICE_DIR", h.path("pam.d"))
                .env("NSS_WRAPPER_PASSWD", dir.join("passwd"))
                .env("NSS_WRAPPER_GROUP", dir.join("group"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log)
                .spawn()
                .expect("spawn sshd");
            let mut server = Sshd {
                child,
                port,
                dir: dir.clone(),
                client_key: client_key.clone(),
                other_key: other_key.clone(),
                runs: AtomicUsize::new(0),
            };
            if server.wait_listening(Duration::from_secs(10)) {
                return Some(server);
            }
            last_log = server.log();
            // Port taken between our probe and sshd's bind: try another.
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start; its output:\n{last_log}");
    }

    /// True once sshd says it listens and the port accepts a connection;
    /// false if sshd exits or `timeout` passes.
    fn wait_listening(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.log().contains("Server listening on")
                && TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// sshd's output so far (`-e`: its log goes to stderr).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("sshd.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// A login with the OpenSSH client, to be completed and run.
    pub fn ssh(&self, user: &str) -> SshLogin<'_> {
        SshLogin {
            server: self,
            user: user.into(),
            password: Some(PASSWORD.into()),
            codes: Vec::new(),
            trust: None,
            key: None,
            command: "echo hello".into(),
            tries: 1,
            tty: false,
            disconnect: false,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::sweep_pam_wrapper_dirs();
    }
}

/// One client run being set up.
pub struct SshLogin<'a> {
    server: &'a Sshd,
    user: String,
    password: Option<String>,
    codes: Vec<String>,
    trust: Option<String>,
    /// The key offered first (`publickey`), then keyboard-interactive.
    key: Option<PathBuf>,
    command: String,
    /// `NumberOfPasswordPrompts`: how often the client tries
    /// keyboard-interactive in one connection (1 here; OpenSSH's default 3).
    tries: u32,
    /// `-tt`: a terminal for the session, as an interactive login has.
    tty: bool,
    /// Kill the client at the first code prompt without an answer.
    disconnect: bool,
}

/// What one client run showed.
#[derive(Debug)]
pub struct SshRun {
    /// The client's exit status (0: logged in and the command exited 0).
    pub status: Option<i32>,
    pub stdout: String,
    /// The client's stderr: PAM's messages (keyboard-interactive
    /// instructions) and the client's own errors.
    pub stderr: String,
    /// Every prompt the askpass script answered, in order (the client adds
    /// `(user@host) ` in front of PAM's text).
    pub prompts: Vec<String>,
    /// sshd's log at the end of the run, for failure messages.
    pub server_log: String,
}

impl SshRun {
    /// Logged in and the command's output arrived.
    #[track_caller]
    pub fn assert_logged_in(&self) -> &Self {
        assert!(
            self.status == Some(0) && self.stdout.trim() == "hello",
            "login failed: {self:#?}"
        );
        self
    }

    /// Refused: no session, no output.
    #[track_caller]
    pub fn assert_refused(&self) -> &Self {
        assert!(
            self.status != Some(0) && !self.stdout.contains("hello"),
            "login was not refused: {self:#?}"
        );
        assert!(
            self.stderr.contains("Permission denied"),
            "no 'Permission denied': {self:#?}"
        );
        self
    }

    /// True when the user was shown `text`: PAM's messages reach the client
    /// as keyboard-interactive instructions, printed on stderr, or in front
    /// of the next prompt.
    pub fn shown(&self, text: &str) -> bool {
        self.stderr.contains(text) || self.prompts.iter().any(|p| p.contains(text))
    }

    /// True when a prompt containing `text` was answered.
    pub fn prompted(&self, text: &str) -> bool {
        self.prompts.iter().any(|p| p.contains(text))
    }
}

impl SshLogin<'_> {
    /// The password answer (default [`PASSWORD`]); `None`: no answer.
    pub fn password(mut self, p: Option<&str>) -> Self {
        self.password = p.map(str::to_string);
        self
    }
    /// The answer to the `n`th `Verification code` prompt (in call order;
    /// the last one repeats).
    pub fn code(mut self, c: &str) -> Self {
        self.codes.push(c.into());
        self
    }
    /// The answer to `Skip the code for logins from ADDRESS for N days?`.
    pub fn trust(mut self, answer: &str) -> Self {
        self.trust = Some(answer.into());
        self
    }
    /// The answer to the next `Verification code` prompt is the contents
    /// of `path`, waited for (up to 30 s) when the prompt comes: a code
    /// sent by email during the login.
    pub fn code_from_file(mut self, path: &std::path::Path) -> Self {
        self.codes.push(format!("@file:{}", path.display()));
        self
    }
    /// Lets the client try keyboard-interactive `n` times in the
    /// connection, as OpenSSH's default (3) does.
    pub fn tries(mut self, n: u32) -> Self {
        self.tries = n;
        self
    }
    /// Asks for a terminal (`-tt`), as an interactive login does.
    pub fn with_tty(mut self) -> Self {
        self.tty = true;
        self
    }
    /// The client goes away (is killed) at the first `Verification code`
    /// prompt after the codes given: a user who closes the terminal, or a
    /// guesser who reconnects rather than use up the tries.
    pub fn then_disconnect(mut self) -> Self {
        self.disconnect = true;
        self
    }
    /// Offer the client key first (`publickey`), then keyboard-interactive.
    pub fn with_key(mut self) -> Self {
        self.key = Some(self.server.client_key.clone());
        self
    }
    /// Offer the private key at `path` first (`publickey`), then
    /// keyboard-interactive.
    pub fn with_key_file(mut self, path: &Path) -> Self {
        self.key = Some(path.to_path_buf());
        self
    }

    /// Runs `ssh` (at most 60 s) and collects what it showed.
    pub fn run(self) -> SshRun {
        let n = self.server.runs.fetch_add(1, Ordering::SeqCst);
        let run_dir = self.server.dir.join(format!("run{n}"));
        std::fs::create_dir_all(&run_dir).expect("mkdir run");
        let write = |name: &str, text: &str| {
            std::fs::write(run_dir.join(name), format!("{text}\n")).expect("write answer");
        };
        if let Some(p) = &self.password {
            write("password", p);
        }
        for (i, c) in self.codes.iter().enumerate() {
            write(&format!("code.{i}"), c);
        }
        if let Some(t) = &self.trust {
            write("trust", t);
        }
        if self.disconnect {
            write("disconnect", "");
        }
        // Answers by prompt text; the nth code prompt gets code.n (or the
        // last one). No answer file: exit 1 (the client gives up).
        let askpass = run_dir.join("askpass");
        std::fs::write(
            &askpass,
            r#"#!/bin/sh
d=$(dirname "$0")
printf '%s\n' "$1" >> "$d/prompts"
case "$1" in
  *'Verification code'*)
    n=$(grep -c 'Verification code' "$d/prompts")
    f="$d/code.$((n - 1))"
    # The client (our parent) goes away instead of answering.
    if [ ! -e "$f" ] && [ -e "$d/disconnect" ]; then kill -KILL "$PPID"; exit 1; fi
    [ -e "$f" ] || f=$(ls "$d"/code.* 2>/dev/null | sort -t. -k2 -n | tail -n1)
    [ -n "$f" ] || exit 1
    # "@file:PATH": answer with PATH once it exists (a code sent meanwhile).
    case $(head -c 6 "$f") in
      @file:) p=$(sed 's/^@file://' "$f"); i=0
              while [ ! -s "$p" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
              exec cat "$p" ;;
    esac
    exec cat "$f" ;;
  *'Skip the code for logins from'*) [ -e "$d/trust" ] && exec cat "$d/trust" ;;
  *[Pp]assword*) [ -e "$d/password" ] && exec cat "$d/password" ;;
esac
exit 1
"#,
        )
        .expect("askpass");
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755))
            .expect("chmod askpass");

        let methods = if self.key.is_some() {
            "publickey,keyboard-interactive"
        } else {
            "keyboard-interactive"
        };
        let mut cmd = Command::new("setsid");
        cmd.args(["-w", "ssh", "-F", "/dev/null", "-p"])
            .arg(self.server.port.to_string())
            .args([
                "-o",
                &format!("PreferredAuthentications={methods}"),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=INFO",
                "-o",
                &format!("NumberOfPasswordPrompts={}", self.tries),
                "-o",
                "ConnectTimeout=10",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
            ]);
        if self.tty {
            cmd.arg("-tt");
        }
        if let Some(key) = &self.key {
            cmd.arg("-i").arg(key);
        } else {
            cmd.args(["-o", "PubkeyAuthentication=no"]);
        }
        cmd.arg(format!("{}@127.0.0.1", self.user))
            .arg(&self.command)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn ssh");
        let out = wait_with_timeout(child, Duration::from_secs(60));
        let prompts = std::fs::read_to_string(run_dir.join("prompts"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        SshRun {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            prompts,
            server_log: self.server.log(),
        }
    }
}

/// `wait_with_output`, killing the child after `timeout`.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> std::process::Output {
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !flag.load(Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let (mut o, mut e) = (child.stdout.take(), child.stderr.take());
    let err_reader = std::thread::spawn(move || {
        if let Some(e) = e.as_mut() {
            let _ = e.read_to_end(&mut stderr);
        }
        stderr
    });
    if let Some(o) = o.as_mut() {
        let _ = o.read_to_end(&mut stdout);
    }
    let stderr = err_reader.join().unwrap_or_default();
    let status = child.wait().expect("wait ssh");
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// The built CLI, `target/<profile>/otpgate` (built once per test binary
/// with `cargo build -p otpgate`, like [`crate::module`]).
pub fn otpgate_cli() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "otpgate", "--manifest-path"])
            .arg(&manifest);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("cargo build -p otpgate: {s}")),
            Err(e) => Err(format!("cargo build -p otpgate: {e}")),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    crate::target_dir().join("otpgate")
}

/// `otpgate --config <harness config> enroll --user USER --secret SECRET
/// --no-confirm --json`: the provisioning path. Returns the backup codes.
pub fn enroll_with_cli(h: &Harness, user: &str, secret: &str) -> Vec<String> {
    let out = Command::new(otpgate_cli())
        .arg("--config")
        .arg(h.config_path())
        .args([
            "enroll",
            "--user",
            user,
            "--secret",
            secret,
            "--no-confirm",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run otpgate");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "otpgate enroll: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // {"user":..., "backup_codes":["1234", ...]}: the codes are the only
    // list in the object.
    let list = text
        .split_once("\"backup_codes\":")
        .and_then(|(_, rest)| rest.split_once('['))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(inner, _)| inner)
        .unwrap_or_else(|| panic!("no backup_codes in {text}"));
    list.split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .filter(|c| !c.is_empty())
        .collect()
}
