//! `otpgate store import`: copies users' files from the file store
//! (`user_file`, in homes or central storage) into `otpgated`, state and
//! backup codes included (`Change::Adopt`). Idempotent: a record held
//! already is merged so that every code used in either copy stays used,
//! which is what makes "import, switch `store.kind`, import again" a switch
//! without a window in which a used code works again. The files are left
//! as they are.

use std::path::{Path, PathBuf};

use otpgate_config::change::{Change, Changed};
use otpgate_config::remote::Daemon;
use otpgate_config::service::Service;
use otpgate_config::{Account, Store, SystemConfig, UserFile};
use serde::Serialize;

use crate::cli::StoreImportArgs;
use crate::context::load_config;
use crate::error::{CliError, Result};
use crate::output;

/// What happened to one user's file.
#[derive(Debug, Serialize)]
struct Outcome {
    user: String,
    /// `moved`, `merged`, `no-file` or `refused`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

#[derive(Serialize)]
struct ImportJson<'a> {
    socket: &'a str,
    users: &'a [Outcome],
}

pub fn run(config: Option<&Path>, json: bool, args: &StoreImportArgs) -> Result<()> {
    if !nix::unistd::getuid().is_root() {
        return Err(CliError::NotPermitted("store import needs root".into()));
    }
    let config = load_config(config)?;
    let users = if args.all {
        every_user(&config)
    } else {
        args.users.clone()
    };
    let outcomes: Vec<Outcome> = users.iter().map(|u| import_one(&config, u)).collect();
    let refused = outcomes.iter().filter(|o| o.outcome == "refused").count();
    if json {
        output::print_json(&ImportJson {
            socket: &config.store.socket,
            users: &outcomes,
        })?;
    } else {
        report(&config, &outcomes);
    }
    match refused {
        0 => Ok(()),
        n => Err(CliError::ImportRefused(n)),
    }
}

/// One line per user, then the counts.
fn report(config: &SystemConfig, outcomes: &[Outcome]) {
    for o in outcomes {
        match o.detail.as_str() {
            "" => println!("{}: {}", o.user, o.outcome),
            detail => println!("{}: {} ({detail})", o.user, o.outcome),
        }
    }
    let count = |what: &str| outcomes.iter().filter(|o| o.outcome == what).count();
    println!(
        "{} moved, {} merged, {} without a file, {} refused; records are in otpgated at {}.",
        count("moved"),
        count("merged"),
        count("no-file"),
        count("refused"),
        config.store.socket
    );
}

/// Reads `name`'s file as a login with the file store would, and hands
/// the record to the daemon.
fn import_one(config: &SystemConfig, name: &str) -> Outcome {
    let outcome = |outcome, detail: String| Outcome {
        user: name.to_string(),
        outcome,
        detail,
    };
    let account = match Account::lookup(name) {
        Ok(account) => account,
        Err(e) => return outcome("refused", e.to_string()),
    };
    let read = UserFile::for_account(config, &account).and_then(|file| {
        let record = file.read()?;
        Ok((file.path().display().to_string(), record))
    });
    let (path, record) = match read {
        Ok((_, None)) => return outcome("no-file", String::new()),
        Ok((path, Some(record))) => (path, record),
        Err(e) => return outcome("refused", e.to_string()),
    };
    let change = Change::Adopt {
        record: Box::new(record),
    };
    // The daemon's clock decides; `now` is not used by an adoption.
    match Daemon::new(config, name).change(&change, 0) {
        Ok(Changed::Adopted { merged: false }) => outcome("moved", path),
        Ok(Changed::Adopted { merged: true }) => outcome(
            "merged",
            format!("{path}; held already, codes used in either copy stay used"),
        ),
        Ok(Changed::Conflict { why }) => outcome(
            "refused",
            format!(
                "{path}: otpgated holds {why} for this user; run `otpgate reset --user {name}` \
                 there first to take this file's"
            ),
        ),
        Ok(other) => outcome("refused", format!("unexpected outcome {other:?}")),
        Err(e) => outcome("refused", e.to_string()),
    }
}

/// Everyone who may have a file: root's enrolled record (in-home files),
/// the local accounts, and the files of a central `user_file` directory.
pub(crate) fn every_user(config: &SystemConfig) -> Vec<String> {
    let mut users = Vec::new();
    if config.user_file_in_home() && !config.enrolled_dir.is_empty() {
        users.extend(names_in(Path::new(&config.enrolled_dir), ""));
    }
    users.extend(local_accounts());
    if let Some((dir, suffix)) = central_pattern(&config.user_file) {
        users.extend(names_in(&dir, &suffix));
    }
    users.sort();
    users.dedup();
    users
}

/// The names in `dir` whose file names end with `suffix`, without it;
/// none when it cannot be read.
fn names_in(dir: &Path, suffix: &str) -> Vec<String> {
    otpgate_config::store::names_in(dir, suffix).unwrap_or_default()
}

/// `/var/lib/otpgate/%u.toml` → (`/var/lib/otpgate`, `.toml`); `None` for
/// files in homes or a `%u` not in the file name.
fn central_pattern(template: &str) -> Option<(PathBuf, String)> {
    let path = Path::new(template);
    let file = path.file_name()?.to_str()?;
    let (before, after) = file.split_once("%u")?;
    if !before.is_empty() || template.starts_with('~') || template.contains("%h") {
        return None;
    }
    let dir = path.parent()?;
    (!dir.to_string_lossy().contains('%')).then(|| (dir.to_path_buf(), after.to_string()))
}

/// Account names in /etc/passwd (accounts only a directory service knows
/// are found through root's enrolled record, or named on the command line).
fn local_accounts() -> Vec<String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_central_template_names_its_directory_and_suffix() {
        assert_eq!(
            central_pattern("/var/lib/otpgate/%u.toml"),
            Some((PathBuf::from("/var/lib/otpgate"), ".toml".into()))
        );
        assert_eq!(central_pattern("~/.config/otpgate/user.toml"), None);
        assert_eq!(central_pattern("/srv/%u/user.toml"), None);
        assert_eq!(central_pattern("%h/x/%u.toml"), None);
    }
}
