//! The login flow of `pam_sm_authenticate` (docs/ARCHITECTURE.md, "The
//! login flow", steps 1 to 9), written against small traits so a scripted
//! fake drives it in tests, on a memory store, without root.
//!
//! Fail closed: every path that is not a proven success or a deliberate
//! `PAM_IGNORE` (no enrollment, policy allows it) returns a denial, and every
//! decision is logged once with user, service, rhost, method, outcome and
//! reason, and every refused answer once more when it is refused. Codes and
//! secrets never reach the log.
#![forbid(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use otpgate_config::record::View;
use otpgate_config::record::{DeviceName, Method, source_key};
use otpgate_config::remote::Daemon;
use otpgate_config::service::{Local, Service};
use otpgate_config::ssh_auth::{self, LoginKey};
use otpgate_config::store::Backend;
use otpgate_config::system::StoreKind;
use otpgate_config::system::{Factor, LocalConsole, Requirement, is_local_terminal};
use otpgate_config::texts;
use otpgate_config::verification::{Menu, Sender};
use otpgate_config::{Account, Error, SystemConfig, UserRecord};
use pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::args::Args;
use crate::log::{Log, Severity, field};
use crate::reason::{Reason, Why};

mod ask;

pub use otpgate_config::texts::{ENROLL_HINT, FORWARD_PROMPT, PROMPT};
pub use otpgate_config::verification::CommandSender;

/// The PAM results the flow returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    ServiceErr,
    SystemErr,
    AuthErr,
    UserUnknown,
    /// `PAM_MAXTRIES`: a lockout. "Do not try again": sshd then ends the
    /// connection instead of letting the client retry keyboard-interactive
    /// (3 times by default), each retry repeating the lockout message.
    MaxTries,
    ConvErr,
    Ignore,
    /// Another code from libpam, passed through (e.g. from `pam_get_user`).
    Other(i32),
}

impl Code {
    /// The value in `<security/_pam_types.h>`, as the bindings define it.
    pub fn raw(self) -> i32 {
        let code = match self {
            Code::Success => PamResultCode::PAM_SUCCESS,
            Code::ServiceErr => PamResultCode::PAM_SERVICE_ERR,
            Code::SystemErr => PamResultCode::PAM_SYSTEM_ERR,
            Code::AuthErr => PamResultCode::PAM_AUTH_ERR,
            Code::UserUnknown => PamResultCode::PAM_USER_UNKNOWN,
            Code::MaxTries => PamResultCode::PAM_MAXTRIES,
            Code::ConvErr => PamResultCode::PAM_CONV_ERR,
            Code::Ignore => PamResultCode::PAM_IGNORE,
            Code::Other(raw) => return raw,
        };
        code as i32
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
    /// The PAM environment variable `name` (`pam_getenv`); `None` when
    /// unset.
    fn env(&self, name: &str) -> Option<String>;
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
    /// What an earlier instance of this module recorded on this PAM handle
    /// after accepting a code (`pam_get_data`); `None` when nothing was.
    fn verified(&self) -> Option<Verified>;
    /// Records an accepted code on this PAM handle for later instances of
    /// the module in the same stack (`pam_set_data`).
    fn set_verified(&mut self, verified: &Verified) -> Result<(), Code>;
}

/// The method a later instance logs when an earlier one in the same PAM
/// stack run already accepted a code for the user.
pub const ALREADY_VERIFIED: &str = "already-verified";

/// What the instance of the module that accepted a code leaves on the PAM
/// handle (`pam_set_data`), so that a second line loading the module in the
/// same stack (a service's own line plus the pam-auth-update profile in
/// `common-auth`) does not ask again: the user it verified, when, and with
/// which method. Only modules can set or read handle data (libpam refuses
/// the application with `PAM_SYSTEM_ERR`), and the key is this module's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: String,
    /// The Unix time the code was accepted.
    pub at: u64,
    /// `totp`, `hotp`, `backup`, `email`, `sms`.
    pub method: String,
}

