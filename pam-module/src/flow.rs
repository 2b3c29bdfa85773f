//! The login flow of `pam_sm_authenticate` (docs/ARCHITECTURE.md, §2, steps 1 to 9),
//! written against small traits so a scripted fake drives it in tests.
//!
//! Fail closed: every path that is not a proven success or a deliberate
//! `PAM_IGNORE` (no enrollment, policy allows it) returns a denial, and every
//! decision is logged once with user, service, rhost, method, outcome and
//! reason. Codes and secrets never reach the log.
#![forbid(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use otpgate_config::channel::{self, Kind, Vars};
use otpgate_config::deliver::{self, Message, Outcome};
use otpgate_config::record::{LockoutPolicy, VerifyPolicy};
use otpgate_config::system::{LocalConsole, Requirement};
use otpgate_config::{Account, Answer, Error, Method, SystemConfig, UserFile, UserRecord, Verdict};
use zeroize::Zeroizing;

use crate::args::Args;
use crate::log::{Log, Severity, field};

/// The PAM results the flow returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    ServiceErr,
    SystemErr,
    AuthErr,
    UserUnknown,
    ConvErr,
    Ignore,
    /// Another code from libpam, passed through (e.g. from `pam_get_user`).
    Other(i32),
}

impl Code {
    /// The value in `<security/_pam_types.h>`.
    pub fn raw(self) -> i32 {
        match self {
            Code::Success => 0,
            Code::ServiceErr => 3,
            Code::SystemErr => 4,
            Code::AuthErr => 7,
            Code::UserUnknown => 10,
            Code::ConvErr => 19,
            Code::Ignore => 25,
            Code::Other(raw) => raw,
        }
    }
}

/// Raw bytes a user typed, wiped on drop.
pub type Secret = Zeroizing<Vec<u8>>;

/// What the flow needs from PAM.
pub trait Handle {
    /// `PAM_USER`, asking for it when unset (as `pam_get_user` does).
    fn user(&mut self) -> Result<String, Code>;
    /// `PAM_RHOST`; `None` when unset.
    fn rhost(&self) -> Option<String>;
    /// `PAM_SERVICE`.
    fn service(&self) -> Option<String>;
    /// `PAM_TTY`.
    fn tty(&self) -> Option<String>;
    /// `PAM_AUTHTOK` as set by an earlier module.
    fn authtok(&self) -> Option<Secret>;
    /// Sets `PAM_AUTHTOK` for later modules.
    fn set_authtok(&mut self, token: &[u8]) -> Result<(), Code>;
    /// Asks the user; `Ok(None)` when the application gave no answer.
    fn prompt(&mut self, text: &str, echo: bool) -> Result<Option<Secret>, Code>;
    /// Shows an informational message.
    fn info(&mut self, text: &str);
    /// Shows an error message.
    fn error(&mut self, text: &str);
}

/// Time, read through one place so tests control it.
pub trait Clock {
    /// Seconds since 1970; `None` when the clock is before the epoch.
    fn unix_now(&self) -> Option<u64>;
    /// A monotonic reading, for prompt timeouts.
    fn monotonic(&self) -> Duration;
    /// `HH:MM` of a Unix time in the local time zone.
    fn local_hhmm(&self, unix: u64) -> String;
}

/// Delivers a sent code (email, SMS).
pub trait Sender {
    /// Runs the channel's command for `message`; never takes much longer
    /// than its timeout.
    fn send(&self, message: &Message) -> Outcome;
}

/// The channel's command as configured, run by [`deliver::send`].
pub struct CommandSender {
    /// Adjusts the command before it starts (see `ffi`).
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

/// The text of the code prompt.
pub const PROMPT: &str = "Verification code: ";
/// The prompt with `forward_pass`.
pub const FORWARD_PROMPT: &str = "Password & verification code: ";
/// The enrollment hint for users who must have a second factor.
pub const ENROLL_HINT: &str = "2FA is required for this account: run `otpgate enroll`";

/// Runs `f`, turning a panic into `PAM_SYSTEM_ERR` (fail closed) and logging
/// it; sshd must never be aborted by us.
pub fn guarded(log: &mut dyn Log, f: impl FnOnce(&mut dyn Log) -> Code) -> Code {
    match catch_unwind(AssertUnwindSafe(|| f(&mut *log))) {
        Ok(code) => code,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            // Dropping a panic payload may itself panic; leak it instead.
            std::mem::forget(payload);
            let mut line = String::new();
            field(&mut line, "outcome", Some("error"));
            field(
                &mut line,
                "reason",
                Some(&format!("internal error (panic): {what}")),
            );
            let _ = catch_unwind(AssertUnwindSafe(|| log.line(Severity::Error, &line)));
            Code::SystemErr
        }
    }
}

