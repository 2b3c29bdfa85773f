//! The one verification service: checking an answer against a user's
//! record and sending a code, with every side effect (a used code stays
//! used, a wrong one counts towards the lockout, sends are rate-limited).
//! The PAM module's prompt loop and the CLI's confirmations are both short
//! loops over it, so a rule changed here changes for both
//! (docs/ARCHITECTURE.md, "The verification service").
//!
//! Everything that must be exact runs inside one [`Store`] transaction;
//! running a channel's command (slow, and not ours) happens after it, with
//! the lock released.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::answer::Answer;
use crate::backup;
use crate::channel::{self, Kind, Settings, Vars};
use crate::deliver::{self, Message, Outcome};
use crate::error::Result;
use crate::record::{DeviceName, Method, UserRecord, Verdict};
use crate::store::{Store, StoreExt};
use crate::system::SystemConfig;

/// Why an answer was refused, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Wrong,
    /// A right code whose TOTP step or HOTP counter was used already.
    Replayed,
    /// A sent code past its lifetime.
    Expired,
}

impl Refusal {
    /// The words of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Wrong => "wrong code",
            Refusal::Replayed => "code already used",
            Refusal::Expired => "sent code expired",
        }
    }
}

/// What checking an answer came to; the record is updated already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Accepted {
        method: Method,
        /// The device whose code it was (TOTP, HOTP).
        device: Option<DeviceName>,
        backups_left: usize,
        /// Which of the candidates matched.
        candidate: usize,
    },
    Refused {
        why: Refusal,
        /// The method the answer was a code of, when that is known: TOTP
        /// for a replayed code, the channel for an expired one; `None` for
        /// a wrong code (it matches no method).
        tried: Option<Method>,
        /// Set when this answer locked the account.
        locked_until: Option<u64>,
    },
    /// Locked already: the answer was not looked at.
    Locked(u64),
    /// No record (never enrolled, or removed meanwhile).
    NotEnrolled,
}

/// Whether a right backup code is used up (logins) or only confirmed
/// (`otpgate verify` without `--consume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupUse {
    Consume,
    Keep,
}

/// Delivers a sent code (email, SMS).
pub trait Sender {
    /// Runs the channel's command for `message`; never takes much longer
    /// than its timeout.
    fn send(&self, message: &Message) -> Outcome;
}

/// The channel's command as configured, run by [`deliver::send`].
pub struct CommandSender {
    /// Adjusts the command before it starts (the module closes inherited
    /// descriptors there).
    pub prepare: fn(&mut std::process::Command),
}

impl Default for CommandSender {
    fn default() -> Self {
        CommandSender { prepare: |_| {} }
    }
}

impl Sender for CommandSender {
    fn send(&self, message: &Message) -> Outcome {
        deliver::send(message, &self.prepare)
    }
}

/// A channel the user can have a code sent by, with the destination read
/// when the menu was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub kind: Kind,
    pub to: String,
}

/// The channels offered at a prompt, in menu order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Menu {
    pub offers: Vec<Offer>,
}

impl Menu {
    /// Channels configured on this system that `record` has a destination
    /// for.
    pub fn for_record(config: &SystemConfig, record: &UserRecord) -> Menu {
        let offers = Kind::ALL
            .into_iter()
            .filter(|&k| config.channels.get(k).is_some() && config.allows(k))
            .filter_map(|kind| {
                let to = record.destination(kind)?.to_string();
                Some(Offer { kind, to })
            })
            .collect();
        Menu { offers }
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// The prompt `base` with this menu (see [`crate::texts::prompt`]).
    pub fn prompt(&self, base: &str) -> String {
        let kinds: Vec<Kind> = self.offers.iter().map(|o| o.kind).collect();
        crate::texts::prompt(base, &kinds)
    }

    /// The channel an answer asks for: empty (Enter) is the first, `1`,
    /// `2`... pick from the menu. `None`: the answer is a code.
    pub fn choice(&self, answer: &[u8]) -> Option<&Offer> {
        if self.offers.is_empty() {
            return None;
        }
        let text = std::str::from_utf8(answer).ok()?.trim();
        let index = match text.as_bytes() {
            [] => 0,
            [digit] => usize::from(digit.checked_sub(b'1')?),
            _ => return None,
        };
        self.offers.get(index)
    }
}

/// Who a code is sent for: the template's `{user}` and `{service}`.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub user: &'a str,
    pub service: &'a str,
}

