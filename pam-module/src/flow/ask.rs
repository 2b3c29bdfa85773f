//! Steps 7 and 8: ask, check, record, and offer to remember the host. The
//! loop is "get the next answer" then "judge it"; what a code is worth and
//! what a send may do is the verification service's (config's
//! `verification`), shared with the CLI.

use std::time::Duration;

use otpgate_config::record::Method;
use otpgate_config::record::View;
use otpgate_config::service::{Check, Service, Trust};
use otpgate_config::verification::{
    BackupUse, Checked, Menu, Offer, Recipient, Refusal, SendOutcome,
};
use otpgate_config::{Answer, SystemConfig, channel, net, texts};
use zeroize::Zeroizing;

use super::{Code, FORWARD_PROMPT, Login, PROMPT, Secret};
use crate::args::Args;
use crate::log::Severity;
use crate::reason::{Reason, Why};

/// Where an answer came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    AuthTok,
    Prompt,
}

/// What getting the next answer came to.
enum Next {
    Answer(Secret, Source),
    /// Nothing to judge (a code was sent, or no `PAM_AUTHTOK`): ask again.
    Again,
    /// The login is decided (and logged).
    Done(Code),
}

/// A split of an answer: the password part (with `forward_pass`) and the
/// code part.
type Candidate = (Secret, Secret);

/// The prompt loop of one login.
pub(super) struct Ask<'a> {
    config: &'a SystemConfig,
    args: &'a Args,
    service: &'a dyn Service,
    /// Lengths a code may have (the OTP's, the backup codes'), for splitting
    /// `forward_pass` answers.
    digits: Vec<usize>,
    /// The clock at the start of the login; later times add the monotonic
    /// time spent since.
    now: u64,
    menu: Menu,
    prompts_left: u32,
    first_pass: bool,
    start: Option<Duration>,
    /// With `forward_pass`, the source wrong answers count against.
    source: Option<&'a str>,
}

impl<'a> Ask<'a> {
    pub(super) fn new(
        config: &'a SystemConfig,
        args: &'a Args,
        service: &'a dyn Service,
        view: &View,
        now: u64,
        menu: Menu,
    ) -> Self {
        Ask {
            config,
            args,
            service,
            digits: code_lengths(view, config),
            now,
            menu,
            prompts_left: config.max_attempts,
            first_pass: args.use_first_pass || args.try_first_pass,
            start: None,
            source: None,
        }
    }

    /// Counts wrong answers against `source` instead of the account.
    pub(super) fn counting_by(mut self, source: Option<&'a str>) -> Self {
        self.source = source;
        self
    }

    pub(super) fn run(&mut self, login: &mut Login<'_>) -> Code {
        self.start = Some(login.clock.monotonic());
        loop {
            let (raw, source) = match self.next_answer(login) {
                Next::Answer(raw, source) => (raw, source),
                Next::Again => continue,
                Next::Done(code) => return code,
            };
            if let Some(code) = self.judge(login, &raw, source) {
                return code;
            }
        }
    }

    /// The Unix time now: the start plus the monotonic time spent asking.
    fn time(&self, login: &Login<'_>) -> u64 {
        let start = self.start.unwrap_or_default();
        let spent = login.clock.monotonic().saturating_sub(start).as_secs();
        self.now.saturating_add(spent)
    }

    fn next_answer(&mut self, login: &mut Login<'_>) -> Next {
        if self.first_pass {
            self.first_pass = false;
            return self.take_authtok(login);
        }
        if self.args.use_first_pass || self.prompts_left == 0 {
            let code = login.decide(Code::AuthErr, None, Reason::Refused(Refusal::Wrong));
            return Next::Done(code);
        }
        let answer = match self.prompt(login) {
            Ok(answer) => answer,
            Err(code) => return Next::Done(code),
        };
        match self.menu.choice(&answer).cloned() {
            Some(offer) => self.send(login, &offer),
            None => Next::Answer(answer, Source::Prompt),
        }
    }