/// One login: what we know so far, for the log line.
struct Login<'a> {
    h: &'a mut dyn Handle,
    clock: &'a dyn Clock,
    log: &'a mut dyn Log,
    silent: bool,
    debug: bool,
    user: Option<String>,
    service: Option<String>,
    rhost: Option<String>,
    tty: Option<String>,
}

impl Login<'_> {
    /// Logs the decision and returns its code.
    fn decide(&mut self, code: Code, method: Option<&str>, reason: &str) -> Code {
        let (outcome, severity) = match code {
            Code::Success => ("success", Severity::Info),
            Code::Ignore => ("ignore", Severity::Info),
            Code::AuthErr | Code::UserUnknown => ("deny", Severity::Notice),
            _ => ("error", Severity::Error),
        };
        let mut line = String::new();
        field(&mut line, "user", self.user.as_deref());
        field(&mut line, "service", self.service.as_deref());
        field(&mut line, "rhost", self.rhost.as_deref());
        field(&mut line, "tty", self.tty.as_deref());
        field(&mut line, "method", method);
        field(&mut line, "outcome", Some(outcome));
        field(&mut line, "reason", Some(reason));
        self.log.line(severity, &line);
        code
    }

    fn debug(&mut self, what: &str) {
        if self.debug {
            let mut line = String::new();
            field(&mut line, "user", self.user.as_deref());
            field(&mut line, "debug", Some(what));
            self.log.line(Severity::Debug, &line);
        }
    }

    fn error(&mut self, text: &str) {
        if !self.silent {
            self.h.error(text);
        }
    }

    fn info(&mut self, text: &str) {
        if !self.silent {
            self.h.info(text);
        }
    }

    /// The remote host, when there is one.
    fn remote(&self) -> Option<&str> {
        self.rhost.as_deref().filter(|r| !r.is_empty())
    }
}

/// `pam_sm_authenticate`: the whole flow. `silent` is `PAM_SILENT`.
/// Sent codes go through the configured commands as they are.
pub fn authenticate(
    h: &mut dyn Handle,
    clock: &dyn Clock,
    log: &mut dyn Log,
    args: &Args,
    silent: bool,
) -> Code {
    authenticate_with(h, clock, log, args, silent, &CommandSender::default())
}

/// [`authenticate`] with the way sent codes are delivered.
pub fn authenticate_with(
    h: &mut dyn Handle,
    clock: &dyn Clock,
    log: &mut dyn Log,
    args: &Args,
    silent: bool,
    sender: &dyn Sender,
) -> Code {
    let service = h.service();
    let rhost = h.rhost();
    let tty = h.tty();
    let mut login = Login {
        h,
        clock,
        log,
        silent,
        debug: false,
        user: None,
        service,
        rhost,
        tty,
    };
    run(&mut login, args, sender)
}

