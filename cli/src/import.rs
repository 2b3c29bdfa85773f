//! `otpgate import google-authenticator`: turns a `~/.google_authenticator`
//! file into an otpgate enrollment, so the user keeps their app and their
//! scratch codes.
//!
//! The file: the base32 secret on the first line, then option lines
//! starting with `" ` (`TOTP_AUTH`, `HOTP_COUNTER n`, `WINDOW_SIZE n`,
//! `STEP_SIZE n`, `RATE_LIMIT n m [times...]`, `DISALLOW_REUSE [steps...]`),
//! then one scratch code per line.

use std::path::{Path, PathBuf};

use otpgate_config::UserRecord;
use otpgate_config::identity::{FsIdentity, with_identity};
use otpgate_config::import::{GaFile, parse_google_authenticator};
use otpgate_config::record::DeviceName;
use otpgate_config::secure_open::{self, Location, Rules};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::ImportArgs;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::output;

/// google-authenticator's own limit is 1 KiB; leave room for long lists.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What an imported file must be: the user's or root's, not a symlink, a
/// regular file, at most [`MAX_FILE_BYTES`], with none of the
/// `forbidden_mode` bits.
pub(crate) fn import_rules(ctx: &Context, forbidden_mode: u32) -> Rules {
    Rules {
        owners: Some(vec![ctx.account.uid, 0]),
        forbidden_mode,
        max_size: MAX_FILE_BYTES,
    }
}

/// Reads the file with the user's file-system identity (a root process
/// must not follow a symlink the user planted). pam_google_authenticator
/// refuses a secret file that group or others may access at all, so such a
/// file never worked as a second factor and is refused here too.
fn read_file(ctx: &Context, path: &Path) -> Result<Zeroizing<String>> {
    let rules = import_rules(ctx, 0o077);
    read_file_as(path, Some(&FsIdentity::of(&ctx.account)), &rules)
}

/// Reads `path` with the given identity (`None`: the process's own),
/// through the library's checked open.
pub(crate) fn read_file_as(
    path: &Path,
    id: Option<&FsIdentity>,
    rules: &Rules,
) -> Result<Zeroizing<String>> {
    Ok(with_identity(id, || {
        secure_open::read_text(Location::path(path), rules)
    })?)
}

#[derive(Serialize)]
pub(crate) struct ImportJson<'a> {
    pub user: &'a str,
    pub file: String,
    pub method: &'static str,
    /// The name of the imported device.
    pub device: &'a str,
    pub backup_codes_left: usize,
    pub notes: &'a [String],
}

/// Saves an imported record: over an existing enrollment only with a
/// current code (or root's `--force`), a first one after the password
/// check. Returns the method's name and the backup codes it holds.
pub(crate) fn store(
    ctx: &mut Context,
    force: bool,
    device: &str,
    mut record: UserRecord,
) -> Result<(&'static str, usize)> {
    // The imported app is one device, named as asked.
    let name = DeviceName::parse(device).map_err(CliError::BadDevice)?;
    for d in &mut record.devices {
        d.name = name;
    }
    let existing = ctx.service().view()?;
    ctx.may_replace(existing.is_some(), force)?;
    if crate::password::needed(ctx, existing.is_some()) {
        crate::password::confirm(ctx)?;
    }
    let method = if record.hotp().is_some() {
        "hotp"
    } else {
        "totp"
    };
    let left = record.backup.codes.len();
    crate::enroll::save_imported(ctx, existing.is_some(), record)?;
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
    let (method, left) = store(ctx, args.force, &args.device, record)?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    if ctx.json {
        return output::print_json(&ImportJson {
            user: &ctx.account.name,
            file: ctx.describe(),
            method,
            device: &args.device,
            backup_codes_left: left,
            notes: &notes,
        });
    }
    println!(
        "Imported {} for {} (device {}, {}, {left} scratch codes as backup codes); saved to {}.",
        path.display(),
        ctx.account.name,
        args.device,
        method.to_uppercase(),
        ctx.describe()
    );
    println!(
        "The authenticator app keeps working. Once pam.d uses pam_otpgate.so instead of \
         pam_google_authenticator.so, {} can be deleted.",
        path.display()
    );
    Ok(())
}
