//! Writing what the user asked for: JSON on stdout, new files with mode
//! 0600 that never follow a symlink or overwrite anything.

use std::io::Write;
use std::path::Path;

use otpgate_config::Account;
use otpgate_config::identity::{FsIdentity, with_identity};
use otpgate_config::secure_open::{self, Access, Location, Rules};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Prints `value` as one line of JSON. The text is wiped afterwards: it may
/// hold a secret or backup codes.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = Zeroizing::new(serde_json::to_string(value).map_err(CliError::Json)?);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.as_str())
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)
}

/// Creates `path` (which must not exist, not even as a symlink) with mode
/// 0600 through the library's checked open and writes `bytes` to it. The
/// file is created with `owner`'s file-system identity: root acting for a
/// user (`--user`) writes only where that user could, and the file is
/// theirs — a path the user chose (a symlinked directory into `/root`, say)
/// cannot make root leave a file holding their secret somewhere else.
pub fn write_new_file(path: &Path, bytes: &[u8], owner: &Account) -> Result<()> {
    create_new_file(path, owner)?.write(bytes)
}

/// A file [`create_new_file`] made, empty until written.
pub struct NewFile<'a> {
    file: std::fs::File,
    path: &'a Path,
    owner: &'a Account,
}

/// The creating half of [`write_new_file`]: the file is there (or the
/// error is) before anything it is for is saved.
pub fn create_new_file<'a>(path: &'a Path, owner: &'a Account) -> Result<NewFile<'a>> {
    let id = FsIdentity::of(owner);
    let rules = Rules::any_regular_file();
    let file = with_identity(Some(&id), || {
        secure_open::open(Location::path(path), Access::CreateNew, &rules).map(|o| o.into_file())
    })?;
    Ok(NewFile { file, path, owner })
}

impl NewFile<'_> {
    /// Writes `bytes` and flushes them to disk; on failure the file is
    /// removed.
    pub fn write(mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| {
                remove_written(self.path, self.owner);
                CliError::Output {
                    path: self.path.to_path_buf(),
                    action: "write",
                    source: e,
                }
            })
    }

    /// Removes the file again (what it was for was not saved).
    pub fn discard(self) {
        remove_written(self.path, self.owner);
    }
}

/// Removes a file [`write_new_file`] made for `owner`, with their identity
/// (a failed enrollment takes its backup-codes file back).
pub fn remove_written(path: &Path, owner: &Account) {
    let _ = with_identity(Some(&FsIdentity::of(owner)), || {
        let _ = std::fs::remove_file(path);
        Ok(())
    });
}
