//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use otpgate_config::otp::{Algorithm, Secret};
use otpgate_config::{Account, StoreExt, UserFile, UserRecord};

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

pub fn secret() -> Secret {
    Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap()
}

pub fn totp_record() -> UserRecord {
    UserRecord::new_totp(secret(), Algorithm::SHA1, 6, 30)
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

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// In CI a missing prerequisite fails the test; elsewhere it is skipped
/// with a message saying why.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {why}");
    }
    eprintln!("SKIP: {why}");
}

pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
