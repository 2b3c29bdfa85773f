//! Writing what the user asked for: JSON on stdout, new files with mode
//! 0600 that never follow a symlink or overwrite anything.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
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
/// 0600 and writes `bytes` to it.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |action, source| CliError::Output {
        path: path.to_path_buf(),
        action,
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|e| fail("create", e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            fail("write", e)
        })
}
