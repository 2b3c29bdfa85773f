//! The system policy, `/etc/otpgate/config.toml`, and module-argument
//! overrides (`key=value`) applied on top of it.
//!
//! The file is optional: without it every default below holds. Unknown keys
//! are errors, never ignored: a typo in a security setting must not pass.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::account::Account;
use crate::channel::Channels;
use crate::error::{Error, Result};
use crate::net::Networks;
use crate::record::{LockoutPolicy, VerifyPolicy};
use crate::secure_open::{self, Location, Rules};
use crate::store::registry::Registry;

mod overrides;

/// The accepted values of the keys a `[[policy.override]]` entry may set
/// too: one range for the base key and the entry's.
pub(crate) const MAX_ATTEMPTS: RangeInclusive<u64> = 1..=10;
pub(crate) const LOCKOUT_MINUTES: RangeInclusive<u64> = 1..=7 * 24 * 60;
pub(crate) const REMEMBER_DAYS: RangeInclusive<u64> = 0..=365;

pub use overrides::{Factor, Override, Resolved, SELF_SERVICE, Setting, Source};

/// Where the system config lives unless `config=PATH` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/otpgate/config.toml";
/// The config file is small; anything larger is a mistake.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// Logins with no `PAM_RHOST` (a local console).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalConsole {
    /// Ask for a code as for remote logins.
    #[default]
    Require,
    /// Skip the second factor (logged) when the login is on a local
    /// terminal: see [`is_local_terminal`].
    Skip,
}

/// Whether `PAM_TTY` names a terminal only someone at the machine can
/// use: a virtual console (`tty1`, `/dev/tty1`), `/dev/console`, a serial
/// line (`ttyS0`) or a local X display (`:0`, `:1.0`). A pseudo-terminal
/// (`pts/3`) is never local: `su` or `sudo` inside an SSH session and every
/// terminal emulator use one, so "no PAM_RHOST" alone proves nothing.
pub fn is_local_terminal(tty: &str) -> bool {
    let name = tty.strip_prefix("/dev/").unwrap_or(tty);
    if name == "console" {
        return true;
    }
    if let Some(display) = name.strip_prefix(':') {
        return is_display_number(display);
    }
    let line = name
        .strip_prefix("ttyS")
        .or_else(|| name.strip_prefix("tty"));
    line.is_some_and(is_number)
}

/// `0` or `1.0`: a display and an optional screen.
fn is_display_number(s: &str) -> bool {
    match s.split_once('.') {
        Some((display, screen)) => is_number(display) && is_number(screen),
        None => is_number(s),
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Who may own a config file that is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOwner {
    /// Root only: the config decides checks a user must not switch off.
    Root,
    /// Root or the effective user: tests and read-only checks run without
    /// root.
    RootOrCaller,
}

/// Who must have a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Users without a file pass (`PAM_IGNORE`): the stack decides.
    #[default]
    Enrolled,
    /// Users without a file are denied.
    All,
}

/// The `[policy]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub require: Require,
    /// Members must enroll even when `require = "enrolled"`.
    pub require_groups: Vec<String>,
    /// Members skip the second factor; exemption beats requirement.
    pub exempt_groups: Vec<String>,
    /// SSH keys whose use counts as the second factor (method `ssh-key`):
    /// key types (`sk-ssh-ed25519@openssh.com`) or fingerprints
    /// (`SHA256:...`), matched against the key sshd reports
    /// (`ssh_auth.rs`). Empty: none.
    pub trusted_ssh_keys: Vec<String>,
    /// The ways a login may pass (`app`, `backup`, `email`, `sms`,
    /// `ssh-key`); not set: every one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<Factor>>,
    /// `[[policy.override]]`: settings for some groups or PAM services,
    /// resolved per login by [`SystemConfig::for_login`] (`overrides.rs`).
    #[serde(rename = "override", skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

/// What the policy says for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Skip the second factor (exempt group).
    Exempt,
    /// Use it when enrolled; without a file, `PAM_IGNORE`.
    IfEnrolled,
    /// Without a file, deny.
    Required,
}

