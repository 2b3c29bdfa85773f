//! The one error type of the crate. Every variant names the file, key or
//! account it is about, so a log line alone tells an admin what to fix.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

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
    /// A key of the top level (`remember_days`) written below a table
    /// header, so TOML reads it as part of that table: what
    /// `echo key = value >> config.toml` does to a file that ends in a
    /// table. `line` is the key's, `table_line` its table's (1-based).
    Misplaced {
        path: PathBuf,
        line: usize,
        key: String,
        table: String,
        table_line: usize,
    },
    /// A value is well-formed TOML but not acceptable (e.g. `issuer = "a:b"`).
    Invalid {
        /// The file (with the key's line when known), or `module arguments`.
        source: Origin,
        /// The dotted key (`channels.email.run_as`); empty when none applies.
        key: String,
        message: String,
    },
    /// A number outside the range it must be in (e.g. `max_attempts = 0`,
    /// 10 TOTP digits).
    OutOfRange {
        /// Where the value was read; empty for a value given by a program
        /// (an `otpauth` URI, a command-line option).
        source: Origin,
        /// The dotted key, or what the number is (`digits`).
        key: String,
        value: u64,
        min: u64,
        max: u64,
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
    /// A secret that is not valid base32 or too short or long, or a stored
    /// backup-code hash of the wrong form.
    BadSecret { message: String },
    /// The operating system gave no randomness (for `what`: a secret, a
    /// code, a salt); nothing is made from a weaker source.
    Random {
        what: &'static str,
        source: getrandom::Error,
    },
    /// The clock is before 1970 or otherwise unusable.
    Clock { message: String },
    /// A store backend returned success without running the change (a bug
    /// in the backend; the login is denied).
    StoreContract { store: String },
    /// The user is recorded as enrolled (`entry`, root's) but their
    /// record cannot be found at `store`: a home not mounted, a config
    /// directory moved away. Denied, never read as "not enrolled".
    Unavailable {
        user: String,
        store: String,
        entry: PathBuf,
    },
    /// No copy of the login state in the state file passes its checksum
    /// (or the newest does not fit the record): reading the record alone
    /// could bring used codes back, so logins are refused.
    StateDamaged { path: PathBuf, why: &'static str },
    /// A database behind `otpgated` failed (unreachable, a timeout, a
    /// schema it does not know, a statement refused).
    Database { what: String, cause: String },
    /// `otpgated` could not be asked: not running, no socket, a timeout, a
    /// reply that is not ours (`cause` says which).
    Daemon { socket: PathBuf, cause: String },
    /// `otpgated` answered and did not carry the request out.
    DaemonRefused {
        socket: PathBuf,
        kind: crate::protocol::Failure,
        message: String,
    },
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

    /// `Ok` when `value` is in `range`, else [`Error::OutOfRange`].
    pub fn check_range(
        source: impl Into<Origin>,
        key: &str,
        value: impl Into<u64>,
        range: RangeInclusive<u64>,
    ) -> Result<()> {
        let value = value.into();
        if range.contains(&value) {
            return Ok(());
        }
        Err(Error::OutOfRange {
            source: source.into(),
            key: key.to_string(),
            value,
            min: *range.start(),
            max: *range.end(),
        })
    }

    /// Fills in the line of the key of an [`Error::Invalid`] or
    /// [`Error::OutOfRange`] from the `text` it was read from (validation
    /// sees values, not the text). Other errors are returned as they are.
    pub(crate) fn with_line_from(mut self, text: &str) -> Self {
        if let Error::Invalid { source, key, .. } | Error::OutOfRange { source, key, .. } =
            &mut self
            && source.line == 0
            && !key.is_empty()
        {
            source.line = line_of_key(text, key);
        }
        self
    }

    /// True when the problem is that the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Where a value was read: a file or `module arguments`, and the 1-based
/// line of its key when the input had lines (0 otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub name: String,
    pub line: usize,
}

impl Origin {
    /// `name` at `line` (1-based; 0 when unknown).
    pub fn at(name: impl Into<String>, line: usize) -> Self {
        Origin {
            name: name.into(),
            line,
        }
    }
}

impl From<&str> for Origin {
    fn from(name: &str) -> Self {
        Origin::at(name, 0)
    }
}

impl From<String> for Origin {
    fn from(name: String) -> Self {
        Origin::at(name, 0)
    }
}

impl From<&Path> for Origin {
    fn from(path: &Path) -> Self {
        Origin::at(path.display().to_string(), 0)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => f.write_str(&self.name),
            line => write!(f, "{}:{line}", self.name),
        }
    }
}