/// What asking for a sent code came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The command exited 0 after `took`; the code is valid `minutes`.
    Sent {
        took: Duration,
        minutes: u32,
    },
    /// The command failed; the reason is for the log (never holds the code).
    Failed(String),
    /// Over `max_sends_per_hour` (`max`); the next send is allowed at `next`.
    Limited {
        next: u64,
        max: u32,
    },
    Locked(u64),
    /// The record or this destination is gone (changed meanwhile), or the
    /// channel is not configured here.
    Gone,
}

/// A code sent to a destination that is not saved yet (enrollment): held
/// only hashed, here, until it comes back.
pub struct Pending {
    hashed: Vec<String>,
    expires: u64,
    /// How long the code is valid, for the message.
    pub minutes: u32,
}

/// What the code typed back at enrollment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingCheck {
    Right,
    Expired,
    Wrong,
}

impl Pending {
    /// Unix time from which the code is refused.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Compares `answer` with the sent code in constant time (the backup
    /// codes' comparison).
    pub fn check(&self, answer: Option<&Answer>, now: u64) -> PendingCheck {
        let right = answer.is_some_and(|a| backup::find(&self.hashed, a.as_str()).is_some());
        match (right, now < self.expires) {
            (true, true) => PendingCheck::Right,
            (true, false) => PendingCheck::Expired,
            (false, _) => PendingCheck::Wrong,
        }
    }
}

/// Sending a code to a destination that is not saved yet came to this.
pub enum Confirmation {
    Pending(Pending),
    Failed(String),
    Limited { next: u64, max: u32 },
    NotConfigured,
}

/// The service for one user's record under one system config.
pub struct Verifier<'a> {
    config: &'a SystemConfig,
    store: &'a dyn Store,
    /// Runs inside every transaction, with the lock held (the module's
    /// debug-build panic injection).
    inside: Option<&'a dyn Fn()>,
    /// Set when wrong answers count against their source rather than the
    /// account (`forward_pass`; `record::source_key`).
    source: Option<&'a str>,
}

impl<'a> Verifier<'a> {
    pub fn new(config: &'a SystemConfig, store: &'a dyn Store) -> Self {
        Verifier {
            config,
            store,
            inside: None,
            source: None,
        }
    }

    /// Counts wrong answers against `source` only, and refuses a locked
    /// source: for answers that come with an unproven password
    /// (`forward_pass`), which must not lock the account for everyone.
    pub fn per_source(mut self, source: &'a str) -> Self {
        self.source = Some(source);
        self
    }

    /// The lock that refuses this check, the account's or the source's.
    fn locked(&self, record: &UserRecord, now: u64) -> Option<u64> {
        let source = self.source.and_then(|s| record.source_locked_until(s, now));
        record.locked_until(now).or(source)
    }

    /// Counts a wrong answer where this verifier counts them.
    fn count_failure(&self, record: &mut UserRecord, now: u64) -> Option<u64> {
        let policy = self.config.lockout_policy();
        match self.source {
            Some(source) => record.record_source_failure(source, now, policy),
            None => record.record_failure(now, policy),
        }
    }

    /// Calls `inside` within every transaction (tests of a panic with the
    /// lock held).
    pub fn with_hook(mut self, inside: &'a dyn Fn()) -> Self {
        self.inside = Some(inside);
        self
    }

    fn in_transaction(&self) {
        if let Some(hook) = self.inside {
            hook();
        }
    }

