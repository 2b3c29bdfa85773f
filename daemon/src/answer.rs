//! One request carried out: the user looked up, the peer's permission
//! checked, then the verification service over the daemon's own store
//! (the same [`Local`] a login without the daemon uses), at the daemon's
//! clock.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use otpgate_config::change::Change;
use otpgate_config::otp::{DEFAULT_SECRET_BYTES, Secret};
use otpgate_config::protocol::WireConfirmation;
use otpgate_config::protocol::{Reply, Request, USERS_PAGE};
use otpgate_config::service::{Check, Local, Service};
use otpgate_config::system::SELF_SERVICE;
use otpgate_config::verification::{
    BackupUse, Checked, CommandSender, Confirmation, Offer, Recipient, Verifier,
};
use otpgate_config::{Account, Answer, Store, SystemConfig, UserFile, UserRecord, Verdict};

use zeroize::Zeroizing;

use crate::db::Db;
use crate::error::Error;
use crate::issued::IssuedSecrets;
use crate::peer::{Peer, Role};
use crate::pending::Confirmations;
use crate::proof::Proofs;

/// What every request needs: the config, where the records are, the
/// proofs handed out.
pub struct Context {
    pub config: SystemConfig,
    /// The owner of the state directory and its files: this process.
    pub owner: u32,
    pub proofs: Proofs,
    pub confirmations: Confirmations,
    pub users: UserLocks,
    pub files: Mutex<HashMap<String, Arc<UserFile>>>,
    pub issued: IssuedSecrets,
    /// The database of `backend = "postgres"`.
    pub db: Option<Arc<Db>>,
    /// What was done, for `daemon.metrics`.
    pub metrics: crate::metrics::Metrics,
}

/// One lock per user in this process, taken around a request that changes
/// the user's record: concurrent logins of one user then queue here, on a
/// futex, instead of each waiting for the file lock (which still guards
/// the file; see `store.rs`).
#[derive(Default)]
pub struct UserLocks {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Entries kept before unused ones are dropped.
const MAX_USER_LOCKS: usize = 1024;

impl UserLocks {
    /// `user`'s lock (made on first use).
    fn of(&self, user: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() >= MAX_USER_LOCKS {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        Arc::clone(locks.entry(user.to_string()).or_default())
    }
}

impl Context {
    /// `account`'s record: its row in the database (`backend =
    /// "postgres"`), or its file.
    fn store(&self, account: &Account) -> Result<Box<dyn Store>, Error> {
        match &self.db {
            Some(db) => Ok(Box::new(db.store(&account.name))),
            None => Ok(Box::new(self.file(account)?)),
        }
    }

