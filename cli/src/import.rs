//! `otpgate import google-authenticator`: turns a `~/.google_authenticator`
//! file into an otpgate enrollment, so the user keeps their app and their
//! scratch codes.
//!
//! The file: the base32 secret on the first line, then option lines
//! starting with `" ` (`TOTP_AUTH`, `HOTP_COUNTER n`, `WINDOW_SIZE n`,
//! `STEP_SIZE n`, `RATE_LIMIT n m [times...]`, `DISALLOW_REUSE [steps...]`),
//! then one scratch code per line.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use otpgate_config::UserRecord;
use otpgate_config::identity::{FsIdentity, with_identity};
use otpgate_config::import::{GaFile, parse_google_authenticator};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::ImportArgs;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::output;

/// google-authenticator's own limit is 1 KiB; leave room for long lists.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Reads the file with the user's file-system identity (a root process
/// must not follow a symlink the user planted), refusing symlinks, other
/// owners and special files.
fn read_file(ctx: &Context, path: &Path) -> Result<Zeroizing<String>> {
    read_file_as(ctx, path, Some(&FsIdentity::of(&ctx.account)))
}

/// [`read_file`] with the given identity (`None`: the process's own).
pub(crate) fn read_file_as(
    ctx: &Context,
    path: &Path,
    id: Option<&FsIdentity>,
) -> Result<Zeroizing<String>> {
    let uid = ctx.account.uid;
    let text = with_identity(id, || {
        use otpgate_config::Error;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(nix::libc::ELOOP) => Error::Symlink { path: path.into() },
                _ => Error::io(path, "open", e),
            })?;
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        if !meta.is_file() {
            return Err(Error::NotRegular {
                path: path.into(),
                kind: "special file",
            });
        }
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(Error::WrongOwner {
                path: path.into(),
                owner: meta.uid(),
                expected: vec![uid, 0],
            });
        }
        let mut bytes = Zeroizing::new(Vec::new());
        File::take(file, MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, "read", e))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(Error::TooLarge {
                path: path.into(),
                size: bytes.len() as u64,
                limit: MAX_FILE_BYTES,
            });
        }
        Ok(bytes)
    })?;
    let text = std::str::from_utf8(&text).map_err(|_| CliError::BadImport {
        file: path.into(),
        message: "not text".into(),
    })?;
    Ok(Zeroizing::new(text.to_string()))
}

#[derive(Serialize)]
pub(crate) struct ImportJson<'a> {
    pub user: &'a str,
    pub file: String,
    pub method: &'static str,
    pub backup_codes_left: usize,
    pub notes: &'a [String],
}

/// Saves an imported record: over an existing enrollment only with a
/// current code (or root's `--force`), a first one after the password
/// check. Returns the method's name and the backup codes it holds.
pub(crate) fn store(
    ctx: &mut Context,
    force: bool,
    record: UserRecord,
) -> Result<(&'static str, usize)> {
    let existing = ctx.file.read()?;
    ctx.may_replace(existing.is_some(), force)?;
    if crate::password::needed(ctx, existing.is_some()) {
        crate::password::confirm(ctx)?;
    }
    let method = if record.hotp.is_some() {
        "hotp"
    } else {
        "totp"
    };
    let left = record.backup.codes.len();
    crate::enroll::save(ctx, existing.is_some(), record)?;
    Ok((method, left))
}

pub fn google_authenticator(ctx: &mut Context, args: &ImportArgs) -> Result<()> {
    if args.force {
        ctx.require_root("--force")?;
    }
    let path: PathBuf = args
        .file
        .clone()
        .unwrap_or_else(|| ctx.account.home.join(".google_authenticator"));
    let text = read_file(ctx, &path)?;
    let GaFile { record, notes } = parse_google_authenticator(&path, &text)?;
    let (method, left) = store(ctx, args.force, record)?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    if ctx.json {
        return output::print_json(&ImportJson {
            user: &ctx.account.name,
            file: ctx.file.path().display().to_string(),
            method,
            backup_codes_left: left,
            notes: &notes,
        });
    }
    println!(
        "Imported {} for {} ({}, {left} scratch codes as backup codes); saved to {}.",
        path.display(),
        ctx.account.name,
        method.to_uppercase(),
        ctx.file.path().display()
    );
    println!(
        "The authenticator app keeps working. Once pam.d uses pam_otpgate.so instead of \
         pam_google_authenticator.so, {} can be deleted.",
        path.display()
    );
    Ok(())
}
