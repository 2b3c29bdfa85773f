//! Processes the hardening suite (`tests/hardening/`) starts.
//!
//! - `update-loop FILE`: updates root's central user file `FILE` through
//!   `UserFile::update` forever, printing `ready` once and then each
//!   committed `last_step` on its own line; the suite kills it with
//!   SIGKILL at random moments. Every update rewrites the whole record so
//!   that each version is recognisable: `last_step = n` and every trusted
//!   host `until = n`.
//! - `swap SECONDS A B [A B]...`: exchanges each pair of paths atomically
//!   (`renameat2(RENAME_EXCHANGE)`) as fast as it can for `SECONDS`, then
//!   prints the number of exchanges. Run as the test user, it is a user
//!   racing symlinks against the logins of a root process.
//! - `ask SOCKET`: sends the TOML request read from standard input to
//!   `otpgated` at `SOCKET` in one frame and prints the reply's TOML (or
//!   `error: ...`). Run as the test user, it is a user's own client of
//!   the daemon, which need not be our CLI.
//! - `hold SOCKET N`: opens N connections to `otpgated` and keeps them;
//!   on the last one sends a view request for itself and prints the reply
//!   (a user taking every connection it can).
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use otpgate_config::record::TrustedHost;
use otpgate_config::{Account, StoreExt, UserFile};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("update-loop") if args.len() == 2 => update_loop(Path::new(&args[1])),
        Some("ask") if args.len() == 2 => ask(Path::new(&args[1])),
        Some("hold") if args.len() == 3 => hold(Path::new(&args[1]), &args[2]),
        Some("swap") if args.len() >= 4 && args.len().is_multiple_of(2) => {
            swap(&args[1], &args[2..])
        }
        _ => {
            eprintln!(
                "usage: otpgate-hardening-helper update-loop FILE | swap SECONDS A B... | ask SOCKET | hold SOCKET N"
            );
            ExitCode::from(2)
        }
    }
}

fn update_loop(path: &Path) -> ExitCode {
    let account = match Account::lookup("root") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lookup root: {e}");
            return ExitCode::from(2);
        }
    };
    let file = match UserFile::new(path.to_path_buf(), &account, false) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!("ready");
    loop {
        let result = file.update(|slot| {
            let Some(record) = slot.as_mut() else {
                return Err(otpgate_config::Error::Invalid {
                    source: "update-loop".into(),
                    key: String::new(),
                    message: "the user file vanished".into(),
                });
            };
            let next = record.devices[0].last_step + 1;
            record.devices[0].last_step = next;
            record.state.failures = (next % 7) as u32;
            // A few KiB per version, all stamped with the version, so a
            // torn or mixed file could not pass as a whole one.
            record.trusted_hosts = (0..48)
                .map(|i| TrustedHost {
                    host: format!("198.51.100.{i}-{next}"),
                    service: "sshd".into(),
                    key: None,
                    since: next,
                    until: next,
                })
                .collect();
            Ok(next)
        });
        match result {
            // `println!` flushes at the newline: the parent sees every
            // update that returned before the kill.
            Ok(step) => println!("{step}"),
            Err(e) => {
                eprintln!("update: {e}");
                return ExitCode::from(1);
            }
        }
    }
}

fn swap(seconds: &str, pairs: &[String]) -> ExitCode {
    let Ok(seconds) = seconds.parse::<f64>() else {
        return ExitCode::from(2);
    };
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut swaps: u64 = 0;
    let mut failures: u64 = 0;
    while Instant::now() < end {
        for pair in pairs.chunks(2) {
            match renameat2(
                AT_FDCWD,
                pair[0].as_str(),
                AT_FDCWD,
                pair[1].as_str(),
                RenameFlags::RENAME_EXCHANGE,
            ) {
                Ok(()) => swaps += 1,
                Err(_) => failures += 1,
            }
        }
    }
    println!("{swaps} {failures}");
    ExitCode::SUCCESS
}

fn ask(socket: &Path) -> ExitCode {
    use otpgate_config::protocol::{self, Reply};
    use std::io::Read;
    let mut request = String::new();
    if std::io::stdin().read_to_string(&mut request).is_err() {
        return ExitCode::from(2);
    }
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            println!("error: connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = protocol::write_payload(&mut stream, request.as_bytes()) {
        println!("error: write: {e}");
        return ExitCode::FAILURE;
    }
    match protocol::read_frame::<Reply>(&mut stream) {
        Ok(reply) => {
            print!("{}", toml::to_string(&reply).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hold(socket: &Path, n: &str) -> ExitCode {
    use otpgate_config::protocol::{self, Reply, Request};
    let Ok(n) = n.parse::<usize>() else {
        return ExitCode::from(2);
    };
    let mut held = Vec::new();
    for _ in 1..n {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(s) => held.push(s),
            Err(e) => {
                println!("error: connect: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Let the daemon count them before the last one.
    std::thread::sleep(Duration::from_millis(200));
    let user = otpgate_config::Account::current()
        .map(|a| a.name)
        .unwrap_or_default();
    let mut last = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            println!("error: connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = last.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = protocol::write_frame(&mut last, &Request::View { user });
    match protocol::read_frame::<Reply>(&mut last) {
        Ok(reply) => print!("{}", toml::to_string(&reply).unwrap_or_default()),
        Err(e) => println!("error: {e}"),
    }
    drop(held);
    ExitCode::SUCCESS
}
