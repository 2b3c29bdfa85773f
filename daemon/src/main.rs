//! `otpgated`: holds otpgate's per-user records where no user can read or
//! edit them, and answers the PAM module and the `otpgate` command over a
//! Unix socket (docs/ARCHITECTURE.md, §3, "The daemon store").
//!
//! `otpgated --config PATH` runs in the foreground, as systemd and the
//! tests start it.
#![forbid(unsafe_code)]

mod answer;
mod error;
mod issued;
mod log;
mod password;
mod peer;
mod pending;
mod pool;
mod proof;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use otpgate_config::SystemConfig;
use otpgate_config::system::DEFAULT_PATH;

use crate::answer::Context;
use crate::error::Error;

const USAGE: &str = "usage: otpgated [--config PATH]

Holds otpgate's per-user state and answers the PAM module and the otpgate
command on store.socket. Runs in the foreground; logs to standard error.

  --config PATH   the system config (default /etc/otpgate/config.toml)
  --version       print the version
  --help          print this";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::line(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let Some(config) = parse_args(std::env::args().skip(1))? else {
        return Ok(());
    };
    let ctx = Arc::new(load(config)?);
    server::prepare_state_dir(
        std::path::Path::new(&ctx.config.daemon.state_dir),
        ctx.owner,
    )?;
    let socket = server::socket_path(&ctx);
    let listener = server::bind(&socket)?;
    log::line(&format!(
        "serving {} with records in {} (protocol {})",
        socket.display(),
        ctx.config.daemon.state_dir,
        otpgate_config::protocol::VERSION
    ));
    server::serve(listener, ctx)
}

/// The config path to use; `None` when only help or the version was asked.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<(PathBuf, bool)>, Error> {
    let mut config = (PathBuf::from(DEFAULT_PATH), false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => {
                let path = args
                    .next()
                    .ok_or_else(|| Error::Usage("--config needs a path".into()))?;
                config = (PathBuf::from(path), true);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--version" => {
                println!("otpgated {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(Error::Usage(format!("unknown argument `{other}`"))),
        }
    }
    Ok(Some(config))
}

/// Reads the config: the default path may be missing (defaults), a path
/// given must exist.
fn load((path, required): (PathBuf, bool)) -> Result<Context, Error> {
    let config = SystemConfig::load(&path, required).map_err(Error::Config)?;
    Ok(Context {
        config,
        owner: nix::unistd::geteuid().as_raw(),
        proofs: proof::Proofs::default(),
        confirmations: pending::Confirmations::default(),
        users: answer::UserLocks::default(),
        files: std::sync::Mutex::default(),
        issued: issued::IssuedSecrets::default(),
    })
}
