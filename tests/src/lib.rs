//! The harness of otpgate's end-to-end tests: a temp directory holding a
//! PAM service directory, a system config, central user files and a syslog
//! socket; the built `pam_otpgate.so`; `pam_driver` (real libpam through
//! `pam_start_confdir`, built by `build.rs`); and `oathtool` for codes from
//! an independent implementation.
//!
//! Nothing here touches `/etc/pam.d` or real users' files: the PAM user is
//! `root` (present everywhere), its file lives in the temp directory
//! (`user_file = "<tmp>/users/%u.toml"`, central storage), so the tests need
//! root, as CI has. A test whose tool or privilege is missing prints
//! `SKIP: <why>` and returns, or fails when `CI=true`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otpgate_config::UserRecord;
use otpgate_config::otp::{Algorithm, Secret};

pub mod certs;
pub mod channels;
pub mod daemon;
pub mod fleet;
pub mod postgres;
pub mod sshd;
pub mod standby;

// The helpers every suite shares, one `use otpgate_tests::*` away.
pub use otpgate_test_support::{
    FakeClock, SystemUser, TEST_USER, alive_pids, failing_fdatasync_library, need, require,
    require_root, require_tool, test_user, totp_record_with,
};

/// The PAM service our tests write for the module alone.
pub const SERVICE: &str = "otp-test";
/// pam_wrapper's test modules on Debian.
pub const PAM_WRAPPER_MODULES: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper";

/// The C driver built by build.rs.
pub fn driver() -> Option<PathBuf> {
    let path = env!("OTPGATE_PAM_DRIVER");
    require(
        !path.is_empty(),
        &format!(
            "pam_driver was not built (needs gcc and libpam0g-dev): {}",
            env!("OTPGATE_PAM_DRIVER_ERROR")
        ),
    )?;
    Some(PathBuf::from(path))
}

/// `target/<profile>`, where this test binary lives (`.../deps/..`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps")
        .to_path_buf()
}