/// The first word of [`Verified::encode`]: a later format gets a new one,
/// and an instance of another version reads nothing it does not know.
const VERIFIED_FORMAT: &str = "otpgate-verified-1";

impl Verified {
    /// `otpgate-verified-1 <at> <method> <user>`: plain bytes, so instances
    /// of different builds (or a C reader) agree; the user comes last and
    /// may hold anything but NUL.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{VERIFIED_FORMAT} {} {} {}",
            self.at, self.method, self.user
        )
        .into_bytes()
    }

    /// The inverse of [`Verified::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Verified> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(4, ' ');
        if parts.next()? != VERIFIED_FORMAT {
            return None;
        }
        let at = parts.next()?.parse().ok()?;
        let method = parts.next().filter(|m| !m.is_empty())?.to_string();
        let user = parts.next().filter(|u| !u.is_empty())?.to_string();
        Some(Verified { user, at, method })
    }
}

/// Time, read through one place so tests control it.
pub trait Clock {
    /// Seconds since 1970; `None` when the clock is before the epoch.
    fn unix_now(&self) -> Option<u64>;
    /// A monotonic reading, for prompt timeouts.
    fn monotonic(&self) -> Duration;
    /// `HH:MM ZONE` of a Unix time in the local time zone (`14:05 CET`).
    fn local_hhmm(&self, unix: u64) -> String;
}

/// What a login uses besides PAM: the clock, how codes are sent, where
/// records are.
pub struct Env<'a> {
    pub clock: &'a dyn Clock,
    pub sender: &'a dyn Sender,
    pub stores: &'a dyn Backend,
}

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
            let reason = Reason::Panic(what);
            let mut line = String::new();
            field(&mut line, "outcome", Some("error"));
            field(&mut line, "reason", Some(&reason.to_string()));
            let _ = catch_unwind(AssertUnwindSafe(|| {
                log.reason(&reason);
                log.line(Severity::Error, &line)
            }));
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
    /// What sshd says about the SSH key of this login (`SSH_AUTH_INFO_0`).
    ssh_key: LoginKey,
    /// The device whose code was accepted, for the decision line
    /// (`device=NAME`, after `method`).
    device: Option<DeviceName>,
}