/// The whole system config. Field docs are the reference for the README.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Where each user's file is: `~` or `%h` = home, `%u` = user name.
    pub user_file: String,
    /// Root's record of who is enrolled, for user files in homes: a user
    /// recorded here whose file cannot be found (a home not mounted, a
    /// `~/.config` moved away) is denied, not taken for "not enrolled".
    /// Empty: no record (a missing file is "not enrolled").
    pub enrolled_dir: String,
    /// CIDR list whose `PAM_RHOST` skips the second factor.
    pub trusted_networks: Vec<String>,
    /// Logins with no `PAM_RHOST` on a local terminal (a virtual
    /// console, `/dev/console`, a serial line, a local X display): "require"
    /// or "skip". A pseudo-terminal is never local.
    pub local_console: LocalConsole,
    /// Days a user may choose to trust a host for; 0 = never offered.
    pub remember_days: u32,
    /// Prompts per login.
    pub max_attempts: u32,
    /// Wrong codes in a row that lock the account; 0 = never.
    pub lockout_after: u32,
    /// How long a lockout lasts.
    pub lockout_minutes: u32,
    /// Seconds to answer a prompt; a later answer is refused.
    pub prompt_timeout: u64,
    /// TOTP steps accepted either side of now.
    pub totp_window: u32,
    /// HOTP counters accepted ahead of the expected one.
    pub hotp_lookahead: u32,
    /// Show the code while it is typed.
    pub echo_verification_code: bool,
    /// Backup codes handed out at enrollment.
    pub backup_codes: u32,
    /// Digits per backup code.
    pub backup_code_digits: u8,
    /// Issuer shown in authenticator apps; empty = the host name.
    pub issuer: String,
    /// Extra detail in the log (never codes or secrets).
    pub debug: bool,
    /// `otpgate enroll` confirms the user's password (PAM service
    /// `otpgate`) before a first enrollment.
    pub enroll_password_check: bool,
    /// After renaming a new user file into place, fsync its directory so
    /// the change survives a power cut. `false` saves one fsync per login
    /// (google-authenticator's behaviour) at the risk that a power cut
    /// within seconds of a login brings the previous file back.
    pub fsync_directory: bool,
    pub policy: Policy,
    /// Codes sent by email or SMS; a channel that is absent is off.
    pub channels: Channels,
    /// Where the records are: per-user files, or `otpgated`.
    pub store: StoreConfig,
    /// `otpgated`'s own settings (the module and the CLI ignore them).
    pub daemon: DaemonConfig,
}

/// Which store holds the users' records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One file per user (`user_file`), read and written by the module and
    /// the CLI themselves: no daemon needed.
    #[default]
    Files,
    /// `otpgated` holds the records; the module and the CLI ask it over
    /// `store.socket`.
    Daemon,
}

/// The `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// `otpgated`'s socket (`kind = "daemon"`).
    pub socket: String,
    /// Seconds a request to `otpgated` may take, connecting included, before
    /// the login is denied (a send adds the channel's own timeout).
    pub timeout: u32,
}

/// Where `otpgated` listens unless `store.socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/otpgate/otpgated.sock";

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Files,
            socket: DEFAULT_SOCKET.into(),
            timeout: 2,
        }
    }
}

/// Where `otpgated` keeps the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonBackend {
    /// One file per user under `daemon.state_dir`, the daemon's own.
    #[default]
    Files,
    /// A PostgreSQL database shared by every host (`[daemon.postgres]`).
    Postgres,
}

/// `[daemon.postgres]`: where the shared records are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq-style connection string or URL (`postgresql://otpgate@db1,db2/otpgate?target_session_attrs=read-write`);
    /// never the password.
    pub url: String,
    /// A file holding the password (one line), root's and not readable by
    /// others; empty: none (a client certificate, or trust).
    #[serde(default)]
    pub password_file: String,
    /// Seconds to connect, to run one statement, to wait for a user's
    /// lock and for a COMMIT before the request is refused. Below
    /// `store.timeout` (2), so the daemon's answer, naming the cause,
    /// reaches the module before the module gives up on it.
    #[serde(default = "default_pg_timeout")]
    pub timeout: u32,
}

fn default_pg_timeout() -> u32 {
    1
}

/// The `[daemon]` table: read by `otpgated` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub backend: DaemonBackend,
    /// The records (`backend = "files"`): a directory of the daemon's own,
    /// mode 0700.
    pub state_dir: String,
    /// Non-root users whose processes may run logins for any user (a PAM
    /// application such as OpenVPN or a mail server that does not run as
    /// root). Root always may.
    pub login_users: Vec<String>,
    /// The same for members of these groups (primary or supplementary
    /// group of the connecting process).
    pub login_groups: Vec<String>,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: u32,
    /// Connections at once from one non-root user that is not in
    /// `login_users`/`login_groups`.
    pub max_connections_per_user: u32,
    /// Seconds a client has to send a whole request; a connection idle
    /// that long is closed.
    pub client_timeout: u32,
    /// `address:port` of a Prometheus endpoint (`GET /metrics`: counts of
    /// checks, their latency, store errors, connections); empty: none. It
    /// has no authentication, so it belongs on a loopback address.
    pub metrics: String,
    /// The database of `backend = "postgres"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresConfig>,
}

impl DaemonConfig {
    /// The address of `metrics`; `None` when empty (off) or not an
    /// address with a port.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics
            .parse()
            .ok()
            .filter(|a: &std::net::SocketAddr| a.port() != 0)
    }
}

