//! The commands on an existing enrollment: status, verify, backup-codes,
//! trusted, disable, and the admin actions unlock and reset.

use std::io::Write;

use otpgate_config::change::{Change, Changed};
use otpgate_config::channel::Kind;
use otpgate_config::otp::Algorithm;
use otpgate_config::record::{DeviceName, View};
use otpgate_config::system::Requirement;
use otpgate_config::{Error, Method, UserRecord};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{BackupCodesArgs, TrustedCommand, VerifyArgs};
use crate::context::{Check, Context};
use crate::devices::DeviceJson;
use crate::error::{CliError, Result};
use crate::output;
use crate::time::format_local;

fn requirement_name(r: Requirement) -> &'static str {
    match r {
        Requirement::Exempt => "exempt",
        Requirement::IfEnrolled => "if-enrolled",
        Requirement::Required => "required",
    }
}

/// A trust: logins from `host` to `service` (with the SSH key `key`, a
/// fingerprint, when set) skip the code from `since` until `until` (Unix
/// times).
#[derive(Serialize)]
struct HostJson<'a> {
    host: &'a str,
    service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    since: u64,
    until: u64,
}

impl HostJson<'_> {
    /// `203.0.113.7  service sshd  [key SHA256:...  ]since <local time>
    /// until <local time>`.
    fn line(&self) -> String {
        let since = match self.since {
            0 => "unknown".to_string(),
            t => format_local(t),
        };
        let key = self.key.map(|k| format!("key {k}  ")).unwrap_or_default();
        format!(
            "{}  service {}  {key}since {since}  until {}",
            self.host,
            self.service,
            format_local(self.until)
        )
    }
}

/// The trusts of `record` still honoured at `now` (entries without a
/// service, from older files, are not: `record.rs` `is_trusted_host`).
fn trusted_now(record: &UserRecord, now: u64) -> Vec<HostJson<'_>> {
    record
        .honoured_trusted_hosts(now)
        .map(|h| HostJson {
            host: &h.host,
            service: &h.service,
            key: h.key.as_deref(),
            since: h.since,
            until: h.until,
        })
        .collect()
}

#[derive(Serialize)]
struct StatusJson<'a> {
    user: &'a str,
    file: String,
    enrolled: bool,
    /// What the policy demands: "required", "if-enrolled" or "exempt".
    requirement: &'static str,
    /// Every way this user can log in: "totp" or "hotp", "email", "sms",
    /// "backup" (codes left).
    #[serde(skip_serializing_if = "Option::is_none")]
    methods: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sms: Option<&'a str>,
    /// The authenticator app's kind, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    algorithm: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digits: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counter: Option<u64>,
    /// Every device: name, kind, algorithm, digits, period or counter
    /// (the fields above are the first device's).
    #[serde(skip_serializing_if = "Option::is_none")]
    devices: Option<Vec<DeviceJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_codes_left: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failures: Option<u32>,
    /// Unix time the lockout ends; null when not locked.
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_until: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_hosts: Option<Vec<HostJson<'a>>>,
}

impl<'a> StatusJson<'a> {
    /// The one place the JSON is assembled; `enrolled` is `None` for a user
    /// without an enrollment (then only the first four fields are written).
    fn new(
        user: &'a str,
        file: String,
        requirement: &'static str,
        enrolled: Option<Enrolled<'a>>,
    ) -> Self {
        let app = enrolled.as_ref().and_then(|e| e.app);
        let is_enrolled = enrolled.is_some();
        let (devices, methods, email, sms, codes_left, failures, locked, hosts) = match enrolled {
            Some(e) => (
                Some(e.devices),
                Some(e.methods),
                e.email,
                e.sms,
                Some(e.codes_left),
                Some(e.failures),
                Some(e.locked),
                Some(e.hosts),
            ),
            None => (None, None, None, None, None, None, None, None),
        };
        StatusJson {
            user,
            file,
            enrolled: is_enrolled,
            requirement,
            methods,
            email,
            sms,
            method: app.map(|a| a.kind),
            algorithm: app.map(|a| a.algorithm.as_str()),
            digits: app.map(|a| a.digits),
            period: app.and_then(|a| a.period),
            counter: app.and_then(|a| a.counter),
            devices,
            backup_codes_left: codes_left,
            failures,
            locked_until: locked,
            trusted_hosts: hosts,
        }
    }
}

