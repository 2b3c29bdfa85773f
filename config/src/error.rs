//! The one error type of the crate. Every variant names the file, key or
//! account it is about, so a log line alone tells an admin what to fix.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `otpgate-config`.
#[derive(Debug)]
pub enum Error {
    /// A TOML file (system config or user file) does not parse or does not
    /// fit the schema. `line`/`column` are 1-based; 0 when unknown.
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value is well-formed TOML but not acceptable (e.g. `max_attempts = 0`).
    Invalid {
        /// The file, or `module arguments`.
        source: String,
        key: String,
        message: String,
    },
    /// A module argument that is not `key=value` or names no known key.
    BadArgument { argument: String, message: String },
    /// The file is a symbolic link; refused so nobody can point us elsewhere.
    Symlink { path: PathBuf },
    /// The file (or its directory) is owned by someone it should not be.
    WrongOwner {
        path: PathBuf,
        owner: u32,
        expected: Vec<u32>,
    },
    /// The file is readable or writable by group or others (or the
    /// directory is writable by them).
    BadMode { path: PathBuf, mode: u32 },
    /// Not a regular file (a FIFO, device, directory...).
    NotRegular { path: PathBuf, kind: &'static str },
    /// Larger than we are willing to read.
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// A system call on a path failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Another process held the lock for too long.
    LockTimeout { path: PathBuf, seconds: u64 },
    /// Switching or restoring the file-system identity failed.
    Privilege { action: String },
    /// No passwd entry for this name.
    UnknownUser { name: String },
    /// A secret that is not valid base32 or too short or long.
    BadSecret { message: String },
    /// The clock is before 1970 or otherwise unusable.
    Clock { message: String },
    /// A store backend returned success without running the change (a bug
    /// in the backend; the login is denied).
    StoreContract { store: String },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an `io::Error` with the path and what we were doing.
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// Wraps a `nix` errno with the path and what we were doing.
    pub fn errno(path: impl Into<PathBuf>, action: &'static str, errno: nix::Error) -> Self {
        Error::io(path, action, io::Error::from(errno))
    }

    /// Builds a parse error from a TOML error, turning its byte span into a
    /// line and column of `text`.
    pub(crate) fn from_toml(path: impl Into<PathBuf>, text: &str, err: &toml::de::Error) -> Self {
        let (line, column) = match err.span() {
            Some(span) => line_col(text, span.start),
            None => (0, 0),
        };
        let mut message = err.message().trim().to_string();
        // toml names unknown keys but not the key of a bad value: add it.
        if let Some(key) = key_on_line(text, line)
            && !message.contains(key)
        {
            message = format!("key `{key}`: {message}");
        }
        Error::Parse {
            path: path.into(),
            line,
            column,
            message,
        }
    }

    /// True when the problem is that the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// The `key` of a `key = value` line (1-based `line`), if it is one.
fn key_on_line(text: &str, line: usize) -> Option<&str> {
    let content = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = content.split_once('=')?;
    let key = key.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    (!key.is_empty() && key.chars().all(plain)).then_some(key)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse {
                path,
                line,
                column,
                message,
            } if *line > 0 && *column > 0 => {
                write!(f, "{}:{line}:{column}: {message}", path.display())
            }
            Error::Parse {
                path,
                line,
                message,
                ..
            } if *line > 0 => write!(f, "{}:{line}: {message}", path.display()),
            Error::Parse { path, message, .. } => write!(f, "{}: {message}", path.display()),
            Error::Invalid {
                source,
                key,
                message,
            } => write!(f, "{source}: key `{key}`: {message}"),
            Error::BadArgument { argument, message } => {
                write!(f, "module argument `{argument}`: {message}")
            }
            Error::Symlink { path } => write!(
                f,
                "{}: is a symbolic link; refusing to follow it",
                path.display()
            ),
            Error::WrongOwner {
                path,
                owner,
                expected,
            } => {
                let expected: Vec<String> = expected.iter().map(|u| format!("uid {u}")).collect();
                write!(
                    f,
                    "{}: owned by uid {owner}, expected {}",
                    path.display(),
                    expected.join(" or ")
                )
            }
            Error::BadMode { path, mode } => write!(
                f,
                "{}: mode {:04o} gives group or others access; run `chmod go-rwx` on it",
                path.display(),
                mode & 0o7777
            ),
            Error::NotRegular { path, kind } => {
                write!(f, "{}: is a {kind}, not a regular file", path.display())
            }
            Error::TooLarge { path, size, limit } => write!(
                f,
                "{}: {size} bytes is larger than the {limit}-byte limit",
                path.display()
            ),
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "{}: {action}: {source}", path.display()),
            Error::LockTimeout { path, seconds } => write!(
                f,
                "{}: could not take the lock within {seconds} s",
                path.display()
            ),
            Error::Privilege { action } => write!(f, "privilege switch failed: {action}"),
            Error::UnknownUser { name } => write!(f, "unknown user `{name}`"),
            Error::BadSecret { message } => write!(f, "bad secret: {message}"),
            Error::Clock { message } => write!(f, "clock: {message}"),
            Error::StoreContract { store } => {
                write!(f, "{store}: the store did not run the change")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 11), (2, 6));
    }
}