    /// The record file of `account`, kept between requests so that its
    /// last parse is reused while the file's text is the same (`UserFile`'s
    /// cache): a login's view and check parse the record once.
    fn file(&self, account: &Account) -> Result<Arc<UserFile>, Error> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = files.get(&account.name) {
            return Ok(Arc::clone(file));
        }
        if files.len() >= MAX_FILES {
            files.clear();
        }
        let path = Path::new(&self.config.daemon.state_dir).join(format!("{}.toml", account.name));
        let file =
            UserFile::owned_by(path, account, self.owner, &self.config).map_err(Error::Store)?;
        let file = Arc::new(file);
        files.insert(account.name.clone(), Arc::clone(&file));
        Ok(file)
    }
}

/// `Users`: one page of the names with a record, for root.
fn list_users(ctx: &Context, peer: &Peer, request: &Request) -> Result<Reply, Error> {
    peer.may_list_users()?;
    let Request::Users { after } = request else {
        return Err(Error::Forbidden(format!("{} names no user", request.op())));
    };
    let after = after.as_deref().unwrap_or("");
    // One more than a page says whether another follows.
    let mut users = match &ctx.db {
        Some(db) => db
            .users_after(after, USERS_PAGE + 1)
            .map_err(Error::Store)?,
        None => record_files_after(
            Path::new(&ctx.config.daemon.state_dir),
            after,
            USERS_PAGE + 1,
        )?,
    };
    let more = users.len() > USERS_PAGE;
    users.truncate(USERS_PAGE);
    Ok(Reply::Users { users, more })
}

/// The first `limit` users, by name, after `after`, with a record file in
/// `dir` (`NAME.toml`; its `.state` and `.lock` are not records).
fn record_files_after(dir: &Path, after: &str, limit: usize) -> Result<Vec<String>, Error> {
    let mut names = otpgate_config::store::names_in(dir, ".toml").map_err(|e| Error::Setup {
        path: dir.to_path_buf(),
        why: e.to_string(),
    })?;
    names.retain(|name| name.as_str() > after);
    names.sort();
    names.truncate(limit);
    Ok(names)
}

/// Record files kept open between requests (a path and a parse each);
/// past this many the set starts again.
const MAX_FILES: usize = 4096;

/// Carries `request` out for `peer`.
pub fn answer(ctx: &Context, peer: &Peer, request: &Request) -> Result<Reply, Error> {
    let Some(user) = request.user() else {
        return list_users(ctx, peer, request);
    };
    let account = match Account::lookup(user) {
        Ok(account) => account,
        Err(otpgate_config::Error::UnknownUser { name }) => return Err(Error::UnknownUser(name)),
        Err(e) => return Err(Error::Store(e)),
    };
    peer.may(request, &account)?;
    // Root sets the clock anyway; from anyone else a time of their
    // choosing could lift a lockout or revive a code.
    let now = match (peer.role, request.now()) {
        (Role::Root, Some(now)) => now,
        _ => now()?,
    };
    let sender = CommandSender::default();
    // Sends run a channel's command for seconds: they take only the file
    // lock, for the moment the code is made.
    let user_lock = match request {
        Request::Check { .. }
        | Request::TrustHost { .. }
        | Request::Change { .. }
        | Request::EnrollIssued { .. } => Some(ctx.users.of(&account.name)),
        _ => None,
    };
    let _held = user_lock
        .as_ref()
        .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
    let store = ctx.store(&account)?;
    let config = login_config(ctx, peer, request, &account);
    let service = Local::new(&config, store, &sender);
    let reply = match request {
        Request::View { .. } => Reply::View {
            view: service.view().map_err(Error::Store)?.map(Box::new),
        },
        Request::Check {
            candidates,
            keep_backup,
            source,
            ..
        } => {
            let codes: Vec<&[u8]> = candidates.iter().map(|c| c.as_bytes()).collect();
            let check = Check {
                candidates: &codes,
                backup: if *keep_backup {
                    BackupUse::Keep
                } else {
                    BackupUse::Consume
                },
                source: source.as_deref(),
            };
            let checked = service.check(check, now).map_err(Error::Store)?;
            let proof = match (checked, peer.role) {
                (Checked::Accepted { .. }, Role::SelfService) => Some(
                    ctx.proofs
                        .issue(peer.uid, &account.name)
                        .map_err(Error::Store)?,
                ),
                _ => None,
            };
            Reply::Checked {
                checked: checked.into(),
                proof,
            }
        }
        Request::SendCode {
            channel,
            to,
            service: pam_service,
            ..
        } => {
            let offer = Offer {
                kind: *channel,
                to: to.clone(),
            };
            let recipient = Recipient {
                user: &account.name,
                service: pam_service,
            };
            Reply::Sent {
                outcome: service
                    .send_code(&offer, now, recipient)
                    .map_err(Error::Store)?
                    .into(),
            }
        }
        Request::TrustHost { trust, .. } => Reply::Trusted {
            host: service.trust_host(trust, now).map_err(Error::Store)?,
        },
        Request::Change {
            change,
            proof,
            password,
            ..
        } => {
            if peer.role == Role::SelfService {
                let given = Given::of(proof, password);
                may_change(ctx, peer, &account, &service, change, given)?;
            }
            Reply::Changed {
                changed: service.change(change, now).map_err(Error::Store)?,
            }
        }
        Request::NewSecret { app, .. } => {
            let secret = Secret::generate(DEFAULT_SECRET_BYTES).map_err(Error::Store)?;
            let encoded = secret.to_base32();
            let record = app.record(secret);
            record
                .validate(Path::new("the new enrollment"))
                .map_err(Error::Store)?;
            ctx.issued.keep(peer.uid, &account.name, record, now);
            Reply::NewSecret { secret: encoded }
        }
        Request::EnrollIssued {
            replacing,
            device,
            confirm,
            proof,
            password,
            ..
        } => {
            let Some(mut record) = ctx.issued.take(peer.uid, &account.name, now) else {
                return Err(Error::Forbidden(
                    "no secret was issued for this enrollment, or it expired: run otpgate enroll again"
                        .into(),
                ));
            };
            if let Some(code) = confirm {
                confirmed(&ctx.config, &mut record, code, now)?;
            }
            // A new device of an enrollment (`otpgate devices add`), or
            // the whole enrollment. The issued record has one device.
            let change = match (device, record.devices.pop()) {
                (Some(name), Some(mut new)) => {
                    new.name = *name;
                    Change::AddDevice {
                        device: Box::new(new),
                    }
                }
                (_, taken) => {
                    record.devices.extend(taken);
                    Change::Enroll {
                        record: Box::new(record),
                        replacing: *replacing,
                    }
                }
            };
            if peer.role == Role::SelfService {
                let given = Given::of(proof, password);
                may_change(ctx, peer, &account, &service, &change, given)?;
            }
            Reply::Changed {
                changed: service.change(&change, now).map_err(Error::Store)?,
            }
        }
        Request::SendConfirmation { channel, to, .. } => {
            let recipient = Recipient {
                user: &account.name,
                service: "otpgate",
            };
            let verifier = Verifier::new(&config, service.store());
            let sent = verifier
                .send_confirmation(*channel, to, now, recipient, &sender)
                .map_err(Error::Store)?;
            let outcome = match sent {
                Confirmation::Pending(pending) => {
                    let minutes = pending.minutes;
                    ctx.confirmations
                        .hold(peer.uid, &account.name, *channel, to, pending, now);
                    WireConfirmation::Sent { minutes }
                }
                Confirmation::Failed(why) => WireConfirmation::Failed { why },
                Confirmation::Limited { next, max } => WireConfirmation::Limited { next, max },
                Confirmation::NotConfigured => WireConfirmation::NotConfigured,
            };
            Reply::ConfirmationSent { outcome }
        }
        Request::CheckConfirmation {
            channel, to, code, ..
        } => {
            let check = ctx
                .confirmations
                .check(peer.uid, &account.name, *channel, to, code, now);
            Reply::ConfirmationChecked {
                check: check.into(),
            }
        }
        Request::Users { .. } => list_users(ctx, peer, request)?,
    };
    Ok(reply)
}

/// The settings `request` is judged by: the daemon's config with the
/// `[[policy.override]]` entry of the login applied (docs/ARCHITECTURE.md,
/// §3.1, "Policy overrides in the daemon"). The PAM service a request names
/// is believed from root and listed PAM applications only: a user's own
/// requests (`otpgate verify`, a send, a change) count as the `otpgate`
/// service's whatever they say, so a user cannot pick the laxest entry.
fn login_config<'c>(
    ctx: &'c Context,
    peer: &Peer,
    request: &Request,
    account: &Account,
) -> Cow<'c, SystemConfig> {
    if ctx.config.policy.overrides.is_empty() {
        return Cow::Borrowed(&ctx.config);
    }
    let named = match request {
        Request::Check { service, .. } => service.as_deref(),
        Request::SendCode { service, .. } => Some(service.as_str()),
        Request::TrustHost { trust, .. } => Some(trust.service.as_str()),
        _ => Some(SELF_SERVICE),
    };
    let service = match peer.role {
        Role::Root | Role::Logins => named,
        Role::SelfService => Some(SELF_SERVICE),
    };
    Cow::Owned(ctx.config.for_login(account, service))
}