/// The authenticator app of an enrollment.
#[derive(Clone, Copy)]
struct App {
    /// `totp` or `hotp`.
    kind: &'static str,
    algorithm: Algorithm,
    digits: u8,
    /// TOTP only.
    period: Option<u64>,
    /// HOTP only: the next counter.
    counter: Option<u64>,
}

/// What `status` shows of an enrollment.
struct Enrolled<'a> {
    app: Option<App>,
    devices: Vec<DeviceJson<'a>>,
    methods: Vec<&'static str>,
    email: Option<&'a str>,
    sms: Option<&'a str>,
    codes_left: usize,
    failures: u32,
    locked: Option<u64>,
    /// Those not yet expired.
    hosts: Vec<HostJson<'a>>,
}

impl<'a> Enrolled<'a> {
    fn of(view: &'a View, now: u64) -> Self {
        let r = &view.record;
        let app = view.app().map(|a| App {
            kind: a.method.as_str(),
            algorithm: a.algorithm,
            digits: a.digits,
            period: a.period,
            counter: a.counter,
        });
        let hosts = trusted_now(r, now);
        Enrolled {
            app,
            devices: view.devices.iter().map(DeviceJson::of).collect(),
            methods: view.methods(),
            email: r.destination(Kind::Email),
            sms: r.destination(Kind::Sms),
            codes_left: r.backup.codes.len(),
            failures: r.state.failures,
            locked: r.locked_until(now),
            hosts,
        }
    }
}

pub fn status(ctx: &Context) -> Result<()> {
    let record = ctx.service().view()?;
    let requirement = requirement_name(ctx.config.requirement(&ctx.account));
    let file = ctx.describe();
    let enrolled = record.as_ref().map(|r| Enrolled::of(r, ctx.now));
    if ctx.json {
        return output::print_json(&StatusJson::new(
            &ctx.account.name,
            file,
            requirement,
            enrolled,
        ));
    }
    field("user", &ctx.account.name);
    field("file", &file);
    match &enrolled {
        None => {
            field("enrolled", "no (run `otpgate enroll`)");
            field("policy", requirement_text(requirement));
        }
        Some(e) => print_enrolled(ctx, requirement, e),
    }
    Ok(())
}

/// The text of `status` after the user and file lines, for an enrollment.
fn print_enrolled(ctx: &Context, requirement: &str, e: &Enrolled<'_>) {
    match e.devices.len() {
        0 | 1 => field("enrolled", format_args!("yes ({})", app_detail(e.app))),
        n => field("enrolled", format_args!("yes ({n} devices)")),
    }
    if !e.devices.is_empty() {
        println!("devices:");
        for line in crate::devices::lines(&e.devices) {
            println!("    {line}");
        }
    }
    let configured = |kind: Kind| {
        if ctx.config.channels.get(kind).is_some() {
            ""
        } else {
            " (not configured on this system: no codes are sent)"
        }
    };
    field("methods", e.methods.join(", "));
    if let Some(a) = e.email {
        field("email", format_args!("{a}{}", configured(Kind::Email)));
    }
    if let Some(n) = e.sms {
        field("sms", format_args!("{n}{}", configured(Kind::Sms)));
    }
    field("policy", requirement_text(requirement));
    field("backup codes", format_args!("{} left", e.codes_left));
    match e.locked {
        Some(until) => field("locked out", format_args!("until {}", format_local(until))),
        None if e.failures > 0 => field(
            "locked out",
            format_args!(
                "no ({} wrong code{} since the last good one)",
                e.failures,
                if e.failures == 1 { "" } else { "s" }
            ),
        ),
        None => field("locked out", "no"),
    }
    if e.hosts.is_empty() {
        field("trusted hosts", "none");
    } else {
        println!("trusted hosts:");
        for h in &e.hosts {
            println!("    {}", h.line());
        }
    }
}

/// One `label: value` line of `status`, values aligned in one column.
fn field(label: &str, value: impl std::fmt::Display) {
    println!("{:<15}{value}", format!("{label}:"));
}

/// The app in words: `TOTP, SHA1, 6 digits, 30 s`.
fn app_detail(app: Option<App>) -> String {
    match app {
        Some(App {
            algorithm,
            digits,
            period: Some(p),
            ..
        }) => format!("TOTP, {}, {digits} digits, {p} s", algorithm.as_str()),
        Some(App {
            algorithm,
            digits,
            counter,
            ..
        }) => format!(
            "HOTP, {}, {digits} digits, next counter {}",
            algorithm.as_str(),
            counter.unwrap_or_default()
        ),
        None => "no authenticator app".into(),
    }
}