/// The 1-based line where the dotted `key` (`channels.email.timeout`) is
/// written in TOML `text`; when the key itself is absent (a required key
/// left out), the line of the nearest table that holds it; 0 when neither
/// is there or the text does not parse.
fn line_of_key(text: &str, key: &str) -> usize {
    let Ok(document) = toml::de::DeTable::parse(text) else {
        return 0;
    };
    let mut table = document.get_ref();
    let mut line = 0;
    for part in key.split('.') {
        // `override[2]`: the third table of an array of tables.
        let (part, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
            Some((name, index)) => (name, index.parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((name, value)) = table.iter().find(|(name, _)| name.get_ref() == part) else {
            break;
        };
        line = line_col(text, name.span().start).0;
        let value = match (value.get_ref(), index) {
            (toml::de::DeValue::Array(items), Some(i)) => match items.get(i) {
                Some(item) => {
                    line = line_col(text, item.span().start).0;
                    item.get_ref()
                }
                None => break,
            },
            (value, _) => value,
        };
        match value {
            toml::de::DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    line
}

/// The keys from the top of TOML `text` down to the key written at byte
/// `offset` (`channels`, `remember_days`), each with the 1-based line its
/// name is on (for a table, its header); `None` when no key is written
/// there within `max_depth` keys of the top, or the text does not parse.
/// The bound keeps the search where the caller's keys can be, not in every
/// corner of a hostile file (toml itself stops at 80 keys in one path).
pub(crate) fn keys_down_to(
    text: &str,
    offset: usize,
    max_depth: usize,
) -> Option<Vec<(String, usize)>> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut chain = Vec::new();
    find_key_at(text, document.get_ref(), offset, max_depth, &mut chain).then_some(chain)
}

/// [`keys_down_to`] from `table` on, pushing onto `chain`; false (and
/// `chain` as it was) when no key below `table` is written at `offset`.
fn find_key_at(
    text: &str,
    table: &toml::de::DeTable<'_>,
    offset: usize,
    max_depth: usize,
    chain: &mut Vec<(String, usize)>,
) -> bool {
    if chain.len() >= max_depth {
        return false;
    }
    for (name, value) in table.iter() {
        chain.push((
            name.get_ref().to_string(),
            line_col(text, name.span().start).0,
        ));
        if name.span().contains(&offset) {
            return true;
        }
        if let Some(inner) = value.get_ref().as_table()
            && find_key_at(text, inner, offset, max_depth, chain)
        {
            return true;
        }
        chain.pop();
    }
    false
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
            } => write_parse(f, path, [*line, *column], message),
            Error::Misplaced {
                path,
                line,
                key,
                table,
                table_line,
            } => write_misplaced(f, path, *line, key, (table, *table_line)),
            Error::Invalid {
                source,
                key,
                message,
            } => {
                write_where(f, source, key)?;
                f.write_str(message)
            }
            Error::OutOfRange {
                source,
                key,
                value,
                min,
                max,
            } => {
                write_where(f, source, key)?;
                write!(f, "{value} is outside {min}..={max}")
            }
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
            } => write_owner(f, path, *owner, expected),
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
            Error::Random { what, source } => write!(f, "no OS randomness for {what}: {source}"),
            Error::Clock { message } => write!(f, "clock: {message}"),
            Error::StoreContract { store } => {
                write!(f, "{store}: the store did not run the change")
            }
            Error::Unavailable { user, store, entry } => write_unavailable(f, user, store, entry),
            Error::StateDamaged { path, why } => write_state_damaged(f, path, why),
            Error::Database { what, cause } => write!(f, "database: {what}: {cause}"),
            Error::Daemon { socket, cause } => {
                write!(f, "otpgated at {}: {cause}", socket.display())
            }
            Error::DaemonRefused {
                socket, message, ..
            } => write!(f, "otpgated at {} refused: {message}", socket.display()),
        }
    }
}

/// `PATH:LINE: `KEY` is a top-level key but stands inside `[TABLE]` (line
/// N); move it above the first table`.
fn write_misplaced(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    line: usize,
    key: &str,
    (table, table_line): (&str, usize),
) -> fmt::Result {
    write!(
        f,
        "{}:{line}: `{key}` is a top-level key but stands inside `[{table}]` (line {table_line}); move it above the first table",
        path.display()
    )
}

/// What an admin reads when an enrolled user's record cannot be found.
fn write_unavailable(
    f: &mut fmt::Formatter<'_>,
    user: &str,
    store: &str,
    entry: &Path,
) -> fmt::Result {
    write!(
        f,
        "{user} is enrolled ({}) but {store} cannot be found (home not mounted, or a directory moved?); `otpgate reset --user {user}` clears the enrollment",
        entry.display()
    )
}

/// What an admin reads when neither copy of the login state is intact.
fn write_state_damaged(f: &mut fmt::Formatter<'_>, path: &Path, why: &str) -> fmt::Result {
    write!(
        f,
        "{}: the login state is damaged ({why}); logins are refused, since the record alone could make used codes work again; restore the file, or remove it to go back to the state saved with the record, or `otpgate reset --user`",
        path.display()
    )
}

