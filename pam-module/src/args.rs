//! Module arguments: the words after the module's path in a pam.d line.
//!
//! | argument | meaning |
//! | --- | --- |
//! | `config=PATH` | system config to read instead of `/etc/otpgate/config.toml`; it must exist |
//! | `KEY=VALUE` | any config key, dotted for tables (`policy.require=all`), lists comma-separated |
//! | `nullok` | same as `policy.require=enrolled` |
//! | `echo_verification_code` | same as `echo_verification_code=true` |
//! | `debug` | same as `debug=true` |
//! | `use_first_pass` | take the code from `PAM_AUTHTOK` (set by an earlier module); never prompt |
//! | `try_first_pass` | try `PAM_AUTHTOK` first, prompt if it is not a valid code |
//! | `forward_pass` | one prompt for password and code; the code is split off the end and the password is passed on in `PAM_AUTHTOK` |
//! | `syslog_socket=PATH` | datagram socket to log to instead of `/dev/log` (tests) |
//!
//! Anything else is an error: the login is denied and the argument logged.
//!
//! Debug builds only (`debug_assertions`), for the hardening tests:
//! `debug_panic_for_tests[=STAGE]` makes the module panic on purpose, at
//! `start` (the default: first thing in the flow), `update` (inside a user
//! file update, with the lock held and the identity switched), `ffi` (in the
//! entry point, outside the flow's guard) or `setcred` (in
//! `pam_sm_setcred`). A release build does not know the argument: it is an
//! unknown argument there, and the login is denied.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use otpgate_config::system::DEFAULT_PATH;

/// Where log lines go unless `syslog_socket=` says otherwise.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// Parsed module arguments. Errors do not stop parsing, so that the log
/// socket is known even when another argument is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The system config file.
    pub config: PathBuf,
    /// True when `config=` named it: then it must exist.
    pub config_required: bool,
    /// `key=value` overrides for the config, in order.
    pub overrides: Vec<String>,
    pub use_first_pass: bool,
    pub try_first_pass: bool,
    pub forward_pass: bool,
    pub syslog_socket: PathBuf,
    /// Arguments that are not understood; any of them denies the login.
    pub errors: Vec<String>,
    /// `debug_panic_for_tests`: where to panic on purpose (debug builds).
    #[cfg(debug_assertions)]
    pub debug_panic: Option<DebugPanic>,
}

/// Where `debug_panic_for_tests` panics (debug builds only).
#[cfg(debug_assertions)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugPanic {
    /// First thing in the flow, under its guard.
    Start,
    /// Inside `UserFile::update`: lock held, identity switched.
    Update,
    /// In `pam_sm_authenticate`, outside the flow's guard.
    Ffi,
    /// In `pam_sm_setcred`.
    Setcred,
}

/// The argument that injects a panic in debug builds.
pub const DEBUG_PANIC_ARG: &str = "debug_panic_for_tests";

impl Default for Args {
    fn default() -> Self {
        Args {
            config: PathBuf::from(DEFAULT_PATH),
            config_required: false,
            overrides: Vec::new(),
            use_first_pass: false,
            try_first_pass: false,
            forward_pass: false,
            syslog_socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
            errors: Vec::new(),
            #[cfg(debug_assertions)]
            debug_panic: None,
        }
    }
}

impl Args {
    /// Parses raw arguments (bytes, as PAM hands them over).
    pub fn parse<A: AsRef<[u8]>>(raw: &[A]) -> Args {
        let mut args = Args::default();
        for arg in raw {
            let Ok(arg) = std::str::from_utf8(arg.as_ref()) else {
                args.errors.push(format!(
                    "argument `{}` is not UTF-8",
                    String::from_utf8_lossy(arg.as_ref())
                ));
                continue;
            };
            args.add(arg);
        }
        args
    }

