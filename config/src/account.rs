//! Accounts from the passwd and group databases (through NSS, so LDAP and
//! sssd users work as local ones do).

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::unistd::{Gid, Group, User, getgrouplist};

use crate::error::{Error, Result};

/// The parts of a passwd entry otpgate uses, plus group membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Every group id the user is in, primary included; read from the
    /// group database on first use (most logins never need it), `None`
    /// when that database could not be read.
    groups: OnceLock<Option<Vec<u32>>>,
    /// Group names known up front (tests); otherwise names are resolved
    /// when a policy asks.
    names: Vec<String>,
}

impl Account {
    /// Looks `name` up. Names with `/` or NUL, and unknown names, are
    /// [`Error::UnknownUser`].
    pub fn lookup(name: &str) -> Result<Account> {
        let unknown = || Error::UnknownUser {
            name: name.to_string(),
        };
        if name.is_empty()
            || name.contains('/')
            || name.contains('\0')
            || name == "."
            || name == ".."
        {
            return Err(unknown());
        }
        let user = match User::from_name(name) {
            Ok(Some(user)) => user,
            Ok(None) => return Err(unknown()),
            // getpwnam_r(3): "0 or ENOENT or ESRCH or EBADF or EPERM or ...:
            // the given name was not found" (nss_wrapper and some NSS
            // modules say ENOENT).
            Err(Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM) => {
                return Err(unknown());
            }
            Err(e) => return Err(Error::io("/etc/passwd", "look up user", e.into())),
        };
        Ok(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            groups: OnceLock::new(),
            names: Vec::new(),
        })
    }

    /// The account running this process (by real uid).
    pub fn current() -> Result<Account> {
        let uid = nix::unistd::getuid();
        let user = User::from_uid(uid)
            .map_err(|e| Error::io("/etc/passwd", "look up user", e.into()))?
            .ok_or_else(|| Error::UnknownUser {
                name: format!("uid {uid}"),
            })?;
        Account::lookup(&user.name)
    }

    /// Every group id the user is in, primary included; `None` when the
    /// group database could not be read (an LDAP server down, say).
    pub fn gids(&self) -> Option<&[u32]> {
        self.groups
            .get_or_init(|| {
                let name = CString::new(self.name.as_str()).ok()?;
                let list = getgrouplist(&name, Gid::from_raw(self.gid)).ok()?;
                Some(list.iter().map(|g| g.as_raw()).collect())
            })
            .as_deref()
    }

    /// Whether the user is in group `group` (by name); `None` when that
    /// cannot be known (group database unreadable), so that policy can
    /// fail closed.
    pub fn membership(&self, group: &str) -> Option<bool> {
        if !self.names.is_empty() {
            return Some(self.names.iter().any(|n| n == group));
        }
        // A group that is not found is unknown, not "no member": with a
        // directory service down, NSS says "not found" for its groups, and
        // a required group must then still be required (fail closed).
        let gid = match Group::from_name(group) {
            Ok(Some(g)) => g.gid.as_raw(),
            Ok(None) | Err(_) => return None,
        };
        self.gids().map(|gids| gids.contains(&gid))
    }

    /// True when the user is known to be a member of group `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.membership(group) == Some(true)
    }

    /// The supplementary group list as `nix` ids (just the primary group
    /// when the list cannot be read: fewer rights, never more).
    pub fn nix_gids(&self) -> Vec<Gid> {
        match self.gids() {
            Some(gids) => gids.iter().map(|&g| Gid::from_raw(g)).collect(),
            None => vec![Gid::from_raw(self.gid)],
        }
    }

    /// An account that does not need the passwd database (tests, tools).
    pub fn for_tests(name: &str, uid: u32, gid: u32, home: &str, groups: &[&str]) -> Account {
        Account {
            name: name.to_string(),
            uid,
            gid,
            home: PathBuf::from(home),
            groups: OnceLock::from(Some(vec![gid])),
            names: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

#[cfg(test)]
impl Account {
    /// An account whose group list could not be read.
    pub(crate) fn with_unknown_groups(name: &str) -> Account {
        Account {
            name: name.to_string(),
            uid: 4242,
            gid: 4242,
            home: PathBuf::from("/home/x"),
            groups: OnceLock::from(None),
            names: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_with_its_home() {
        let root = Account::lookup("root").unwrap();
        assert_eq!(root.uid, 0);
        assert!(root.gids().unwrap().contains(&0));
        assert!(root.in_group("root"));
        assert!(!root.in_group("no-such-group-otpgate"));
    }

    #[test]
    fn unknown_and_hostile_names_are_unknown_users() {
        for name in ["no-such-user-otpgate", "", "../root", "a/b", "a\0b", ".."] {
            assert!(
                matches!(Account::lookup(name), Err(Error::UnknownUser { .. })),
                "{name:?}"
            );
        }
    }
}
