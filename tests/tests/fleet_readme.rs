//! README's "A fleet on PostgreSQL", run as written (issue #16): from an
//! empty PostgreSQL (Debian's binaries, a throwaway cluster) to three hosts
//! sharing it over verified TLS with client certificates. The blocks are
//! read from README.md (`<!-- fleet: NAME -->`); only names are replaced:
//! the server's address and port, and the directories of the files.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use otpgate_tests::certs::Certs;
use otpgate_tests::daemon::Otpgated;
use otpgate_tests::fleet::{HOSTS, Host, enroll_root};
use otpgate_tests::postgres::Postgres;
use otpgate_tests::*;

/// The fenced block after `<!-- fleet: NAME -->` in README.md.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let marker = format!("<!-- fleet: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    let fence = after.find("```").expect("a fenced block");
    let body = after[fence..].split_once('\n').expect("fence line").1;
    body.split_once("\n```")
        .expect("closing fence")
        .0
        .to_string()
}

/// `text` with each `(from, to)` replaced; README must still say `from`.
fn localized(text: &str, names: &[(&str, String)]) -> String {
    names.iter().fold(text.to_string(), |text, (from, to)| {
        assert!(
            text.contains(from),
            "README's block no longer says `{from}`:\n{text}"
        );
        text.replace(from, to)
    })
}

/// Runs a README `sh` block with `bin` first on PATH.
fn run_sh(script: &str, bin: &Path) -> (bool, String) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .env("PATH", path);
    let out = output_with_stdin(&mut cmd, "");
    (out.status.success(), printed(&out))
}

fn write_program(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_readme_fleet_walkthrough_works_as_written() {
    let pg = need!(Postgres::start_empty());
    need!(require_tool("openssl", "openssl"));
    let h = need!(Harness::new(""));
    let certs = Certs::new(&h.path("certs"));

    // 1. The role and the database.
    pg.psql_script("postgres", &block("database"));

    // 2. TLS and client certificates on the server.
    let pgdata = format!("{}/", pg.data_dir().display());
    pg.copy_in(&certs.pem("db.example.org"), "db.example.org.pem");
    pg.copy_in(&certs.key("db.example.org"), "db.example.org.key");
    pg.copy_in(&certs.pem("ca"), "otpgate-clients-ca.pem");
    let conf = localized(&block("postgresql.conf"), &[("/etc/postgresql/", pgdata)]);
    let conf_file = pg.data_dir().join("postgresql.conf");
    let old = std::fs::read_to_string(&conf_file).unwrap();
    std::fs::write(&conf_file, format!("{old}\n{conf}\n")).unwrap();
    let hba = localized(
        &block("pg_hba.conf"),
        &[("10.0.0.0/8", "127.0.0.1/32".into())],
    );
    let hba_file = pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba_file).unwrap();
    std::fs::write(&hba_file, format!("{hba}\n{old}")).unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()");

    // 3. Every host: the CA, its certificate and key, the config.
    let etc = h.path("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(h.path("run")).unwrap();
    std::fs::copy(certs.pem("ca"), etc.join("db-ca.pem")).unwrap();
    std::fs::copy(certs.pem("client"), etc.join("db-client.pem")).unwrap();
    std::fs::copy(certs.key("client"), etc.join("db-client.key")).unwrap();
    let hosts: Vec<Host> = HOSTS
        .iter()
        .map(|name| {
            Host::new(&h, name, |socket| {
                let config = localized(
                    &block("config"),
                    &[
                        ("/etc/otpgate/", format!("{}/", etc.display())),
                        (
                            "host=db.example.org port=5432",
                            format!("host=db.example.org hostaddr=127.0.0.1 port={}", pg.port),
                        ),
                        (
                            "kind = \"daemon\"",
                            format!("kind = \"daemon\"\nsocket = \"{}\"", socket.display()),
                        ),
                    ],
                );
                format!("max_attempts = 1\nlockout_after = 3\n{config}")
            })
        })
        .collect();

    // 4. The schema, from host A's config.
    let bin = h.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_program(
        &bin.join("otpgated"),
        &format!("#!/bin/sh\nexec {} \"$@\"\n", otpgated_binary().display()),
    );
    let migrate = localized(
        &block("migrate"),
        &[(
            "/etc/otpgate/config.toml",
            hosts[0].config.display().to_string(),
        )],
    );
    let (ok, out) = run_sh(&migrate, &bin);
    assert!(ok && out.contains("applied schema versions [1]"), "{out}");
    let daemons: Vec<Otpgated> = hosts
        .iter()
        .map(|host| Otpgated::start_as(&h, &host.config, &host.socket, &[]))
        .collect();
    assert!(
        daemons[1]
            .log()
            .contains("postgres db.example.org/otpgate (TLS, server certificate and host name verified, client certificate)"),
        "{}",
        daemons[1].log()
    );

    // 5. Enroll on A, log in on B, the same code refused on C; that replay
    // and wrong codes on A and B are the three failures that lock it out.
    let (secret, backups) = enroll_root(&hosts[0].config);
    let backup = backups[0].clone();
    avoid_step_edge();
    let code = totp_at(&secret, now());
    let login = |host: &Host, answer: &str| {
        let run = h.login().service(&host.service).answer(answer).run();
        h.log();
        run.result
    };
    assert_eq!(login(&hosts[1], &code), "PAM_SUCCESS");
    assert_eq!(login(&hosts[2], &code), "PAM_AUTH_ERR");
    assert_eq!(login(&hosts[0], "000000"), "PAM_AUTH_ERR");
    assert_eq!(
        login(&hosts[1], "000001"),
        "PAM_MAXTRIES",
        "the third locks"
    );
    assert_eq!(login(&hosts[2], &backup), "PAM_MAXTRIES", "locked out on C");

    // The admin commands on C.
    write_program(
        &bin.join("otpgate"),
        &format!(
            "#!/bin/sh\nexec {} --config {} \"$@\"\n",
            otpgate_binary().display(),
            hosts[2].config.display()
        ),
    );
    let admin = localized(&block("admin"), &[("alice", "root".into())]);
    let (ok, out) = run_sh(&admin, &bin);
    assert!(ok, "{out}");
    let listed = out.lines().find(|l| l.starts_with("root ")).unwrap_or("");
    assert!(
        listed.contains("totp,backup") && listed.contains("until"),
        "users on C lists root as locked out: {out}"
    );
    assert!(out.contains("1 enrolled"), "{out}");
    assert!(out.contains("locked out"), "status on C: {out}");
    assert_eq!(
        login(&hosts[0], &backup),
        "PAM_SUCCESS",
        "unlocked on C, for A too"
    );
    assert_eq!(
        login(&hosts[1], &backup),
        "PAM_AUTH_ERR",
        "a backup code works once"
    );

    // Every connection of the role is TLS with the client certificate.
    let connections = pg.psql(
        "postgres",
        "SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.usename = 'otpgate'",
    );
    assert!(!connections.trim().is_empty(), "no connection of otpgate");
    for line in connections.lines() {
        assert_eq!(line, "t|/CN=otpgate", "{connections}");
    }
}
