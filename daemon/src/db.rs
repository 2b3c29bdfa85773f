//! `backend = "postgres"`: the records in a PostgreSQL database shared by
//! every host's otpgated (docs/ARCHITECTURE.md, §3.3).
//!
//! One row per user (`otpgate_records`: the record in the user-file
//! format). A change is one transaction that first takes a
//! transaction-scoped advisory lock on the user
//! (`pg_advisory_xact_lock(hashtextextended(user, 0))`), then reads the
//! row, runs the change, and writes or deletes the row before `COMMIT`.
//! Every writer of a user's row takes that lock first, so the
//! read-change-write of two transactions for one user never overlap, on
//! one host or across hosts; the lock ends with the transaction, after the
//! commit is durable. So a backup code is taken out of the record by
//! exactly one transaction, and any later one reads the record without it.
//! Two users whose names hash alike only wait for each other.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use otpgate_config::record::EnrollmentSends;
use otpgate_config::system::PostgresConfig;
use otpgate_config::{Error, Result, Store, UserRecord};
use postgres::{Client, Config, Transaction};
use postgres_openssl::MakeTlsConnector;
use zeroize::Zeroizing;

/// The schema versions this build knows, in order; `migrate` applies the
/// missing ones.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../migrations/0001_records.sql"))];

/// Idle connections kept for the next requests.
const POOL: usize = 8;

/// The database and a few open connections to it.
pub struct Db {
    config: Config,
    /// TLS as the url's `sslmode` and certificate words ask (`tls.rs`).
    tls: MakeTlsConnector,
    /// How the server is checked, for the start-up line.
    tls_words: String,
    /// `[daemon.postgres] timeout`: also the most a COMMIT may take.
    timeout: Duration,
    what: String,
    idle: Mutex<Vec<Client>>,
}

fn failed(what: &str, e: impl Explain) -> Error {
    Error::Database {
        what: what.to_string(),
        cause: e.explain(),
    }
}

/// An error as the log line says it. The client's errors say only their
/// kind ("error performing TLS handshake", "db error"); the cause behind
/// it ("certificate verify failed", the server's message) is what an
/// admin needs, so the whole chain is written.
trait Explain {
    fn explain(&self) -> String;
}