    /// Checks the candidates (one answer, or the splits of a `forward_pass`
    /// answer) in one transaction: a right one is used up and resets the
    /// failure count, a wrong answer counts once towards the lockout.
    pub fn check(&self, candidates: &[&[u8]], now: u64, backup: BackupUse) -> Result<Checked> {
        self.store.update(|slot| {
            self.in_transaction();
            let Some(record) = slot.as_mut() else {
                return Ok(Checked::NotEnrolled);
            };
            if let Some(until) = self.locked(record, now) {
                return Ok(Checked::Locked(until));
            }
            self.check_record(record, candidates, now, backup)
        })
    }

    fn check_record(
        &self,
        record: &mut UserRecord,
        candidates: &[&[u8]],
        now: u64,
        backup: BackupUse,
    ) -> Result<Checked> {
        let policy = self.config.verify_policy();
        let (mut replayed, mut expired) = (false, None);
        for (candidate, code) in candidates.iter().enumerate() {
            let Some(answer) = Answer::parse(code) else {
                continue;
            };
            let before = (backup == BackupUse::Keep).then(|| record.clone());
            let (verdict, device) = verify_allowed(self.config, record, &answer, now, policy)?;
            match verdict {
                Verdict::Accepted(method) => {
                    if let (Method::Backup, Some(before)) = (method, before) {
                        *record = before;
                    }
                    record.record_success();
                    if let Some(source) = self.source {
                        record.clear_source(source);
                    }
                    record.prune_sent(now);
                    let backups_left = record.backup.codes.len();
                    return Ok(Checked::Accepted {
                        method,
                        device,
                        backups_left,
                        candidate,
                    });
                }
                Verdict::Replayed { .. } => replayed = true,
                Verdict::Expired(kind) => expired = expired.or(Some(Method::from(kind))),
                Verdict::Wrong => {}
            }
        }
        record.prune_sent(now);
        let (why, tried) = match (replayed, expired) {
            (true, _) => (Refusal::Replayed, Some(Method::Totp)),
            (false, Some(method)) => (Refusal::Expired, Some(method)),
            (false, None) => (Refusal::Wrong, None),
        };
        let locked_until = self.count_failure(record, now);
        Ok(Checked::Refused {
            why,
            tried,
            locked_until,
        })
    }

    /// Creates a code for `offer` in one transaction (lockout, the hourly
    /// limit, the destination still the one offered), then runs the
    /// channel's command with the lock released.
    pub fn send_code(
        &self,
        offer: &Offer,
        now: u64,
        recipient: Recipient<'_>,
        sender: &dyn Sender,
    ) -> Result<SendOutcome> {
        // A channel this login may not use is not configured for it.
        let settings = self.config.channels.get(offer.kind);
        let Some(settings) = settings.filter(|_| self.config.allows(offer.kind)) else {
            return Ok(SendOutcome::Gone);
        };
        let code = match self.new_code(offer, &settings, now)? {
            Ok(code) => code,
            Err(refused) => return Ok(refused),
        };
        let message = message_for(&settings, &offer.to, &code, recipient);
        drop(code);
        Ok(match sender.send(&message) {
            Outcome::Sent(took) => SendOutcome::Sent {
                took,
                minutes: settings.code_lifetime,
            },
            Outcome::Failed(why) => SendOutcome::Failed(why),
        })
    }

    /// The transaction of [`Verifier::send_code`]: the new code in clear,
    /// or why none may be sent.
    fn new_code(
        &self,
        offer: &Offer,
        settings: &Settings<'_>,
        now: u64,
    ) -> Result<std::result::Result<Zeroizing<String>, SendOutcome>> {
        self.store.update(|slot| {
            self.in_transaction();
            let Some(record) = slot.as_mut() else {
                return Ok(Err(SendOutcome::Gone));
            };
            if let Some(until) = record.locked_until(now) {
                return Ok(Err(SendOutcome::Locked(until)));
            }
            // The destination as it is now, not as it was at the prompt.
            if record.destination(offer.kind) != Some(offer.to.as_str()) {
                return Ok(Err(SendOutcome::Gone));
            }
            record.prune_sent(now);
            let max = settings.max_sends_per_hour;
            if let Err(next) = record.send_allowed(offer.kind, now, max) {
                return Ok(Err(SendOutcome::Limited { next, max }));
            }
            let lifetime = settings.lifetime_seconds();
            let code = record.new_sent_code(offer.kind, settings.code_digits, now, lifetime)?;
            Ok(Ok(code))
        })
    }

