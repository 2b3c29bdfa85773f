//! Module arguments: the words after the module's path in a pam.d line.
//! The PAM module parses its own arguments with [`Args::parse`];
//! `otpgate check` feeds a pam.d line's words through the same parser, so
//! the two cannot disagree about what an argument means.
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
//! unknown argument there, and the login is denied. This crate is compiled
//! with the profile of the build that uses it, so a release module (whose
//! copy of this crate has no `debug_assertions`) holds no trace of the hook.

use std::fmt;
use std::path::PathBuf;

use crate::system::DEFAULT_PATH;

/// Where log lines go unless `syslog_socket=` says otherwise.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// The argument that injects a panic in debug builds.
pub const DEBUG_PANIC_ARG: &str = "debug_panic_for_tests";

/// What a flag (an argument without `=`) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Shorthand for this config override (`key=value`).
    Override(&'static str),
    /// `use_first_pass`.
    UseFirstPass,
    /// `try_first_pass`.
    TryFirstPass,
    /// `forward_pass`.
    ForwardPass,
}

/// Every flag the module knows, with what it does.
pub const FLAGS: &[(&str, Flag)] = &[
    ("nullok", Flag::Override("policy.require=enrolled")),
    (
        "echo_verification_code",
        Flag::Override("echo_verification_code=true"),
    ),
    ("debug", Flag::Override("debug=true")),
    ("use_first_pass", Flag::UseFirstPass),
    ("try_first_pass", Flag::TryFirstPass),
    ("forward_pass", Flag::ForwardPass),
];

/// The names of [`FLAGS`], in order.
pub fn flag_names() -> impl Iterator<Item = &'static str> {
    FLAGS.iter().map(|(name, _)| *name)
}

/// True when `arg` is `debug_panic_for_tests` with or without a stage, in
/// any build (for `otpgate check`, which calls it a test hook).
pub fn is_debug_panic_arg(arg: &str) -> bool {
    arg.split_once('=').map_or(arg, |(name, _)| name) == DEBUG_PANIC_ARG
}

/// An argument the module does not accept; any of them denies the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// Not UTF-8; the argument as shown lossily.
    NotUtf8(String),
    /// A word without `=` that is no flag.
    Unknown(String),
    /// `config=` or `syslog_socket=` with a relative path.
    RelativePath {
        /// The whole argument.
        arg: String,
        /// `config` or `socket`.
        what: &'static str,
    },
    /// `debug_panic_for_tests=STAGE` with a stage nobody knows.
    #[cfg(debug_assertions)]
    UnknownStage(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::NotUtf8(arg) => write!(f, "argument `{arg}` is not UTF-8"),
            ArgError::Unknown(arg) => write!(f, "unknown argument `{arg}`"),
            ArgError::RelativePath { arg, what } => {
                write!(f, "`{arg}`: the {what} path must be absolute")
            }
            #[cfg(debug_assertions)]
            ArgError::UnknownStage(arg) => write!(f, "unknown stage in `{arg}`"),
        }
    }
}