fn run(login: &mut Login<'_>, args: &Args, sender: &dyn Sender) -> Code {
    // 1. Config, then arguments; anything wrong denies.
    if !args.errors.is_empty() {
        let reason = format!("bad module arguments: {}", args.errors.join("; "));
        return login.decide(Code::ServiceErr, None, &reason);
    }
    #[cfg(debug_assertions)]
    args.maybe_panic(crate::args::DebugPanic::Start);
    let Some(now) = login.clock.unix_now() else {
        return login.decide(Code::SystemErr, None, "system clock is before 1970");
    };
    let config = match SystemConfig::load(&args.config, args.config_required)
        .and_then(|c| c.with_overrides(&args.overrides))
    {
        Ok(c) => c,
        Err(e) => return login.decide(Code::ServiceErr, None, &format!("config: {e}")),
    };
    login.debug = config.debug;
    if args.use_first_pass && args.forward_pass {
        // Harmless together (the earlier module's token holds both), but
        // use_first_pass never prompts: say what happens.
        login.debug("use_first_pass with forward_pass: PAM_AUTHTOK holds password and code");
    }

    // 2. The account.
    let user = match login.h.user() {
        Ok(u) => u,
        Err(code) => return login.decide(code, None, "could not get the user name"),
    };
    login.user = Some(user.clone());
    let account = match Account::lookup(&user) {
        Ok(a) => a,
        Err(Error::UnknownUser { .. }) => {
            return login.decide(Code::UserUnknown, None, "unknown user");
        }
        Err(e) => return login.decide(Code::SystemErr, None, &format!("user lookup: {e}")),
    };

    // 3. Admin-trusted networks and the local console.
    match login.remote().map(str::to_string) {
        Some(rhost) => {
            if config.networks().contains(&rhost) {
                return login.decide(
                    Code::Success,
                    Some("trusted-network"),
                    "rhost is in trusted_networks",
                );
            }
        }
        None => {
            if config.local_console == LocalConsole::Skip {
                return login.decide(
                    Code::Success,
                    Some("local-console"),
                    "no rhost and local_console = skip",
                );
            }
        }
    }
    let requirement = config.requirement(&account);
    if requirement == Requirement::Exempt {
        return login.decide(Code::Success, Some("exempt"), "member of an exempt group");
    }

    // 4. The user's file.
    let file = match UserFile::for_account(&config, &account) {
        Ok(f) => f,
        Err(e) => return login.decide(Code::SystemErr, None, &format!("user file: {e}")),
    };
    login.debug(&format!("user file {}", file.path().display()));
    let record = match file.read() {
        Ok(Some(r)) => r,
        Ok(None) => {
            return match requirement {
                Requirement::Required => {
                    login.error(ENROLL_HINT);
                    login.decide(Code::AuthErr, None, "not enrolled and 2FA is required")
                }
                _ => login.decide(Code::Ignore, None, "not enrolled"),
            };
        }
        Err(e) => {
            login.error("Cannot read your 2FA settings; ask an administrator.");
            return login.decide(Code::SystemErr, None, &format!("user file: {e}"));
        }
    };

    // 5. A host the user chose to trust.
    if let Some(rhost) = login.remote()
        && record.is_trusted_host(rhost, now)
    {
        return login.decide(
            Code::Success,
            Some("remembered-host"),
            "rhost remembered by the user",
        );
    }

    // 6. Locked out.
    if let Some(until) = record.locked_until(now) {
        let text = format!("Account locked until {}", login.clock.local_hhmm(until));
        login.error(&text);
        return login.decide(
            Code::AuthErr,
            None,
            &format!("locked out for {} more seconds", until - now),
        );
    }

    // 7. and 8. Ask, check, record.
    // Sent codes are offered at a prompt of their own: not with
    // `use_first_pass` (no prompt) nor `forward_pass` (an empty answer
    // there is an empty password).
    let offers: Vec<(Kind, String)> = if args.use_first_pass || args.forward_pass {
        Vec::new()
    } else {
        config
            .channels
            .enabled()
            .iter()
            .filter_map(|s| Some((s.kind, record.destination(s.kind)?.to_string())))
            .collect()
    };
    if offers.is_empty()
        && !record.has_app()
        && record.backup.codes.is_empty()
        && record.sent_codes.is_empty()
    {
        login.error("No way to get a verification code is set up; ask an administrator.");
        return login.decide(
            Code::AuthErr,
            None,
            "no usable method: the user's channels are not configured ([channels])",
        );
    }
    let ask = Ask {
        config: &config,
        args,
        file: &file,
        digits: code_lengths(&record, &config),
        now,
        offers,
        sender,
    };
    ask.run(login)
}

/// The prompt loop and what follows a good code.
struct Ask<'a> {
    config: &'a SystemConfig,
    args: &'a Args,
    file: &'a UserFile,
    /// Lengths a code may have (the OTP's, the backup codes'), for splitting
    /// `forward_pass` answers.
    digits: Vec<usize>,
    now: u64,
    /// Channels the user can have a code sent by, in menu order, with the
    /// destination read before the prompt.
    offers: Vec<(Kind, String)>,
    sender: &'a dyn Sender,
}

