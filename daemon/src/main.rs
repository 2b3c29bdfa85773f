//! `otpgated`: holds otpgate's per-user records where no user can read or
//! edit them, and answers the PAM module and the `otpgate` command over a
//! Unix socket (docs/ARCHITECTURE.md, §3, "The daemon store").
//!
//! `otpgated --config PATH` runs in the foreground, as systemd and the
//! tests start it.
#![forbid(unsafe_code)]

mod answer;
mod db;
mod error;
mod issued;
mod log;
mod metrics;
mod password;
mod peer;
mod pending;
mod pool;
mod proof;
mod server;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use otpgate_config::SystemConfig;
use otpgate_config::system::DEFAULT_PATH;

use crate::answer::Context;
use crate::error::Error;

const USAGE: &str = "usage: otpgated [--config PATH] [migrate]

Holds otpgate's per-user state and answers the PAM module and the otpgate
command on store.socket. Runs in the foreground; logs to standard error.

  --config PATH   the system config (default /etc/otpgate/config.toml)
  migrate         apply the database schema (daemon.backend = \"postgres\")
                  and exit
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
    let Some(invocation) = parse_args(std::env::args().skip(1))? else {
        return Ok(());
    };
    let ctx = load(invocation.config, invocation.named)?;
    if invocation.migrate {
        return run_migrations(&ctx);
    }
    let ctx = Arc::new(ctx);
    match &ctx.db {
        Some(db) => check_database(db)?,
        None => server::prepare_state_dir(
            std::path::Path::new(&ctx.config.daemon.state_dir),
            ctx.owner,
        )?,
    }
    let metrics = metrics::bind(&ctx.config.daemon)?;
    let socket = server::socket_path(&ctx);
    let listener = server::bind(&socket)?;
    let records = match &ctx.db {
        Some(db) => format!("{} ({})", db.describe(), db.describe_tls()),
        None => ctx.config.daemon.state_dir.clone(),
    };
    log::line(&format!(
        "serving {} with records in {records} (protocol {})",
        socket.display(),
        otpgate_config::protocol::VERSION
    ));
    server::serve(listener, metrics, ctx)
}

/// `otpgated migrate`: the schema brought up to this build's.
fn run_migrations(ctx: &Context) -> Result<(), Error> {
    let Some(db) = &ctx.db else {
        return Err(Error::Usage(
            "migrate is for daemon.backend = \"postgres\"".into(),
        ));
    };
    let applied = db.migrate().map_err(Error::Store)?;
    match applied.as_slice() {
        [] => println!("{}: the schema is up to date", db.describe()),
        versions => println!("{}: applied schema versions {versions:?}", db.describe()),
    }
    Ok(())
}

/// A database whose schema this build does not know: refuse to start. One
/// that cannot be reached: serve (logins are denied until it answers).
fn check_database(db: &db::Db) -> Result<(), Error> {
    match db.probe() {
        Ok(()) => Ok(()),
        Err(e @ otpgate_config::Error::Database { .. }) if e.to_string().contains("schema") => {
            Err(Error::Store(e))
        }
        Err(e) => {
            log::line(&format!(
                "{e}; serving anyway, logins are denied until it answers"
            ));
            Ok(())
        }
    }
}

/// What the command line asks for.
struct Invocation {
    config: PathBuf,
    /// The config was named (it must exist).
    named: bool,
    migrate: bool,
}

/// The command line; `None` when only help or the version was asked.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Invocation>, Error> {
    let mut config = (PathBuf::from(DEFAULT_PATH), false);
    let mut migrate = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "migrate" => migrate = true,
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
    Ok(Some(Invocation {
        config: config.0,
        named: config.1,
        migrate,
    }))
}

/// Reads the config: the default path may be missing (defaults), a path
/// given must exist.
fn load(path: PathBuf, required: bool) -> Result<Context, Error> {
    let config = SystemConfig::load(&path, required).map_err(Error::Config)?;
    let db = match (&config.daemon.backend, &config.daemon.postgres) {
        (otpgate_config::system::DaemonBackend::Postgres, Some(pg)) => {
            Some(Arc::new(db::Db::new(pg).map_err(Error::Config)?))
        }
        _ => None,
    };
    Ok(Context {
        db,
        config,
        owner: nix::unistd::geteuid().as_raw(),
        proofs: proof::Proofs::default(),
        confirmations: pending::Confirmations::default(),
        users: answer::UserLocks::default(),
        files: std::sync::Mutex::default(),
        issued: issued::IssuedSecrets::default(),
        metrics: metrics::Metrics::default(),
    })
}