/// Where `otpgated` keeps its files unless `daemon.state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/otpgate/records";

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            backend: DaemonBackend::Files,
            state_dir: DEFAULT_STATE_DIR.into(),
            login_users: Vec::new(),
            login_groups: Vec::new(),
            max_connections: 1024,
            max_connections_per_user: 16,
            client_timeout: 5,
            metrics: String::new(),
            postgres: None,
        }
    }
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            user_file: "~/.config/otpgate/user.toml".into(),
            enrolled_dir: crate::store::registry::DEFAULT_DIR.into(),
            trusted_networks: Vec::new(),
            local_console: LocalConsole::Require,
            remember_days: 0,
            max_attempts: 3,
            lockout_after: 10,
            lockout_minutes: 15,
            prompt_timeout: 120,
            totp_window: 1,
            hotp_lookahead: 10,
            echo_verification_code: false,
            backup_codes: 10,
            backup_code_digits: 8,
            issuer: String::new(),
            debug: false,
            enroll_password_check: true,
            fsync_directory: true,
            policy: Policy::default(),
            channels: Channels::default(),
            store: StoreConfig::default(),
            daemon: DaemonConfig::default(),
        }
    }
}

impl SystemConfig {
    /// Reads `path`. A missing file gives the defaults when `required` is
    /// false (the standard path), and an error when true (an explicit
    /// `config=`), so a typo in a pam.d line does not silently drop policy.
    /// The file must be owned by root (or by the calling user, for tests)
    /// and not writable by group or others: whoever can write it can turn
    /// the second factor off. A symbolic link at `path` is refused, not
    /// followed.
    pub fn load(path: &Path, required: bool) -> Result<Self> {
        SystemConfig::load_owned_by(path, required, ConfigOwner::RootOrCaller)
    }

    /// [`SystemConfig::load`] with a choice of owners. The CLI's account
    /// commands take [`ConfigOwner::Root`]: a non-root user's own file
    /// could turn checks off (`enroll_password_check = false`).
    pub fn load_owned_by(path: &Path, required: bool, owner: ConfigOwner) -> Result<Self> {
        match read_config_text(path, owner) {
            Ok(text) => SystemConfig::from_toml(path, &text),
            Err(e) if e.is_not_found() && !required => Ok(SystemConfig::default()),
            Err(e) => Err(e),
        }
    }

