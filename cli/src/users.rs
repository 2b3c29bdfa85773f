//! `otpgate users`: who is enrolled, how, and who is locked out (root).
//! With the daemon store the list is every record otpgated holds — on a
//! fleet sharing one database, every host gives the same list. With the
//! file store it is every user with a file (`store import --all` finds
//! them the same way).

use otpgate_config::record::View;
use otpgate_config::remote::Daemon;
use otpgate_config::service::Service;
use otpgate_config::system::StoreKind;
use otpgate_config::{Account, Store, SystemConfig, UserFile};
use serde::Serialize;

use crate::error::{CliError, Result};
use crate::output;
use crate::time::format_local;

/// One user's line.
#[derive(Serialize)]
struct UserJson {
    user: String,
    /// "totp" or "hotp", "email", "sms", "backup" (codes left).
    methods: Vec<&'static str>,
    backup_codes_left: usize,
    failures: u32,
    /// Unix time the lockout ends; null when not locked.
    locked_until: Option<u64>,
}

/// A record that could not be read: the name and why.
#[derive(Serialize)]
struct Unreadable {
    user: String,
    error: String,
}

#[derive(Serialize)]
struct UsersJson {
    store: String,
    users: Vec<UserJson>,
    unreadable: Vec<Unreadable>,
}

pub fn run(config: &SystemConfig, json: bool, now: u64) -> Result<()> {
    if !nix::unistd::getuid().is_root() {
        return Err(CliError::NotPermitted("users needs root".into()));
    }
    let (store, names) = match config.store.kind {
        StoreKind::Daemon => {
            let daemon = Daemon::new(config, "root");
            (daemon.describe(), daemon.users()?)
        }
        StoreKind::Files => (
            config.user_file.clone(),
            crate::store_import::every_user(config),
        ),
    };
    let mut list = UsersJson {
        store,
        users: Vec::new(),
        unreadable: Vec::new(),
    };
    for name in names {
        match view_of(config, &name) {
            Ok(Some(view)) => list.users.push(UserJson::of(name, &view, now)),
            Ok(None) => {}
            Err(e) => list.unreadable.push(Unreadable {
                user: name,
                error: e.to_string(),
            }),
        }
    }
    if json {
        return output::print_json(&list);
    }
    print_table(&list);
    Ok(())
}

/// `name`'s record without secrets, from where logins read it.
pub(crate) fn view_of(config: &SystemConfig, name: &str) -> otpgate_config::Result<Option<View>> {
    match config.store.kind {
        StoreKind::Daemon => Daemon::new(config, name).view(),
        StoreKind::Files => {
            let account = Account::lookup(name)?;
            let record = UserFile::for_account(config, &account)?.read()?;
            Ok(record.as_ref().map(View::of))
        }
    }
}

impl UserJson {
    fn of(user: String, view: &View, now: u64) -> UserJson {
        let r = &view.record;
        UserJson {
            user,
            methods: view.methods(),
            backup_codes_left: r.backup.codes.len(),
            failures: r.state.failures,
            locked_until: r.locked_until(now),
        }
    }
}

fn print_table(list: &UsersJson) {
    println!("{:<24} {:<22} {:>6}  LOCKED", "USER", "METHODS", "BACKUP");
    for u in &list.users {
        let locked = match u.locked_until {
            Some(until) => format!("until {}", format_local(until)),
            None => "no".into(),
        };
        println!(
            "{:<24} {:<22} {:>6}  {locked}",
            u.user,
            u.methods.join(","),
            u.backup_codes_left
        );
    }
    for u in &list.unreadable {
        println!("{:<24} cannot be read: {}", u.user, u.error);
    }
    println!("{} enrolled ({})", list.users.len(), list.store);
}
