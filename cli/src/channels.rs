//! Sent codes in the CLI: `otpgate enroll email|sms`, `otpgate disable
//! METHOD`, and sending a code when a current code is asked for.

use otpgate_config::backup;
use otpgate_config::channel::{self, Kind, Settings, Vars};
use otpgate_config::deliver::{self, Outcome};
use otpgate_config::{Answer, UserRecord};
use serde::Serialize;

use crate::cli::{ChannelArgs, EnrollChannel, MethodArg};
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::manage::{after_removal_warning, report};
use crate::output;

/// Tries for the code sent at enrollment.
const CONFIRM_TRIES: u32 = 3;

/// Channels the user can have a code sent by now: configured here and
/// enrolled by the user, in menu order.
pub fn offers(ctx: &Context) -> Vec<Kind> {
    let Ok(Some(record)) = ctx.file.read() else {
        return Vec::new();
    };
    Kind::ALL
        .into_iter()
        .filter(|&k| ctx.config.channels.get(k).is_some() && record.destination(k).is_some())
        .collect()
}

/// `Current verification code (Enter: send a code by email): `.
pub fn prompt(base: &str, offers: &[Kind]) -> String {
    match offers {
        [] => format!("{base}: "),
        [kind] => format!("{base} (Enter: send a code by {}): ", kind.display()),
        [first, rest @ ..] => {
            let mut menu = format!("Enter: send by {}", first.display());
            for (i, kind) in rest.iter().enumerate() {
                menu.push_str(&format!(", {}: send by {}", i + 2, kind.display()));
            }
            format!("{base} ({menu}): ")
        }
    }
}

/// The channel an answer picks: empty is the first, `1`, `2`... the menu.
pub fn menu_choice(offers: &[Kind], text: &str) -> Option<Kind> {
    if offers.is_empty() {
        return None;
    }
    match text {
        "" => offers.first().copied(),
        t if t.len() == 1 => offers
            .get(usize::from(t.as_bytes()[0].checked_sub(b'1')?))
            .copied(),
        _ => None,
    }
}

fn settings(ctx: &Context, kind: Kind) -> Result<Settings<'_>> {
    ctx.config.channels.get(kind).ok_or_else(|| {
        CliError::Failed(format!(
            "codes by {} are not configured on this system ([channels.{}] in the config)",
            kind.display(),
            kind.as_str()
        ))
    })
}

/// Runs the channel's command for `code` to `to`.
fn deliver_code(ctx: &Context, s: &Settings<'_>, to: &str, code: &str) -> Outcome {
    let host = channel::host_name();
    let vars = Vars {
        code,
        user: &ctx.account.name,
        host: &host,
        service: "otpgate",
        minutes: s.code_lifetime,
        to,
    };
    deliver::send(&deliver::compose(s, to, &vars), &|_| {})
}

/// Sends a new code to the user's enrolled destination for `kind`, stored
/// hashed in the user file (rate-limited). `Ok(true)`: a send happened
/// (delivered or not); `Ok(false)`: refused by the limit.
pub fn send_to_enrolled(ctx: &Context, kind: Kind) -> Result<bool> {
    let s = settings(ctx, kind)?;
    let now = crate::time::now()?;
    let prepared = ctx.file.update(|slot| {
        let Some(r) = slot.as_mut() else {
            return Ok(Err(None));
        };
        let Some(to) = r.destination(kind).map(str::to_string) else {
            return Ok(Err(None));
        };
        r.prune_sent(now);
        if let Err(next) = r.send_allowed(kind, now, s.max_sends_per_hour) {
            return Ok(Err(Some(next)));
        }
        let code = r.new_sent_code(kind, s.code_digits, now, s.lifetime_seconds())?;
        Ok(Ok((to, code)))
    })?;
    let (to, code) = match prepared {
        Ok(v) => v,
        Err(None) => return Err(ctx.not_enrolled()),
        Err(Some(next)) => {
            eprintln!(
                "Too many codes were sent by {}; the next can be sent at {}.",
                kind.display(),
                crate::time::format_local(next)
            );
            return Ok(false);
        }
    };
    match deliver_code(ctx, &s, &to, &code) {
        Outcome::Sent(_) => eprintln!(
            "A code was sent by {} to {}; it is valid for {} minutes.",
            kind.display(),
            channel::mask(kind, &to),
            s.code_lifetime
        ),
        Outcome::Failed(why) => eprintln!(
            "The code could not be sent by {} ({why}); try another way.",
            kind.display()
        ),
    }
    Ok(true)
}

#[derive(Serialize)]
struct EnrolledJson<'a> {
    user: &'a str,
    channel: &'static str,
    destination: &'a str,
}

