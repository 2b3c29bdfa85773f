//! `otpgate`: the command users enroll and manage their second factor with,
//! and admins unlock and reset users with. See `otpgate --help` and the man
//! page (`otpgate man`); exit statuses are listed in `cli::EXIT_STATUS_HELP`.
#![forbid(unsafe_code)]

mod cli;
mod context;
mod enroll;
mod error;
mod import;
mod input;
mod manage;
mod output;
mod qr;
mod time;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ImportCommand};
use crate::context::Context;
use crate::error::{CliError, Result};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
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

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = cli::command();
            clap_complete::generate(*shell, &mut cmd, "otpgate", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man { dir } => return man(dir.as_deref()),
        _ => {}
    }
    let now = time::now()?;
    let mut ctx = Context::new(cli.config.as_deref(), cli.user.as_deref(), cli.json, now)?;
    match &cli.command {
        Command::Enroll(args) => enroll::run(&mut ctx, args),
        Command::Status => manage::status(&ctx),
        Command::Verify(args) => manage::verify(&mut ctx, args),
        Command::BackupCodes(args) => manage::backup_codes(&mut ctx, args),
        Command::Trusted(command) => manage::trusted(&ctx, command),
        Command::Disable(args) => manage::disable(&mut ctx, args.force),
        Command::Unlock => manage::unlock(&ctx),
        Command::Reset => manage::reset(&ctx),
        Command::Import(ImportCommand::GoogleAuthenticator(args)) => {
            import::google_authenticator(&mut ctx, args)
        }
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    }
}

/// The man page on stdout, or one page per command written into `dir`.
fn man(dir: Option<&std::path::Path>) -> Result<()> {
    let fail = |e: std::io::Error| CliError::Failed(format!("writing the man page: {e}"));
    let cmd = cli::command();
    match dir {
        Some(dir) => clap_mangen::generate_to(cmd, dir).map_err(fail),
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .map_err(fail),
    }
}
