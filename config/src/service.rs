//! What a login asks of one user's record, wherever it is kept: a view
//! without secrets, a check of an answer, a sent code, a remembered host.
//!
//! [`Local`] answers with the verification service over a [`Store`] in this
//! process (the file store; memory in tests). [`crate::remote::Daemon`]
//! asks `otpgated`, which answers with a [`Local`] over its own store, so
//! the rules are the verification service's either way and the secret stays
//! where the store is (docs/ARCHITECTURE.md, §3).

use serde::{Deserialize, Serialize};

use crate::change::{Change, Changed};
use crate::error::Result;
use crate::record::View;
use crate::store::{Store, StoreExt};
use crate::system::SystemConfig;
use crate::verification::{BackupUse, Checked, Offer, Recipient, SendOutcome, Sender, Verifier};

/// One check of an answer: its candidate codes and how to count it.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// One answer, or the splits of a `forward_pass` answer.
    pub candidates: &'a [&'a [u8]],
    pub backup: BackupUse,
    /// Set when wrong answers count against this source only
    /// (`forward_pass`; `record::source_key`).
    pub source: Option<&'a str>,
}

/// A host to remember for a user: the address (canonical), the PAM service,
/// the SSH key of the login (its fingerprint; none: the address alone), for
/// how many days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    pub host: String,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub days: u32,
}

/// A login's questions about one user's record.
pub trait Service {
    /// Where the record lives, for messages.
    fn describe(&self) -> String;

    /// The record without its secrets; `Ok(None)`: not enrolled.
    fn view(&self) -> Result<Option<View>>;

    /// Checks an answer in one transaction (see [`Verifier::check`]).
    fn check(&self, check: Check<'_>, now: u64) -> Result<Checked>;

    /// Creates and sends a code (see [`Verifier::send_code`]).
    fn send_code(&self, offer: &Offer, now: u64, recipient: Recipient<'_>) -> Result<SendOutcome>;

    /// Remembers `trust.host` for `trust.service` until `now` plus
    /// `trust.days` (at most `remember_days`); the host as recorded, or
    /// `None` when nothing was remembered (the record is gone, or this
    /// host's config remembers nothing).
    fn trust_host(&self, trust: &Trust, now: u64) -> Result<Option<String>>;

    /// Makes an account change (the `otpgate` command) in one transaction.
    /// Through the daemon, a user who is not root must have had a code
    /// accepted by an earlier [`Service::check`] of this service for a
    /// change that needs one ([`Change::needs_proof`]).
    fn change(&self, change: &Change, now: u64) -> Result<Changed>;
}

impl<S: Service + ?Sized> Service for &S {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn view(&self) -> Result<Option<View>> {
        (**self).view()
    }
    fn check(&self, check: Check<'_>, now: u64) -> Result<Checked> {
        (**self).check(check, now)
    }
    fn send_code(&self, offer: &Offer, now: u64, recipient: Recipient<'_>) -> Result<SendOutcome> {
        (**self).send_code(offer, now, recipient)
    }
    fn trust_host(&self, trust: &Trust, now: u64) -> Result<Option<String>> {
        (**self).trust_host(trust, now)
    }
    fn change(&self, change: &Change, now: u64) -> Result<Changed> {
        (**self).change(change, now)
    }
}

/// The service over a store in this process.
pub struct Local<'a> {
    config: &'a SystemConfig,
    store: Box<dyn Store + 'a>,
    sender: &'a dyn Sender,
    /// Runs inside every transaction (the module's debug-build panic
    /// injection).
    hook: Option<&'a dyn Fn()>,
}

impl<'a> Local<'a> {
    pub fn new(
        config: &'a SystemConfig,
        store: Box<dyn Store + 'a>,
        sender: &'a dyn Sender,
    ) -> Self {
        Local {
            config,
            store,
            sender,
            hook: None,
        }
    }

    /// Calls `hook` within every transaction.
    pub fn with_hook(mut self, hook: &'a dyn Fn()) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn verifier<'s>(&'s self, source: Option<&'s str>) -> Verifier<'s> {
        let mut verifier = Verifier::new(self.config, self.store.as_ref());
        if let Some(hook) = self.hook {
            verifier = verifier.with_hook(hook);
        }
        match source {
            Some(source) => verifier.per_source(source),
            None => verifier,
        }
    }
}

impl Service for Local<'_> {
    fn change(&self, change: &Change, now: u64) -> Result<Changed> {
        self.store.update(|slot| {
            if let Some(hook) = self.hook {
                hook();
            }
            change.apply(slot, self.config, now)
        })
    }

    fn describe(&self) -> String {
        self.store.describe()
    }

    fn view(&self) -> Result<Option<View>> {
        Ok(self.store.read()?.as_ref().map(View::of))
    }

    fn check(&self, check: Check<'_>, now: u64) -> Result<Checked> {
        self.verifier(check.source)
            .check(check.candidates, now, check.backup)
    }

    fn send_code(&self, offer: &Offer, now: u64, recipient: Recipient<'_>) -> Result<SendOutcome> {
        self.verifier(None)
            .send_code(offer, now, recipient, self.sender)
    }

    fn trust_host(&self, trust: &Trust, now: u64) -> Result<Option<String>> {
        // Never longer than this host's config allows (a daemon's config
        // bounds what its clients ask for).
        let days = trust.days.min(self.config.remember_days);
        if days == 0 {
            return Ok(None);
        }
        let until = now.saturating_add(u64::from(days) * 86_400);
        self.store.update(|slot| {
            if let Some(hook) = self.hook {
                hook();
            }
            Ok(slot.as_mut().and_then(|record| {
                let key = trust.key.as_deref();
                record.trust_host(&trust.host, &trust.service, key, until, now)
            }))
        })
    }
}