impl Login<'_> {
    /// Logs the decision and returns its code.
    fn decide(&mut self, code: Code, method: Option<&str>, reason: Reason) -> Code {
        let (outcome, severity) = match code {
            Code::Success => ("success", Severity::Info),
            Code::Ignore => ("ignore", Severity::Info),
            Code::AuthErr | Code::UserUnknown | Code::MaxTries => ("deny", Severity::Notice),
            _ => ("error", Severity::Error),
        };
        self.log_line(severity, method, outcome, &reason);
        code
    }

    /// One line with everything known about the login.
    fn log_line(&mut self, severity: Severity, method: Option<&str>, outcome: &str, why: &Reason) {
        self.write_line(severity, method, outcome, None, why);
    }

    /// One line for one refused answer, `outcome=refused why=...`, written
    /// the moment it is refused and before the user is told: a login that
    /// ends without a decision (the client disconnects, the conversation
    /// fails) still leaves a line per guess, for fail2ban and auditors
    /// (README, "Logging"). The decision line follows when the login ends.
    fn log_refused(&mut self, method: Option<Method>, why: Why, reason: &Reason) {
        let method = method.map(Method::as_str);
        self.write_line(Severity::Notice, method, "refused", Some(why), reason);
    }

    /// The fields of every line, in this order: `user service rhost tty
    /// method outcome [why] reason` (the fail2ban filter relies on the
    /// first three coming first).
    fn write_line(
        &mut self,
        severity: Severity,
        method: Option<&str>,
        outcome: &str,
        refused: Option<Why>,
        why: &Reason,
    ) {
        let mut line = String::new();
        field(&mut line, "user", self.user.as_deref());
        field(&mut line, "service", self.service.as_deref());
        field(&mut line, "rhost", self.rhost.as_deref());
        field(&mut line, "tty", self.tty.as_deref());
        field(&mut line, "method", method);
        if let Some(device) = self.device.filter(|_| outcome == "success") {
            field(&mut line, "device", Some(device.as_str()));
        }
        field(&mut line, "outcome", Some(outcome));
        if let Some(refused) = refused {
            field(&mut line, "why", Some(refused.as_str()));
        }
        field(&mut line, "reason", Some(&why.to_string()));
        self.log.reason(why);
        self.log.line(severity, &line);
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

    /// `PAM_SERVICE`, empty when unset (then nothing is remembered).
    fn service_name(&self) -> &str {
        self.service.as_deref().unwrap_or_default()
    }

    /// `PAM_TTY` is a console, serial line or local display (never a pts).
    fn on_local_terminal(&self) -> bool {
        self.tty.as_deref().is_some_and(is_local_terminal)
    }

    /// Leaves the accepted code on the PAM handle for a later instance of
    /// the module in the same stack (see `skip_if_verified`). A failure only
    /// means that instance asks again: logged in debug, the login stands.
    fn record_verified(&mut self, method: &str, now: u64) {
        let Some(user) = self.user.clone() else {
            return;
        };
        let verified = Verified {
            user,
            at: now,
            method: method.to_string(),
        };
        if let Err(code) = self.h.set_verified(&verified) {
            self.debug(&format!(
                "could not record the accepted code on the PAM handle (PAM code {})",
                code.raw()
            ));
        }
    }

    /// `HH:MM` of `unix`, for messages.
    fn hhmm(&self, unix: u64) -> String {
        self.clock.local_hhmm(unix)
    }
}

/// `pam_sm_authenticate`: the whole flow. `silent` is `PAM_SILENT`.
pub fn authenticate(
    h: &mut dyn Handle,
    log: &mut dyn Log,
    args: &Args,
    silent: bool,
    env: &Env<'_>,
) -> Code {
    let service = h.service();
    let rhost = h.rhost();
    let tty = h.tty();
    let ssh_key = LoginKey::from_env(h.env(ssh_auth::ENV_NAME).as_deref());
    let mut login = Login {
        h,
        clock: env.clock,
        log,
        silent,
        debug: false,
        user: None,
        service,
        rhost,
        tty,
        ssh_key,
        device: None,
    };
    run(&mut login, args, env).unwrap_or_else(|decided| decided)
}

/// Steps 1 to 9; `Err` carries a decision already logged.
fn run(login: &mut Login<'_>, args: &Args, env: &Env<'_>) -> Result<Code, Code> {
    let (config, now) = load(login, args)?;
    let account = account(login, args)?;
    // This login's settings: the base with its `[[policy.override]]`
    // entry applied (docs/ARCHITECTURE.md, §5.1); all below reads them.
    let config = config.for_login(&account, login.service.as_deref());
    skip_if_verified(login, &config, now)?;
    skip_for_network(login, &config)?;
    let requirement = config.requirement(&account);
    if requirement == Requirement::Exempt {
        forward_whole(login, args)?;
        return Err(login.decide(Code::Success, Some("exempt"), Reason::Exempt));
    }
    #[cfg(debug_assertions)]
    let hook = || args.maybe_panic(crate::args::DebugPanic::Update);
    #[cfg(not(debug_assertions))]
    let hook = || {};
    let service = open_service(login, env, &config, &account, &hook)?;
    let view = read_view(login, args, service.as_ref(), requirement)?;
    // With forward_pass, wrong answers count against their source only.
    let source = args.forward_pass.then(|| source_key(login.remote()));
    skip_for_record(login, args, &config, &view.record, source.as_deref(), now)?;
    skip_for_ssh_key(login, &config)?;
    let menu = menu(args, &config, &view.record);
    usable(login, args, &config, &view, &menu)?;
    let mut ask = ask::Ask::new(&config, args, service.as_ref(), &view, now, menu)
        .counting_by(source.as_deref());
    Ok(ask.run(login))
}