fn requirement_text(r: &str) -> &'static str {
    match r {
        "required" => "a second factor is required for this user",
        "exempt" => "this user is exempt from the second factor",
        _ => "a second factor is asked when enrolled",
    }
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    valid: bool,
    method: &'static str,
    /// The device whose code it was (app codes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
    consumed: bool,
    backup_codes_left: usize,
}

pub fn verify(ctx: &mut Context, args: &VerifyArgs) -> Result<()> {
    let view = ctx.enrolled()?;
    if let Some(until) = view.record.locked_until(ctx.now) {
        return Err(CliError::LockedOut { until, now: false });
    }
    let answer = ctx.input.code(otpgate_config::texts::PROMPT)?;
    let (method, device) = match ctx.check_code(answer.as_ref(), args.consume)? {
        Check::Accepted(method, device) => (method, device),
        Check::Wrong => return Err(CliError::CodeRefused("wrong code".into())),
        Check::Replayed => {
            return Err(CliError::CodeRefused(
                otpgate_config::texts::used_code(0).to_lowercase(),
            ));
        }
        Check::LockedNow(until) => return Err(CliError::LockedOut { until, now: true }),
        Check::LockedOut(until) => return Err(CliError::LockedOut { until, now: false }),
        Check::NotEnrolled => return Err(ctx.not_enrolled()),
    };
    let left = ctx.service().view()?.map_or(0, |v| v.backup_codes_left());
    let consumed = method == Method::Backup && args.consume;
    if ctx.json {
        return output::print_json(&VerifyJson {
            valid: true,
            method: method.as_str(),
            device: device.as_ref().map(DeviceName::as_str),
            consumed,
            backup_codes_left: left,
        });
    }
    let of_device = device
        .map(|d| format!(" of device {}", d.as_str()))
        .unwrap_or_default();
    match method {
        Method::Totp => println!("OK: the TOTP code{of_device} is right."),
        Method::Hotp => println!("OK: the HOTP code{of_device} is right."),
        Method::Backup if consumed => {
            println!("OK: backup code used; {left} left.");
        }
        Method::Backup => println!(
            "OK: that is a valid backup code; it was not used ({left} left; --consume uses it)."
        ),
        Method::Email => println!("OK: the code sent by email is right (it is used up)."),
        Method::Sms => println!("OK: the code sent by SMS is right (it is used up)."),
    }
    Ok(())
}

#[derive(Serialize)]
struct BackupJson<'a> {
    backup_codes: Vec<&'a str>,
}

pub fn backup_codes(ctx: &mut Context, args: &BackupCodesArgs) -> Result<()> {
    ctx.enrolled()?;
    ctx.confirm_current_code(args.force)?;
    let codes = match ctx.service().change(&Change::NewBackupCodes, ctx.now)? {
        Changed::BackupCodes { codes } => codes,
        Changed::NotEnrolled => return Err(ctx.not_enrolled()),
        other => return Err(unexpected(&other)),
    };
    if let Some(path) = &args.file {
        let mut text = Zeroizing::new(format!(
            "otpgate backup codes for {}; each works once\n",
            ctx.account.name
        ));
        for c in &codes {
            text.push_str(c);
            text.push('\n');
        }
        // Saved already: a failure here still shows the codes below.
        if let Err(e) = output::write_new_file(path, text.as_bytes(), &ctx.account) {
            eprintln!("otpgate: {e}");
        }
    }
    if ctx.json {
        return output::print_json(&BackupJson {
            backup_codes: codes.iter().map(|c| c.as_str()).collect(),
        });
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "New backup codes for {} (the old ones no longer work). Each works once; \
         they are not shown again.\n",
        ctx.account.name
    );
    for pair in codes.chunks(2) {
        let line: Vec<&str> = pair.iter().map(|c| c.as_str()).collect();
        let _ = writeln!(out, "    {}", line.join("    "));
    }
    Ok(())
}

