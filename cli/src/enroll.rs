//! `otpgate enroll`: a new secret, shown as a QR code, confirmed with one
//! code from the app before anything is saved, then backup codes.

use std::io::Write;

use otpgate_config::change::{Change, Changed};
use otpgate_config::otp::{self, Algorithm, Generator, Secret, UriParams};
use otpgate_config::protocol::NewApp;
use otpgate_config::record::Verdict;
use otpgate_config::texts;
use otpgate_config::{Account, Answer, UserRecord};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{AppArgs, EnrollArgs};
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::output;
use crate::qr;
use crate::time::describe_seconds;

/// Tries for the confirmation code.
const CONFIRM_TRIES: u32 = 3;
/// How far either side of now a wrong confirmation code is looked for, to
/// tell a user whose clock is off (time zones included) why it failed.
const CLOCK_SEARCH_SECONDS: u64 = 26 * 3600;

#[derive(Serialize)]
struct EnrollJson<'a> {
    user: &'a str,
    secret: &'a str,
    otpauth_uri: &'a str,
    backup_codes: Vec<&'a str>,
}

pub fn run(ctx: &mut Context, args: &EnrollArgs) -> Result<()> {
    if args.force {
        ctx.require_root("--force")?;
    }
    let existing = ctx.service().view()?;
    ctx.may_replace(existing.is_some(), args.force)?;

    if crate::password::needed(ctx, existing.is_some()) {
        crate::password::confirm(ctx)?;
    }

    let issued = Issued::make(ctx, &args.app)?;
    let Issued {
        secret,
        uri,
        mut record,
        by_daemon: issued,
        ..
    } = issued;
    let host = hostname();

    let confirmed = if args.app.no_confirm {
        None
    } else {
        Some(confirm_new_code(ctx, &mut record, &secret, &args.app)?)
    };

    // The backup codes are made where the record is saved (by otpgated,
    // when it keeps the records), in the same transaction; their file is
    // created first, so a path that cannot be used saves nothing.
    let file = match &args.backup_codes_file {
        Some(path) => Some(output::create_new_file(path, &ctx.account)?),
        None => None,
    };
    let saved = match ctx.daemon() {
        Some(daemon) if issued => {
            let confirm = confirmed.as_ref().map(|c| c.as_str());
            let changed = daemon.enroll_issued(existing.is_some(), None, confirm, ctx.now)?;
            saved_codes(ctx, changed)
        }
        _ => save(ctx, existing.is_some(), record),
    };
    let codes = match saved {
        Ok(codes) => codes,
        Err(e) => {
            if let Some(file) = file {
                file.discard();
            }
            return Err(e);
        }
    };
    if let Some(file) = file {
        // Saved already: a failure here still shows the codes below.
        if let Err(e) = file.write(&backup_codes_text(ctx, &host, &codes)) {
            eprintln!("otpgate: {e}");
        }
    }

    if ctx.json {
        let json = EnrollJson {
            user: &ctx.account.name,
            secret: &secret.to_base32(),
            otpauth_uri: &uri,
            backup_codes: codes.iter().map(|c| c.as_str()).collect(),
        };
        output::print_json(&json)?;
    } else {
        print_enrolled(ctx, args, &codes);
    }
    Ok(())
}

/// A new secret for an app, shown (QR code, grouped secret, URI) and its
/// record built: the start of `enroll` and `devices add`.
pub struct Issued {
    pub secret: Secret,
    pub uri: Zeroizing<String>,
    /// One device, named `app`.
    pub record: UserRecord,
    /// With otpgated and no --secret, the daemon made the secret and keeps
    /// it (`enroll-issued` saves it); it came here once, for the QR code.
    pub by_daemon: bool,
}

impl Issued {
    pub fn make(ctx: &mut Context, args: &AppArgs) -> Result<Issued> {
        let app = NewApp {
            hotp: args.hotp,
            algorithm: Algorithm::from(args.algorithm),
            digits: args.digits,
            period: args.period,
        };
        let by_daemon = args.secret.is_none() && ctx.daemon().is_some();
        let secret = match ctx.daemon() {
            Some(daemon) if by_daemon => daemon.new_secret(app)?,
            _ => new_secret(ctx, args)?,
        };
        let host = hostname();
        let uri = enrollment_uri(ctx, args, &secret, &host)?;
        let record = app.record(secret.clone());
        record.validate(std::path::Path::new(&ctx.describe()))?;
        write_qr_files(args, &uri, &ctx.account)?;
        if !ctx.json {
            show_secret(&secret, &uri, args)?;
        }
        Ok(Issued {
            secret,
            uri,
            record,
            by_daemon,
        })
    }
}