/// Builds `package` with this test binary's profile, once per test
/// binary and package: `cargo test` does not build cdylibs or binaries of
/// other packages.
fn build_once(package: &'static str) {
    static BUILT: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.contains(&package) {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--manifest-path"])
        .arg(&manifest);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    match cmd.status() {
        Ok(s) if s.success() => built.push(package),
        Ok(s) => panic!("cargo build -p {package}: {s}"),
        Err(e) => panic!("cargo build -p {package}: {e}"),
    }
}

/// The built module, `target/<profile>/libpam_otpgate.so`, built on first
/// use.
pub fn module() -> PathBuf {
    build_once("pam-module");
    let so = target_dir().join("libpam_otpgate.so");
    assert!(so.exists(), "{} missing after the build", so.display());
    so
}

/// The built command, `target/<profile>/otpgate`, built on first use.
pub fn otpgate_binary() -> PathBuf {
    build_once("otpgate");
    let bin = target_dir().join("otpgate");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// The built daemon, `target/<profile>/otpgated`, built on first use.
pub fn otpgated_binary() -> PathBuf {
    build_once("otpgated");
    let bin = target_dir().join("otpgated");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// Seconds since 1970.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Waits, when needed, so that the next 3 seconds stay inside one 30-second
/// TOTP step: tests that compare "one step old" with "now" then cannot
/// straddle a step boundary.
pub fn avoid_step_edge() {
    let into = now() % 30;
    if into >= 27 {
        std::thread::sleep(Duration::from_secs(31 - into));
    }
}

/// A fresh random 160-bit secret, base32.
pub fn new_secret() -> String {
    Secret::generate(20)
        .expect("randomness")
        .to_base32()
        .to_string()
}

fn oathtool(args: &[&str]) -> String {
    let out = Command::new("oathtool")
        .args(args)
        .output()
        .expect("oathtool runs");
    assert!(
        out.status.success(),
        "oathtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// The TOTP code of `secret` (base32) at Unix time `at`, by oathtool.
pub fn totp_at(secret: &str, at: u64) -> String {
    oathtool(&["--totp", "-b", "-N", &format!("@{at}"), secret])
}

/// A TOTP code with another hash (`sha1`, `sha256`, `sha512`) and length.
pub fn totp_with(secret: &str, algorithm: &str, digits: u8, at: u64) -> String {
    oathtool(&[
        &format!("--totp={algorithm}"),
        "-d",
        &digits.to_string(),
        "-b",
        "-N",
        &format!("@{at}"),
        secret,
    ])
}

/// The HOTP code of `secret` (base32) for `counter`, by oathtool.
pub fn hotp(secret: &str, counter: u64) -> String {
    oathtool(&["--hotp", "-b", "-c", &counter.to_string(), secret])
}

/// One answer for the driver's script.
#[derive(Debug, Clone)]
pub enum Answer {
    Text(String),
    /// The contents of a file (large answers).
    File(PathBuf),
}

impl From<&str> for Answer {
    fn from(s: &str) -> Self {
        Answer::Text(s.to_string())
    }
}

impl From<String> for Answer {
    fn from(s: String) -> Self {
        Answer::Text(s)
    }
}

impl From<&String> for Answer {
    fn from(s: &String) -> Self {
        Answer::Text(s.clone())
    }
}

/// What one PAM run showed.
#[derive(Debug, Clone)]
pub struct Run {
    /// `PAM_SUCCESS`, `PAM_AUTH_ERR`...
    pub result: String,
    /// Every line the driver printed before the result (prompts, messages).
    pub lines: Vec<String>,
    pub stderr: String,
}

impl Run {
    /// The prompts, in order.
    pub fn prompts(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("PROMPT_ECHO_OFF ")
                    .or_else(|| l.strip_prefix("PROMPT_ECHO_ON "))
            })
            .collect()
    }

    /// Error and info messages, in order.
    pub fn messages(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("ERROR_MSG ")
                    .or_else(|| l.strip_prefix("TEXT_INFO "))
            })
            .collect()
    }

    /// The PAM environment variable `name` after the run.
    pub fn env(&self, name: &str) -> Option<&str> {
        let prefix = format!("ENV {name}=");
        self.lines.iter().find_map(|l| l.strip_prefix(&prefix))
    }

    /// Panics with the whole transcript unless the result is `want`.
    #[track_caller]
    pub fn assert(&self, want: &str) -> &Self {
        assert_eq!(self.result, want, "transcript: {self:#?}");
        self
    }
}

/// Removes the scratch directories pam_wrapper left in `/tmp` for
/// processes that are gone. It makes `/tmp/pam.<one character>` per
/// process and removes it when the process exits normally; an sshd child
/// that ends with `_exit` or a signal leaves it, and with a few dozen left
/// (there are 62 names) the next process's `pwrap_init` fails with "File
/// exists" and PAM reads the system's services instead. Only directories
/// of this user whose `pid` file names a process that no longer exists
/// are removed.
pub fn sweep_pam_wrapper_dirs() {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix("pam.")) else {
            continue;
        };
        let path = entry.path();
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        let pid = std::fs::read_to_string(path.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if suffix.len() == 1
            && ours
            && let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// `program` run under `wrapper` (an argv that ends by exec'ing the
/// arguments after its own, e.g. `unshare -m ...`); directly when empty.
pub fn command_inside(wrapper: &[String], program: &Path) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Runs `cmd` with `stdin` typed into it, capturing stdout and stderr.
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // A program that exits before reading everything is not an error.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}"))
}

/// A temp directory with a PAM service directory, a config, central user
/// files and a syslog socket; see the crate docs.
pub struct Harness {
    dir: tempfile::TempDir,
    pub module: PathBuf,
    pub driver: PathBuf,
    log: Syslog,
    /// Every log line received so far, for checks over a whole suite.
    journal: std::sync::Mutex<Vec<String>>,
    /// Environment for every driver run (nss_wrapper for fake users).
    driver_env: Vec<(String, String)>,
}

/// A user that exists only for the driver, through nss_wrapper
/// (`LD_PRELOAD=libnss_wrapper.so`), with a home in the temp dir.
#[derive(Debug, Clone)]
pub struct FakeUser {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

/// Where Debian's libnss-wrapper puts the library.
const NSS_WRAPPER: &str = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so";

/// Everything a process printed, stdout then stderr.
pub fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Harness {
    /// A harness whose system config is `user_file` (central, in the temp
    /// dir) plus `config`; `None` (after SKIP) when root, the driver or
    /// oathtool is missing.
    pub fn new(config: &str) -> Option<Harness> {
        require_root()?;
        let driver = driver()?;
        require_tool("oathtool", "oathtool")?;
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["", "pam.d", "users"] {
            let p = dir.path().join(sub);
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        let log = Syslog::bind(&dir.path().join("log.sock"));
        let h = Harness {
            module: module(),
            driver,
            dir,
            log,
            journal: std::sync::Mutex::new(Vec::new()),
            driver_env: Vec::new(),
        };
        h.write_config(config);
        Some(h)
    }

    /// Adds user `name` (uid = gid = `uid`, home `<tmp>/home/<name>` owned
    /// by it, mode 0700) and the groups `(name, gid)` it is a member of, for
    /// every later driver run. `None` (after SKIP) without libnss-wrapper.
    pub fn fake_user(&mut self, name: &str, uid: u32, groups: &[(&str, u32)]) -> Option<FakeUser> {
        require(
            Path::new(NSS_WRAPPER).exists(),
            "libnss_wrapper.so missing (Debian package libnss-wrapper)",
        )?;
        let homes = self.path("home");
        std::fs::create_dir_all(&homes).expect("mkdir home");
        std::fs::set_permissions(&homes, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // The temp dir itself must let the user reach its home.
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let home = homes.join(name);
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&home, Some(uid), Some(uid)).expect("chown home");
        let mut passwd = format!(
            "{name}:x:{uid}:{uid}:otpgate test:{}:/bin/sh\n",
            home.display()
        );
        passwd.push_str(&std::fs::read_to_string("/etc/passwd").unwrap_or_default());
        let mut group = format!("{name}:x:{uid}:\n");
        for (g, gid) in groups {
            group.push_str(&format!("{g}:x:{gid}:{name}\n"));
        }
        group.push_str(&std::fs::read_to_string("/etc/group").unwrap_or_default());
        let (p, g) = (self.path("passwd"), self.path("group"));
        std::fs::write(&p, passwd).expect("passwd");
        std::fs::write(&g, group).expect("group");
        self.driver_env = vec![
            ("LD_PRELOAD".into(), NSS_WRAPPER.into()),
            ("NSS_WRAPPER_PASSWD".into(), p.display().to_string()),
            ("NSS_WRAPPER_GROUP".into(), g.display().to_string()),
        ];
        Some(FakeUser {
            name: name.into(),
            uid,
            home,
        })
    }

    /// The environment every driver run gets (nss_wrapper once there is a
    /// fake user), for other programs that must see the same users.
    pub fn driver_env(&self) -> &[(String, String)] {
        &self.driver_env
    }

    /// Replaces the system config with exactly `text` (mode 0600).
    pub fn write_config_raw(&self, text: &str) {
        write_private(&self.config_path(), text.as_bytes());
    }

    /// Runs `cmd` under pam_wrapper, so that PAM reads this harness's
    /// services (`pam.d/`) instead of /etc/pam.d, typing `stdin` into it.
    pub fn run_wrapped(&self, cmd: &mut Command, stdin: &str) -> Output {
        cmd.env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", self.path("pam.d"));
        output_with_stdin(cmd, stdin)
    }

    /// A path inside the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// Replaces the system config (mode 0600) with `user_file` + `config`.
    pub fn write_config(&self, config: &str) {
        let text = format!(
            "user_file = \"{}/%u.toml\"\n{config}\n",
            self.path("users").display()
        );
        write_private(&self.config_path(), text.as_bytes());
    }

    /// Our module's arguments: `config=`, `syslog_socket=`, an
    /// `enrolled_dir=` of this harness's own (no test writes the system's)
    /// and `extra`.
    pub fn module_args(&self, extra: &str) -> String {
        format!(
            "config={} syslog_socket={} enrolled_dir={} {extra}",
            self.config_path().display(),
            self.path("log.sock").display(),
            self.enrolled_dir().display()
        )
    }

    /// Root's record of who is enrolled, for this harness's logins.
    pub fn enrolled_dir(&self) -> PathBuf {
        self.path("enrolled")
    }

    /// `auth <control> pam_otpgate.so <args> <extra>`.
    pub fn module_line(&self, control: &str, extra: &str) -> String {
        format!(
            "auth {control} {} {}",
            self.module.display(),
            self.module_args(extra)
        )
    }

    /// Writes the PAM service `name` with `lines`.
    pub fn service(&self, name: &str, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(self.path("pam.d").join(name), text).expect("write service");
    }

    /// The service [`SERVICE`]: our module alone, `required`, with `extra`
    /// arguments.
    pub fn otp_service(&self, extra: &str) {
        self.service(SERVICE, &[self.module_line("required", extra)]);
    }

    /// Where `user`'s file is.
    pub fn user_file(&self, user: &str) -> PathBuf {
        self.path("users").join(format!("{user}.toml"))
    }

    /// Writes `user`'s file (mode 0600).
    pub fn write_record(&self, user: &str, record: &UserRecord) {
        write_private(&self.user_file(user), record.to_toml().as_bytes());
    }

    /// Enrolls root with a fresh SHA-1, 6-digit TOTP secret; returns it.
    pub fn enroll(&self) -> String {
        let secret = new_secret();
        self.write_record("root", &totp_record_with(&secret, Algorithm::SHA1, 6));
        secret
    }

    /// Reads `user`'s record back as a login would: the file with the
    /// state file's login state laid over it.
    pub fn record(&self, user: &str) -> UserRecord {
        record_at(&self.user_file(user), user)
            .expect("read user file")
            .expect("enrolled")
    }

    /// A login of root on [`SERVICE`], to be completed and run.
    pub fn login(&self) -> Login<'_> {
        Login {
            h: self,
            service: SERVICE.into(),
            user: "root".into(),
            rhost: None,
            tty: None,
            answers: Vec::new(),
            env: Vec::new(),
            pam_env: Vec::new(),
            wrapper: Vec::new(),
            pam_dir: None,
        }
    }

    /// Log lines received since the last call.
    pub fn log(&self) -> Vec<String> {
        let lines = self.log.take();
        if let Ok(mut j) = self.journal.lock() {
            j.extend(lines.iter().cloned());
        }
        lines
    }

    /// Every log line this harness has received, including the ones
    /// [`Harness::log`] already returned.
    pub fn journal(&self) -> Vec<String> {
        self.log();
        self.journal.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// The files in the users directory, sorted, with their contents.
    pub fn users_snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(self.path("users"))
            .expect("read users")
            .filter_map(|e| e.ok())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let meta = std::fs::symlink_metadata(e.path()).expect("lstat");
                let content = if meta.is_file() {
                    std::fs::read(e.path()).unwrap_or_default()
                } else {
                    format!("{:?}", meta.file_type()).into_bytes()
                };
                (name, content)
            })
            .collect();
        out.sort();
        out
    }
}