/// `PATH: owned by uid 1000, expected uid 0 or uid 1001`.
fn write_owner(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    owner: u32,
    expected: &[u32],
) -> fmt::Result {
    let expected: Vec<String> = expected.iter().map(|u| format!("uid {u}")).collect();
    let expected = expected.join(" or ");
    write!(
        f,
        "{}: owned by uid {owner}, expected {expected}",
        path.display()
    )
}

/// `file:line:column: message` as compilers print it, the line and column
/// left out when unknown (0).
fn write_parse(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    line_column: [usize; 2],
    message: &str,
) -> fmt::Result {
    write!(f, "{}", path.display())?;
    for n in line_column.into_iter().take_while(|&n| n > 0) {
        write!(f, ":{n}")?;
    }
    write!(f, ": {message}")
}

/// `file:line: key `x`: ` before a message about a value, the line left
/// out when unknown; just `x: ` for a value that came from no file (the
/// digits of an `otpauth` URI).
fn write_where(f: &mut fmt::Formatter<'_>, source: &Origin, key: &str) -> fmt::Result {
    match (source.name.is_empty(), key.is_empty()) {
        (true, true) => Ok(()),
        (true, false) => write!(f, "{key}: "),
        (false, true) => write!(f, "{source}: "),
        (false, false) => write!(f, "{source}: key `{key}`: "),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Random { source, .. } => Some(source),
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

    #[test]
    fn keys_are_found_on_their_line_through_tables_and_dotted_keys() {
        let text = "\
# a comment with x = 1
template = \"\"\"
remember_days = not this one
\"\"\"
remember_days = 400
policy.require = \"all\"

[channels.email]
timeout = 0
[channels.sms]
";
        assert_eq!(line_of_key(text, "remember_days"), 5);
        assert_eq!(line_of_key(text, "policy.require"), 6);
        assert_eq!(line_of_key(text, "channels.email.timeout"), 9);
        // A key left out: the table that should hold it.
        assert_eq!(line_of_key(text, "channels.sms.command"), 10);
        assert_eq!(line_of_key(text, "max_attempts"), 0);
        assert_eq!(line_of_key("not = [toml", "not"), 0);
    }

    #[test]
    fn the_keys_down_to_an_offset_name_each_table_with_its_line() {
        let text = "a = 1\n[t]\nb = 2\n[t.u]\nc = 3\n";
        let at = |needle: &str| text.find(needle).unwrap();
        let chain = keys_down_to(text, at("c ="), 8).unwrap();
        assert_eq!(
            chain,
            [
                ("t".to_string(), 2),
                ("u".to_string(), 4),
                ("c".to_string(), 5)
            ]
        );
        assert_eq!(keys_down_to(text, at("a ="), 8).unwrap().len(), 1);
        // A value is not a key; too deep is not searched.
        assert_eq!(keys_down_to(text, at("3"), 8), None);
        assert_eq!(keys_down_to(text, at("c ="), 2), None);
        // Deeper than asked is not searched.
        let deep = format!("x = 1\n{} = 1\n", vec!["a"; 60].join("."));
        assert!(toml::de::DeTable::parse(&deep).is_ok());
        assert_eq!(keys_down_to(&deep, deep.rfind('a').unwrap(), 8), None);
        assert_eq!(
            keys_down_to(&deep, deep.rfind('a').unwrap(), 80).map(|c| c.len()),
            Some(60)
        );
    }

    #[test]
    fn out_of_range_names_file_line_and_key_or_just_what() {
        let e = Error::check_range("/etc/otpgate/config.toml", "remember_days", 400u64, 0..=365)
            .unwrap_err()
            .with_line_from("\n\nremember_days = 400\n");
        assert!(
            matches!(&e, Error::OutOfRange { source, key, value: 400, min: 0, max: 365 }
                if source.line == 3 && key == "remember_days"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "/etc/otpgate/config.toml:3: key `remember_days`: 400 is outside 0..=365"
        );
        let bare = Error::check_range("", "digits", 10u8, 6..=8).unwrap_err();
        assert_eq!(bare.to_string(), "digits: 10 is outside 6..=8");
        assert!(Error::check_range("", "digits", 6u8, 6..=8).is_ok());
    }

    #[test]
    fn invalid_without_a_line_or_key_leaves_them_out() {
        let e = Error::Invalid {
            source: "module arguments".into(),
            key: String::new(),
            message: "odd".into(),
        };
        assert_eq!(e.to_string(), "module arguments: odd");
        let e = Error::Invalid {
            source: Origin::at("f.toml", 7),
            key: "issuer".into(),
            message: "must not contain `:`".into(),
        };
        assert_eq!(
            e.to_string(),
            "f.toml:7: key `issuer`: must not contain `:`"
        );
    }
}