/// With `forward_pass`, a login decided without a code still gets the one
/// prompt every login gets, and the whole answer goes on as the password
/// (`PAM_AUTHTOK`) for the next module: the prompts then do not tell
/// whether the user exists, is enrolled, exempt or locked (issue #12,
/// item 3). Without `forward_pass`, nothing; nor when an earlier module's
/// `PAM_AUTHTOK` is the answer already (`use_first_pass` never prompts).
/// `Ok(true)` when an answer was read.
fn forward_whole(login: &mut Login<'_>, args: &Args) -> Result<bool, Code> {
    let given = args.use_first_pass || (args.try_first_pass && login.h.authtok().is_some());
    if !args.forward_pass || given {
        return Ok(false);
    }
    let answer = match login.h.prompt(FORWARD_PROMPT, false) {
        Ok(answer) => answer.unwrap_or_default(),
        Err(code) => return Err(login.decide(code, None, Reason::ConversationFailed)),
    };
    login
        .h
        .set_authtok(&answer)
        .map_err(|code| login.decide(code, None, Reason::SetAuthTok))?;
    Ok(true)
}

/// Step 1: the arguments, the clock, the config; anything wrong denies.
fn load(login: &mut Login<'_>, args: &Args) -> Result<(SystemConfig, u64), Code> {
    if !args.errors.is_empty() {
        let errors: Vec<String> = args.errors.iter().map(ToString::to_string).collect();
        let reason = Reason::BadArguments(errors.join("; "));
        return Err(login.decide(Code::ServiceErr, None, reason));
    }
    #[cfg(debug_assertions)]
    args.maybe_panic(crate::args::DebugPanic::Start);
    let Some(now) = login.clock.unix_now() else {
        return Err(login.decide(Code::SystemErr, None, Reason::ClockBeforeEpoch));
    };
    let config = SystemConfig::load(&args.config, args.config_required)
        .and_then(|c| c.with_overrides(&args.overrides))
        .map_err(|e| login.decide(Code::ServiceErr, None, Reason::Config(e.to_string())))?;
    login.debug = config.debug;
    if args.use_first_pass && args.forward_pass {
        // Harmless together (the earlier module's token holds both), but
        // use_first_pass never prompts: say what happens.
        login.debug("use_first_pass with forward_pass: PAM_AUTHTOK holds password and code");
    }
    Ok((config, now))
}

/// Step 2: the account.
fn account(login: &mut Login<'_>, args: &Args) -> Result<Account, Code> {
    let user = login
        .h
        .user()
        .map_err(|code| login.decide(code, None, Reason::NoUserName))?;
    login.user = Some(user.clone());
    match Account::lookup(&user) {
        Ok(account) => Ok(account),
        Err(Error::UnknownUser { .. }) => {
            forward_whole(login, args)?;
            Err(login.decide(Code::UserUnknown, None, Reason::UnknownUser))
        }
        Err(e) => Err(login.decide(Code::SystemErr, None, Reason::UserLookup(e.to_string()))),
    }
}