impl Explain for postgres::Error {
    fn explain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

impl Explain for std::io::Error {
    fn explain(&self) -> String {
        self.to_string()
    }
}

impl Explain for &str {
    fn explain(&self) -> String {
        self.to_string()
    }
}

impl Explain for String {
    fn explain(&self) -> String {
        self.clone()
    }
}

impl Db {
    /// The database `pg` names (nothing is connected yet).
    pub fn new(pg: &PostgresConfig) -> Result<Db> {
        let (url, tls) = crate::tls::split(&pg.url)?;
        let mut config = Config::from_str(&url).map_err(|e| failed("daemon.postgres.url", e))?;
        config.ssl_mode(tls.ssl_mode());
        if !pg.password_file.is_empty() {
            config.password(read_password(&pg.password_file)?.as_bytes());
        }
        let timeout = Duration::from_secs(pg.timeout.into());
        config.connect_timeout(timeout);
        config.options(&format!(
            "-c statement_timeout={} -c lock_timeout={}",
            timeout.as_millis(),
            timeout.as_millis()
        ));
        let what = describe(&config);
        Ok(Db {
            config,
            tls: tls.connector()?,
            tls_words: tls.describe(),
            timeout,
            what,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Where the records are, for messages.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// How the connection is protected (`tls.rs`).
    pub fn describe_tls(&self) -> &str {
        &self.tls_words
    }

    fn connect(&self) -> Result<Client> {
        self.config
            .connect(self.tls.clone())
            .map_err(|e| failed(&self.what, e))
    }

    /// Runs `f` on a connection (an idle one, or a new one whose schema is
    /// checked first); the connection goes back unless it broke. An idle
    /// connection the server dropped meanwhile (a restart) shows only when
    /// used: `f` then runs once more on a new one (its transaction did not
    /// commit, and a store's change may run more than once).
    fn with<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut client) = pooled.filter(|c| !c.is_closed()) {
            let out = f(&mut client);
            if !client.is_closed() {
                self.put_back(client);
                return out;
            }
        }
        let mut client = self.connect()?;
        check_schema(&mut client, &self.what)?;
        let out = f(&mut client);
        if !client.is_closed() {
            self.put_back(client);
        }
        out
    }

    fn put_back(&self, client: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL {
            idle.push(client);
        }
    }

    /// Commits `tx`, waiting at most the timeout. `statement_timeout`
    /// does not bound a COMMIT's wait for a synchronous standby: PostgreSQL
    /// waits for it without limit, so a stalled standby would hold this
    /// worker, and the login, for ever. A watchdog cancels the wait at the
    /// deadline. A cancelled wait leaves the transaction committed on the
    /// primary but perhaps on no standby, so the change is reported failed
    /// (the login is denied): what it used stays used here, and nothing is
    /// accepted on a commit a failover could lose.
    fn commit_within(&self, tx: Transaction<'_>) -> Result<()> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc::{RecvTimeoutError, channel};
        let token = tx.cancel_token();
        let tls = self.tls.clone();
        let timeout = self.timeout;
        let fired = std::sync::Arc::new(AtomicBool::new(false));
        let (done, wait) = channel::<()>();
        let watchdog = {
            let fired = std::sync::Arc::clone(&fired);
            std::thread::spawn(move || {
                if wait.recv_timeout(timeout) == Err(RecvTimeoutError::Timeout) {
                    fired.store(true, Ordering::SeqCst);
                    let _ = token.cancel_query(tls);
                }
            })
        };
        let committed = tx.commit();
        let _ = done.send(());
        let _ = watchdog.join();
        if fired.load(Ordering::SeqCst) {
            return Err(failed(
                &self.what,
                format!(
                    "COMMIT not confirmed within {} s (is the synchronous standby answering?); \
                     the request is refused, what it used stays used",
                    timeout.as_secs()
                ),
            ));
        }
        committed.map_err(|e| failed(&self.what, e))
    }

    /// Connects once and checks the schema.
    pub fn probe(&self) -> Result<()> {
        self.with(|_| Ok(()))
    }

    /// The first `limit` users, by name, after `after`, with a record.
    pub fn users_after(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT user_name FROM otpgate_records WHERE user_name > $1
                     ORDER BY user_name LIMIT $2",
                    &[&after, &limit],
                )
                .map_err(|e| failed(&self.what, e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Applies the migrations the database lacks; the versions applied.
    pub fn migrate(&self) -> Result<Vec<i32>> {
        let mut client = self.connect()?;
        let mut tx = client.transaction().map_err(|e| failed(&self.what, e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS otpgate_schema (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());
             LOCK TABLE otpgate_schema IN EXCLUSIVE MODE;",
        )
        .map_err(|e| failed(&self.what, e))?;
        let current = version(&mut tx, &self.what)?;
        let mut applied = Vec::new();
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql)
                .map_err(|e| failed(&format!("migration {v}"), e))?;
            tx.execute("INSERT INTO otpgate_schema (version) VALUES ($1)", &[v])
                .map_err(|e| failed(&self.what, e))?;
            applied.push(*v);
        }
        tx.commit().map_err(|e| failed(&self.what, e))?;
        Ok(applied)
    }

    /// The store of `user`'s record.
    pub fn store(self: &std::sync::Arc<Self>, user: &str) -> DbStore {
        DbStore {
            db: std::sync::Arc::clone(self),
            user: user.to_string(),
        }
    }

    /// Open connections waiting for a request (`daemon.metrics`).
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The newest schema version applied (0: none).
fn version(tx: &mut Transaction<'_>, what: &str) -> Result<i32> {
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM otpgate_schema", &[])
        .map_err(|e| failed(what, e))?;
    Ok(row.get(0))
}

/// A daemon serves only on the schema it knows.
fn check_schema(client: &mut Client, what: &str) -> Result<()> {
    let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    let row = client
        .query_opt(
            "SELECT max(version) FROM otpgate_schema WHERE to_regclass('otpgate_schema') IS NOT NULL",
            &[],
        )
        .map_err(|_| schema_error(what, 0, latest))?;
    let found: i32 = row.and_then(|r| r.get::<_, Option<i32>>(0)).unwrap_or(0);
    if found == latest {
        Ok(())
    } else {
        Err(schema_error(what, found, latest))
    }
}

fn schema_error(what: &str, found: i32, latest: i32) -> Error {
    let why = if found > latest {
        format!(
            "schema version {found} is newer than this otpgated knows ({latest}): upgrade otpgated"
        )
    } else {
        format!(
            "schema version {found}, this otpgated needs {latest}: run `otpgated --config PATH migrate`"
        )
    };
    failed(what, why)
}

/// `host:port/dbname` of a connection config, for messages (never the
/// password).
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "postgres {}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// The first line of `path`: root's (or the daemon's), not readable by
/// group or others.
fn read_password(path: &str) -> Result<Zeroizing<String>> {
    check_private(path)?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| failed(path, e))?);
    Ok(Zeroizing::new(
        text.lines().next().unwrap_or_default().to_string(),
    ))
}

/// A password or private key file: not readable or writable by group or
/// others, as libpq demands of its key.
pub fn check_private(path: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| failed(path, e))?;
    if meta.mode() & 0o077 != 0 {
        return Err(failed(
            path,
            "readable or writable by group or others (chmod 600)",
        ));
    }
    Ok(())
}

/// One user's record in the database.
pub struct DbStore {
    db: std::sync::Arc<Db>,
    user: String,
}

impl DbStore {
    fn where_(&self) -> std::path::PathBuf {
        format!("{} ({})", self.db.what, self.user).into()
    }