/// The new secret: random, or the one given (`-`: read from standard input).
fn new_secret(ctx: &mut Context, args: &AppArgs) -> Result<Secret> {
    Ok(match args.secret.as_deref() {
        None => Secret::generate(otp::DEFAULT_SECRET_BYTES)?,
        Some("-") => {
            let line = ctx
                .input
                .secret_line("Secret (base32): ")?
                .ok_or(CliError::NoSecretGiven)?;
            Secret::from_base32(line.trim())?
        }
        Some(text) => Secret::from_base32(text)?,
    })
}

/// The `otpauth://` URI the app reads: issuer from the arguments, the
/// config or the host name; label `user@host` unless given.
fn enrollment_uri(
    ctx: &Context,
    args: &AppArgs,
    secret: &Secret,
    host: &str,
) -> Result<Zeroizing<String>> {
    let issuer = match &args.issuer {
        Some(i) => i.clone(),
        None if !ctx.config.issuer.is_empty() => ctx.config.issuer.clone(),
        None => host.to_string(),
    };
    if issuer.contains(':') {
        return Err(CliError::BadIssuer { issuer });
    }
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{}@{host}", ctx.account.name));
    Ok(otp::otpauth_uri(
        secret,
        &UriParams {
            issuer: &issuer,
            account: &label,
            algorithm: Algorithm::from(args.algorithm),
            digits: args.digits,
            period: (!args.hotp).then_some(args.period),
            counter: args.hotp.then_some(0),
        },
    ))
}

/// `--qr-svg` and `--qr-png`.
fn write_qr_files(args: &AppArgs, uri: &str, owner: &Account) -> Result<()> {
    if let Some(path) = &args.qr_svg {
        output::write_new_file(path, qr::svg(uri)?.as_bytes(), owner)?;
    }
    if let Some(path) = &args.qr_png {
        output::write_new_file(path, &qr::png(uri)?, owner)?;
    }
    Ok(())
}

/// `--backup-codes-file`: a heading, then one code per line.
fn backup_codes_text(ctx: &Context, host: &str, codes: &[Zeroizing<String>]) -> Zeroizing<Vec<u8>> {
    let heading = format!(
        "otpgate backup codes for {} on {host}; each works once\n",
        ctx.account.name
    );
    let mut content = Zeroizing::new(heading.into_bytes());
    for c in codes {
        content.extend_from_slice(c.as_bytes());
        content.push(b'\n');
    }
    content
}

/// The text after a saved enrollment: where it went and the backup codes.
fn print_enrolled(ctx: &Context, args: &EnrollArgs, codes: &[Zeroizing<String>]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nEnrolled {} ({}); saved to {}.",
        ctx.account.name,
        if args.app.hotp { "HOTP" } else { "TOTP" },
        ctx.describe()
    );
    if codes.is_empty() {
        let _ = writeln!(out, "No backup codes (the config sets backup_codes = 0).");
    } else {
        let _ = writeln!(
            out,
            "\nBackup codes: each works once, when the app is not at hand. Keep them \
             somewhere safe; they are not shown again.\n"
        );
        for pair in codes.chunks(2) {
            let line: Vec<&str> = pair.iter().map(|c| c.as_str()).collect();
            let _ = writeln!(out, "    {}", line.join("    "));
        }
    }
    if let Some(path) = &args.backup_codes_file {
        let _ = writeln!(
            out,
            "\nThe backup codes were also written to {}.",
            path.display()
        );
    }
}

/// Prints the QR code, the grouped secret and the URI.
fn show_secret(secret: &Secret, uri: &str, args: &AppArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if !args.no_qr {
        let colorfgbg = std::env::var("COLORFGBG").ok();
        let background = qr::Background::guess(colorfgbg.as_deref(), args.invert);
        let code = qr::terminal(uri, background)?;
        let _ = writeln!(out, "Scan this QR code with your authenticator app:\n");
        let _ = writeln!(out, "{code}\n");
        let _ = writeln!(out, "Or type the secret into the app by hand:");
    } else {
        let _ = writeln!(out, "Type the secret into the app:");
    }
    let kind = if args.hotp {
        "counter-based (HOTP)".to_string()
    } else {
        format!("time-based (TOTP), {} s", args.period)
    };
    let _ = writeln!(out, "    {}", secret.to_base32_grouped().as_str());
    let _ = writeln!(
        out,
        "    ({kind}, {}, {} digits)",
        Algorithm::from(args.algorithm).as_str(),
        args.digits
    );
    let _ = writeln!(out, "\nURI: {uri}\n");
    let _ = out.flush();
    Ok(())
}