pub fn trusted(ctx: &Context, command: &TrustedCommand) -> Result<()> {
    let now = ctx.now;
    match command {
        TrustedCommand::List => {
            let view = ctx.enrolled()?;
            let hosts = trusted_now(&view.record, now);
            if ctx.json {
                #[derive(Serialize)]
                struct ListJson<'a> {
                    trusted_hosts: Vec<HostJson<'a>>,
                }
                return output::print_json(&ListJson {
                    trusted_hosts: hosts,
                });
            }
            if hosts.is_empty() {
                println!("No trusted hosts.");
            }
            for h in &hosts {
                println!("{}", h.line());
            }
            Ok(())
        }
        TrustedCommand::Remove { host } => {
            let change = Change::ForgetHost { host: host.clone() };
            match ctx.service().change(&change, now)? {
                Changed::NotEnrolled => Err(ctx.not_enrolled()),
                Changed::Forgot { found: false } => {
                    Err(CliError::NotTrusted { host: host.clone() })
                }
                Changed::Forgot { found: true } => {
                    report(ctx, &format!("{host} is no longer trusted."))
                }
                other => Err(unexpected(&other)),
            }
        }
        TrustedCommand::Clear => {
            let n = match ctx.service().change(&Change::ForgetAllHosts, now)? {
                Changed::ForgotAll { count } => count,
                Changed::NotEnrolled => return Err(ctx.not_enrolled()),
                other => return Err(unexpected(&other)),
            };
            report(
                ctx,
                &format!("Removed {n} trusted host{}.", if n == 1 { "" } else { "s" }),
            )
        }
    }
}

/// A one-line confirmation, or `{"ok":true,"message":...}` with --json.
pub fn report(ctx: &Context, message: &str) -> Result<()> {
    if ctx.json {
        #[derive(Serialize)]
        struct Ok<'a> {
            ok: bool,
            user: &'a str,
            message: &'a str,
        }
        return output::print_json(&Ok {
            ok: true,
            user: &ctx.account.name,
            message,
        });
    }
    println!("{message}");
    Ok(())
}

/// Removes the file; `Err(NotEnrolled)` when there is none.
fn remove_enrollment(ctx: &Context) -> Result<()> {
    match ctx.service().change(&Change::Disable, ctx.now)? {
        Changed::Disabled => Ok(()),
        Changed::NotEnrolled => Err(ctx.not_enrolled()),
        other => Err(unexpected(&other)),
    }
}

/// A store that answered a change with the outcome of another: a bug
/// there (or a daemon of another build); nothing is claimed done.
pub fn unexpected(changed: &Changed) -> CliError {
    CliError::Library(Error::StoreContract {
        store: format!("unexpected outcome {changed:?}"),
    })
}

pub fn after_removal_warning(ctx: &Context) -> Option<String> {
    (ctx.config.requirement(&ctx.account) == Requirement::Required).then(|| {
        format!(
            " The policy requires a second factor for {}: logins are denied until they enroll again.",
            ctx.account.name
        )
    })
}

pub fn disable(ctx: &mut Context, force: bool) -> Result<()> {
    ctx.enrolled()?;
    ctx.confirm_current_code(force)?;
    remove_enrollment(ctx)?;
    let warning = after_removal_warning(ctx).unwrap_or_default();
    report(
        ctx,
        &format!(
            "otpgate is disabled for {}; its secret and backup codes are deleted.{warning}",
            ctx.account.name
        ),
    )
}

pub fn unlock(ctx: &Context) -> Result<()> {
    ctx.require_root("unlock")?;
    match ctx.service().change(&Change::Unlock, ctx.now)? {
        Changed::Unlocked { was_locked: true } => {
            report(ctx, &format!("{} is unlocked.", ctx.account.name))
        }
        Changed::Unlocked { was_locked: false } => {
            report(ctx, &format!("{} was not locked out.", ctx.account.name))
        }
        Changed::NotEnrolled => Err(ctx.not_enrolled()),
        other => Err(unexpected(&other)),
    }
}

/// Removes the enrollment; when the record cannot be reached (a home not
/// mounted), what root knows of it is forgotten, so the user is no longer
/// denied as "unavailable".
pub fn reset(ctx: &Context) -> Result<()> {
    ctx.require_root("reset")?;
    let warning = after_removal_warning(ctx).unwrap_or_default();
    match remove_enrollment(ctx) {
        Ok(()) => report(
            ctx,
            &format!(
                "The enrollment of {} is removed; they can run `otpgate enroll` again.{warning}",
                ctx.account.name
            ),
        ),
        Err(CliError::Library(Error::Unavailable { store, .. })) => {
            ctx.local_store("forgetting an unreachable record")?
                .forget()?;
            report(
                ctx,
                &format!(
                    "{} is no longer recorded as enrolled; their file {store} could not be reached and is left as it is (if it comes back, their next login enrolls them again).{warning}",
                    ctx.account.name
                ),
            )
        }
        Err(e) => Err(e),
    }
}
