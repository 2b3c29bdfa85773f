//! The fleet's database reached over TLS (issue #16): `sslmode=verify-full`
//! with the CA of the database, and a client certificate instead of a
//! password, in the libpq words admins write for psql. A server that
//! cannot prove it is the database — a certificate from another CA, one
//! for another name, no TLS at all — gets no connection, so no login is
//! decided on what it says, and no code is used up.
#![forbid(unsafe_code)]

use std::process::Command;

use otpgate_tests::certs::Certs;
use otpgate_tests::daemon::{Otpgated, daemon_config};
use otpgate_tests::fleet;
use otpgate_tests::postgres::Postgres;
use otpgate_tests::*;

/// The `[daemon]` keys: the database at `pg` over TLS as `sslmode` asks,
/// trusting `ca`, with the client certificate and no password.
fn tls_keys(pg: &Postgres, certs: &Certs, sslmode: &str) -> String {
    format!(
        "backend = \"postgres\"\n\n[daemon.postgres]\nurl = \"host=127.0.0.1 port={} user=otpgate dbname=otpgate sslmode={sslmode} sslrootcert={} sslcert={} sslkey={}\"\n",
        pg.port,
        certs.pem("ca").display(),
        certs.pem("client").display(),
        certs.key("client").display(),
    )
}

fn use_keys(h: &Harness, keys: &str) {
    h.write_config(&daemon_config(
        h,
        "max_attempts = 1\nlockout_after = 0",
        "",
        keys,
    ));
}

/// A fresh daemon (no pooled connection from before) on `keys`: a login
/// with `code`, and what the daemon logged meanwhile.
fn login_through(h: &Harness, keys: &str, code: &str) -> (String, String) {
    use_keys(h, keys);
    let daemon = Otpgated::start(h);
    let before = daemon.log().len();
    let run = h.login().answer(code).run();
    h.log();
    let log = daemon.log()[before..].to_string();
    (run.result, log)
}

#[test]
fn the_database_is_reached_only_over_verified_tls_and_a_false_server_gets_nothing() {
    let pg = need!(Postgres::start());
    need!(require_tool("openssl", "openssl"));
    let h = need!(Harness::new(""));
    h.otp_service("");
    let certs = Certs::new(&h.path("certs"));
    pg.require_tls(&certs.pem("server"), &certs.key("server"), &certs.pem("ca"));
    let verify_full = tls_keys(&pg, &certs, "verify-full");
    use_keys(&h, &verify_full);

    // The role may come in only over TLS with its certificate: migrate and
    // a login through otpgated do.
    let (ok, out) = fleet::migrate(&h.config_path());
    assert!(ok, "{out}");
    let daemon = Otpgated::start(&h);
    assert!(
        daemon
            .log()
            .contains("TLS, server certificate and host name verified, client certificate"),
        "{}",
        daemon.log()
    );
    let (_, backups) = fleet::enroll_root(&h.config_path());
    h.login()
        .answer(backups[0].as_str())
        .run()
        .assert("PAM_SUCCESS");
    let encrypted = pg.psql(
        "postgres",
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'otpgate'",
    );
    let counts: Vec<u32> = encrypted
        .trim()
        .split('|')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        counts[1] >= 1 && counts[0] == counts[1],
        "TLS connections|all: {encrypted}"
    );
    drop(daemon);

    // A man in the middle with a certificate from another CA.
    pg.serve_certificate(&certs.pem("rogue-server"), &certs.key("rogue-server"));
    let (result, log) = login_through(&h, &verify_full, &backups[1]);
    assert_eq!(result, "PAM_SYSTEM_ERR", "{log}");
    assert!(log.contains("certificate verify failed"), "{log}");

    // The right CA, but a certificate for another host: verify-full
    // refuses; verify-ca (which checks only the CA) would accept it.
    pg.serve_certificate(&certs.pem("wrong-name"), &certs.key("wrong-name"));
    let (result, log) = login_through(&h, &verify_full, &backups[1]);
    assert_eq!(result, "PAM_SYSTEM_ERR", "{log}");
    assert!(log.contains("certificate verify failed"), "{log}");
    let verify_ca = tls_keys(&pg, &certs, "verify-ca");
    let (result, log) = login_through(&h, &verify_ca, &backups[1]);
    assert_eq!(
        result, "PAM_SUCCESS",
        "the code refused above was not used up: {log}"
    );

    // A server without TLS: no fall back to plain text.
    pg.serve_certificate(&certs.pem("server"), &certs.key("server"));
    pg.tls_off();
    let (result, log) = login_through(&h, &verify_full, &backups[2]);
    assert_eq!(result, "PAM_SYSTEM_ERR", "{log}");
    assert!(log.contains("TLS"), "{log}");

    // The real server again: the code is still good.
    pg.psql("postgres", "ALTER SYSTEM SET ssl = on");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let (result, log) = login_through(&h, &verify_full, &backups[2]);
    assert_eq!(result, "PAM_SUCCESS", "{log}");
}

#[test]
fn tls_words_that_cannot_protect_the_connection_stop_the_daemon() {
    let h = need!(Harness::new(""));
    // verify-full without a CA to verify against, a client key others can
    // read: config errors at start, not a quiet unverified connection.
    let key = h.path("client.key");
    std::fs::write(&key, "not a key").unwrap();
    for (url, want) in [
        ("host=127.0.0.1 sslmode=verify-full", "needs sslrootcert"),
        ("host=127.0.0.1 sslmode=maybe", "unknown sslmode"),
        (
            &format!(
                "host=127.0.0.1 sslmode=require sslcert=/c.pem sslkey={}",
                key.display()
            ),
            "readable or writable by group or others",
        ),
    ] {
        let keys = format!("backend = \"postgres\"\n\n[daemon.postgres]\nurl = \"{url}\"\n");
        use_keys(&h, &keys);
        let mut cmd = Command::new(otpgated_binary());
        cmd.arg("--config").arg(h.config_path());
        let out = output_with_stdin(&mut cmd, "");
        assert!(!out.status.success(), "{url}: started");
        assert!(printed(&out).contains(want), "{url}: {}", printed(&out));
    }
}
