//! `otpgate devices`: the user's authenticators, each with a name. `add`
//! and `remove` ask for a current code first (of any device, or a backup
//! code), as replacing an enrollment does; root acting on another user
//! (`--user`) or with `--force` is not asked. Through otpgated the code's
//! proof goes with the change (docs/ARCHITECTURE.md §3.1).

use otpgate_config::change::{Change, Changed};
use otpgate_config::record::{App, DeviceName, MAX_DEVICES};
use serde::Serialize;

use crate::cli::{DeviceAddArgs, DeviceRemoveArgs, DevicesCommand};
use crate::context::Context;
use crate::enroll::{self, Issued};
use crate::error::{CliError, Result};
use crate::manage::{report, unexpected};
use crate::output;

/// One device as `devices list --json` and `status --json` print it.
#[derive(Serialize)]
pub struct DeviceJson<'a> {
    pub name: &'a str,
    /// `totp` or `hotp`.
    pub kind: &'static str,
    pub algorithm: &'static str,
    pub digits: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    /// HOTP: the next counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
}

impl<'a> DeviceJson<'a> {
    pub fn of(app: &'a App) -> Self {
        DeviceJson {
            name: app.name.as_str(),
            kind: app.method.as_str(),
            algorithm: app.algorithm.as_str(),
            digits: app.digits,
            period: app.period,
            counter: app.counter,
        }
    }

    /// `phone  TOTP, SHA1, 6 digits, 30 s`, the name padded to `width`.
    fn line(&self, width: usize) -> String {
        let detail = match (self.period, self.counter) {
            (Some(p), _) => format!("TOTP, {}, {} digits, {p} s", self.algorithm, self.digits),
            (None, c) => format!(
                "HOTP, {}, {} digits, next counter {}",
                self.algorithm,
                self.digits,
                c.unwrap_or_default()
            ),
        };
        format!("{:<width$}  {detail}", self.name)
    }
}

/// One line per device, the details in one column.
pub fn lines(devices: &[DeviceJson<'_>]) -> Vec<String> {
    let width = devices.iter().map(|d| d.name.len()).max().unwrap_or(0);
    devices.iter().map(|d| d.line(width)).collect()
}

pub fn run(ctx: &mut Context, command: &DevicesCommand) -> Result<()> {
    match command {
        DevicesCommand::List => list(ctx),
        DevicesCommand::Add(args) => add(ctx, args),
        DevicesCommand::Remove(args) => remove(ctx, args),
        DevicesCommand::Rename { from, to } => rename(ctx, from, to),
    }
}

fn name(text: &str) -> Result<DeviceName> {
    DeviceName::parse(text).map_err(CliError::BadDevice)
}

fn list(ctx: &Context) -> Result<()> {
    let view = ctx.enrolled()?;
    let devices: Vec<DeviceJson<'_>> = view.devices.iter().map(DeviceJson::of).collect();
    if ctx.json {
        #[derive(Serialize)]
        struct List<'a> {
            devices: &'a [DeviceJson<'a>],
        }
        return output::print_json(&List { devices: &devices });
    }
    if devices.is_empty() {
        println!("{} has no device (no authenticator app).", ctx.account.name);
    }
    for line in lines(&devices) {
        println!("{line}");
    }
    Ok(())
}

/// The current-code check before `add` and `remove`: skipped for root
/// acting on another user, or with `--force` (root only).
fn confirm(ctx: &mut Context, force: bool) -> Result<()> {
    if ctx.is_root && ctx.account.uid != 0 {
        return Ok(());
    }
    ctx.confirm_current_code(force).map(|_| ())
}