    /// `PAM_AUTHTOK` set by an earlier module (`use_first_pass`,
    /// `try_first_pass`).
    fn take_authtok(&mut self, login: &mut Login<'_>) -> Next {
        match login.h.authtok() {
            Some(token) => Next::Answer(token, Source::AuthTok),
            None if self.args.use_first_pass => {
                login.error(texts::NO_CODE_GIVEN);
                Next::Done(login.decide(Code::AuthErr, None, Reason::NoAuthTok))
            }
            None => Next::Again,
        }
    }

    /// One prompt, within `prompt_timeout` and `verification_time`.
    fn prompt(&mut self, login: &mut Login<'_>) -> Result<Secret, Code> {
        self.within_time(login)?;
        self.prompts_left -= 1;
        let asked = login.clock.monotonic();
        let menu = self.menu.prompt(texts::PROMPT_BASE);
        let (text, echo) = if self.args.forward_pass {
            (FORWARD_PROMPT, false)
        } else if !self.menu.is_empty() {
            (menu.as_str(), self.config.echo_verification_code)
        } else {
            (PROMPT, self.config.echo_verification_code)
        };
        let answer = match login.h.prompt(text, echo) {
            Ok(a) => a.unwrap_or_default(),
            Err(code) => return Err(login.decide(code, None, Reason::ConversationFailed)),
        };
        let waited = login.clock.monotonic().saturating_sub(asked);
        let limit = self.config.prompt_timeout;
        if waited > Duration::from_secs(limit) {
            login.error(texts::TOO_LATE_PROMPT);
            let waited = waited.as_secs();
            return Err(login.decide(Code::AuthErr, None, Reason::AnsweredLate { waited, limit }));
        }
        self.within_time(login)?;
        Ok(answer)
    }

    /// Denies once the whole verification of a user offered sent codes
    /// took longer than `channels.verification_time`.
    fn within_time(&self, login: &mut Login<'_>) -> Result<(), Code> {
        let limit = self.config.channels.verification_time;
        if self.menu.is_empty() {
            return Ok(());
        }
        let start = self.start.unwrap_or_default();
        let spent = login.clock.monotonic().saturating_sub(start);
        if spent <= Duration::from_secs(limit) {
            return Ok(());
        }
        login.error(texts::TOO_LATE_TOTAL);
        let spent = spent.as_secs();
        Err(login.decide(Code::AuthErr, None, Reason::OutOfTime { spent, limit }))
    }

    /// Sends a code the user picked from the menu and tells them.
    fn send(&mut self, login: &mut Login<'_>, offer: &Offer) -> Next {
        let now = self.time(login);
        let user = login.user.clone().unwrap_or_default();
        let service = login.service.clone().unwrap_or_default();
        let recipient = Recipient {
            user: &user,
            service: &service,
        };
        let kind = offer.kind;
        let outcome = match self.service.send_code(offer, now, recipient) {
            Ok(outcome) => outcome,
            Err(e) => {
                login.error(texts::CANNOT_UPDATE);
                self.log_send(login, offer, "error", Reason::Store(e.to_string()));
                // A send is not a guess: the prompt is given back.
                self.prompts_left += 1;
                return Next::Again;
            }
        };
        match outcome {
            SendOutcome::Sent { took, minutes } => {
                let to = channel::mask(kind, &offer.to);
                login.info(&texts::code_sent(kind, &to, minutes));
                let millis = took.as_millis();
                self.log_send(login, offer, "sent", Reason::Sent { millis });
                self.prompts_left += 1;
            }
            SendOutcome::Failed(why) => {
                login.error(&texts::send_failed(kind));
                self.log_send(login, offer, "send-failed", Reason::SendFailed(why));
                self.prompts_left += 1;
            }
            // Refused sends use the prompt up, so Enter cannot be pressed
            // forever.
            SendOutcome::Limited { next, max } => {
                login.error(&texts::too_many_sends(kind, &login.hhmm(next)));
                self.log_send(login, offer, "rate-limited", Reason::RateLimited { max });
            }
            SendOutcome::Locked(until) => {
                login.error(&texts::locked_until(&login.hhmm(until)));
                let method = Some(kind.as_str());
                return Next::Done(login.decide(Code::MaxTries, method, Reason::LockedMeanwhile));
            }
            SendOutcome::Gone => {
                let reason = Reason::DestinationRemovedMeanwhile;
                return Next::Done(login.decide(Code::AuthErr, None, reason));
            }
        }
        Next::Again
    }

