//! Helpers of this crate's integration tests; the ones every suite shares
//! (SKIP rules, test records) are in `otpgate-test-support`.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use otpgate_config::{Account, StoreExt, UserFile};
use otpgate_test_support::totp_record;

/// The account running the tests, as the owner of files they create.
pub fn me() -> Account {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    Account::for_tests("tester", uid, gid, "/nonexistent", &[])
}

/// A temp dir with mode 0700 (the default of tempfile is fine, but be explicit:
/// the store refuses group/other-writable directories).
pub fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A user file in `dir` owned by the test account, accessed as a home file.
pub fn home_file(dir: &Path) -> UserFile {
    UserFile::new(dir.join("user.toml"), &me(), true).unwrap()
}

/// Writes a valid record through the store and returns the file.
pub fn enrolled(dir: &Path) -> UserFile {
    let f = home_file(dir);
    f.update(|r| {
        *r = Some(totp_record());
        Ok(())
    })
    .unwrap();
    f
}

pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
