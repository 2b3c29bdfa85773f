//! Sent codes in the CLI: `otpgate enroll email|sms`, `otpgate disable
//! METHOD`.

use otpgate_config::channel::{self, Kind, Settings};
use otpgate_config::verification::{
    CommandSender, Confirmation, PendingCheck, Recipient, Verifier,
};
use otpgate_config::{StoreExt, UserRecord, texts};
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
    let existing = ctx.local_store("codes by email or SMS")?.read()?;
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
    let enrolled = existing.is_some();
    let store = ctx.local_store("codes by email or SMS")?;
    let raced = store.update(|current| {
        if current.is_some() != enrolled {
            return Ok(true);
        }
        let record = current.get_or_insert_with(UserRecord::new_channels_only);
        record.set_destination(kind, Some(to.clone()));
        Ok(false)
    })?;
    if raced {
        return Err(CliError::enrollment_raced(&store.describe()));
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
        store.describe()
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
    let now = crate::time::now()?;
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
    let pending = match sent {
        Confirmation::Pending(pending) => pending,
        Confirmation::Failed(why) => return Err(CliError::SendFailed { kind, why }),
        Confirmation::Limited { next, .. } => {
            return Err(CliError::SendLimited { kind, until: next });
        }
        Confirmation::NotConfigured => return Err(CliError::NotConfigured { kind }),
    };
    eprintln!("{}", texts::code_sent(kind, to, pending.minutes));
    for left in (0..CONFIRM_TRIES).rev() {
        let answer = ctx
            .input
            .code(&format!("Code from the {}: ", kind.display()))?;
        match pending.check(answer.as_ref(), crate::time::now()?) {
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
    ctx.local_store("codes by email or SMS")?;
    ctx.confirm_current_code(force)?;
    let removed_all = ctx.local_store("codes by email or SMS")?.update(|slot| {
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
