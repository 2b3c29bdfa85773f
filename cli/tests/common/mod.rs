//! Helpers for running the built `otpgate` against a temporary config whose
//! user files live in a temporary root-owned directory (central storage).
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use otpgate_test_support::{SystemUser, TEST_USER, is_root, require, require_tool, test_user};

pub const BIN: &str = env!("CARGO_BIN_EXE_otpgate");
/// The RFC 6238 test secret, base32 (the ASCII of "12345678901234567890").
pub const SECRET: &str = otpgate_test_support::TEST_SECRET_BASE32;
/// An existing account every Debian system has; its files go to the
/// temporary central storage, never its home.
pub const USER: &str = "nobody";

/// A temporary system: a config (with `extra` lines) and its store.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub store: PathBuf,
}

impl Env {
    /// `None` (after SKIP) unless root and oathtool are there: central
    /// storage needs a root-owned directory.
    pub fn new(extra: &str) -> Option<Env> {
        require(
            is_root(),
            "the CLI tests need root (central storage is root's)",
        )?;
        require_tool("oathtool", "oathtool")?;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "user_file = \"{}/%u.toml\"\ntotp_window = 3\nissuer = \"Test\"\n{extra}",
                store.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        Some(Env { dir, config, store })
    }

    /// The user file of `user`.
    pub fn user_file(&self, user: &str) -> PathBuf {
        self.store.join(format!("{user}.toml"))
    }

    /// Runs `otpgate --config CONFIG ARGS` with `stdin` piped in.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut all = vec!["--config", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        run(BIN, &all, stdin)
    }

    /// `otpgate --user nobody ARGS` with `stdin`.
    /// A directory `nobody` owns, for the files root writes for it
    /// (`--backup-codes-file`, `--qr-*` are created as the target user).
    pub fn user_dir(&self) -> PathBuf {
        let out = self.dir.path().join("out");
        if !out.exists() {
            std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o711))
                .unwrap();
            std::fs::create_dir(&out).unwrap();
            let nobody = otpgate_config::Account::lookup(USER).unwrap();
            std::os::unix::fs::chown(&out, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
        out
    }

    pub fn user(&self, args: &[&str], stdin: &str) -> Run {
        let mut all = vec!["--user", USER];
        all.extend_from_slice(args);
        self.run(&all, stdin)
    }

    /// Enrolls `nobody` with [`SECRET`] without confirmation; returns the
    /// backup codes.
    pub fn provision(&self) -> Vec<String> {
        let r = self.user(
            &["enroll", "--secret", SECRET, "--no-confirm", "--json"],
            "",
        );
        r.ok();
        r.json()["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// One finished command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\n{self}");
        self
    }

    #[track_caller]
    pub fn fails(&self, code: i32, stderr_has: &str) -> &Self {
        assert_eq!(self.code, code, "wrong exit status\n{self}");
        assert!(
            self.stderr.contains(stderr_has),
            "stderr lacks {stderr_has:?}\n{self}"
        );
        let reasons: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("otpgate:"))
            .collect();
        assert_eq!(reasons.len(), 1, "one reason line expected\n{self}");
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn run(program: &str, args: &[&str], stdin: &str) -> Run {
    run_command(Command::new(program).args(args), stdin)
}

