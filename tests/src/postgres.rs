//! A throwaway PostgreSQL for the fleet tests (issue #16): Debian's
//! binaries (`/usr/lib/postgresql/<v>/bin`), a cluster made by `initdb` in
//! a temp dir and run by `pg_ctl` as the unprivileged `nobody`, on
//! 127.0.0.1 and a port of its own; never a system service. A role
//! `otpgate` (password in a root-only file) owns the database `otpgate`.
//! Stopped (`-m immediate`) and removed when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use otpgate_test_support::{require, require_root};

/// The unprivileged account the cluster runs as.
const RUN_AS: u32 = 65534;

/// A running cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// Debian's PostgreSQL binaries, the newest version installed.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// What psql printed for `sql`, which must have succeeded.
fn psql_output(out: std::process::Output, sql: &str) -> String {
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Postgres {
    /// Starts a cluster with the `otpgate` role and database; `None` (after
    /// SKIP) without root or Debian's `postgresql`.
    pub fn start() -> Option<Postgres> {
        let pg = Postgres::start_empty()?;
        pg.psql(
            "postgres",
            "CREATE ROLE otpgate LOGIN PASSWORD 'otpgate-test-password'",
        );
        pg.psql("postgres", "CREATE DATABASE otpgate OWNER otpgate");
        let password = pg.password_file();
        std::fs::write(&password, "otpgate-test-password\n").expect("password file");
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Some(pg)
    }

    /// Starts a cluster with only its superuser (`postgres`, trusted from
    /// 127.0.0.1), as a new database server is.
    pub fn start_empty() -> Option<Postgres> {
        require_root()?;
        let bin = binaries();
        require(
            bin.is_some(),
            "PostgreSQL binaries missing (Debian package postgresql)",
        )?;
        let bin = bin?;
        let pg = Postgres {
            dir: cluster_dir("otpgate-pg"),
            bin,
            port: free_port(),
        };
        pg.as_nobody(
            "initdb",
            &["-D", &pg.data(), "-A", "trust", "-U", "postgres", "-N"],
        );
        pg.ctl_start();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// One of the cluster's programs, to run as the unprivileged account.
    fn nobody(&self, program: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={RUN_AS}"),
            &format!("--regid={RUN_AS}"),
            "--clear-groups",
        ])
        .arg(self.bin.join(program))
        .current_dir("/");
        cmd
    }

    /// Runs one of the cluster's programs as the unprivileged account.
    fn as_nobody(&self, program: &str, args: &[&str]) {
        let out = self
            .nobody(program)
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl_start(&self) {
        let sock = self.dir.path().join("sock");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            sock.display()
        );
        let log = sock.join("postgres.log").display().to_string();
        self.as_nobody(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Starts the stopped cluster again (same port, same data).
    pub fn restart(&self) {
        self.ctl_start();
    }

    /// Stops the cluster at once, as a crash would.
    pub fn stop_immediately(&self) {
        self.as_nobody("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }

    /// psql as the superuser in `database`, stopping at the first error.
    fn psql_command(&self, database: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        let port = self.port.to_string();
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-At"]);
        cmd
    }

    /// Runs `sql` as the superuser in `database`.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self
            .psql_command(database)
            .args(["-c", sql])
            .output()
            .expect("psql");
        psql_output(out, sql)
    }

    /// Runs the statements of `sql` one by one (as psql -f does: each in
    /// its own transaction, so `CREATE DATABASE` may be among them).
    pub fn psql_script(&self, database: &str, sql: &str) -> String {
        let out = crate::output_with_stdin(self.psql_command(database).args(["-f", "-"]), sql);
        psql_output(out, sql)
    }

    /// The cluster's data directory (its config files, and files the
    /// server reads: certificates).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The role's password, in a file only root reads.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// The `[daemon]` lines of a host using this database.
    pub fn daemon_keys(&self) -> String {
        format!(
            "backend = \"postgres\"\n\n[daemon.postgres]\nurl = \"host=127.0.0.1 port={} user=otpgate dbname=otpgate\"\npassword_file = \"{}\"\n",
            self.port,
            self.password_file().display()
        )
    }

    /// Where the cluster keeps its files.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Turns TLS on with `cert`/`key` (and client certificates from `ca`),
    /// and lets the role `otpgate` in only over TLS with a client
    /// certificate (`cert` in pg_hba.conf); the superuser keeps its
    /// local trust.
    pub fn require_tls(&self, cert: &Path, key: &Path, ca: &Path) {
        let hba = self.dir.path().join("data/pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "hostssl otpgate otpgate 127.0.0.1/32 cert\nhost otpgate otpgate 127.0.0.1/32 reject\n{rest}"
            ),
        )
        .expect("pg_hba.conf");
        let ca_file = self.copy_in(ca, "client-ca.pem");
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_ca_file = '{ca_file}'"),
        );
        self.serve_certificate(cert, key);
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// Presents `cert` from now on (new connections).
    pub fn serve_certificate(&self, cert: &Path, key: &Path) {
        let cert = self.copy_in(cert, "server.pem");
        let key = self.copy_in(key, "server.key");
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_cert_file = '{cert}'"),
        );
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_key_file = '{key}'"),
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// Turns TLS off (new connections).
    pub fn tls_off(&self) {
        self.psql("postgres", "ALTER SYSTEM SET ssl = off");
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// `from` as the server's own file `name` in its data directory
    /// (the server wants its key private and its own).
    pub fn copy_in(&self, from: &Path, name: &str) -> String {
        let to = self.dir.path().join("data").join(name);
        std::fs::copy(from, &to).expect("copy");
        std::os::unix::fs::chown(&to, Some(RUN_AS), Some(RUN_AS)).expect("chown");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        to.display().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .nobody("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

/// A standby, and a crash of the primary (issue #16, the failover test).
impl Postgres {
    /// A streaming standby of this cluster that connects as `name` (its
    /// `application_name`, what `synchronous_standby_names` lists): a
    /// `pg_basebackup -R` of this cluster in a temp dir of its own, started
    /// as `nobody` on a port of its own. Stopped and removed when dropped,
    /// as any cluster.
    pub fn start_standby(&self, name: &str) -> Postgres {
        self.allow_replication();
        let standby = Postgres {
            dir: cluster_dir("otpgate-pg-standby"),
            bin: self.bin.clone(),
            port: free_port(),
        };
        let data = standby.data();
        self.as_nobody(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        // `-R` wrote standby.signal and a primary_conninfo without a name;
        // a later line of the file wins.
        use std::io::Write as _;
        let auto = standby.dir.path().join("data/postgresql.auto.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&auto)
            .expect("postgresql.auto.conf");
        writeln!(
            file,
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'",
            self.port
        )
        .expect("postgresql.auto.conf");
        standby.ctl_start();
        standby
    }

    /// Lets `pg_basebackup` and the standby in over 127.0.0.1 (initdb's
    /// pg_hba.conf already does; kept true if that changes).
    fn allow_replication(&self) {
        let hba = self.dir.path().join("data/pg_hba.conf");
        let text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        let allowed = text.lines().any(|l| {
            l.split_whitespace().collect::<Vec<_>>()
                == ["host", "replication", "all", "127.0.0.1/32", "trust"]
        });
        if !allowed {
            std::fs::write(
                &hba,
                format!("host replication all 127.0.0.1/32 trust\n{text}"),
            )
            .expect("pg_hba.conf");
            self.psql("postgres", "SELECT pg_reload_conf()");
        }
    }

    /// `kill -9` of the postmaster, as a crash would end
    /// it: no shutdown checkpoint, the standby not told. Returns once the
    /// postmaster and every process it had started are gone (they exit on
    /// their own when they notice its death; any still there after 10 s
    /// is killed too).
    pub fn kill9(&self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pidfile = self.dir.path().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pidfile).expect("postmaster.pid");
        let postmaster: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}: {text}", pidfile.display()));
        let mut gone = children_of(postmaster);
        gone.push(postmaster);
        kill(Pid::from_raw(postmaster), Signal::SIGKILL).expect("kill -9 the postmaster");
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while gone.iter().any(|&p| running(p)) {
            if std::time::Instant::now() > end {
                for &p in &gone {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// `pg_ctl promote -w`: the standby becomes a primary; returns once it
    /// takes writes.
    pub fn promote(&self) {
        self.as_nobody("pg_ctl", &["-D", &self.data(), "-w", "promote"]);
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sock/postgres.log")).unwrap_or_default()
    }
}

/// A temp dir (0755) for a cluster: `data/` (0700) and `sock/`, both
/// `nobody`'s.
fn cluster_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (sub, mode) in [("data", 0o700), ("sock", 0o755)] {
        let p = dir.path().join(sub);
        std::fs::create_dir(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::os::unix::fs::chown(&p, Some(RUN_AS), Some(RUN_AS)).expect("chown");
    }
    dir
}

/// The processes whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces.
            let parent: i32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (parent == pid).then_some(child)
        })
        .collect()
}

/// Whether `pid` is a process that has not ended (a zombie has).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}