    fn parse(&self, text: &str) -> Result<UserRecord> {
        UserRecord::from_toml(&self.where_(), text)
    }
}

impl DbStore {
    /// Runs `work` in one transaction that first takes the user's advisory
    /// lock of `class` (0: the record, 1: the enrollment sends), and
    /// commits it when `work` succeeds (see the module documentation).
    fn locked(
        &self,
        class: i64,
        work: &mut dyn FnMut(&mut Transaction<'_>, &str) -> Result<()>,
    ) -> Result<()> {
        let what = self.db.what.clone();
        self.db.with(|c| {
            let mut tx = c.transaction().map_err(|e| failed(&what, e))?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))",
                &[&self.user, &class],
            )
            .map_err(|e| failed(&what, e))?;
            work(&mut tx, &what)?;
            self.db.commit_within(tx)
        })
    }
}

impl Store for DbStore {
    fn read(&self) -> Result<Option<UserRecord>> {
        self.db.with(|c| {
            let row = c
                .query_opt(
                    "SELECT record FROM otpgate_records WHERE user_name = $1",
                    &[&self.user],
                )
                .map_err(|e| failed(&self.db.what, e))?;
            row.map(|r| self.parse(r.get(0))).transpose()
        })
    }

    fn transact(
        &self,
        change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>,
    ) -> Result<()> {
        self.locked(0, &mut |tx, what| {
            let row = tx
                .query_opt(
                    "SELECT record FROM otpgate_records WHERE user_name = $1 FOR UPDATE",
                    &[&self.user],
                )
                .map_err(|e| failed(what, e))?;
            let before = row.map(|r| self.parse(r.get(0))).transpose()?;
            let mut record = before.clone();
            change(&mut record)?;
            if record == before {
                return Ok(());
            }
            match &record {
                Some(r) => tx.execute(
                    "INSERT INTO otpgate_records (user_name, record) VALUES ($1, $2)
                     ON CONFLICT (user_name) DO UPDATE SET record = excluded.record, updated_at = now()",
                    &[&self.user, &r.to_toml()],
                ),
                None => tx.execute(
                    "DELETE FROM otpgate_records WHERE user_name = $1",
                    &[&self.user],
                ),
            }
            .map_err(|e| failed(what, e))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.where_().display().to_string()
    }

    fn transact_enrollment_sends(
        &self,
        change: &mut dyn FnMut(&mut EnrollmentSends) -> Result<()>,
    ) -> Result<()> {
        self.locked(1, &mut |tx, what| {
            let row = tx
                .query_opt(
                    "SELECT sends FROM otpgate_enrollment_sends WHERE user_name = $1",
                    &[&self.user],
                )
                .map_err(|e| failed(what, e))?;
            let mut sends = match row {
                Some(r) => EnrollmentSends::from_toml(&self.where_(), r.get(0))?,
                None => EnrollmentSends::default(),
            };
            change(&mut sends)?;
            tx.execute(
                "INSERT INTO otpgate_enrollment_sends (user_name, sends) VALUES ($1, $2)
                 ON CONFLICT (user_name) DO UPDATE SET sends = excluded.sends, updated_at = now()",
                &[&self.user, &sends.to_toml()],
            )
            .map_err(|e| failed(what, e))?;
            Ok(())
        })
    }
}
