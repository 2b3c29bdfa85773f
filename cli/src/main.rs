//! `otpgate`: the command users enroll and manage their second factor
//! with. The subcommands arrive with issue #4; until then this binary only
//! reports its version, so packaging and tests can already find it.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let version = env!("CARGO_PKG_VERSION");
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("otpgate {version}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("otpgate {version}: no subcommands yet (enrollment is not implemented)");
            ExitCode::from(2)
        }
    }
}