/// The harness's syslog socket, drained every few milliseconds by a thread
/// of its own: the kernel queues at most `net.unix.max_dgram_qlen` (10 on
/// Debian) datagrams, and the module drops a line it cannot queue (it
/// never waits for a log), so a test that reads the log only after a few
/// logins would miss lines a syslog daemon would have read.
struct Syslog {
    socket: std::sync::Arc<UnixDatagram>,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    drainer: Option<std::thread::JoinHandle<()>>,
}

impl Syslog {
    fn bind(path: &Path) -> Syslog {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let socket = UnixDatagram::bind(path).expect("bind log socket");
        socket.set_nonblocking(true).expect("nonblocking");
        let socket = Arc::new(socket);
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (socket, received, stop) = (socket.clone(), received.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut lines) = received.lock() {
                        drain(&socket, &mut lines);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Syslog {
            socket,
            received,
            stop,
            drainer: Some(drainer),
        }
    }

    /// Every line received since the last call, in order.
    fn take(&self) -> Vec<String> {
        // The lock is held while draining (here and in the thread), so
        // lines keep their order.
        let Ok(mut lines) = self.received.lock() else {
            return Vec::new();
        };
        drain(&self.socket, &mut lines);
        std::mem::take(&mut *lines)
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(drainer) = self.drainer.take() {
            let _ = drainer.join();
        }
    }
}

/// Moves every datagram queued on `socket` into `lines`.
fn drain(socket: &UnixDatagram, lines: &mut Vec<String>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = socket.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

/// Writes `bytes` to `path` with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A PAM run being set up.
pub struct Login<'a> {
    h: &'a Harness,
    service: String,
    user: String,
    rhost: Option<String>,
    tty: Option<String>,
    answers: Vec<Answer>,
    env: Vec<(String, String)>,
    /// Variables put in the PAM environment before the operations (files
    /// holding their values, for the driver's `-F`).
    pam_env: Vec<(String, PathBuf)>,
    /// A command the driver runs under (its argv, the driver's appended).
    wrapper: Vec<String>,
    /// The PAM service directory (default: the harness's `pam.d`).
    pam_dir: Option<PathBuf>,
}

impl Login<'_> {
    /// Runs the driver under `wrapper` (e.g. `unshare -m ...`), which must
    /// end by exec'ing the arguments it is given after its own.
    pub fn inside(mut self, wrapper: &[String]) -> Self {
        self.wrapper = wrapper.to_vec();
        self
    }
    /// Reads the service from `dir` instead of the harness's `pam.d`
    /// (several "hosts" with a service of the same name).
    pub fn pam_dir(mut self, dir: &Path) -> Self {
        self.pam_dir = Some(dir.to_path_buf());
        self
    }

