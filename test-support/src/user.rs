//! The one real system user tests may create.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{is_root, require};

/// The one real system user tests may create (the CLI tests and the
/// end-to-end tests share it): unprivileged, no password, no login shell.
pub const TEST_USER: &str = "otpgate-test";

/// A real, unprivileged account, for tests that cannot fake one (the CLI
/// run as a user; hostile paths as root against a real user's home).
#[derive(Debug, Clone)]
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// [`TEST_USER`], created with `useradd` when missing (a system account
/// with its own group, home `/home/otpgate-test`, shell nologin). Its home
/// exists, is the user's and has mode 0700; its contents are kept, because
/// tests in parallel threads share it (each in a directory of its own), and
/// a test running alone empties it with [`SystemUser::empty_home`]. `None`
/// (after SKIP) when not root or when `useradd` fails.
pub fn test_user() -> Option<SystemUser> {
    let home = format!("/home/{TEST_USER}");
    let (account, created, guard) = system_account(TEST_USER, &home, "otpgate test user")?;
    let user = SystemUser {
        name: TEST_USER.into(),
        uid: account.uid,
        gid: account.gid,
        home: account.home,
    };
    user.assert_home_is_ours();
    if created {
        // A home left by an earlier otpgate-test holds files of a uid that
        // is no longer this user's: start from an empty one.
        let _ = std::fs::remove_dir_all(&user.home);
    }
    if std::fs::symlink_metadata(&user.home).is_err() {
        std::fs::create_dir_all(&user.home).expect("mkdir home");
    }
    user.own_home();
    drop(guard);
    Some(user)
}

/// The system account `name` (own group, no home created, shell nologin),
/// made with `useradd` when missing; never deleted. Returns it, whether
/// this call created it, and the creation lock, held until dropped so the
/// caller can finish setting it up. `None` (after SKIP) when not root or
/// `useradd` fails.
pub fn system_account(
    name: &str,
    home: &str,
    comment: &str,
) -> Option<(otpgate_config::Account, bool, std::fs::File)> {
    require(
        is_root(),
        &format!("the system user {name} needs root (useradd)"),
    )?;
    let lookup = || otpgate_config::Account::lookup(name).ok();
    // One creator at a time, across threads and test binaries: parallel
    // useradds on a fresh machine were seen to leave a uid behind that
    // /etc/passwd no longer names.
    let guard = std::fs::File::create(std::env::temp_dir().join(format!("{name}-user.lock")))
        .and_then(|f| f.lock().map(|()| f))
        .expect("the user's creation lock");
    let created = lookup().is_none();
    if created {
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", home, "--shell", "/usr/sbin/nologin"])
            .args(["--comment", comment, name])
            .status();
        // Another test binary may have created it meanwhile: this useradd
        // then fails, and the lookup finds it.
        if lookup().is_none() {
            require(false, &format!("useradd {name} failed: {status:?}"))?;
        }
    }
    Some((lookup()?, created, guard))
}

/// The pids listed (whitespace-separated) in `file` whose process still
/// exists (zombies count): what a test's hostile command left running.
pub fn alive_pids(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .map(String::from)
        .collect()
}

impl SystemUser {
    /// Removes everything in the home and recreates it (0700, the user's),
    /// so that no leftover of an earlier test counts: for tests that plant
    /// files there and run one at a time.
    pub fn empty_home(&self) {
        self.assert_home_is_ours();
        let _ = std::fs::remove_dir_all(&self.home);
        std::fs::create_dir_all(&self.home).expect("mkdir home");
        self.own_home();
    }

    /// Refuses to touch a home outside `/home` or the temp dir: an account
    /// of that name made by someone else is not ours to change.
    fn assert_home_is_ours(&self) {
        assert!(
            self.home.starts_with("/home/") || self.home.starts_with(std::env::temp_dir()),
            "{}'s home {} is neither under /home nor the temp dir: refusing to touch it",
            self.name,
            self.home.display()
        );
    }

    fn own_home(&self) {
        std::os::unix::fs::chown(&self.home, Some(self.uid), Some(self.gid)).expect("chown home");
        std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o700))
            .expect("chmod home");
    }
}