impl std::error::Error for ArgError {}

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
    /// `use_first_pass`.
    pub use_first_pass: bool,
    /// `try_first_pass`.
    pub try_first_pass: bool,
    /// `forward_pass`.
    pub forward_pass: bool,
    /// `syslog_socket=`, or [`DEFAULT_SYSLOG_SOCKET`].
    pub syslog_socket: PathBuf,
    /// Arguments that are not understood; any of them denies the login.
    pub errors: Vec<ArgError>,
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
            match std::str::from_utf8(arg.as_ref()) {
                Ok(arg) => args.add(arg),
                Err(_) => args.errors.push(ArgError::NotUtf8(
                    String::from_utf8_lossy(arg.as_ref()).into_owned(),
                )),
            }
        }
        args
    }

    /// Adds one argument; a wrong one is pushed to `errors`.
    pub fn add(&mut self, arg: &str) {
        #[cfg(debug_assertions)]
        if self.debug_panic_arg(arg) {
            return;
        }
        match arg.split_once('=') {
            None => self.add_flag(arg),
            Some(("config", path)) => match absolute(arg, path, "config") {
                Ok(path) => {
                    self.config = path;
                    self.config_required = true;
                }
                Err(e) => self.errors.push(e),
            },
            Some(("syslog_socket", path)) => match absolute(arg, path, "socket") {
                Ok(path) => self.syslog_socket = path,
                Err(e) => self.errors.push(e),
            },
            // Checked against the config's keys when it is loaded.
            Some(_) => self.overrides.push(arg.to_string()),
        }
    }

    fn add_flag(&mut self, arg: &str) {
        match FLAGS.iter().find(|(name, _)| *name == arg) {
            Some((_, Flag::Override(o))) => self.overrides.push((*o).to_string()),
            Some((_, Flag::UseFirstPass)) => self.use_first_pass = true,
            Some((_, Flag::TryFirstPass)) => self.try_first_pass = true,
            Some((_, Flag::ForwardPass)) => self.forward_pass = true,
            None => self.errors.push(ArgError::Unknown(arg.to_string())),
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
                self.errors.push(ArgError::UnknownStage(arg.to_string()));
                None
            }
        };
        true
    }

    /// Panics when `debug_panic_for_tests` asked for `stage` (debug builds;
    /// release builds have neither the argument nor this method).
    #[cfg(debug_assertions)]
    pub fn maybe_panic(&self, stage: DebugPanic) {
        if self.debug_panic == Some(stage) {
            panic!("{DEBUG_PANIC_ARG}: injected panic at {stage:?}");
        }
    }
}

/// `path` of argument `arg` when it is absolute.
fn absolute(arg: &str, path: &str, what: &'static str) -> Result<PathBuf, ArgError> {
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ArgError::RelativePath {
            arg: arg.to_string(),
            what,
        })
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
    fn every_flag_is_known_and_in_the_table() {
        let doc = include_str!("args.rs");
        for name in flag_names() {
            assert!(Args::parse(&[name]).errors.is_empty(), "{name}");
            assert!(doc.contains(&format!("//! | `{name}` |")), "{name}");
        }
    }

    #[test]
    fn the_debug_panic_argument_exists_only_in_debug_builds() {
        let a = Args::parse(&["debug_panic_for_tests=update", "debug_panic_for_tests"]);
        assert!(is_debug_panic_arg("debug_panic_for_tests"));
        assert!(is_debug_panic_arg("debug_panic_for_tests=x"));
        assert!(!is_debug_panic_arg("debug_panic_for_testsx"));
        #[cfg(debug_assertions)]
        {
            assert!(a.errors.is_empty(), "{:?}", a.errors);
            assert_eq!(a.debug_panic, Some(DebugPanic::Start));
            assert!(a.overrides.is_empty());
            let bad = Args::parse(&["debug_panic_for_tests=nowhere"]);
            assert_eq!(
                bad.errors,
                [ArgError::UnknownStage(
                    "debug_panic_for_tests=nowhere".into()
                )]
            );
        }
        #[cfg(not(debug_assertions))]
        {
            // Bare: an unknown argument; with a value: an override the
            // config does not know, refused when the config is loaded.
            assert_eq!(
                a.errors,
                [ArgError::Unknown("debug_panic_for_tests".into())]
            );
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
        assert_eq!(
            a.errors,
            [
                ArgError::Unknown("nullokk".into()),
                ArgError::RelativePath {
                    arg: "config=relative.toml".into(),
                    what: "config"
                },
                ArgError::NotUtf8("\u{fffd}".into()),
            ]
        );
        assert_eq!(a.syslog_socket, PathBuf::from("/s"));
    }

    #[test]
    fn errors_read_as_before() {
        let a = Args::parse(&["nullokk", "syslog_socket=s"]);
        let text: Vec<String> = a.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "unknown argument `nullokk`",
                "`syslog_socket=s`: the socket path must be absolute"
            ]
        );
    }
}
