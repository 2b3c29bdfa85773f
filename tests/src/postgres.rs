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
        let dir = tempfile::Builder::new()
            .prefix("otpgate-pg")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for sub in ["data", "sock"] {
            let p = dir.path().join(sub);
            std::fs::create_dir(&p).expect("mkdir");
            std::os::unix::fs::chown(&p, Some(RUN_AS), Some(RUN_AS)).expect("chown");
        }
        let pg = Postgres {
            dir,
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

    /// Runs `sql` as the superuser in `database`.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the statements of `sql` one by one (as psql -f does: each in
    /// its own transaction, so `CREATE DATABASE` may be among them).
    pub fn psql_script(&self, database: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"]);
        let out = crate::output_with_stdin(&mut cmd, sql);
        assert!(
            out.status.success(),
            "psql -f: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