    /// Parses and validates config text; `path` is for messages.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self> {
        let config: SystemConfig = toml::from_str(text).map_err(|e| {
            misplaced_key(path, text, &e).unwrap_or_else(|| Error::from_toml(path, text, &e))
        })?;
        config
            .validate(&path.display().to_string())
            .map_err(|e| e.with_line_from(text))?;
        Ok(config)
    }

    /// Applies `key=value` overrides (module arguments) on top of this
    /// config. Keys are the config's own, dotted for tables
    /// (`policy.require=all`); list values are comma-separated
    /// (`trusted_networks=10.0.0.0/8,192.168.0.0/16`).
    pub fn with_overrides<S: AsRef<str>>(&self, args: &[S]) -> Result<Self> {
        if args.is_empty() {
            return Ok(self.clone());
        }
        let mut table = toml::Table::try_from(self).map_err(|e| Error::Invalid {
            source: "module arguments".into(),
            key: String::new(),
            message: e.to_string(),
        })?;
        for arg in args {
            apply_override(&mut table, arg.as_ref())?;
        }
        let config: SystemConfig =
            table
                .try_into()
                .map_err(|e: toml::de::Error| Error::BadArgument {
                    argument: args
                        .iter()
                        .map(|a| a.as_ref())
                        .collect::<Vec<_>>()
                        .join(" "),
                    message: e.message().trim().to_string(),
                })?;
        config.validate("module arguments")?;
        Ok(config)
    }

    /// Range and syntax checks serde cannot express. `source` names the
    /// file (or `module arguments`) in messages; [`SystemConfig::from_toml`]
    /// adds the line of the key.
    pub fn validate(&self, source: &str) -> Result<()> {
        let invalid = |key: &str, message: &str| Error::Invalid {
            source: source.into(),
            key: key.to_string(),
            message: message.to_string(),
        };
        check_template(&self.user_file).map_err(|m| invalid("user_file", &m))?;
        if !self.enrolled_dir.is_empty() && !self.enrolled_dir.starts_with('/') {
            return Err(invalid(
                "enrolled_dir",
                "must be an absolute path (or empty: no record of who is enrolled)",
            ));
        }
        Networks::parse(&self.trusted_networks).map_err(|bad| {
            invalid(
                "trusted_networks",
                &format!(
                    "`{bad}` is not an IP address or CIDR network (host names are not allowed)"
                ),
            )
        })?;
        crate::ssh_auth::validate_rules(&self.policy.trusted_ssh_keys)
            .map_err(|m| invalid("policy.trusted_ssh_keys", &m))?;
        let ranges: [(&str, u64, RangeInclusive<u64>); 7] = [
            ("max_attempts", self.max_attempts.into(), MAX_ATTEMPTS),
            (
                "lockout_minutes",
                self.lockout_minutes.into(),
                LOCKOUT_MINUTES,
            ),
            ("prompt_timeout", self.prompt_timeout, 1..=3600),
            ("totp_window", self.totp_window.into(), 0..=10),
            ("hotp_lookahead", self.hotp_lookahead.into(), 0..=1000),
            ("remember_days", self.remember_days.into(), REMEMBER_DAYS),
            ("backup_codes", self.backup_codes.into(), 0..=100),
        ];
        for (key, value, range) in ranges {
            Error::check_range(source, key, value, range)?;
        }
        Error::check_range(
            source,
            "backup_code_digits",
            self.backup_code_digits,
            6..=16,
        )?;
        if self.issuer.contains(':') {
            return Err(invalid("issuer", "must not contain `:`"));
        }
        self.channels.validate(source)?;
        overrides::validate(self, source)?;
        self.validate_daemon(source)
    }

    /// `[store]` and `[daemon]`: absolute paths, sane limits.
    fn validate_daemon(&self, source: &str) -> Result<()> {
        let absolute = |key: &str, path: &str| {
            if path.starts_with('/') && !path.contains('\0') {
                Ok(())
            } else {
                Err(Error::Invalid {
                    source: source.into(),
                    key: key.to_string(),
                    message: "must be an absolute path".into(),
                })
            }
        };
        absolute("store.socket", &self.store.socket)?;
        absolute("daemon.state_dir", &self.daemon.state_dir)?;
        let d = &self.daemon;
        let ranges: [(&str, u64, u64, u64); 4] = [
            ("store.timeout", self.store.timeout.into(), 1, 60),
            (
                "daemon.max_connections",
                d.max_connections.into(),
                1,
                65_536,
            ),
            (
                "daemon.max_connections_per_user",
                d.max_connections_per_user.into(),
                1,
                65_536,
            ),
            ("daemon.client_timeout", d.client_timeout.into(), 1, 600),
        ];
        for (key, value, lo, hi) in ranges {
            Error::check_range(source, key, value, lo..=hi)?;
        }
        if !d.metrics.is_empty() && d.metrics_address().is_none() {
            return Err(Error::Invalid {
                source: source.into(),
                key: "daemon.metrics".into(),
                message: "must be an IP address and a port, such as \"127.0.0.1:9464\" (empty: no metrics)".into(),
            });
        }
        match (d.backend, &d.postgres) {
            (DaemonBackend::Postgres, None) => Err(Error::Invalid {
                source: source.into(),
                key: "daemon.postgres".into(),
                message: "backend = \"postgres\" needs a [daemon.postgres] table with url".into(),
            }),
            (_, Some(pg)) => {
                Error::check_range(source, "daemon.postgres.timeout", pg.timeout, 1..=60)?;
                if !pg.password_file.is_empty() {
                    absolute("daemon.postgres.password_file", &pg.password_file)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// How long one request to `otpgated` may take.
    pub fn daemon_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.store.timeout.into())
    }

    /// The parsed `trusted_networks` (validated at load time).
    pub fn networks(&self) -> Networks {
        Networks::parse(&self.trusted_networks).unwrap_or_default()
    }

    /// Verification settings for [`crate::record::UserRecord::verify`].
    pub fn verify_policy(&self) -> VerifyPolicy {
        VerifyPolicy {
            totp_window: self.totp_window,
            hotp_lookahead: self.hotp_lookahead,
        }
    }

    /// Lockout settings for [`crate::record::UserRecord::record_failure`].
    pub fn lockout_policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            after: self.lockout_after,
            minutes: self.lockout_minutes,
        }
    }

    /// What the policy demands of `account`. Exemption beats requirement.
    pub fn requirement(&self, account: &Account) -> Requirement {
        // Fail closed when membership cannot be known: never exempt, and
        // required if it might be a required group.
        let exempt = self
            .policy
            .exempt_groups
            .iter()
            .any(|g| account.membership(g) == Some(true));
        let required = self
            .policy
            .require_groups
            .iter()
            .any(|g| account.membership(g) != Some(false));
        if exempt {
            Requirement::Exempt
        } else if self.policy.require == Require::All || required {
            Requirement::Required
        } else {
            Requirement::IfEnrolled
        }
    }

    /// True when `user_file` is inside the user's home (so the file is the
    /// user's, and is read and written with the user's identity).
    pub fn user_file_in_home(&self) -> bool {
        self.user_file.starts_with('~') || self.user_file.contains("%h")
    }

    /// Root's record of who is enrolled, for `account`: `None` when the
    /// user file is not in the home (central storage is root's already)
    /// or `enrolled_dir` is empty.
    pub fn registry(&self, account: &Account) -> Result<Option<Registry>> {
        if !self.user_file_in_home() || self.enrolled_dir.is_empty() {
            return Ok(None);
        }
        Registry::new(Path::new(&self.enrolled_dir), &account.name).map(Some)
    }

    /// The user file's path for `account`.
    pub fn user_file_path(&self, account: &Account) -> Result<PathBuf> {
        expand_template(&self.user_file, account)
    }
}

