//! The daemon's one error type: what stops it from starting, and why one
//! request was not carried out.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use otpgate_config::protocol::{Failure, FrameError};

#[derive(Debug)]
pub enum Error {
    /// A command-line argument we do not know, or a missing value.
    Usage(String),
    /// The config cannot be read or is invalid.
    Config(otpgate_config::Error),
    /// The state directory or the socket cannot be set up.
    Setup { path: PathBuf, why: String },
    /// The metrics endpoint (`daemon.metrics`) cannot listen.
    Metrics {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    /// The peer may not ask this.
    Forbidden(String),
    /// Over a connection limit.
    Busy,
    /// The request names no known user.
    UnknownUser(String),
    /// A frame or request we cannot read.
    Frame(FrameError),
    /// The store failed.
    Store(otpgate_config::Error),
    /// The system clock is before 1970.
    Clock,
}

impl Error {
    /// The failure a client is told.
    pub fn failure(&self) -> Failure {
        match self {
            Error::Forbidden(_) => Failure::Forbidden,
            Error::Busy => Failure::Busy,
            Error::UnknownUser(_) => Failure::UnknownUser,
            Error::Frame(FrameError::Version(_)) => Failure::Version,
            Error::Frame(_) => Failure::BadRequest,
            Error::Usage(_) | Error::Config(_) | Error::Setup { .. } | Error::Metrics { .. } => {
                Failure::Store
            }
            Error::Store(_) | Error::Clock => Failure::Store,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(why) => write!(f, "{why} (try --help)"),
            Error::Config(e) => write!(f, "config: {e}"),
            Error::Setup { path, why } => write!(f, "{}: {why}", path.display()),
            Error::Metrics { addr, cause } => write!(f, "daemon.metrics {addr}: {cause}"),
            Error::Forbidden(why) => write!(f, "forbidden: {why}"),
            Error::Busy => write!(f, "busy: over the connection limit"),
            Error::UnknownUser(name) => write!(f, "unknown user `{name}`"),
            Error::Frame(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::Clock => write!(f, "the system clock is before 1970"),
        }
    }
}

impl std::error::Error for Error {}