    /// One log line per send: never the code, only the outcome.
    fn log_send(&self, login: &mut Login<'_>, offer: &Offer, outcome: &str, reason: Reason) {
        let severity = if outcome == "sent" {
            Severity::Info
        } else {
            Severity::Warning
        };
        login.log_line(severity, Some(offer.kind.as_str()), outcome, &reason);
    }

    /// Checks an answer; `Some` when the login is decided.
    fn judge(&mut self, login: &mut Login<'_>, raw: &[u8], source: Source) -> Option<Code> {
        let candidates = self.candidates(raw);
        if source == Source::AuthTok
            && self.args.try_first_pass
            && candidates.iter().all(|(_, c)| Answer::parse(c).is_none())
        {
            // Most likely the password of an earlier module: not a guess
            // at a code, so not counted.
            login.debug("PAM_AUTHTOK is not a code; prompting");
            return None;
        }
        let now = self.time(login);
        let codes: Vec<&[u8]> = candidates.iter().map(|(_, c)| c.as_slice()).collect();
        let check = Check {
            candidates: &codes,
            backup: BackupUse::Consume,
            source: self.source,
        };
        let checked = match self.service.check(check, now) {
            Ok(c) => c,
            Err(e) => {
                login.error(texts::CANNOT_UPDATE);
                return Some(login.decide(Code::SystemErr, None, Reason::Store(e.to_string())));
            }
        };
        match checked {
            Checked::Accepted {
                method,
                device,
                backups_left,
                candidate,
            } => {
                login.device = device;
                Some(self.accepted(login, method, backups_left, &candidates[candidate], now))
            }
            Checked::Refused {
                why,
                tried,
                locked_until,
            } => self.refused(login, why, tried, locked_until, &candidates),
            Checked::Locked(until) => {
                login.log_refused(None, Why::Locked, &Reason::LockedMeanwhile);
                login.error(&texts::locked_until(&login.hhmm(until)));
                Some(login.decide(Code::MaxTries, None, Reason::LockedMeanwhile))
            }
            Checked::NotEnrolled => {
                Some(login.decide(Code::AuthErr, None, Reason::RemovedMeanwhile))
            }
        }
    }

    fn accepted(
        &self,
        login: &mut Login<'_>,
        method: Method,
        backups_left: usize,
        (password, _): &Candidate,
        now: u64,
    ) -> Code {
        if self.args.forward_pass
            && let Err(code) = login.h.set_authtok(password)
        {
            return login.decide(code, Some(method.as_str()), Reason::SetAuthTok);
        }
        if method == Method::Backup {
            login.info(&texts::backup_used(backups_left));
        }
        self.offer_remember(login, method, now);
        let code = login.decide(Code::Success, Some(method.as_str()), Reason::Accepted);
        // Last, so that nothing that could still fail (or panic) after it
        // leaves a record for a login this instance did not pass.
        login.record_verified(method.as_str(), now);
        code
    }

    /// A refused answer: log it, say so, and decide when no try is left.
    fn refused(
        &self,
        login: &mut Login<'_>,
        why: Refusal,
        tried: Option<Method>,
        locked_until: Option<u64>,
        candidates: &[Candidate],
    ) -> Option<Code> {
        let method = tried.map(Method::as_str);
        if let Some(until) = locked_until {
            let reason = Reason::RefusedAndLocked { why, until };
            login.log_refused(tried, why.into(), &reason);
            login.error(&texts::locked_now(&login.hhmm(until)));
            self.forward_anyway(login, candidates);
            return Some(login.decide(Code::MaxTries, method, reason));
        }
        let reason = Reason::Refused(why);
        login.log_refused(tried, why.into(), &reason);
        let more = !self.args.use_first_pass && self.prompts_left > 0;
        let left = if more { self.prompts_left } else { 0 };
        let text = match why {
            Refusal::Expired => texts::expired_code(left),
            Refusal::Wrong => texts::wrong_code(left),
            Refusal::Replayed => texts::used_code(left),
        };
        login.error(&text);
        if more {
            return None;
        }
        self.forward_anyway(login, candidates);
        Some(login.decide(Code::AuthErr, method, reason))
    }