/// Reads the config without following a symlink at its name: owned by
/// root (or by the calling user, for tests and unprivileged checks), not
/// writable by group or others, and small.
/// [`Error::Misplaced`] when `err` is about a key of the top level that
/// stands inside a table (`remember_days` appended below `[channels]`):
/// TOML's own message, "unknown field", names neither the table nor the
/// fix. No table has a key of the same name as a top-level one, so such a
/// key inside a table is always misplaced.
fn misplaced_key(path: &Path, text: &str, err: &toml::de::Error) -> Option<Error> {
    // The deepest key the config has is `channels.email.timeout`: a
    // top-level key misplaced into the deepest table is at depth 3.
    let mut chain = crate::error::keys_down_to(text, err.span()?.start, 3)?;
    let (key, line) = chain.pop()?;
    let table_line = chain.last()?.1;
    if !top_level_keys().contains(&key) {
        return None;
    }
    let table: Vec<String> = chain.into_iter().map(|(name, _)| name).collect();
    Some(Error::Misplaced {
        path: path.into(),
        line,
        key,
        table: table.join("."),
        table_line,
    })
}

/// The keys of [`SystemConfig`] that are not tables (`remember_days`, not
/// `policy`), read off its serialized defaults so the list is never out
/// of step with the struct.
fn top_level_keys() -> Vec<String> {
    let Ok(table) = toml::Table::try_from(SystemConfig::default()) else {
        return Vec::new();
    };
    table
        .into_iter()
        .filter(|(_, value)| !value.is_table())
        .map(|(key, _)| key)
        .collect()
}

fn read_config_text(path: &Path, owner: ConfigOwner) -> Result<Zeroizing<String>> {
    let me = nix::unistd::geteuid().as_raw();
    let owners = match owner {
        ConfigOwner::RootOrCaller if me != 0 => vec![0, me],
        _ => vec![0],
    };
    let rules = Rules {
        owners: Some(owners),
        forbidden_mode: 0o022,
        max_size: MAX_CONFIG_BYTES,
    };
    secure_open::read_text(Location::path(path), &rules)
}

fn apply_override(table: &mut toml::Table, arg: &str) -> Result<()> {
    let bad = |message: &str| Error::BadArgument {
        argument: arg.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected key=value"))?;
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut node = table;
    for part in parts {
        node = match node.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(bad(&format!("unknown key `{key}`"))),
        };
    }
    let current = node
        .get(last)
        .ok_or_else(|| bad(&format!("unknown key `{key}`")))?;
    let value = match current {
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.parse()
                .map_err(|_| bad(&format!("`{raw}` is not a whole number")))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            _ => return Err(bad(&format!("`{raw}` is not true or false"))),
        }),
        _ => {
            return Err(bad(&format!(
                "`{key}` cannot be set from a module argument"
            )));
        }
    };
    node.insert(last.to_string(), value);
    Ok(())
}

/// A template must lead to an absolute path and use only known escapes.
fn check_template(template: &str) -> std::result::Result<(), String> {
    if !(template.starts_with('/') || template.starts_with("~/") || template.starts_with("%h/")) {
        return Err(format!("`{template}` must start with `/`, `~/` or `%h/`"));
    }
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c == '%' && !matches!(chars.next(), Some('h' | 'u' | '%')) {
            return Err(format!("`{template}`: only %h, %u and %% are known"));
        }
    }
    if template.split('/').any(|part| part == "..") {
        return Err(format!("`{template}` must not contain `..`"));
    }
    Ok(())
}

