//! `otpgate`: the command users enroll and manage their second factor with,
//! and admins unlock and reset users with. See `otpgate --help` and the man
//! page (`otpgate man`); exit statuses are listed in `cli::EXIT_STATUS_HELP`.
#![forbid(unsafe_code)]

mod channels;
mod check;
mod cli;
mod confirm;
mod context;
mod devices;
mod enroll;
mod error;
mod import;
mod import_oath;
mod input;
mod log;
mod manage;
mod output;
mod password;
mod qr;
mod store_import;
mod time;
mod users;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, DevicesCommand, ImportCommand, StoreCommand, TrustedCommand};
use crate::context::Context;
use crate::error::{CliError, Result};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut target = None;
    let result = run(&cli, &mut target);
    if let Some(user) = target {
        log_outcome(&cli.command, &user, &result);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            // One line, whatever the library's message held.
            let line = e.to_string().replace('\n', " ");
            eprintln!("otpgate: {line}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the command; `target` is set to the user acted on once known.
fn run(cli: &Cli, target: &mut Option<String>) -> Result<()> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = cli::command();
            clap_complete::generate(*shell, &mut cmd, "otpgate", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man { dir } => return man(dir.as_deref()),
        Command::Check(args) => {
            return check::run(cli.config.as_deref(), cli.json, cli.user.as_deref(), args);
        }
        Command::Store(StoreCommand::Import(args)) => {
            return store_import::run(cli.config.as_deref(), cli.json, args);
        }
        _ => {}
    }
    let now = time::now()?;
    let mut ctx = Context::new(cli.config.as_deref(), cli.user.as_deref(), cli.json, now)?;
    *target = Some(ctx.account.name.clone());
    match &cli.command {
        Command::Enroll(args) => match &args.channel {
            Some(channel) => channels::enroll(&mut ctx, channel),
            None => enroll::run(&mut ctx, args),
        },
        Command::Status => manage::status(&ctx),
        Command::Verify(args) => manage::verify(&mut ctx, args),
        Command::BackupCodes(args) => manage::backup_codes(&mut ctx, args),
        Command::Trusted(command) => manage::trusted(&ctx, command),
        Command::Disable(args) => match args.method {
            Some(method) => channels::disable_method(&mut ctx, method, args.force),
            None => manage::disable(&mut ctx, args.force),
        },
        Command::Devices(command) => devices::run(&mut ctx, command),
        Command::Unlock => manage::unlock(&ctx),
        Command::Users => users::run(&ctx.config, ctx.json, now),
        Command::Reset => manage::reset(&ctx),
        Command::Import(ImportCommand::GoogleAuthenticator(args)) => {
            import::google_authenticator(&mut ctx, args)
        }
        Command::Import(ImportCommand::Oath(args)) => import_oath::oath(&mut ctx, args),
        Command::Completions { .. }
        | Command::Man { .. }
        | Command::Check(_)
        | Command::Store(_) => Ok(()),
    }
}

/// One syslog line per account command (reads of status and lists too,
/// at a lower severity).
fn log_outcome(command: &Command, user: &str, result: &Result<()>) {
    let action = match command {
        Command::Enroll(_) => "enroll",
        Command::Status => "status",
        Command::Verify(_) => "verify",
        Command::BackupCodes(_) => "backup-codes",
        Command::Trusted(TrustedCommand::List) => "trusted-list",
        Command::Trusted(TrustedCommand::Remove { .. }) => "trusted-remove",
        Command::Trusted(TrustedCommand::Clear) => "trusted-clear",
        Command::Disable(_) => "disable",
        Command::Devices(DevicesCommand::List) => "devices-list",
        Command::Devices(DevicesCommand::Add(_)) => "devices-add",
        Command::Devices(DevicesCommand::Remove(_)) => "devices-remove",
        Command::Devices(DevicesCommand::Rename { .. }) => "devices-rename",
        Command::Unlock => "unlock",
        Command::Reset => "reset",
        Command::Users => "users",
        Command::Import(_) => "import",
        Command::Completions { .. }
        | Command::Man { .. }
        | Command::Check(_)
        | Command::Store(_) => return,
    };
    let read_only = matches!(
        command,
        Command::Status
            | Command::Users
            | Command::Trusted(TrustedCommand::List)
            | Command::Devices(DevicesCommand::List)
    );
    let by = nix::unistd::getuid().as_raw();
    log::send(
        !read_only || result.is_err(),
        &log::format_line(action, user, by, result),
    );
}

/// The man page on stdout, or one page per command written into `dir`.
fn man(dir: Option<&std::path::Path>) -> Result<()> {
    let cmd = cli::command();
    match dir {
        Some(dir) => clap_mangen::generate_to(cmd, dir).map_err(CliError::ManPage),
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .map_err(CliError::ManPage),
    }
}