/// What asking for a sent code came to.
enum SendResult {
    Delivered,
    Failed,
    /// Over `max_sends_per_hour`; the next send is allowed then.
    Limited(u64),
    Locked(u64),
    Vanished,
}

/// What one check under the lock found.
enum Checked {
    Accepted {
        method: Method,
        backups_left: usize,
        /// Index of the candidate split that matched (`forward_pass`).
        candidate: usize,
    },
    Failed {
        replayed: bool,
        expired: bool,
        locked_until: Option<u64>,
    },
    Locked(u64),
    Vanished,
}

/// Where an answer came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    AuthTok,
    Prompt,
}

impl Ask<'_> {
    fn run(&self, login: &mut Login<'_>) -> Code {
        let start = login.clock.monotonic();
        let mut prompts_left = self.config.max_attempts;
        let mut first_pass = self.args.use_first_pass || self.args.try_first_pass;
        loop {
            let (raw, source) = if first_pass {
                first_pass = false;
                match login.h.authtok() {
                    Some(tok) => (tok, Source::AuthTok),
                    None if self.args.use_first_pass => {
                        login.error("No verification code was given.");
                        return login.decide(
                            Code::AuthErr,
                            None,
                            "use_first_pass and no PAM_AUTHTOK from an earlier module",
                        );
                    }
                    None => continue,
                }
            } else {
                if self.args.use_first_pass || prompts_left == 0 {
                    return login.decide(Code::AuthErr, None, "wrong code");
                }
                if let Some(code) = self.out_of_time(login, start) {
                    return code;
                }
                prompts_left -= 1;
                let asked = login.clock.monotonic();
                let menu = self.prompt_text();
                let (text, echo) = if self.args.forward_pass {
                    (FORWARD_PROMPT, false)
                } else if !self.offers.is_empty() {
                    (menu.as_str(), self.config.echo_verification_code)
                } else {
                    (PROMPT, self.config.echo_verification_code)
                };
                let answer = match login.h.prompt(text, echo) {
                    Ok(a) => a.unwrap_or_default(),
                    Err(code) => return login.decide(code, None, "conversation failed"),
                };
                let waited = login.clock.monotonic().saturating_sub(asked);
                if waited > Duration::from_secs(self.config.prompt_timeout) {
                    login.error("Too late: the code was not entered in time.");
                    return login.decide(
                        Code::AuthErr,
                        None,
                        &format!(
                            "answered after {} s (prompt_timeout {} s)",
                            waited.as_secs(),
                            self.config.prompt_timeout
                        ),
                    );
                }
                if let Some(code) = self.out_of_time(login, start) {
                    return code;
                }
                if let Some((kind, to)) = self.menu_choice(&answer) {
                    let elapsed = login.clock.monotonic().saturating_sub(start).as_secs();
                    let now = self.now.saturating_add(elapsed);
                    match self.send_code(login, kind, &to, now) {
                        // A send is not a guess: the prompt is given back.
                        SendResult::Delivered | SendResult::Failed => prompts_left += 1,
                        // Refused sends use the prompt up, so Enter cannot
                        // be pressed forever.
                        SendResult::Limited(_) => {}
                        SendResult::Locked(until) => {
                            let text =
                                format!("Account locked until {}", login.clock.local_hhmm(until));
                            login.error(&text);
                            return login.decide(
                                Code::AuthErr,
                                Some(kind.as_str()),
                                "locked out (by a concurrent login)",
                            );
                        }
                        SendResult::Vanished => {
                            return login.decide(
                                Code::AuthErr,
                                None,
                                "user file or destination removed during login",
                            );
                        }
                    }
                    continue;
                }
                (answer, Source::Prompt)
            };

            let candidates = self.candidates(&raw);
            if source == Source::AuthTok
                && self.args.try_first_pass
                && candidates
                    .iter()
                    .all(|(_, code)| Answer::parse(code).is_none())
            {
                // Most likely the password of an earlier module: not a
                // guess at a code, so not counted.
                login.debug("PAM_AUTHTOK is not a code; prompting");
                continue;
            }
            let elapsed = login.clock.monotonic().saturating_sub(start).as_secs();
            let now = self.now.saturating_add(elapsed);
            let checked = match self.check(&candidates, now) {
                Ok(c) => c,
                Err(e) => {
                    login.error("Cannot update your 2FA settings; ask an administrator.");
                    return login.decide(Code::SystemErr, None, &format!("user file: {e}"));
                }
            };
            match checked {
                Checked::Accepted {
                    method,
                    backups_left,
                    candidate,
                } => {
                    if self.args.forward_pass {
                        let password = &candidates[candidate].0;
                        if let Err(code) = login.h.set_authtok(password) {
                            return login.decide(code, Some(method.as_str()), "set PAM_AUTHTOK");
                        }
                    }
                    if method == Method::Backup {
                        login.info(&format!("Backup code used; {backups_left} left."));
                    }
                    self.offer_remember(login, now);
                    return login.decide(Code::Success, Some(method.as_str()), "code accepted");
                }
                Checked::Failed {
                    replayed,
                    expired,
                    locked_until,
                } => {
                    let reason = if replayed {
                        "code already used"
                    } else if expired {
                        "sent code expired"
                    } else {
                        "wrong code"
                    };
                    if let Some(until) = locked_until {
                        let text = format!(
                            "Too many wrong codes. Account locked until {}",
                            login.clock.local_hhmm(until)
                        );
                        login.error(&text);
                        if self.args.forward_pass {
                            self.forward_anyway(login, &candidates);
                        }
                        return login.decide(
                            Code::AuthErr,
                            None,
                            &format!("{reason}; locked out until {until}"),
                        );
                    }
                    login.debug(reason);
                    let more = !self.args.use_first_pass && prompts_left > 0;
                    let what = if expired {
                        "That code has expired"
                    } else {
                        "Wrong code"
                    };
                    if more {
                        let tries = if prompts_left == 1 { "try" } else { "tries" };
                        login.error(&format!("{what}; {prompts_left} {tries} left."));
                    } else {
                        login.error(&format!("{what}."));
                        if self.args.forward_pass {
                            self.forward_anyway(login, &candidates);
                        }
                        return login.decide(Code::AuthErr, None, reason);
                    }
                }
                Checked::Locked(until) => {
                    let text = format!("Account locked until {}", login.clock.local_hhmm(until));
                    login.error(&text);
                    return login.decide(Code::AuthErr, None, "locked out by a concurrent login");
                }
                Checked::Vanished => {
                    return login.decide(Code::AuthErr, None, "user file removed during login");
                }
            }
        }
    }

    /// Splits an answer into (password, code) candidates: with
    /// `forward_pass`, the code is the trailing digits, of any length a code
    /// may have; otherwise the whole answer is the code.
    fn candidates(&self, raw: &[u8]) -> Vec<(Secret, Secret)> {
        if !self.args.forward_pass {
            return vec![(Secret::default(), Zeroizing::new(raw.to_vec()))];
        }
        let trailing = raw.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        let mut out: Vec<(Secret, Secret)> = self
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
    fn forward_anyway(&self, login: &mut Login<'_>, candidates: &[(Secret, Secret)]) {
        if let Some((password, _)) = candidates.first() {
            let _ = login.h.set_authtok(password);
        }
    }

    /// Checks the candidates under the file's lock and records the result.
    fn check(&self, candidates: &[(Secret, Secret)], now: u64) -> otpgate_config::Result<Checked> {
        let verify: VerifyPolicy = self.config.verify_policy();
        let lockout: LockoutPolicy = self.config.lockout_policy();
        self.file.update(|slot| {
            #[cfg(debug_assertions)]
            self.args.maybe_panic(crate::args::DebugPanic::Update);
            let Some(record) = slot.as_mut() else {
                return Ok(Checked::Vanished);
            };
            if let Some(until) = record.locked_until(now) {
                return Ok(Checked::Locked(until));
            }
            let mut replayed = false;
            let mut expired = false;
            for (i, (_, code)) in candidates.iter().enumerate() {
                let Some(answer) = Answer::parse(code) else {
                    continue;
                };
                match record.verify(&answer, now, verify)? {
                    Verdict::Accepted(method) => {
                        record.record_success();
                        record.prune_sent(now);
                        return Ok(Checked::Accepted {
                            method,
                            backups_left: record.backup.codes.len(),
                            candidate: i,
                        });
                    }
                    Verdict::Replayed { .. } => replayed = true,
                    Verdict::Expired(_) => expired = true,
                    Verdict::Wrong => {}
                }
            }
            record.prune_sent(now);
            let locked_until = record.record_failure(now, lockout);
            Ok(Checked::Failed {
                replayed,
                expired,
                locked_until,
            })
        })
    }

    /// The prompt when codes can be sent: `Verification code (Enter: send
    /// a code by email): `, or with several channels a short menu.
    fn prompt_text(&self) -> String {
        match self.offers.as_slice() {
            [] => PROMPT.to_string(),
            [(kind, _)] => format!(
                "Verification code (Enter: send a code by {}): ",
                kind.display()
            ),
            [(first, _), rest @ ..] => {
                let mut menu = format!("Enter: send by {}", first.display());
                for (i, (kind, _)) in rest.iter().enumerate() {
                    menu.push_str(&format!(", {}: send by {}", i + 2, kind.display()));
                }
                format!("Verification code ({menu}): ")
            }
        }
    }

    /// The channel an answer asks for: empty (Enter) is the first, `1`,
    /// `2`... pick from the menu. `None`: the answer is a code.
    fn menu_choice(&self, answer: &[u8]) -> Option<(Kind, String)> {
        if self.offers.is_empty() {
            return None;
        }
        let text = std::str::from_utf8(answer).ok()?.trim();
        let index = match text {
            "" => 0,
            t if t.len() == 1 => usize::from(t.as_bytes()[0].checked_sub(b'1')?),
            _ => return None,
        };
        self.offers.get(index).cloned()
    }

    /// Denies once the whole verification of a user offered sent codes
    /// took longer than `channels.verification_time`.
    fn out_of_time(&self, login: &mut Login<'_>, start: Duration) -> Option<Code> {
        let limit = self.config.channels.verification_time;
        if self.offers.is_empty() {
            return None;
        }
        let spent = login.clock.monotonic().saturating_sub(start);
        if spent <= Duration::from_secs(limit) {
            return None;
        }
        login.error("Too late: the verification took too long.");
        Some(login.decide(
            Code::AuthErr,
            None,
            &format!(
                "verification took {} s (channels.verification_time {limit} s)",
                spent.as_secs()
            ),
        ))
    }

    /// Creates a code under the lock (rate limit, lockout), then runs the
    /// channel's command with the lock released, and tells the user.
    fn send_code(&self, login: &mut Login<'_>, kind: Kind, to: &str, now: u64) -> SendResult {
        let Some(settings) = self.config.channels.get(kind) else {
            return SendResult::Vanished;
        };
        let prepared = self.file.update(|slot| {
            let Some(record) = slot.as_mut() else {
                return Ok(Err(SendResult::Vanished));
            };
            if let Some(until) = record.locked_until(now) {
                return Ok(Err(SendResult::Locked(until)));
            }
            // The destination as it is now, not as it was before the prompt.
            if record.destination(kind) != Some(to) {
                return Ok(Err(SendResult::Vanished));
            }
            record.prune_sent(now);
            if let Err(next) = record.send_allowed(kind, now, settings.max_sends_per_hour) {
                return Ok(Err(SendResult::Limited(next)));
            }
            let code = record.new_sent_code(
                kind,
                settings.code_digits,
                now,
                settings.lifetime_seconds(),
            )?;
            Ok(Ok(code))
        });
        let code = match prepared {
            Ok(Ok(code)) => code,
            Ok(Err(sent)) => {
                if let SendResult::Limited(next) = sent {
                    login.error(&format!(
                        "Too many codes were sent by {}; the next can be sent at {}.",
                        kind.display(),
                        login.clock.local_hhmm(next)
                    ));
                    self.log_send(
                        login,
                        kind,
                        "rate-limited",
                        &format!(
                            "{} sends in the last hour (max_sends_per_hour)",
                            settings.max_sends_per_hour
                        ),
                    );
                }
                return sent;
            }
            Err(e) => {
                login.error("Cannot update your 2FA settings; ask an administrator.");
                self.log_send(login, kind, "error", &format!("user file: {e}"));
                return SendResult::Failed;
            }
        };
        let host = channel::host_name();
        let service = login.service.clone().unwrap_or_default();
        let user = login.user.clone().unwrap_or_default();
        let vars = Vars {
            code: &code,
            user: &user,
            host: &host,
            service: &service,
            minutes: settings.code_lifetime,
            to,
        };
        let message = deliver::compose(&settings, to, &vars);
        drop(code);
        match self.sender.send(&message) {
            Outcome::Sent(took) => {
                let minutes = settings.code_lifetime;
                login.info(&format!(
                    "A code was sent by {} to {}; it is valid for {minutes} minute{}.",
                    kind.display(),
                    channel::mask(kind, to),
                    if minutes == 1 { "" } else { "s" }
                ));
                self.log_send(
                    login,
                    kind,
                    "sent",
                    &format!("command exited 0 after {} ms", took.as_millis()),
                );
                SendResult::Delivered
            }
            Outcome::Failed(why) => {
                login.error(&format!(
                    "The code could not be sent by {}; try another way or ask an administrator.",
                    kind.display()
                ));
                self.log_send(login, kind, "send-failed", &why);
                SendResult::Failed
            }
        }
    }

    /// One log line per send: never the code, only the outcome.
    fn log_send(&self, login: &mut Login<'_>, kind: Kind, outcome: &str, reason: &str) {
        let severity = if outcome == "sent" {
            Severity::Info
        } else {
            Severity::Warning
        };
        let mut line = String::new();
        field(&mut line, "user", login.user.as_deref());
        field(&mut line, "service", login.service.as_deref());
        field(&mut line, "rhost", login.rhost.as_deref());
        field(&mut line, "tty", login.tty.as_deref());
        field(&mut line, "method", Some(kind.as_str()));
        field(&mut line, "outcome", Some(outcome));
        field(&mut line, "reason", Some(reason));
        login.log.line(severity, &line);
    }

    /// Step 8: "Trust this host for N days?" after a good code from a remote
    /// host. A failure here is logged; the login stands.
    fn offer_remember(&self, login: &mut Login<'_>, now: u64) {
        let days = self.config.remember_days;
        let Some(rhost) = login.remote().map(str::to_string) else {
            return;
        };
        if days == 0 {
            return;
        }
        let span = if days == 1 {
            "1 day".to_string()
        } else {
            format!("{days} days")
        };
        let question = format!("Trust this host for {span}? [y/N] ");
        let yes = match login.h.prompt(&question, true) {
            Ok(Some(a)) => {
                let a = String::from_utf8_lossy(&a).trim().to_ascii_lowercase();
                a == "y" || a == "yes"
            }
            _ => false,
        };
        if !yes {
            return;
        }
        let until = now.saturating_add(u64::from(days) * 86_400);
        let result = self.file.update(|slot| {
            if let Some(record) = slot.as_mut() {
                record.trust_host(&rhost, until, now);
            }
            Ok(())
        });
        match result {
            Ok(()) => login.info(&format!("This host is trusted for {span}.")),
            Err(e) => {
                let mut line = String::new();
                field(&mut line, "user", login.user.as_deref());
                field(&mut line, "rhost", Some(&rhost));
                field(
                    &mut line,
                    "reason",
                    Some(&format!("could not remember host: {e}")),
                );
                login.log.line(Severity::Warning, &line);
            }
        }
    }
}

/// Code lengths of a record: its OTP digits and the backup code length
/// (longest first, so a password ending in digits keeps them only when no
/// longer code matches).
fn code_lengths(record: &UserRecord, config: &SystemConfig) -> Vec<usize> {
    let mut v = Vec::new();
    if let Some(t) = &record.totp {
        v.push(usize::from(t.digits));
    }
    if let Some(h) = &record.hotp {
        v.push(usize::from(h.digits));
    }
    v.push(usize::from(config.backup_code_digits));
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.dedup();
    v
}

#[cfg(test)]
mod tests;