    /// Splits an answer into (password, code) candidates: with
    /// `forward_pass`, the code is the trailing digits, of any length a code
    /// may have; otherwise the whole answer is the code.
    fn candidates(&self, raw: &[u8]) -> Vec<Candidate> {
        if !self.args.forward_pass {
            return vec![(Secret::default(), Zeroizing::new(raw.to_vec()))];
        }
        let trailing = raw.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        let mut out: Vec<Candidate> = self
            .digits
            .iter()
            .filter(|&&n| n <= trailing)
            .map(|&n| {
                let (password, code) = raw.split_at(raw.len() - n);
                (
                    Zeroizing::new(password.to_vec()),
                    Zeroizing::new(code.to_vec()),
                )
            })
            .collect();
        if out.is_empty() {
            // No code at the end: a wrong code, the whole answer a password.
            out.push((Zeroizing::new(raw.to_vec()), Secret::default()));
        }
        out
    }

    /// On a final failure with `forward_pass`, later modules still get a
    /// password, so the stack behaves (and takes as long) as for any
    /// wrong password.
    fn forward_anyway(&self, login: &mut Login<'_>, candidates: &[Candidate]) {
        if !self.args.forward_pass {
            return;
        }
        if let Some((password, _)) = candidates.first() {
            let _ = login.h.set_authtok(password);
        }
    }

    /// Step 8: "Skip the code for logins from ADDRESS for N days?", only
    /// after a code from the app (a backup code may be a leaked printout, a
    /// sent code proves only a mailbox or phone number), from a remote
    /// address literal, on a named service, and not with `forward_pass`
    /// (the password is not proven yet). After a login with an SSH key the
    /// trust is bound to that key too; with several keys, or info from
    /// sshd that cannot be read, nothing is offered (`ssh_auth.rs`
    /// `LoginKey::binding`). A failure here is logged; the login stands.
    fn offer_remember(&self, login: &mut Login<'_>, method: Method, now: u64) {
        let days = self.config.remember_days;
        let from_app = matches!(method, Method::Totp | Method::Hotp);
        if days == 0 || !from_app || self.args.forward_pass {
            return;
        }
        let Some(address) = login.remote().and_then(net::canonical_rhost) else {
            return;
        };
        let Some(key) = login.ssh_key.binding().map(|k| k.map(str::to_string)) else {
            login.debug("no single SSH key known for this login: not offering to remember it");
            return;
        };
        let service = login.service_name().to_string();
        let question = texts::trust_question(&address, key.as_deref(), days);
        if service.is_empty() || !said_yes(login, &question) {
            return;
        }
        let trust = Trust {
            host: address,
            service,
            key,
            days,
        };
        let result = self.service.trust_host(&trust, now);
        let Trust { service, key, .. } = trust;
        match result {
            Ok(Some(host)) => {
                login.info(&texts::trusted_for(&host, key.as_deref(), &service, days));
                let reason = Reason::HostTrusted { host, key, days };
                login.log_line(
                    Severity::Info,
                    Some(method.as_str()),
                    "trust-granted",
                    &reason,
                );
            }
            // The record was removed meanwhile: nothing to remember.
            Ok(None) => {}
            Err(e) => {
                let reason = Reason::CouldNotRemember(e.to_string());
                login.log_line(Severity::Warning, None, "error", &reason);
            }
        }
    }
}

/// Asks a yes/no question; anything but `y`/`yes` is no.
fn said_yes(login: &mut Login<'_>, question: &str) -> bool {
    match login.h.prompt(question, true) {
        Ok(Some(a)) => {
            let a = String::from_utf8_lossy(&a).trim().to_ascii_lowercase();
            a == "y" || a == "yes"
        }
        _ => false,
    }
}

/// Code lengths of a record: its OTP digits and the backup code length
/// (longest first, so a password ending in digits keeps them only when no
/// longer code matches).
fn code_lengths(view: &View, config: &SystemConfig) -> Vec<usize> {
    let mut v = Vec::new();
    for app in &view.devices {
        v.push(usize::from(app.digits));
    }
    v.push(usize::from(config.backup_code_digits));
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.dedup();
    v
}