fn add(ctx: &mut Context, args: &DeviceAddArgs) -> Result<()> {
    let new_name = name(&args.name)?;
    let view = ctx.enrolled()?;
    if view.devices.iter().any(|d| d.name == new_name) {
        return Err(CliError::DeviceRefused(format!(
            "{} has a device named {new_name} already",
            ctx.account.name
        )));
    }
    if view.devices.len() >= MAX_DEVICES {
        return Err(CliError::DeviceRefused(format!(
            "{} has {MAX_DEVICES} devices, the most allowed",
            ctx.account.name
        )));
    }
    confirm(ctx, args.force)?;
    let Issued {
        secret,
        uri,
        mut record,
        by_daemon,
    } = Issued::make(ctx, &args.app)?;
    let confirmed = if args.app.no_confirm {
        None
    } else {
        Some(enroll::confirm_new_code(
            ctx,
            &mut record,
            &secret,
            &args.app,
        )?)
    };
    let changed = match ctx.daemon() {
        Some(daemon) if by_daemon => {
            let confirm = confirmed.as_ref().map(|c| c.as_str());
            daemon.enroll_issued(true, Some(new_name), confirm, ctx.now)?
        }
        _ => {
            let mut device = record.devices.remove(0);
            device.name = new_name;
            let change = Change::AddDevice {
                device: Box::new(device),
            };
            ctx.service().change(&change, ctx.now)?
        }
    };
    match changed {
        Changed::DeviceAdded => {}
        Changed::NotEnrolled => return Err(ctx.not_enrolled()),
        Changed::DeviceNameTaken => {
            return Err(CliError::DeviceRefused(format!(
                "{} has a device named {new_name} already",
                ctx.account.name
            )));
        }
        Changed::TooManyDevices => {
            return Err(CliError::DeviceRefused(format!(
                "{} has {MAX_DEVICES} devices, the most allowed",
                ctx.account.name
            )));
        }
        other => return Err(unexpected(&other)),
    }
    if ctx.json {
        #[derive(Serialize)]
        struct Added<'a> {
            user: &'a str,
            device: &'a str,
            secret: &'a str,
            otpauth_uri: &'a str,
        }
        return output::print_json(&Added {
            user: &ctx.account.name,
            device: new_name.as_str(),
            secret: &secret.to_base32(),
            otpauth_uri: &uri,
        });
    }
    println!(
        "\nAdded device {new_name} ({}) for {}; a login accepts a code from any device.",
        if args.app.hotp { "HOTP" } else { "TOTP" },
        ctx.account.name
    );
    Ok(())
}

fn remove(ctx: &mut Context, args: &DeviceRemoveArgs) -> Result<()> {
    let gone = name(&args.name)?;
    let view = ctx.enrolled()?;
    if !view.devices.iter().any(|d| d.name == gone) {
        return Err(no_such(ctx, gone));
    }
    confirm(ctx, args.force)?;
    match ctx
        .service()
        .change(&Change::RemoveDevice { name: gone }, ctx.now)?
    {
        Changed::MethodRemoved { removed_all: false } => report(
            ctx,
            &format!(
                "Device {gone} of {} is removed; its codes no longer work.",
                ctx.account.name
            ),
        ),
        Changed::MethodRemoved { removed_all: true } => {
            let warning = crate::manage::after_removal_warning(ctx).unwrap_or_default();
            report(
                ctx,
                &format!(
                    "Device {gone} was the last way in of {}: the enrollment is removed.{warning}",
                    ctx.account.name
                ),
            )
        }
        Changed::NoSuchDevice => Err(no_such(ctx, gone)),
        Changed::NotEnrolled => Err(ctx.not_enrolled()),
        other => Err(unexpected(&other)),
    }
}

fn rename(ctx: &Context, from: &str, to: &str) -> Result<()> {
    let (from, to) = (name(from)?, name(to)?);
    ctx.enrolled()?;
    match ctx
        .service()
        .change(&Change::RenameDevice { from, to }, ctx.now)?
    {
        Changed::DeviceRenamed => report(ctx, &format!("Device {from} is now {to}.")),
        Changed::DeviceNameTaken => Err(CliError::DeviceRefused(format!(
            "{} has a device named {to} already",
            ctx.account.name
        ))),
        Changed::NoSuchDevice => Err(no_such(ctx, from)),
        Changed::NotEnrolled => Err(ctx.not_enrolled()),
        other => Err(unexpected(&other)),
    }
}

fn no_such(ctx: &Context, name: DeviceName) -> CliError {
    CliError::NoSuchDevice {
        user: ctx.account.name.clone(),
        name: name.to_string(),
    }
}