/// Checks `code` against the issued enrollment `record` (its step or
/// counter is then used).
fn confirmed(
    config: &SystemConfig,
    record: &mut UserRecord,
    code: &str,
    now: u64,
) -> Result<(), Error> {
    let wrong = || Error::Forbidden("the confirmation code is not a code of the new secret".into());
    let answer = Answer::parse(code.as_bytes()).ok_or_else(wrong)?;
    match record.verify(&answer, now, config.verify_policy()) {
        Ok(Verdict::Accepted(_)) => Ok(()),
        Ok(_) => Err(wrong()),
        Err(e) => Err(Error::Store(e)),
    }
}

/// What came with a change request besides the change.
struct Given<'a> {
    proof: Option<&'a str>,
    password: Option<&'a str>,
}

impl<'a> Given<'a> {
    fn of(proof: &'a Option<Zeroizing<String>>, password: &'a Option<Zeroizing<String>>) -> Self {
        Given {
            proof: proof.as_deref().map(|p| p.as_str()),
            password: password.as_deref().map(|p| p.as_str()),
        }
    }
}

/// What a user who is not root needs for `change`: a current code checked
/// first when it hands out a way in or removes the factor (`proof.rs`),
/// for a new destination the code sent there typed back (`pending.rs`),
/// and for a first enrollment their password (`password.rs`).
fn may_change(
    ctx: &Context,
    peer: &Peer,
    account: &Account,
    service: &Local<'_>,
    change: &Change,
    given: Given<'_>,
) -> Result<(), Error> {
    let enrolled = service.view().map_err(Error::Store)?.is_some();
    if ctx.config.enroll_password_check && change.makes_first_enrollment(enrolled) {
        let Some(password) = given.password else {
            return Err(Error::Forbidden(format!(
                "a first enrollment needs the password of {}",
                account.name
            )));
        };
        crate::password::check(&account.name, password).map_err(Error::Forbidden)?;
    }
    if let Change::SetDestination { channel, to, .. } = change
        && !ctx
            .confirmations
            .take_confirmed(peer.uid, &account.name, *channel, to)
    {
        return Err(Error::Forbidden(
            "the code sent to that destination has not come back".into(),
        ));
    }
    if change.needs_proof(enrolled) && !ctx.proofs.redeem(given.proof, peer.uid, &account.name) {
        return Err(Error::Forbidden(format!(
            "{} needs a current code checked first",
            change.name()
        )));
    }
    Ok(())
}

/// The daemon's clock: a client other than root never chooses the time a
/// code or a lockout is judged at.
fn now() -> Result<u64, Error> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Error::Clock)
}