    /// Sends a code to `to`, a destination being enrolled and not saved
    /// yet. The send counts towards the hourly limit: in the record, or for
    /// a user with none, in the store's enrollment sends.
    pub fn send_confirmation(
        &self,
        kind: Kind,
        to: &str,
        now: u64,
        recipient: Recipient<'_>,
        sender: &dyn Sender,
    ) -> Result<Confirmation> {
        let Some(settings) = self.config.channels.get(kind) else {
            return Ok(Confirmation::NotConfigured);
        };
        let max = settings.max_sends_per_hour;
        let limited = self.store.update(|slot| {
            let Some(record) = slot.as_mut() else {
                return Ok(Limit::NoRecord);
            };
            record.prune_sent(now);
            if let Err(next) = record.send_allowed(kind, now, max) {
                return Ok(Limit::Until(next));
            }
            record.note_send(kind, now);
            Ok(Limit::Counted)
        })?;
        // Not enrolled yet: the sends are counted beside the record.
        let limited = match limited {
            Limit::NoRecord => {
                let mut next = None;
                self.store.transact_enrollment_sends(&mut |sends| {
                    next = sends.count(kind, now, max).err();
                    Ok(())
                })?;
                next
            }
            Limit::Until(next) => Some(next),
            Limit::Counted => None,
        };
        if let Some(next) = limited {
            return Ok(Confirmation::Limited { next, max });
        }
        let code = backup::random_code(settings.code_digits)?;
        let hashed = vec![backup::hash(&code)?];
        let message = message_for(&settings, to, &code, recipient);
        drop(code);
        Ok(match sender.send(&message) {
            Outcome::Sent(_) => Confirmation::Pending(Pending {
                hashed,
                expires: now.saturating_add(settings.lifetime_seconds()),
                minutes: settings.code_lifetime,
            }),
            Outcome::Failed(why) => Confirmation::Failed(why),
        })
    }
}

/// [`UserRecord::verify`] over the methods `config` allows
/// (`policy.methods`, or a `[[policy.override]]` entry's): the others are
/// set aside while the answer is checked and put back unchanged, so a code
/// of a method not allowed here is a wrong code, not tried, not used up,
/// and tells nobody that it would have been right elsewhere.
fn verify_allowed(
    config: &SystemConfig,
    record: &mut UserRecord,
    answer: &Answer,
    now: u64,
    policy: crate::record::VerifyPolicy,
) -> Result<(Verdict, Option<DeviceName>)> {
    use crate::system::Factor;
    if config.policy.methods.is_none() {
        return record.verify_device(answer, now, policy);
    }
    let devices = if config.allows(Factor::App) {
        None
    } else {
        Some(std::mem::take(&mut record.devices))
    };
    let backups = if config.allows(Factor::Backup) {
        None
    } else {
        Some(std::mem::take(&mut record.backup.codes))
    };
    let all_sent = record.sent_codes.clone();
    record.sent_codes.retain(|c| config.allows(c.channel));
    let verdict = record.verify_device(answer, now, policy);
    // Put back what was set aside, in its place.
    if let Some(devices) = devices {
        record.devices = devices;
    }
    if let Some(codes) = backups {
        record.backup.codes = codes;
    }
    let left = std::mem::take(&mut record.sent_codes);
    record.sent_codes = all_sent
        .into_iter()
        .filter(|c| !config.allows(c.channel) || left.contains(c))
        .collect();
    verdict
}

/// What counting a confirmation send in the record found.
enum Limit {
    NoRecord,
    Until(u64),
    Counted,
}

/// The message carrying `code` to `to`.
fn message_for(settings: &Settings<'_>, to: &str, code: &str, who: Recipient<'_>) -> Message {
    let host = channel::host_name();
    let vars = Vars {
        code,
        user: who.user,
        host: &host,
        service: who.service,
        minutes: settings.code_lifetime,
        to,
    };
    deliver::compose(settings, to, &vars)
}

#[cfg(test)]
mod tests;