/// Expands `~`, `%h`, `%u` and `%%` for one account.
pub fn expand_template(template: &str, account: &Account) -> Result<PathBuf> {
    let home = account.home.to_string_lossy();
    let uses_home = template.starts_with('~') || template.contains("%h");
    if uses_home && (!account.home.is_absolute() || account.home == Path::new("/")) {
        return Err(Error::Invalid {
            source: "config".into(),
            key: "user_file".into(),
            message: format!(
                "user {} has no usable home directory (`{home}`) for `{template}`",
                account.name
            ),
        });
    }
    let mut out = String::new();
    let rest = match template.strip_prefix('~') {
        Some(rest) => {
            out.push_str(&home);
            rest
        }
        None => template,
    };
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(&home),
            Some('u') => out.push_str(&account.name),
            Some('%') => out.push('%'),
            _ => {
                return Err(Error::Invalid {
                    source: "config".into(),
                    key: "user_file".into(),
                    message: format!("`{template}`: only %h, %u and %% are known"),
                });
            }
        }
    }
    let path = PathBuf::from(out);
    if !path.is_absolute() {
        return Err(Error::Invalid {
            source: "config".into(),
            key: "user_file".into(),
            message: format!(
                "`{}` is not absolute (is the home directory of {} set?)",
                path.display(),
                account.name
            ),
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_consoles_serial_lines_and_local_displays_are_local_terminals() {
        for tty in [
            "tty1",
            "/dev/tty12",
            "/dev/console",
            "console",
            "ttyS0",
            ":0",
            ":1.0",
        ] {
            assert!(is_local_terminal(tty), "{tty}");
        }
        for tty in [
            "",
            "pts/3",
            "/dev/pts/3",
            "/dev/tty",
            "tty",
            "ssh",
            "ttyX1",
            "host:0",
            ":",
            ":0.",
            "/dev/../dev/pts/1",
            "ttyS",
            "tty1 ",
        ] {
            assert!(!is_local_terminal(tty), "{tty}");
        }
    }

    fn p() -> &'static Path {
        Path::new("/etc/otpgate/config.toml")
    }

    /// A config file of the calling user (accepted for tests, as root's is).
    fn config_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_config_file_loads_and_a_missing_one_is_an_error_only_when_required() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_file(dir.path(), "max_attempts = 2\n", 0o644);
        assert_eq!(SystemConfig::load(&path, true).unwrap().max_attempts, 2);
        let missing = dir.path().join("none.toml");
        assert_eq!(
            SystemConfig::load(&missing, false).unwrap(),
            SystemConfig::default()
        );
        assert!(
            SystemConfig::load(&missing, true)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn a_symlinked_config_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = config_file(dir.path(), "max_attempts = 2\n", 0o644);
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for required in [true, false] {
            let err = SystemConfig::load(&link, required).unwrap_err();
            assert!(
                matches!(&err, Error::Symlink { path } if *path == link),
                "{err}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: is a symbolic link; refusing to follow it",
                    link.display()
                )
            );
        }
    }

    #[test]
    fn a_config_others_can_write_or_a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_file(dir.path(), "", 0o664);
        let err = SystemConfig::load(&path, true).unwrap_err();
        assert!(matches!(err, Error::BadMode { .. }), "{err}");
        let fifo = dir.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = SystemConfig::load(&fifo, true).unwrap_err();
        assert!(
            matches!(err, Error::NotRegular { kind: "FIFO", .. }),
            "{err}"
        );
        let big = config_file(dir.path(), &"#".repeat(256 * 1024 + 1), 0o644);
        let err = SystemConfig::load(&big, true).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }

    #[test]
    fn empty_file_means_the_design_defaults() {
        let c = SystemConfig::from_toml(p(), "").unwrap();
        assert_eq!(c, SystemConfig::default());
        assert_eq!(c.user_file, "~/.config/otpgate/user.toml");
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.lockout_after, 10);
        assert_eq!(c.lockout_minutes, 15);
        assert_eq!(c.prompt_timeout, 120);
        assert_eq!(c.remember_days, 0);
        assert_eq!(c.local_console, LocalConsole::Require);
        assert_eq!(c.policy.require, Require::Enrolled);
        assert_eq!(c.totp_window, 1);
        assert_eq!(c.backup_codes, 10);
        assert_eq!(c.backup_code_digits, 8);
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
user_file = "/var/lib/otpgate/%u.toml"
trusted_networks = ["10.0.0.0/8", "2001:db8::/32"]
local_console = "skip"
remember_days = 7
max_attempts = 2
lockout_after = 5
lockout_minutes = 30
prompt_timeout = 60

