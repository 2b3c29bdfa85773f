//! Who is enrolled, kept where neither the user nor a missing mount can
//! take it away (docs/ARCHITECTURE.md, "The enrolled registry").
//!
//! A user file in the home can vanish without anyone deciding so: a home
//! that is not mounted yet (ecryptfs, systemd-homed, pam_mount, autofs), an
//! empty bind mount over it, a `~/.config` moved away. Read alone, each
//! looks like "not enrolled", and under `policy.require = "enrolled"` that
//! lets the password alone in. So root keeps one empty file per enrolled
//! user in `enrolled_dir`: a missing user file with an entry is
//! "unavailable" (deny), not "not enrolled".
//!
//! Only root writes here (the module at a login, the CLI as root); any
//! process can ask whether a name is in it (the directory is 0711: its
//! entries can be tested by name, not listed).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

use crate::error::{Error, Result};
use crate::secure_open::{self, Access, DirAccess, Location, Rules};

/// The registry's default place, in the system config's `enrolled_dir`.
pub const DEFAULT_DIR: &str = "/var/lib/otpgate/enrolled";

/// The registry entry of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    dir: PathBuf,
    user: String,
}

impl Registry {
    /// `user`'s entry in the registry at `dir` (absolute). The name is the
    /// passwd entry's; one that cannot be a file name is refused.
    pub fn new(dir: &Path, user: &str) -> Result<Self> {
        let plain = !user.is_empty()
            && user != "."
            && user != ".."
            && user.len() <= 255
            && !user.contains(['/', '\0']);
        if !plain {
            return Err(Error::Invalid {
                source: "enrolled registry".into(),
                key: "user".into(),
                message: format!("{user:?} cannot name a registry entry"),
            });
        }
        Ok(Registry {
            dir: dir.to_path_buf(),
            user: user.to_string(),
        })
    }

    /// The user the entry is for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The entry's path, for messages.
    pub fn entry_path(&self) -> PathBuf {
        self.dir.join(&self.user)
    }

    /// Whether the user is recorded as enrolled. Works for any process:
    /// only the directory's search permission is needed.
    pub fn contains(&self) -> Result<bool> {
        let Some(dir) = self.open_dir(DirAccess::Search)? else {
            return Ok(false);
        };
        match fstatat(&dir, self.user.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG => {
                Ok(true)
            }
            Ok(_) => Err(Error::NotRegular {
                path: self.entry_path(),
                kind: "not a regular file",
            }),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::errno(self.entry_path(), "stat", e)),
        }
    }

    /// Records the user as enrolled (root only; elsewhere nothing happens,
    /// and the next root login records it). Creating the entry is made
    /// durable; finding it present costs one `fstatat`.
    pub fn add(&self) -> Result<()> {
        if !running_as_root() {
            return Ok(());
        }
        let dir = match self.open_dir(DirAccess::Read)? {
            Some(dir) => dir,
            None => self.create_dir()?,
        };
        if fstatat(&dir, self.user.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
            return Ok(());
        }
        let path = self.entry_path();
        let at = Location::in_dir(dir.as_fd(), &self.user, &path);
        secure_open::open(at, Access::ReadWriteOrCreate, &Rules::any_regular_file())?;
        fsync(&dir).map_err(|e| Error::errno(&self.dir, "fsync directory", e))
    }

    /// Removes the entry (root only); `true` when there was one.
    pub fn remove(&self) -> Result<bool> {
        if !running_as_root() {
            return Ok(false);
        }
        let Some(dir) = self.open_dir(DirAccess::Read)? else {
            return Ok(false);
        };
        match unlinkat(&dir, self.user.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {}
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(Error::errno(self.entry_path(), "remove", e)),
        }
        fsync(&dir).map_err(|e| Error::errno(&self.dir, "fsync directory", e))?;
        Ok(true)
    }

    /// Opens the registry directory without following a symlink at its
    /// name and checks it is root's and writable by root alone (whoever
    /// could write it could remove anyone's entry). `None`: it does not
    /// exist yet (nobody was recorded).
    fn open_dir(&self, access: DirAccess) -> Result<Option<OwnedFd>> {
        secure_open::open_dir(Location::path(&self.dir), access, false, &[0])
    }

    /// Creates the directory (parents 0755, itself 0711) and opens it.
    fn create_dir(&self) -> Result<OwnedFd> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Some(parent) = self.dir.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| Error::io(parent, "create directory", e))?;
        }
        match std::fs::DirBuilder::new().mode(0o711).create(&self.dir) {
            Ok(()) => {
                // The umask may have taken bits away: 0711 lets a process
                // that is not root test a name.
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o711))
                    .map_err(|e| Error::io(&self.dir, "chmod directory", e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&self.dir, "create directory", e)),
        }
        self.open_dir(DirAccess::Read)?.ok_or_else(|| {
            Error::io(
                &self.dir,
                "open directory",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_file_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(
                Registry::new(Path::new("/x"), bad).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(Registry::new(Path::new("/x"), "alice").is_ok());
    }

    #[test]
    fn a_missing_registry_contains_nobody() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Registry::new(&tmp.path().join("none"), "alice").unwrap();
        assert!(!r.contains().unwrap());
    }

    #[test]
    fn a_registry_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("enrolled");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o733)).unwrap();
        let r = Registry::new(&dir, "alice").unwrap();
        let err = r.contains().unwrap_err();
        // As root the mode is what is wrong; as anyone else the owner is.
        assert!(
            matches!(err, Error::BadMode { .. } | Error::WrongOwner { .. }),
            "{err}"
        );
    }

    #[test]
    fn root_adds_tests_and_removes_an_entry() {
        if otpgate_test_support::require_root().is_none() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lib/enrolled");
        let r = Registry::new(&dir, "alice").unwrap();
        r.add().unwrap();
        r.add().unwrap();
        assert!(r.contains().unwrap());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o711);
        assert!(r.remove().unwrap());
        assert!(!r.remove().unwrap());
        assert!(!r.contains().unwrap());
    }
}
