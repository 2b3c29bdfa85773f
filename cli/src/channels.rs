//! Sent codes in the CLI: `otpgate enroll email|sms`, `otpgate disable
//! METHOD`.

use otpgate_config::change::{Change, Changed, MethodName};
use otpgate_config::channel::{self, Kind, Settings};
use otpgate_config::protocol::WireConfirmation;
use otpgate_config::texts;
use otpgate_config::verification::{
    CommandSender, Confirmation, Pending, PendingCheck, Recipient, Verifier,
};
use serde::Serialize;

use crate::cli::{ChannelArgs, EnrollChannel, MethodArg};
use crate::confirm::SERVICE;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::manage::{after_removal_warning, report};
use crate::output;

/// Tries for the code sent at enrollment.
const CONFIRM_TRIES: u32 = 3;

fn settings(ctx: &Context, kind: Kind) -> Result<Settings<'_>> {
    ctx.config
        .channels
        .get(kind)
        .ok_or(CliError::NotConfigured { kind })
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
    .map_err(CliError::BadDestination)?;
    if args.no_confirm {
        ctx.require_root("--no-confirm")?;
    }
    if args.force {
        ctx.require_root("--force")?;
    }
    settings(ctx, kind)?;
    let existing = ctx.service().view()?;
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
        confirm_destination(ctx, kind, &to)?;
    }
    let change = Change::SetDestination {
        channel: kind,
        to: to.clone(),
        creating: existing.is_none(),
    };
    match ctx.service().change(&change, ctx.now)? {
        Changed::DestinationSet => {}
        Changed::Raced => return Err(CliError::enrollment_raced(&ctx.describe())),
        other => return Err(crate::manage::unexpected(&other)),
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
        ctx.describe()
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
/// anything is saved. The code is held only hashed, by the verification
/// service; the comparison is the backup codes' constant-time one.
fn confirm_destination(ctx: &mut Context, kind: Kind, to: &str) -> Result<()> {
    let (held, minutes) = send_confirmation(ctx, kind, to)?;
    eprintln!("{}", texts::code_sent(kind, to, minutes));
    for left in (0..CONFIRM_TRIES).rev() {
        let answer = ctx
            .input
            .code(&format!("Code from the {}: ", kind.display()))?;
        let check = match (&held, answer.as_ref()) {
            (Held::Here(pending), answer) => pending.check(answer, crate::time::now()?),
            (Held::Daemon, Some(answer)) => match ctx.daemon() {
                Some(daemon) => daemon.check_confirmation(kind, to, answer.as_str())?,
                None => PendingCheck::Wrong,
            },
            (Held::Daemon, None) => PendingCheck::Wrong,
        };
        match check {
            PendingCheck::Right => return Ok(()),
            PendingCheck::Expired => {
                eprintln!("{}", texts::expired_code(0));
                break;
            }
            PendingCheck::Wrong => eprintln!("{}", texts::wrong_code(left)),
        }
    }
    Err(CliError::CodeRefused(format!(
        "the code did not come back; nothing was saved, run `otpgate enroll {}` again",
        kind.as_str()
    )))
}

/// Where the code sent to a destination being enrolled is held until it
/// comes back: here (the file store), or in `otpgated`.
enum Held {
    Here(Pending),
    Daemon,
}

/// Sends the confirmation code to `to`: the code and how long it lasts.
fn send_confirmation(ctx: &Context, kind: Kind, to: &str) -> Result<(Held, u32)> {
    let now = crate::time::now()?;
    if let Some(daemon) = ctx.daemon() {
        return match daemon.send_confirmation(kind, to)? {
            WireConfirmation::Sent { minutes } => Ok((Held::Daemon, minutes)),
            WireConfirmation::Failed { why } => Err(CliError::SendFailed { kind, why }),
            WireConfirmation::Limited { next, .. } => {
                Err(CliError::SendLimited { kind, until: next })
            }
            WireConfirmation::NotConfigured => Err(CliError::NotConfigured { kind }),
        };
    }
    let recipient = Recipient {
        user: &ctx.account.name,
        service: SERVICE,
    };
    let store = ctx.local_store("codes by email or SMS")?;
    let sent = Verifier::new(&ctx.config, store).send_confirmation(
        kind,
        to,
        now,
        recipient,
        &CommandSender::default(),
    )?;
    match sent {
        Confirmation::Pending(pending) => {
            let minutes = pending.minutes;
            Ok((Held::Here(pending), minutes))
        }
        Confirmation::Failed(why) => Err(CliError::SendFailed { kind, why }),
        Confirmation::Limited { next, .. } => Err(CliError::SendLimited { kind, until: next }),
        Confirmation::NotConfigured => Err(CliError::NotConfigured { kind }),
    }
}

/// `otpgate disable app|email|sms`: removes one method after a current
/// code; removing the last one removes the enrollment.
pub fn disable_method(ctx: &mut Context, method: MethodArg, force: bool) -> Result<()> {
    let record = ctx.enrolled()?;
    let present = match method {
        MethodArg::App => record.has_app(),
        MethodArg::Email => record.record.email.is_some(),
        MethodArg::Sms => record.record.sms.is_some(),
    };
    let name = match method {
        MethodArg::App => "the authenticator app",
        MethodArg::Email => "codes by email",
        MethodArg::Sms => "codes by SMS",
    };
    if !present {
        return Err(CliError::NothingToRemove {
            user: ctx.account.name.clone(),
            what: name,
        });
    }
    ctx.confirm_current_code(force)?;
    let which = match method {
        MethodArg::App => MethodName::App,
        MethodArg::Email => MethodName::Email,
        MethodArg::Sms => MethodName::Sms,
    };
    let removed_all = match ctx
        .service()
        .change(&Change::RemoveMethod { method: which }, ctx.now)?
    {
        Changed::MethodRemoved { removed_all } => Some(removed_all),
        Changed::NotEnrolled => None,
        other => return Err(crate::manage::unexpected(&other)),
    };
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