pub fn run_command(cmd: &mut Command, stdin: &str) -> Run {
    let mut child = cmd
        .env_remove("COLORFGBG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before reading (a refusal): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TOTP code of `secret` at unix time `at`, from oathtool (an
/// independent implementation).
pub fn oathtool_at(secret: &str, at: u64) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{at}"), secret])
        .output()
        .unwrap();
    assert!(out.status.success(), "oathtool failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The code `steps` periods of 30 s from now. The test config accepts
/// three steps either side, so codes taken in increasing order all pass.
pub fn code(secret: &str, steps: i64) -> String {
    let at = now() as i64 + steps * 30;
    oathtool_at(secret, at as u64)
}

pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Decodes a QR code drawn with half blocks (`▀▄█` and spaces), trying both
/// colourings. Returns the text it holds.
pub fn decode_half_blocks(text: &str) -> Option<String> {
    let lines: Vec<Vec<char>> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && l.chars().all(|c| " ▀▄█".contains(c)))
        .map(|l| l.chars().collect())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let width = lines.iter().map(Vec::len).max()?;
    let mut modules = vec![vec![false; width]; lines.len() * 2];
    for (row, line) in lines.iter().enumerate() {
        for (x, c) in line.iter().enumerate() {
            let (top, bottom) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            modules[row * 2][x] = top;
            modules[row * 2 + 1][x] = bottom;
        }
    }
    [true, false]
        .into_iter()
        .find_map(|block_is_dark| decode_modules(&modules, block_is_dark))
}

/// Decodes a module grid (true = block drawn), with a white margin added.
pub fn decode_modules(modules: &[Vec<bool>], set_is_dark: bool) -> Option<String> {
    const SCALE: usize = 4;
    const MARGIN: usize = 8;
    let h = modules.len();
    let w = modules.first()?.len();
    let (pw, ph) = ((w + 2 * MARGIN) * SCALE, (h + 2 * MARGIN) * SCALE);
    let mut img = rqrr::PreparedImage::prepare_from_bitmap(pw, ph, |x, y| {
        let (mx, my) = (
            (x / SCALE).wrapping_sub(MARGIN),
            (y / SCALE).wrapping_sub(MARGIN),
        );
        if mx >= w || my >= h {
            return false;
        }
        modules[my][mx] == set_is_dark
    });
    let grids = img.detect_grids();
    grids.first()?.decode().ok().map(|(_, text)| text)
}

/// A temporary config readable by every user (root's, 0644, in a 0755
/// directory), for commands run as [`TEST_USER`].
pub struct HomeEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub user: SystemUser,
}

impl HomeEnv {
    /// `user_file` is the template to use (`None`: the default
    /// `~/.config/otpgate/user.toml`); `extra` more config lines.
    pub fn new(user_file: Option<&str>, extra: &str) -> Option<HomeEnv> {
        require_tool("oathtool", "oathtool")?;
        let user = test_user()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.toml");
        let user_file = user_file
            .map(|t| format!("user_file = \"{t}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "{user_file}enrolled_dir = \"{}\"\ntotp_window = 3\nissuer = \"Test\"\n{extra}",
                dir.path().join("enrolled").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        Some(HomeEnv { dir, config, user })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Root's record of who is enrolled, private to this config.
    pub fn enrolled_dir(&self) -> PathBuf {
        self.path("enrolled")
    }

    /// `otpgate --config CONFIG ARGS` as [`TEST_USER`] (uid, gid, no
    /// supplementary groups, HOME), with `env` added.
    pub fn run_as_user(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
        self.run_as_user_with(&self.config, args, stdin, env)
    }

    /// [`HomeEnv::run_as_user`] with another `--config`.
    pub fn run_as_user_with(
        &self,
        config: &Path,
        args: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(config).args(args);
        std::os::unix::process::CommandExt::uid(&mut cmd, self.user.uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, self.user.gid);
        cmd.env("HOME", &self.user.home)
            .env("USER", &self.user.name)
            .env("LOGNAME", &self.user.name)
            .current_dir("/");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_command(&mut cmd, stdin)
    }

    /// `otpgate --config CONFIG --user otpgate-test ARGS` as root.
    pub fn run_as_root(&self, args: &[&str], stdin: &str) -> Run {
        let mut all = vec![
            "--config",
            self.config.to_str().unwrap(),
            "--user",
            TEST_USER,
        ];
        all.extend_from_slice(args);
        run(BIN, &all, stdin)
    }
}

/// A unique directory name for one test's files in the test user's home.
pub fn unique_name(test: &str) -> String {
    format!(".otpgate-cli-test-{test}-{}", std::process::id())
}

/// Where pam_wrapper and pam_matrix are (Debian libpam-wrapper), or `None`
/// after SKIP.
pub fn pam_matrix() -> Option<PathBuf> {
    let module = PathBuf::from("/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so");
    let wrapper = Path::new("/usr/lib/x86_64-linux-gnu/libpam_wrapper.so");
    require(
        module.exists() && wrapper.exists(),
        "pam_wrapper is not installed (Debian libpam-wrapper)",
    )?;
    Some(module)
}