    pub fn service(mut self, name: &str) -> Self {
        self.service = name.into();
        self
    }
    pub fn user(mut self, name: &str) -> Self {
        self.user = name.into();
        self
    }
    pub fn rhost(mut self, rhost: &str) -> Self {
        self.rhost = Some(rhost.into());
        self
    }
    pub fn tty(mut self, tty: &str) -> Self {
        self.tty = Some(tty.into());
        self
    }
    /// The next answer to a prompt.
    pub fn answer(mut self, a: impl Into<Answer>) -> Self {
        self.answers.push(a.into());
        self
    }
    /// An environment variable for the driver (pam_set_items reads them).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Puts `name=value` in the PAM environment before the operations
    /// (`pam_putenv`), as sshd puts `SSH_AUTH_INFO_0` there. Any length:
    /// the value goes to the driver in a file.
    pub fn pam_env(mut self, name: &str, value: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.h.path(&format!("pam_env.{n}"));
        std::fs::write(&path, value).expect("write pam_env value");
        self.pam_env.push((name.into(), path));
        self
    }

    /// Runs `pam_authenticate`.
    pub fn run(self) -> Run {
        self.run_op("authenticate")
    }

    /// Runs one PAM operation (`authenticate`, `setcred`, `acct_mgmt`...).
    pub fn run_op(self, op: &str) -> Run {
        let mut runs = self.run_ops(&[op]);
        assert_eq!(runs.len(), 1, "one RESULT line expected: {runs:#?}");
        runs.remove(0)
    }

