//! Writing what the user asked for: JSON on stdout, new files with mode
//! 0600 that never follow a symlink or overwrite anything.

use std::io::Write;
use std::path::Path;

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
/// 0600 through the library's checked open and writes `bytes` to it.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let rules = Rules::any_regular_file();
    let mut file = secure_open::open(Location::path(path), Access::CreateNew, &rules)?.into_file();
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            CliError::Output {
                path: path.to_path_buf(),
                action: "write",
                source: e,
            }
        })
}
