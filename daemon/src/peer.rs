//! Who is asking, and what they may ask: the permission table
//! (docs/ARCHITECTURE.md, §3, "Who may ask what").
//!
//! | peer (`SO_PEERCRED`)                        | may |
//! | ------------------------------------------- | --- |
//! | root                                        | every request, for any user |
//! | a user or group in `daemon.login_users`/`login_groups` | logins (view, check, send-code, trust-host) for any user; no account changes |
//! | any other uid                               | self-service on its own account: view, check, send-code, account changes (those that hand out a way in or remove the factor only with a proof token, `proof.rs`; unlock never); never trust-host, never another user |
//!
//! A user may not add a remembered host for themselves: only a login (run
//! by root or a listed application) records one, after a code from the app.

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::{Uid, User};
use otpgate_config::protocol::Request;
use otpgate_config::{Account, SystemConfig};

use crate::error::Error;

/// The process at the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
    /// What the permission table grants it.
    pub role: Role,
}

/// A peer's place in the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    /// A listed PAM application: logins for anyone.
    Logins,
    /// Anyone else: its own account only.
    SelfService,
}

impl Peer {
    /// The credentials the kernel recorded when `socket` connected.
    pub fn of(socket: &impl AsFd, config: &SystemConfig) -> Result<Peer, Error> {
        let cred = getsockopt(socket, sockopt::PeerCredentials)
            .map_err(|e| Error::Forbidden(format!("no peer credentials: {e}")))?;
        let (uid, gid) = (cred.uid(), cred.gid());
        Ok(Peer {
            uid,
            pid: cred.pid(),
            role: role(uid, gid, config),
        })
    }

    /// Refuses `request` when the table does not grant it; `account` is
    /// the user the request is about.
    pub fn may(&self, request: &Request, account: &Account) -> Result<(), Error> {
        match self.role {
            Role::Root => Ok(()),
            Role::Logins => match request {
                Request::Change { .. }
                | Request::NewSecret { .. }
                | Request::EnrollIssued { .. }
                | Request::SendConfirmation { .. }
                | Request::CheckConfirmation { .. } => Err(Error::Forbidden(
                    "a listed PAM application may run logins, not change accounts".into(),
                )),
                Request::View { .. }
                | Request::Check { .. }
                | Request::SendCode { .. }
                | Request::TrustHost { .. } => Ok(()),
                Request::Users { .. } => self.may_list_users(),
            },
            Role::SelfService if account.uid != self.uid => Err(Error::Forbidden(format!(
                "uid {} may ask only about its own account",
                self.uid
            ))),
            Role::SelfService => match request {
                Request::TrustHost { .. } => {
                    Err(Error::Forbidden("only a login may remember a host".into()))
                }
                Request::Change { change, .. } if change.root_only() => {
                    Err(Error::Forbidden(format!("{} needs root", change.name())))
                }
                Request::View { .. }
                | Request::Check { .. }
                | Request::SendCode { .. }
                | Request::SendConfirmation { .. }
                | Request::CheckConfirmation { .. }
                | Request::NewSecret { .. }
                | Request::EnrollIssued { .. }
                | Request::Change { .. } => Ok(()),
                Request::Users { .. } => self.may_list_users(),
            },
        }
    }

    /// Who has a record (`Users`) is root's to ask: a list of accounts
    /// with a second factor is a map for an attacker.
    pub fn may_list_users(&self) -> Result<(), Error> {
        match self.role {
            Role::Root => Ok(()),
            Role::Logins | Role::SelfService => {
                Err(Error::Forbidden("listing users needs root".into()))
            }
        }
    }

    /// Whether this peer is limited to `max_connections_per_user`.
    pub fn is_limited(&self) -> bool {
        self.role == Role::SelfService
    }
}

/// Root; a listed user or a member of a listed group; anyone else.
fn role(uid: u32, gid: u32, config: &SystemConfig) -> Role {
    if uid == 0 {
        return Role::Root;
    }
    let d = &config.daemon;
    if d.login_users.is_empty() && d.login_groups.is_empty() {
        return Role::SelfService;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Role::SelfService;
    };
    if d.login_users.contains(&user.name) {
        return Role::Logins;
    }
    let Ok(account) = Account::lookup(&user.name) else {
        return Role::SelfService;
    };
    let primary = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name);
    let listed = d
        .login_groups
        .iter()
        .any(|g| primary.as_deref() == Some(g.as_str()) || account.in_group(g));
    if listed {
        Role::Logins
    } else {
        Role::SelfService
    }
}