/// Step 2, end: an earlier instance of this module in the same stack run
/// accepted a code for this very user (the stack loads the module twice):
/// success, without a prompt, and no code is looked at or counted. Only an
/// accepted code was recorded (a denial, an ignore, a pass without a code
/// record nothing), and only for the user it verified: when `PAM_USER`
/// changed in between, the new user is asked. The record holds for
/// `prompt_timeout` seconds: an application that keeps one handle for
/// later `pam_authenticate` calls (a screen locker) gets asked again then,
/// and `pam_sm_setcred` removes it once authentication is over.
fn skip_if_verified(login: &mut Login<'_>, config: &SystemConfig, now: u64) -> Result<(), Code> {
    let Some(earlier) = login.h.verified() else {
        return Ok(());
    };
    if login.user.as_deref() != Some(earlier.user.as_str()) {
        login.debug("an earlier instance verified another user: asking this one");
        return Ok(());
    }
    let age = now.checked_sub(earlier.at);
    if age.is_none_or(|age| age > config.prompt_timeout) {
        login.debug("an earlier instance's accepted code is older than prompt_timeout: asking");
        return Ok(());
    }
    let reason = Reason::AlreadyVerified {
        method: earlier.method,
    };
    Err(login.decide(Code::Success, Some(ALREADY_VERIFIED), reason))
}

/// Step 3: admin-trusted networks and the local console pass.
fn skip_for_network(login: &mut Login<'_>, config: &SystemConfig) -> Result<(), Code> {
    match login.remote() {
        Some(rhost) if config.networks().contains(rhost) => Err(login.decide(
            Code::Success,
            Some("trusted-network"),
            Reason::TrustedNetwork,
        )),
        None if config.local_console == LocalConsole::Skip && login.on_local_terminal() => {
            Err(login.decide(Code::Success, Some("local-console"), Reason::LocalConsole))
        }
        _ => Ok(()),
    }
}

/// Step 4a: the user's store: `otpgated` (`store.kind = "daemon"`), or
/// the backend's store in this process. `hook` runs inside every
/// transaction of a store here (debug builds' panic injection).
fn open_service<'a>(
    login: &mut Login<'_>,
    env: &Env<'a>,
    config: &'a SystemConfig,
    account: &Account,
    hook: &'a dyn Fn(),
) -> Result<Box<dyn Service + 'a>, Code> {
    let service: Box<dyn Service + 'a> = match config.store.kind {
        StoreKind::Daemon => {
            Box::new(Daemon::new(config, &account.name).for_service(login.service.as_deref()))
        }
        StoreKind::Files => {
            let store = env
                .stores
                .open(config, account)
                .map_err(|e| login.decide(Code::SystemErr, None, Reason::Store(e.to_string())))?;
            Box::new(Local::new(config, store, env.sender).with_hook(hook))
        }
    };
    login.debug(&format!("record at {}", service.describe()));
    Ok(service)
}

/// Step 4b: the user's record as a login sees it; none is a pass or a
/// denial by policy.
fn read_view(
    login: &mut Login<'_>,
    args: &Args,
    service: &dyn Service,
    requirement: Requirement,
) -> Result<View, Code> {
    match service.view() {
        Ok(Some(view)) => Ok(view),
        Ok(None) if requirement == Requirement::Required => {
            forward_whole(login, args)?;
            login.error(ENROLL_HINT);
            Err(login.decide(Code::AuthErr, None, Reason::NotEnrolledButRequired))
        }
        Ok(None) => {
            forward_whole(login, args)?;
            Err(login.decide(Code::Ignore, None, Reason::NotEnrolled))
        }
        Err(e @ Error::Unavailable { .. }) => {
            forward_whole(login, args)?;
            login.error(texts::SETTINGS_UNAVAILABLE);
            Err(login.decide(
                Code::AuthErr,
                None,
                Reason::SettingsUnavailable(e.to_string()),
            ))
        }
        Err(e) => {
            login.error(texts::CANNOT_READ);
            Err(login.decide(Code::SystemErr, None, Reason::Store(e.to_string())))
        }
    }
}