/// `otpgate enroll email ADDRESS` / `otpgate enroll sms NUMBER`.
pub fn enroll(ctx: &mut Context, channel: &EnrollChannel) -> Result<()> {
    let (kind, args): (Kind, &ChannelArgs) = match channel {
        EnrollChannel::Email(a) => (Kind::Email, a),
        EnrollChannel::Sms(a) => (Kind::Sms, a),
    };
    let to = match kind {
        Kind::Email => channel::normalize_email(&args.destination),
        Kind::Sms => channel::normalize_number(&args.destination),
    }
    .map_err(CliError::Failed)?;
    if args.no_confirm {
        ctx.require_root("--no-confirm")?;
    }
    if args.force {
        ctx.require_root("--force")?;
    }
    let s = settings(ctx, kind)?;
    let (digits, lifetime, max) = (s.code_digits, s.lifetime_seconds(), s.max_sends_per_hour);
    let existing = ctx.file.read()?;
    if existing.is_some() && !args.force {
        eprintln!(
            "{} is enrolled; a current code is needed to change how codes reach them.",
            ctx.account.name
        );
        ctx.confirm_current_code(false)?;
    }
    if crate::password::needed(ctx, existing.is_some()) {
        crate::password::confirm(ctx)?;
    }
    if !args.no_confirm {
        confirm_destination(ctx, kind, &to, digits, lifetime, max)?;
    }
    ctx.file.ensure_dir()?;
    let enrolled = existing.is_some();
    let raced = ctx.file.update(|current| {
        if current.is_some() != enrolled {
            return Ok(true);
        }
        let record = current.get_or_insert_with(UserRecord::new_channels_only);
        record.set_destination(kind, Some(to.clone()));
        Ok(false)
    })?;
    if raced {
        return Err(CliError::enrollment_raced(ctx.file.path()));
    }
    if ctx.json {
        return output::print_json(&EnrolledJson {
            user: &ctx.account.name,
            channel: kind.as_str(),
            destination: &to,
        });
    }
    println!(
        "Enrolled {} for codes by {} to {to}; saved to {}.",
        ctx.account.name,
        kind.display(),
        ctx.file.path().display()
    );
    println!(
        "At login, press Enter at the code prompt to have a code sent. Consider \
         `otpgate backup-codes` for when the {} cannot be reached.",
        if kind == Kind::Email {
            "mailbox"
        } else {
            "phone"
        }
    );
    Ok(())
}

/// Sends one code to `to` and waits for it to come back (3 tries) before
/// anything is saved. The code is held only hashed; the comparison is the
/// backup codes' constant-time one.
fn confirm_destination(
    ctx: &mut Context,
    kind: Kind,
    to: &str,
    digits: u8,
    lifetime: u64,
    max_per_hour: u32,
) -> Result<()> {
    let now = crate::time::now()?;
    // An existing enrollment counts this send towards its hourly limit.
    let limited = ctx.file.update(|slot| {
        let Some(r) = slot.as_mut() else {
            return Ok(None);
        };
        r.prune_sent(now);
        if let Err(next) = r.send_allowed(kind, now, max_per_hour) {
            return Ok(Some(next));
        }
        r.note_send(kind, now);
        Ok(None)
    })?;
    if let Some(next) = limited {
        return Err(CliError::Failed(format!(
            "too many codes were sent by {}; try again after {}",
            kind.display(),
            crate::time::format_local(next)
        )));
    }
    let code = backup::random_code(digits)?;
    let hashed = vec![backup::hash(&code)?];
    let s = settings(ctx, kind)?;
    match deliver_code(ctx, &s, to, &code) {
        Outcome::Sent(_) => {}
        Outcome::Failed(why) => {
            return Err(CliError::Failed(format!(
                "the code could not be sent by {}: {why}; nothing was saved",
                kind.display()
            )));
        }
    }
    drop(code);
    eprintln!(
        "A code was sent by {} to {to}; it is valid for {} minutes.",
        kind.display(),
        lifetime / 60
    );
    let expires = now.saturating_add(lifetime);
    for attempt in 1..=CONFIRM_TRIES {
        let answer = ctx
            .input
            .code(&format!("Code from the {}: ", kind.display()))?;
        let right = answer
            .as_ref()
            .is_some_and(|a: &Answer| backup::find(&hashed, a.as_str()).is_some());
        if right && crate::time::now()? < expires {
            return Ok(());
        }
        let what = if right {
            "That code has expired."
        } else {
            "That code is wrong."
        };
        if right {
            eprintln!("{what}");
            break;
        }
        if attempt < CONFIRM_TRIES {
            eprintln!("{what} Try again.");
        } else {
            eprintln!("{what}");
        }
    }
    Err(CliError::CodeRefused(format!(
        "the code did not come back; nothing was saved, run `otpgate enroll {}` again",
        kind.as_str()
    )))
}

/// `otpgate disable app|email|sms`: removes one method after a current
/// code; removing the last one removes the enrollment.
pub fn disable_method(ctx: &mut Context, method: MethodArg, force: bool) -> Result<()> {
    let record = ctx.enrolled()?;
    let present = match method {
        MethodArg::App => record.has_app(),
        MethodArg::Email => record.email.is_some(),
        MethodArg::Sms => record.sms.is_some(),
    };
    let name = match method {
        MethodArg::App => "the authenticator app",
        MethodArg::Email => "codes by email",
        MethodArg::Sms => "codes by SMS",
    };
    if !present {
        return Err(CliError::Failed(format!(
            "{} has no {name} to remove",
            ctx.account.name
        )));
    }
    ctx.confirm_current_code(force)?;
    let removed_all = ctx.file.update(|slot| {
        let Some(r) = slot.as_mut() else {
            return Ok(None);
        };
        match method {
            MethodArg::App => {
                r.totp = None;
                r.hotp = None;
            }
            MethodArg::Email => r.set_destination(Kind::Email, None),
            MethodArg::Sms => r.set_destination(Kind::Sms, None),
        }
        if r.has_no_method() {
            *slot = None;
            return Ok(Some(true));
        }
        Ok(Some(false))
    })?;
    match removed_all {
        None => Err(ctx.not_enrolled()),
        Some(false) => report(ctx, &format!("Removed {name} for {}.", ctx.account.name)),
        Some(true) => {
            let warning = after_removal_warning(ctx).unwrap_or_default();
            report(
                ctx,
                &format!(
                    "Removed {name}, the last method: otpgate is disabled for {}.{warning}",
                    ctx.account.name
                ),
            )
        }
    }
}