    /// Runs PAM operations in order on one handle, as an application that
    /// keeps its handle does; one [`Run`] each (the answers go on across
    /// them).
    pub fn run_ops(self, ops: &[&str]) -> Vec<Run> {
        let mut cmd = command_inside(&self.wrapper, &self.h.driver);
        let pam_dir = self.pam_dir.unwrap_or_else(|| self.h.path("pam.d"));
        cmd.arg("-c").arg(pam_dir);
        for op in ops {
            cmd.args(["-o", op]);
        }
        if let Some(r) = &self.rhost {
            cmd.args(["-r", r]);
        }
        if let Some(t) = &self.tty {
            cmd.args(["-t", t]);
        }
        for (name, path) in &self.pam_env {
            cmd.arg("-F").arg(format!("{name}={}", path.display()));
        }
        for a in &self.answers {
            match a {
                Answer::Text(t) => cmd.arg("-a").arg(t),
                Answer::File(p) => cmd.arg("-f").arg(p),
            };
        }
        cmd.arg(&self.service).arg(&self.user);
        cmd.envs(self.h.driver_env.iter().map(|(k, v)| (k, v)));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = cmd.stdin(Stdio::null()).output().expect("run pam_driver");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "pam_driver failed ({}): {stdout}{stderr}",
            out.status
        );
        let runs = split_runs(&stdout, &stderr);
        assert_eq!(runs.len(), ops.len(), "RESULT lines in {stdout}{stderr}");
        runs
    }
}

/// The driver's output cut after each `RESULT <code> <NAME>` line.
fn split_runs(stdout: &str, stderr: &str) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut lines = Vec::new();
    for line in stdout.lines() {
        match line.strip_prefix("RESULT ") {
            Some(rest) => {
                let result = rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_else(|| panic!("bad RESULT line in {stdout}{stderr}"))
                    .to_string();
                runs.push(Run {
                    result,
                    lines: std::mem::take(&mut lines),
                    stderr: stderr.to_string(),
                });
            }
            None => lines.push(line.to_string()),
        }
    }
    assert!(!runs.is_empty(), "no RESULT line in {stdout}{stderr}");
    runs
}

/// `user`'s record in central storage at `path`, read as a login reads it:
/// the file with the state file's login state laid over it.
pub fn record_at(path: &Path, user: &str) -> otpgate_config::Result<Option<UserRecord>> {
    let account = otpgate_config::Account::lookup(user)?;
    let store = otpgate_config::UserFile::new(path.to_path_buf(), &account, false)?;
    otpgate_config::Store::read(&store)
}

/// A record of two TOTP devices (SHA-1, 6 digits, 30 s): `phone` with
/// `first` and `key` with `second` (base32 secrets).
pub fn two_device_record(first: &str, second: &str) -> UserRecord {
    use otpgate_config::record::{Device, DeviceName};
    let mut record = totp_record_with(first, Algorithm::SHA1, 6);
    record.devices[0].name = DeviceName::parse("phone").expect("a name");
    record.devices.push(Device::totp(
        DeviceName::parse("key").expect("a name"),
        Secret::from_base32(second).expect("a base32 secret"),
        Algorithm::SHA1,
        6,
        30,
    ));
    record
}