/// Steps 5 and 6: a locked account (or, with `forward_pass`, a locked
/// `source`) is refused before any code is looked at, even from a
/// remembered host; then an address the user chose to trust for this
/// service passes.
fn skip_for_record(
    login: &mut Login<'_>,
    args: &Args,
    config: &SystemConfig,
    record: &UserRecord,
    source: Option<&str>,
    now: u64,
) -> Result<(), Code> {
    let source_lock = source.and_then(|s| record.source_locked_until(s, now));
    let lock = match (record.locked_until(now), source_lock) {
        (Some(until), _) => Some((
            until,
            Reason::LockedOut {
                seconds_left: until - now,
            },
        )),
        (None, Some(until)) => Some((
            until,
            Reason::SourceLockedOut {
                seconds_left: until - now,
            },
        )),
        (None, None) => None,
    };
    if let Some((until, reason)) = lock {
        if forward_whole(login, args)? {
            // The answer (password and code) is refused unread: a guess
            // all the same.
            login.log_refused(None, Why::Locked, &reason);
        }
        let text = texts::locked_until(&login.hhmm(until));
        login.error(&text);
        return Err(login.decide(Code::MaxTries, None, reason));
    }
    // A login whose `remember_days` is 0 (a `sudo` override, say) honours
    // no remembered host, not even one trusted before.
    let key = login.ssh_key.fingerprint();
    if config.remember_days > 0
        && let Some(rhost) = login.remote()
        && record.is_trusted_host(rhost, login.service_name(), key, now)
    {
        return Err(login.decide(
            Code::Success,
            Some("remembered-host"),
            Reason::RememberedHost,
        ));
    }
    Ok(())
}

/// Step 6, end: the SSH key sshd says this remote login used is one
/// `policy.trusted_ssh_keys` lists (by type or fingerprint), and the
/// login's policy allows `ssh-key`: success without a prompt. Only a
/// single `publickey` key counts, never a certificate; absent, unparsable
/// or ambiguous info counts for nothing and the code is asked (fail
/// closed; `ssh_auth.rs`).
fn skip_for_ssh_key(login: &mut Login<'_>, config: &SystemConfig) -> Result<(), Code> {
    let rules = &config.policy.trusted_ssh_keys;
    if rules.is_empty() || login.remote().is_none() || !config.allows(Factor::SshKey) {
        return Ok(());
    }
    let (LoginKey::One(key), Some(rule)) = (&login.ssh_key, login.ssh_key.trusted_by(rules)) else {
        let name = ssh_auth::ENV_NAME;
        let why = match &login.ssh_key {
            LoginKey::Unknown => format!("no {name}: no SSH key counts"),
            LoginKey::Unparsable(e) => format!("{name} unreadable ({e}): no SSH key counts"),
            LoginKey::Several => "several SSH keys used: none counts".to_string(),
            LoginKey::NoKey | LoginKey::One(_) => "no trusted SSH key used".to_string(),
        };
        login.debug(&why);
        return Ok(());
    };
    let reason = Reason::TrustedSshKey {
        kind: key.kind.clone(),
        fingerprint: key.fingerprint.clone(),
        rule: rule.to_string(),
    };
    Err(login.decide(Code::Success, Some("ssh-key"), reason))
}

/// The channels offered at the prompt. Not with `use_first_pass` (no
/// prompt) nor `forward_pass` (an empty answer there is an empty password).
fn menu(args: &Args, config: &SystemConfig, record: &UserRecord) -> Menu {
    if args.use_first_pass || args.forward_pass {
        return Menu::default();
    }
    Menu::for_record(config, record)
}

/// Step 7 needs a way to get a code this login allows: an app, backup
/// codes, a channel.
fn usable(
    login: &mut Login<'_>,
    args: &Args,
    config: &SystemConfig,
    view: &View,
    menu: &Menu,
) -> Result<(), Code> {
    let record = &view.record;
    let app = view.has_app() && config.allows(Factor::App);
    let backup = !record.backup.codes.is_empty() && config.allows(Factor::Backup);
    let sent = record.sent_codes.iter().any(|c| config.allows(c.channel));
    if menu.is_empty() && !app && !backup && !sent {
        forward_whole(login, args)?;
        login.error(texts::NO_METHOD);
        return Err(login.decide(Code::AuthErr, None, Reason::NoUsableMethod));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