/// Asks for a code of the new secret until one is right (returned, for
/// otpgated to check again); nothing is saved before. A wrong code that
/// matches another time says the clock is off.
pub fn confirm_new_code(
    ctx: &mut Context,
    record: &mut UserRecord,
    secret: &Secret,
    args: &AppArgs,
) -> Result<Zeroizing<String>> {
    eprintln!("To confirm, enter a code from the app.");
    for attempt in 1..=CONFIRM_TRIES {
        let answer = ctx.input.code(texts::PROMPT)?;
        if let Some(answer) = &answer {
            let verdict = record.verify(answer, ctx.now, ctx.config.verify_policy())?;
            if matches!(verdict, Verdict::Accepted(_)) {
                return Ok(Zeroizing::new(answer.as_str().to_string()));
            }
        }
        let hint = match &answer {
            Some(answer) if !args.hotp => clock_hint(secret, args, answer, ctx.now)?,
            _ => None,
        };
        if let Some(hint) = hint {
            eprintln!("{hint}");
        }
        eprintln!("{}", texts::wrong_code(CONFIRM_TRIES - attempt));
    }
    Err(CliError::CodeRefused(format!(
        "{CONFIRM_TRIES} wrong codes; nothing was saved, run `otpgate enroll` again"
    )))
}

/// When `answer` is the code of a time step far from now, says how far the
/// two clocks are apart.
fn clock_hint(
    secret: &Secret,
    args: &AppArgs,
    answer: &Answer,
    now: u64,
) -> Result<Option<String>> {
    let generator = Generator::totp(secret, args.algorithm.into(), args.digits, args.period)?;
    let current = otp::time_step(now, args.period);
    let reach = CLOCK_SEARCH_SECONDS / args.period;
    let steps = generator.matching_steps(
        answer.as_str(),
        current.saturating_sub(reach),
        current.saturating_add(reach),
    );
    // The nearest matching step wins.
    let Some(step) = steps.into_iter().min_by_key(|s| s.abs_diff(current)) else {
        return Ok(None);
    };
    let offset = step.abs_diff(current) * args.period;
    let direction = if step > current { "ahead of" } else { "behind" };
    Ok(Some(format!(
        "That code is right for a time {} {direction} this machine's clock: the clock of the \
         phone or of this machine is off. Set both to the correct time (automatic/NTP time); \
         the time zone does not matter.",
        describe_seconds(offset)
    )))
}

/// The host name for the default issuer and label.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Saves the new enrollment with fresh backup codes, which it returns,
/// unless the record changed underneath: someone else enrolling meanwhile
/// wins, nothing is overwritten (`Change::Enroll`).
fn save(ctx: &Context, replacing: bool, record: UserRecord) -> Result<Vec<Zeroizing<String>>> {
    let change = Change::Enroll {
        record: Box::new(record),
        replacing,
    };
    let changed = ctx.service().change(&change, ctx.now)?;
    saved_codes(ctx, changed)
}

/// The backup codes of a saved enrollment, or why it was not saved.
fn saved_codes(ctx: &Context, changed: Changed) -> Result<Vec<Zeroizing<String>>> {
    match changed {
        Changed::BackupCodes { codes } => Ok(codes),
        Changed::Raced => Err(CliError::enrollment_raced(&ctx.describe())),
        other => Err(crate::manage::unexpected(&other)),
    }
}

/// Saves an imported record with its own backup codes (the other tool's
/// scratch codes) unless the record changed underneath (`Change::Import`).
pub fn save_imported(ctx: &Context, replacing: bool, record: UserRecord) -> Result<()> {
    let change = Change::Import {
        record: Box::new(record),
        replacing,
    };
    match ctx.service().change(&change, ctx.now)? {
        Changed::BackupCodes { .. } => Ok(()),
        Changed::Raced => Err(CliError::enrollment_raced(&ctx.describe())),
        other => Err(crate::manage::unexpected(&other)),
    }
}