[policy]
require = "all"
require_groups = ["wheel"]
exempt_groups = ["robots"]
"#;
        let c = SystemConfig::from_toml(p(), text).unwrap();
        assert_eq!(c.local_console, LocalConsole::Skip);
        assert_eq!(c.policy.require, Require::All);
        assert_eq!(c.networks().len(), 2);
        assert!(!c.user_file_in_home());
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let err =
            SystemConfig::from_toml(p(), "max_attempts = 3\nlockout_afterr = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/otpgate/config.toml:2:1:"), "{msg}");
        assert!(msg.contains("lockout_afterr"), "{msg}");

        let err = SystemConfig::from_toml(p(), "[policy]\nrequired = \"all\"\n").unwrap_err();
        assert!(err.to_string().contains(":2:") && err.to_string().contains("required"));
    }

    #[test]
    fn a_top_level_key_inside_a_table_names_the_table_and_the_fix() {
        let text = "max_attempts = 3\n\n[channels]\nverification_time = 600\nremember_days = 7\n";
        let err = SystemConfig::from_toml(p(), text).unwrap_err();
        assert!(
            matches!(&err, Error::Misplaced { line: 5, key, table, table_line: 3, .. }
                if key == "remember_days" && table == "channels"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/etc/otpgate/config.toml:5: `remember_days` is a top-level key but stands \
             inside `[channels]` (line 3); move it above the first table"
        );

        // A nested table, a key that is a list, and [policy].
        let text = "[channels.email]\nrun_as = \"x\"\ntrusted_networks = []\n";
        let msg = SystemConfig::from_toml(p(), text).unwrap_err().to_string();
        assert!(
            msg.contains(":3: `trusted_networks` is a top-level key but stands inside `[channels.email]` (line 1)"),
            "{msg}"
        );
        let text = "[policy]\nrequire = \"all\"\ndebug = true\n";
        let msg = SystemConfig::from_toml(p(), text).unwrap_err().to_string();
        assert!(
            msg.contains("`debug` is a top-level key but stands inside `[policy]` (line 1)"),
            "{msg}"
        );
    }

    #[test]
    fn a_key_no_table_has_inside_a_table_is_an_unknown_key() {
        // Not a top-level key either: toml's own message, with file and line.
        let err = SystemConfig::from_toml(p(), "[channels]\nremember_dayz = 7\n").unwrap_err();
        assert!(matches!(&err, Error::Parse { line: 2, .. }), "{err:?}");
        assert!(err.to_string().contains("remember_dayz"), "{err}");
        // A top-level key with a bad value where it belongs is about the value.
        let err = SystemConfig::from_toml(p(), "remember_days = \"x\"\n[channels]\n").unwrap_err();
        assert!(matches!(&err, Error::Parse { line: 1, .. }), "{err:?}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (text, key) in [
            ("max_attempts = 0", "max_attempts"),
            ("trusted_networks = [\"example.com\"]", "trusted_networks"),
            ("trusted_networks = [\"10.0.0.0/40\"]", "trusted_networks"),
            ("user_file = \"relative/%u\"", "user_file"),
            ("user_file = \"/var/lib/%x\"", "user_file"),
            ("user_file = \"~/../../etc/shadow\"", "user_file"),
            ("totp_window = 11", "totp_window"),
            ("issuer = \"a:b\"", "issuer"),
            ("local_console = \"maybe\"", "local_console"),
            ("max_attempts = \"3\"", "max_attempts"),
            ("max_attempts = -1", "max_attempts"),
        ] {
            let msg = SystemConfig::from_toml(p(), text).unwrap_err().to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
    }

    #[test]
    fn bad_values_name_the_line_of_their_key() {
        let text = "issuer = \"x\"\n\nremember_days = 400\n";
        let err = SystemConfig::from_toml(p(), text).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfRange { source, key, value: 400, min: 0, max: 365 }
                if source.line == 3 && key == "remember_days"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/etc/otpgate/config.toml:3: key `remember_days`: 400 is outside 0..=365"
        );

        let text = "max_attempts = 3\nissuer = \"a:b\"\n";
        let err = SystemConfig::from_toml(p(), text).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { source, key, .. } if source.line == 2 && key == "issuer"),
            "{err:?}"
        );

        let text = "[channels]\nverification_time = 600\n[channels.email]\ntimeout = 0\n";
        let err = SystemConfig::from_toml(p(), text).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/etc/otpgate/config.toml:4: key `channels.email.timeout`: 0 is outside"
            ),
            "{err}"
        );
        // A required key left out points at its table.
        let text = "max_attempts = 3\n[channels.sms]\n";
        let err = SystemConfig::from_toml(p(), text).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/etc/otpgate/config.toml:2: key `channels.sms.command`:"),
            "{err}"
        );

        // Module arguments have no lines.
        let err = SystemConfig::default()
            .with_overrides(&["remember_days=400"])
            .unwrap_err();
        assert!(
            matches!(&err, Error::OutOfRange { source, .. }
                if source.line == 0 && source.name == "module arguments"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "module arguments: key `remember_days`: 400 is outside 0..=365"
        );
    }

    #[test]
    fn overrides_apply_on_top_of_the_file() {
        let base = SystemConfig::from_toml(p(), "max_attempts = 2\n").unwrap();
        let c = base
            .with_overrides(&[
                "max_attempts=5",
                "policy.require=all",
                "trusted_networks=10.0.0.0/8, 192.168.0.0/16",
                "echo_verification_code=true",
                "user_file=/tmp/x/%u.toml",
            ])
            .unwrap();
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.policy.require, Require::All);
        assert_eq!(c.trusted_networks, vec!["10.0.0.0/8", "192.168.0.0/16"]);
        assert!(c.echo_verification_code);
        assert_eq!(c.user_file, "/tmp/x/%u.toml");
        // The base is untouched.
        assert_eq!(base.max_attempts, 2);
    }

    #[test]
    fn bad_overrides_are_errors_naming_the_argument() {
        let base = SystemConfig::default();
        for (arg, needle) in [
            ("nosuchkey=1", "unknown key"),
            ("policy.nosuch=1", "unknown key"),
            ("nosuch.table=1", "unknown key"),
            ("max_attempts", "key=value"),
            ("max_attempts=lots", "whole number"),
            ("debug=perhaps", "true or false"),
            ("max_attempts=0", "max_attempts"),
            ("policy.require=sometimes", "sometimes"),
            ("trusted_networks=not-an-ip", "trusted_networks"),
        ] {
            let msg = base.with_overrides(&[arg]).unwrap_err().to_string();
            assert!(msg.contains(needle), "{arg}: {msg}");
        }
    }

    #[test]
    fn templates_expand_for_the_account() {
        let a = Account::for_tests("alice", 1000, 1000, "/home/alice", &[]);
        let c = SystemConfig::default();
        assert_eq!(
            c.user_file_path(&a).unwrap(),
            PathBuf::from("/home/alice/.config/otpgate/user.toml")
        );
        assert!(c.user_file_in_home());
        let central = c
            .with_overrides(&["user_file=/var/lib/otpgate/%u.toml"])
            .unwrap();
        assert_eq!(
            central.user_file_path(&a).unwrap(),
            PathBuf::from("/var/lib/otpgate/alice.toml")
        );
        let h = c.with_overrides(&["user_file=%h/.otp-%u%%"]).unwrap();
        assert_eq!(
            h.user_file_path(&a).unwrap(),
            PathBuf::from("/home/alice/.otp-alice%")
        );
        let homeless = Account::for_tests("nobody", 65534, 65534, "", &[]);
        assert!(c.user_file_path(&homeless).is_err());
    }

    #[test]
    fn policy_exemption_beats_requirement() {
        let c = SystemConfig::from_toml(
            p(),
            "[policy]\nrequire_groups = [\"wheel\"]\nexempt_groups = [\"robots\"]\n",
        )
        .unwrap();
        let plain = Account::for_tests("a", 1, 1, "/h", &["users"]);
        let admin = Account::for_tests("b", 2, 2, "/h", &["wheel"]);
        let robot_admin = Account::for_tests("c", 3, 3, "/h", &["wheel", "robots"]);
        assert_eq!(c.requirement(&plain), Requirement::IfEnrolled);
        assert_eq!(c.requirement(&admin), Requirement::Required);
        assert_eq!(c.requirement(&robot_admin), Requirement::Exempt);
        let all = c.with_overrides(&["policy.require=all"]).unwrap();
        assert_eq!(all.requirement(&plain), Requirement::Required);
    }

    #[test]
    fn unknown_group_membership_fails_closed() {
        let unknown = Account::with_unknown_groups("ldap-user");
        let groups = SystemConfig::from_toml(
            p(),
            "[policy]\nrequire_groups = [\"root\"]\nexempt_groups = [\"root\"]\n",
        )
        .unwrap();
        // Cannot tell whether the user is in `root`: not exempt, but required.
        assert_eq!(groups.requirement(&unknown), Requirement::Required);
        let none = SystemConfig::default();
        assert_eq!(none.requirement(&unknown), Requirement::IfEnrolled);
    }

    #[test]
    fn daemon_metrics_is_off_by_default_and_must_be_an_address_with_a_port() {
        assert_eq!(SystemConfig::default().daemon.metrics_address(), None);
        let on = |value: &str| {
            SystemConfig::from_toml(p(), &format!("[daemon]\nmetrics = \"{value}\"\n"))
                .map(|c| c.daemon.metrics_address())
        };
        assert_eq!(on("").unwrap(), None);
        assert_eq!(
            on("127.0.0.1:9464").unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            on("[::1]:9464").unwrap(),
            Some("[::1]:9464".parse().unwrap())
        );
        for bad in [
            "localhost:9464",
            "127.0.0.1",
            "127.0.0.1:0",
            ":9464",
            "127.0.0.1:99999",
        ] {
            let e = on(bad).unwrap_err().to_string();
            assert!(e.contains("daemon.metrics"), "{bad}: {e}");
        }
    }
}