    fn add(&mut self, arg: &str) {
        #[cfg(debug_assertions)]
        if self.debug_panic_arg(arg) {
            return;
        }
        match arg.split_once('=') {
            None => match arg {
                "nullok" => self.overrides.push("policy.require=enrolled".into()),
                "echo_verification_code" => {
                    self.overrides.push("echo_verification_code=true".into())
                }
                "debug" => self.overrides.push("debug=true".into()),
                "use_first_pass" => self.use_first_pass = true,
                "try_first_pass" => self.try_first_pass = true,
                "forward_pass" => self.forward_pass = true,
                _ => self.errors.push(format!("unknown argument `{arg}`")),
            },
            Some(("config", path)) => {
                if path.starts_with('/') {
                    self.config = PathBuf::from(path);
                    self.config_required = true;
                } else {
                    self.errors
                        .push(format!("`{arg}`: the config path must be absolute"));
                }
            }
            Some(("syslog_socket", path)) => {
                if path.starts_with('/') {
                    self.syslog_socket = PathBuf::from(path);
                } else {
                    self.errors
                        .push(format!("`{arg}`: the socket path must be absolute"));
                }
            }
            // Checked against the config's keys when it is loaded.
            Some(_) => self.overrides.push(arg.to_string()),
        }
    }

    /// `debug_panic_for_tests[=STAGE]`; true when `arg` was it.
    #[cfg(debug_assertions)]
    fn debug_panic_arg(&mut self, arg: &str) -> bool {
        let stage = match arg.split_once('=') {
            None if arg == DEBUG_PANIC_ARG => "start",
            Some((DEBUG_PANIC_ARG, stage)) => stage,
            _ => return false,
        };
        self.debug_panic = match stage {
            "start" => Some(DebugPanic::Start),
            "update" => Some(DebugPanic::Update),
            "ffi" => Some(DebugPanic::Ffi),
            "setcred" => Some(DebugPanic::Setcred),
            _ => {
                self.errors.push(format!("unknown stage in `{arg}`"));
                None
            }
        };
        true
    }

    /// Panics when `debug_panic_for_tests` asked for `stage` (debug builds;
    /// a no-op in release builds, where the argument does not exist).
    #[cfg(debug_assertions)]
    pub fn maybe_panic(&self, stage: DebugPanic) {
        if self.debug_panic == Some(stage) {
            panic!("{DEBUG_PANIC_ARG}: injected panic at {stage:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_means_the_defaults() {
        let a = Args::parse::<&str>(&[]);
        assert_eq!(a, Args::default());
        assert_eq!(a.config, PathBuf::from("/etc/otpgate/config.toml"));
        assert!(!a.config_required);
    }

    #[test]
    fn familiar_flags_become_overrides_or_switches() {
        let a = Args::parse(&[
            "nullok",
            "echo_verification_code",
            "debug",
            "try_first_pass",
            "forward_pass",
            "config=/tmp/c.toml",
            "max_attempts=5",
            "syslog_socket=/tmp/log.sock",
        ]);
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!(
            a.overrides,
            [
                "policy.require=enrolled",
                "echo_verification_code=true",
                "debug=true",
                "max_attempts=5"
            ]
        );
        assert!(a.try_first_pass && a.forward_pass && !a.use_first_pass);
        assert!(a.config_required);
        assert_eq!(a.syslog_socket, PathBuf::from("/tmp/log.sock"));
    }

    #[test]
    fn the_debug_panic_argument_exists_only_in_debug_builds() {
        let a = Args::parse(&["debug_panic_for_tests=update", "debug_panic_for_tests"]);
        #[cfg(debug_assertions)]
        {
            assert!(a.errors.is_empty(), "{:?}", a.errors);
            assert_eq!(a.debug_panic, Some(DebugPanic::Start));
            assert!(a.overrides.is_empty());
            let bad = Args::parse(&["debug_panic_for_tests=nowhere"]);
            assert_eq!(bad.errors.len(), 1);
        }
        #[cfg(not(debug_assertions))]
        {
            // Bare: an unknown argument; with a value: an override the
            // config does not know, refused when the config is loaded.
            assert_eq!(a.errors.len(), 1, "{:?}", a.errors);
            assert_eq!(a.overrides, ["debug_panic_for_tests=update"]);
        }
    }

    #[test]
    fn unknown_or_relative_arguments_are_errors_but_parsing_goes_on() {
        let a = Args::parse(&[
            &b"nullokk"[..],
            b"config=relative.toml",
            b"\xff",
            b"syslog_socket=/s",
        ]);
        assert_eq!(a.errors.len(), 3, "{:?}", a.errors);
        assert!(a.errors[0].contains("nullokk"));
        assert_eq!(a.syslog_socket, PathBuf::from("/s"));
    }
}
