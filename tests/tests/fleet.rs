//! One enrollment for a fleet (issue #16): three "hosts" — three otpgated
//! with their own configs and sockets, each with its own PAM service — on
//! one PostgreSQL (Debian's binaries, a throwaway cluster started by the
//! test), through real libpam.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use otpgate_tests::channels::{Outbox, Pamtester, code_in};
use otpgate_tests::daemon::Otpgated;
use otpgate_tests::fleet::{self, Host, enroll_root, hosts_on, otpgate_with};
use otpgate_tests::postgres::Postgres;
use otpgate_tests::standby::SyncPair;
use otpgate_tests::*;

const PROMPT: &str = "Verification code: ";

/// Three hosts on `pg`, `top` top-level keys for each.
fn hosts(h: &Harness, pg: &Postgres, top: &str) -> Vec<Host> {
    hosts_on(h, top, &pg.daemon_keys(), "")
}

/// `otpgated --config HOST migrate`.
fn migrate(host: &Host) -> (bool, String) {
    fleet::migrate(&host.config)
}

/// Runs `otpgate --config <host's config> ARGS` as root.
fn otpgate_on(host: &Host, args: &[&str]) -> (bool, String) {
    otpgate_with(&host.config, args)
}

/// Enrolls root with the CLI on `host`: the secret and backup codes.
fn enroll_on(host: &Host) -> (String, Vec<String>) {
    enroll_root(&host.config)
}

#[test]
fn one_enrollment_serves_three_hosts_and_a_code_works_once_across_them() {
    let pg = need!(Postgres::start());
    let h = need!(Harness::new("max_attempts = 1"));
    let hosts = hosts(&h, &pg, "max_attempts = 1\nlockout_after = 0");
    // A daemon refuses a schema it does not know; migrate makes it known.
    let mut cmd = Command::new(otpgated_binary());
    cmd.arg("--config").arg(&hosts[0].config);
    let out = output_with_stdin(&mut cmd, "");
    assert!(!out.status.success(), "served without a schema");
    assert!(
        printed(&out).contains("run `otpgated --config PATH migrate`"),
        "{}",
        printed(&out)
    );
    let (ok, out) = migrate(&hosts[0]);
    assert!(ok && out.contains("applied schema versions [1]"), "{out}");
    let (ok, out) = migrate(&hosts[1]);
    assert!(ok && out.contains("up to date"), "{out}");
    let daemons: Vec<Otpgated> = hosts
        .iter()
        .map(|host| Otpgated::start_as(&h, &host.config, &host.socket, &[]))
        .collect();

    let (secret, backups) = enroll_on(&hosts[0]);
    assert_eq!(backups.len(), 10);
    avoid_step_edge();
    let code = totp_at(&secret, now());
    h.login()
        .service(&hosts[1].service)
        .answer(&code)
        .run()
        .assert("PAM_SUCCESS");
    h.login()
        .service(&hosts[2].service)
        .answer(&code)
        .run()
        .assert("PAM_AUTH_ERR");
    assert!(h.log().concat().contains("code already used"));

    // 99 logins over the three hosts race for one backup code.
    let barrier = Barrier::new(99);
    let results: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..99)
            .map(|i| {
                let (h, hosts, barrier, code) = (&h, &hosts, &barrier, &backups[0]);
                s.spawn(move || {
                    barrier.wait();
                    h.login()
                        .service(&hosts[i % 3].service)
                        .answer(code.as_str())
                        .run()
                        .result
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    h.log();
    let ok = results.iter().filter(|r| *r == "PAM_SUCCESS").count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r == "PAM_SUCCESS" || r == "PAM_AUTH_ERR"),
        "{results:?}"
    );
    let text = pg.psql(
        "otpgate",
        "SELECT record FROM otpgate_records WHERE user_name = 'root'",
    );
    let record = otpgate_config::UserRecord::from_toml(std::path::Path::new("db"), &text).unwrap();
    assert_eq!(
        record.backup.codes.len(),
        9,
        "the code is gone from the shared record"
    );
    drop(daemons);
}

/// The database stopped mid-run: logins are denied within the timeout,
/// nothing is accepted twice; started again, logins work without
/// restarting the daemons.
#[test]
fn a_database_that_goes_away_denies_logins_and_coming_back_serves_them() {
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let hosts = hosts(&h, &pg, "max_attempts = 1\nlockout_after = 0");
    assert!(migrate(&hosts[0]).0);
    let _daemons: Vec<Otpgated> = hosts
        .iter()
        .map(|host| Otpgated::start_as(&h, &host.config, &host.socket, &[]))
        .collect();
    let (_, backups) = enroll_on(&hosts[0]);
    h.login()
        .service(&hosts[0].service)
        .answer(&backups[0])
        .run()
        .assert("PAM_SUCCESS");
    pg.stop_immediately();
    let start = Instant::now();
    let run = h
        .login()
        .service(&hosts[1].service)
        .answer(&backups[1])
        .run();
    run.assert("PAM_SYSTEM_ERR");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        h.log().concat().contains("database"),
        "the log names the database"
    );
    pg.restart();
    h.login()
        .service(&hosts[1].service)
        .answer(&backups[0])
        .run()
        .assert("PAM_AUTH_ERR");
    h.login()
        .service(&hosts[2].service)
        .answer(&backups[1])
        .run()
        .assert("PAM_SUCCESS");
}

/// Logins over the three hosts at once, one answer each.
fn race_hosts(h: &Harness, hosts: &[Host], answers: &[String]) -> Vec<Run> {
    let barrier = Barrier::new(answers.len());
    let results = std::thread::scope(|s| {
        let threads: Vec<_> = answers
            .iter()
            .enumerate()
            .map(|(i, answer)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    h.login()
                        .service(&hosts[i % 3].service)
                        .answer(answer.as_str())
                        .run()
                })
            })
            .collect::<Vec<_>>();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    h.log();
    results
}

/// Three hosts on a fresh database, migrated, their daemons running, root
/// enrolled on the first: its secret and backup codes.
fn fleet(pg: &Postgres, h: &Harness, top: &str) -> (Vec<Host>, Vec<Otpgated>, String) {
    let hosts = hosts(h, pg, top);
    assert!(migrate(&hosts[0]).0);
    let daemons = hosts
        .iter()
        .map(|host| Otpgated::start_as(h, &host.config, &host.socket, &[]))
        .collect();
    let (secret, _) = enroll_on(&hosts[0]);
    (hosts, daemons, secret)
}

/// One TOTP code raced by 99 logins over three hosts works once.
#[test]
fn a_totp_code_raced_over_three_hosts_works_once() {
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let (hosts, _daemons, secret) = fleet(&pg, &h, "max_attempts = 1\nlockout_after = 0");
    avoid_step_edge();
    let code = totp_at(&secret, now());
    let runs = race_hosts(&h, &hosts, &vec![code; 99]);
    let ok = runs.iter().filter(|r| r.result == "PAM_SUCCESS").count();
    assert_eq!(ok, 1, "{runs:#?}");
}

fn said(run: &Run, text: &str) -> bool {
    run.messages().iter().any(|m| m.contains(text))
}

/// 100 wrong codes at once over three hosts with `lockout_after = 10`:
/// exactly ten are counted (nine "wrong", one locking), the other ninety
/// are refused as locked, on whichever host they arrive.
#[test]
fn concurrent_wrong_codes_over_three_hosts_count_exactly_lockout_after() {
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let top = "max_attempts = 1\nlockout_after = 10\nlockout_minutes = 15";
    let (hosts, _daemons, secret) = fleet(&pg, &h, top);
    avoid_step_edge();
    let t = now();
    let near: Vec<String> = [t - 30, t, t + 30]
        .iter()
        .map(|&at| totp_at(&secret, at))
        .collect();
    let wrong: Vec<String> = (0..)
        .map(|i| format!("{:06}", (i * 7919 + 13) % 1_000_000))
        .filter(|c| !near.contains(c))
        .take(100)
        .collect();
    let runs = race_hosts(&h, &hosts, &wrong);
    let counted = runs.iter().filter(|r| said(r, "Wrong code.")).count();
    let locking = runs
        .iter()
        .filter(|r| said(r, "Too many wrong codes"))
        .count();
    let refused = runs
        .iter()
        .filter(|r| !said(r, "Too many") && said(r, "Account locked until"))
        .count();
    assert_eq!((counted, locking, refused), (9, 1, 90), "{runs:#?}");
}

/// Wrong codes on two hosts count toward one lockout, which holds on the
/// third; root's unlock there lifts it for all.
#[test]
fn a_lockout_counts_across_hosts_and_an_unlock_anywhere_lifts_it() {
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let top = "max_attempts = 1\nlockout_after = 4\nlockout_minutes = 15";
    let (hosts, _daemons, secret) = fleet(&pg, &h, top);
    for (i, host) in [0, 1, 0, 1].iter().enumerate() {
        let run = h
            .login()
            .service(&hosts[*host].service)
            .answer("000000")
            .run();
        let want = if i == 3 {
            "PAM_MAXTRIES"
        } else {
            "PAM_AUTH_ERR"
        };
        run.assert(want);
    }
    avoid_step_edge();
    let code = totp_at(&secret, now());
    let run = h.login().service(&hosts[2].service).answer(&code).run();
    run.assert("PAM_MAXTRIES");
    assert!(run.prompts().is_empty(), "locked on the third host too");
    let (ok, out) = otpgate_on(&hosts[2], &["unlock", "--user", "root"]);
    assert!(ok && out.contains("root is unlocked"), "{out}");
    h.login()
        .service(&hosts[0].service)
        .answer(&code)
        .run()
        .assert("PAM_SUCCESS");
}

/// `otpgate store import` moves a file-store record into the shared
/// database; every host then serves it, and its used codes stay used.
#[test]
fn store_import_moves_a_file_into_the_database_for_every_host() {
    use otpgate_config::otp::Algorithm;
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let hosts = hosts(
        &h,
        &pg,
        &format!(
            "user_file = \"{}/%u.toml\"\nmax_attempts = 1",
            h.path("users").display()
        ),
    );
    assert!(migrate(&hosts[0]).0);
    let _daemons: Vec<Otpgated> = hosts
        .iter()
        .map(|host| Otpgated::start_as(&h, &host.config, &host.socket, &[]))
        .collect();
    let mut record = totp_record_with(&new_secret(), Algorithm::SHA1, 6);
    let codes: Vec<String> = record
        .new_backup_codes(3, 8)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    // One code already used in the file.
    let at = otpgate_config::backup::find(&record.backup.codes, &codes[0]).unwrap();
    record.backup.codes.remove(at);
    h.write_record("root", &record);
    let (ok, out) = otpgate_on(&hosts[1], &["store", "import", "root"]);
    assert!(ok && out.contains("root: moved"), "{out}");
    h.login()
        .service(&hosts[0].service)
        .answer(&codes[0])
        .run()
        .assert("PAM_AUTH_ERR");
    h.login()
        .service(&hosts[2].service)
        .answer(&codes[1])
        .run()
        .assert("PAM_SUCCESS");
    h.login()
        .service(&hosts[0].service)
        .answer(&codes[1])
        .run()
        .assert("PAM_AUTH_ERR");
}

/// The daemons of `hosts`, running.
fn start_daemons(h: &Harness, hosts: &[Host]) -> Vec<Otpgated> {
    hosts
        .iter()
        .map(|host| Otpgated::start_as(h, &host.config, &host.socket, &[]))
        .collect()
}

/// Everything the daemons logged, for failure messages.
fn daemon_logs(daemons: &[Otpgated]) -> String {
    daemons.iter().map(Otpgated::log).collect()
}

/// A login of root on `host` answering `code`: its result and the
/// module's log lines.
fn login_on(h: &Harness, host: &Host, code: &str) -> (Run, String) {
    let run = h.login().service(&host.service).answer(code).run();
    (run, h.log().concat())
}

/// What a denial logs when no server of the connection string takes
/// writes (down, or a standby not promoted yet).
const NO_WRITABLE_SERVER: &str = "error connecting to server";

/// Issue #16: "primary + synchronous standby: burn codes, kill -9 the
/// primary, promote the standby: burned codes stay refused, new logins
/// succeed within 10 s". The daemons name both servers in one connection
/// string with `target_session_attrs=read-write`, so they follow the
/// promotion without a restart or a config change, and never write to the
/// standby before it. The standby is synchronous: a commit a daemon saw (a
/// backup code taken out, a TOTP step recorded) is on the standby before
/// the login is told "success", so the promotion cannot bring a used code
/// back (asynchronous replication could lose the last commits before the
/// crash; see `otpgate_tests::standby`).
#[test]
fn after_kill_9_of_the_primary_the_promoted_synchronous_standby_keeps_used_codes_used() {
    let pair = need!(SyncPair::start());
    let h = need!(Harness::new(""));
    let top = "max_attempts = 1\nlockout_after = 0";
    let hosts = hosts_on(&h, top, &pair.daemon_keys(), "");
    let (ok, out) = migrate(&hosts[0]);
    assert!(ok, "{out}");
    let daemons = start_daemons(&h, &hosts);
    let expect = |host: &Host, code: &str, want: &str, why: &str| {
        let (run, log) = login_on(&h, host, code);
        assert_eq!(
            run.result,
            want,
            "{why} ({code} on {}): {run:#?}\nmodule log: {log}\ndaemons:\n{}",
            host.service,
            daemon_logs(&daemons)
        );
        log
    };
    let (secret, backups) = enroll_on(&hosts[0]);
    // What waiting for the standby costs a login: wrong codes (each a
    // committed failure count), asynchronous then synchronous.
    let median_ms = |synchronous: bool| {
        pair.set_synchronous(synchronous);
        let mut times: Vec<Duration> = (0..21)
            .map(|i| {
                let start = Instant::now();
                expect(&hosts[i % 3], "000000", "PAM_AUTH_ERR", "a wrong code");
                start.elapsed()
            })
            .collect();
        times.sort();
        times[times.len() / 2].as_secs_f64() * 1000.0
    };
    let (asynchronous, synchronous) = (median_ms(false), median_ms(true));
    println!(
        "FIGURE fleet.sync_cost: a wrong-code login (one commit) p50 {asynchronous:.1} ms with asynchronous replication, {synchronous:.1} ms synchronous"
    );

    // Used over the three hosts; each commit returned only once the
    // standby had it.
    let burned = &backups[..3];
    for (i, code) in burned.iter().enumerate() {
        expect(&hosts[i % 3], code, "PAM_SUCCESS", "an unused backup code");
    }
    avoid_step_edge();
    let used_at = now();
    let totp = totp_at(&secret, used_at);
    expect(&hosts[1], &totp, "PAM_SUCCESS", "the app's code");

    assert_eq!(
        pair.sync_state(),
        "sync",
        "the standby stayed synchronous while the codes were used"
    );
    pair.primary.kill9();
    // Before the promotion no server takes writes: denied, nothing used.
    let unused = &backups[3];
    let log = expect(&hosts[2], unused, "PAM_SYSTEM_ERR", "no writable server");
    assert!(log.contains(NO_WRITABLE_SERVER), "{log}");

    let promote = Instant::now();
    pair.standby.promote();
    // The same unused code, retried only after a denial that says no
    // server took writes (such a denial uses nothing).
    let mut denied = Vec::new();
    let took = loop {
        let (run, log) = login_on(&h, &hosts[denied.len() % 3], unused);
        if run.result == "PAM_SUCCESS" {
            break promote.elapsed();
        }
        denied.push(format!("{}: {log}", run.result));
        assert!(
            run.result == "PAM_SYSTEM_ERR"
                && log.contains(NO_WRITABLE_SERVER)
                && promote.elapsed() < Duration::from_secs(10),
            "no login within 10 s of the promotion: {denied:#?}\ndaemons:\n{}\nstandby log:\n{}",
            daemon_logs(&daemons),
            pair.standby.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "FIGURE fleet.failover: promotion to the first login on the promoted standby: {} ms ({} denied before)",
        took.as_millis(),
        denied.len()
    );

    // Every code used before the crash is refused on every host.
    for host in &hosts {
        for code in burned {
            expect(
                host,
                code,
                "PAM_AUTH_ERR",
                "a backup code used before the crash",
            );
        }
        let log = expect(
            host,
            &totp,
            "PAM_AUTH_ERR",
            "a TOTP code used before the crash",
        );
        assert!(log.contains("code already used"), "{log}");
    }
    // The app's next code and another unused backup code log in.
    let next = totp_at(&secret, used_at + 30);
    expect(&hosts[2], &next, "PAM_SUCCESS", "the app's next code");
    expect(
        &hosts[0],
        &backups[4],
        "PAM_SUCCESS",
        "an unused backup code",
    );
}

const SMS: &str = "+441632960961";

/// `max_sends_per_hour` is per user over the fleet, not per host: with 3,
/// Enter on host A, B and C sends a code each (each typed back logs in),
/// and the next Enter on A, B and C is refused with the limit's message;
/// the gateway got three messages in all.
#[test]
fn the_hourly_send_limit_counts_the_sends_of_every_host() {
    need!(require_tool("pamtester", "pamtester"));
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let outbox = Outbox::new();
    let sms = format!(
        "[channels.sms]\ncommand = [\"{}\", \"{{to}}\"]\nrun_as = \"nobody\"\nmax_sends_per_hour = 3\n",
        outbox.sms_command().display()
    );
    let top = "max_attempts = 1\nlockout_after = 0";
    let hosts = hosts_on(&h, top, &pg.daemon_keys(), &sms);
    let (ok, out) = migrate(&hosts[0]);
    assert!(ok, "{out}");
    let daemons = start_daemons(&h, &hosts);
    let (ok, out) = otpgate_on(
        &hosts[0],
        &["enroll", "sms", "--user", "root", "--no-confirm", SMS],
    );
    assert!(ok, "{out}");
    assert!(outbox.messages().is_empty(), "--no-confirm sent a code");

    // Enter on A, B and C: a code each, typed back where it was asked for.
    for (n, host) in hosts.iter().enumerate() {
        let mut p = Pamtester::start(&h.path("pam.d"), &host.service, "root", "198.51.100.7");
        p.line("");
        let message = outbox
            .wait_message(n + 1, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no SMS for send {} on {}: {:#?}\n{}",
                    n + 1,
                    host.service,
                    h.log(),
                    daemon_logs(&daemons)
                )
            });
        p.line(&code_in(&message));
        let (ok, text) = p.finish();
        assert!(
            ok && text.contains("A code was sent by SMS"),
            "send {} on {}: {text}\nmodule log: {:#?}\ndaemons:\n{}",
            n + 1,
            host.service,
            h.log(),
            daemon_logs(&daemons)
        );
    }
    // Enter again on each host: over the limit, which uses the one try.
    for host in &hosts {
        let (run, log) = login_on(&h, host, "");
        assert!(
            run.result == "PAM_AUTH_ERR" && said(&run, "Too many codes were sent by SMS"),
            "a fourth send, on {}: {run:#?}\nmodule log: {log}\ndaemons:\n{}",
            host.service,
            daemon_logs(&daemons)
        );
    }
    let messages = outbox.messages();
    assert_eq!(messages.len(), 3, "sent in all: {messages:#?}");
    let log = h.journal();
    let count = |outcome: &str| {
        log.iter()
            .filter(|l| l.contains(&format!("method=sms outcome={outcome}")))
            .count()
    };
    assert_eq!((count("sent"), count("rate-limited")), (3, 3), "{log:#?}");
}

/// "Trusted hosts and enrollment are visible everywhere", and root's
/// commands work from any host: a client remembered at an `sshd` login on
/// A skips the code at `sshd` on B; `otpgate users` and `otpgate --user
/// root status` on C show the enrollment made on A, its backup codes
/// left, the remembered host; `trusted clear` on C forgets it for A and B;
/// `reset` on B removes the enrollment for every host.
#[test]
fn a_remembered_host_and_the_admin_commands_reach_every_host() {
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let (hosts, _daemons, secret) = fleet(&pg, &h, "remember_days = 3");
    // A trust is for one PAM service: each host gets its own `sshd`.
    let sshd_of: Vec<PathBuf> = hosts
        .iter()
        .map(|host| {
            let dir = h.path(&format!("pam-{}", host.service));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(h.path(&format!("pam.d/{}", host.service)), dir.join("sshd")).unwrap();
            dir
        })
        .collect();
    let sshd = |on: usize| {
        h.login()
            .pam_dir(&sshd_of[on])
            .service("sshd")
            .rhost("203.0.113.7")
    };
    avoid_step_edge();
    sshd(0)
        .answer(totp_at(&secret, now()))
        .answer("y")
        .run()
        .assert("PAM_SUCCESS");
    h.log();
    let run = sshd(1).run();
    run.assert("PAM_SUCCESS");
    assert!(run.prompts().is_empty(), "B asked: {:?}", run.prompts());
    assert!(h.log().concat().contains("method=remembered-host"));

    let (ok, users) = otpgate_on(&hosts[2], &["users", "--json"]);
    assert!(ok, "{users}");
    let users: serde_json::Value = serde_json::from_str(&users).expect(&users);
    assert_eq!(users["users"].as_array().map(Vec::len), Some(1), "{users}");
    assert_eq!(users["users"][0]["user"], "root");
    assert_eq!(users["users"][0]["backup_codes_left"], 10);
    let (ok, status) = otpgate_on(&hosts[2], &["--user", "root", "--json", "status"]);
    assert!(ok, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).expect(&status);
    assert_eq!(status["enrolled"], true, "{status}");
    assert_eq!(
        status["trusted_hosts"][0]["host"], "203.0.113.7",
        "{status}"
    );

    let (ok, out) = otpgate_on(&hosts[2], &["--user", "root", "trusted", "clear"]);
    assert!(ok, "{out}");
    for on in 0..2 {
        let run = sshd(on).answer("000000").run();
        assert_eq!(run.prompts().first().copied(), Some(PROMPT), "host {on}");
    }
    // A reset on B (a lost phone) leaves no enrollment anywhere.
    let (ok, out) = otpgate_on(&hosts[1], &["--user", "root", "reset"]);
    assert!(ok, "{out}");
    let (ok, users) = otpgate_on(&hosts[2], &["users"]);
    assert!(ok && users.contains("0 enrolled"), "{users}");
    // The module ignores a user without an enrollment (require =
    // "enrolled"); alone in the stack, libpam then denies.
    h.login().service(&hosts[0].service).run();
    let log = h.log().concat();
    assert!(
        log.contains("outcome=ignore reason=\"not enrolled\""),
        "{log}"
    );
}

/// Continues a stopped process when dropped (a failed assertion included).
struct Stopped(i32);

impl Stopped {
    fn stop(pid: i32) -> Stopped {
        let signal = nix::sys::signal::Signal::SIGSTOP;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let signal = nix::sys::signal::Signal::SIGCONT;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), signal);
    }
}

/// A synchronous standby that stops answering: PostgreSQL waits for it at
/// COMMIT without limit (`statement_timeout` does not apply), so without a
/// deadline of the daemon's own a login would hang and hold a worker. The
/// daemon gives a COMMIT `[daemon.postgres] timeout` and then denies: the
/// logins are refused within it, with the cause in the log; the code of
/// the one that committed on the primary stays used (the others waited for
/// its lock and used nothing); once the standby answers again logins
/// succeed.
#[test]
fn a_stalled_synchronous_standby_denies_logins_within_the_timeout() {
    let pair = need!(SyncPair::start());
    let h = need!(Harness::new(""));
    let keys = format!("{}timeout = 1\n", pair.daemon_keys());
    let hosts = hosts_on(&h, "max_attempts = 1\nlockout_after = 0", &keys, "");
    for host in &hosts {
        // The module waits longer than the daemon, so the daemon's
        // deadline is what ends the login.
        let text = std::fs::read_to_string(&host.config).unwrap();
        let text = text.replace("kind = \"daemon\"", "kind = \"daemon\"\ntimeout = 5");
        write_private(&host.config, text.as_bytes());
    }
    assert!(migrate(&hosts[0]).0);
    let daemons = start_daemons(&h, &hosts);
    let (_, backups) = enroll_on(&hosts[0]);
    let walsender: i32 = pair
        .primary
        .psql("postgres", "SELECT pid FROM pg_stat_replication")
        .trim()
        .parse()
        .expect("the walsender's pid");
    let stalled = Stopped::stop(walsender);
    let results: Vec<(Run, Duration)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let (h, host, code) = (&h, &hosts[i], &backups[i]);
                s.spawn(move || {
                    let start = Instant::now();
                    let run = h.login().service(&host.service).answer(code.as_str()).run();
                    (run, start.elapsed())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    h.log();
    let logs = daemon_logs(&daemons);
    for (run, took) in &results {
        assert_eq!(run.result, "PAM_SYSTEM_ERR", "{run:#?}\n{logs}");
        assert!(*took < Duration::from_secs(4), "denied after {took:?}");
    }
    assert!(logs.contains("COMMIT not confirmed within 1 s"), "{logs}");
    drop(stalled);
    let (run, log) = login_on(&h, &hosts[1], &backups[3]);
    assert_eq!(
        run.result,
        "PAM_SUCCESS",
        "{log}\n{}",
        daemon_logs(&daemons)
    );
    // The login that held the user's lock committed on the primary before
    // its wait was cancelled: its code stays used. The others waited for
    // that lock and gave up (lock_timeout) without a commit: theirs work.
    let after: Vec<String> = backups[..3]
        .iter()
        .map(|code| login_on(&h, &hosts[2], code).0.result)
        .collect();
    let used = after.iter().filter(|r| *r == "PAM_AUTH_ERR").count();
    assert!(
        used >= 1
            && after
                .iter()
                .all(|r| r == "PAM_AUTH_ERR" || r == "PAM_SUCCESS"),
        "{after:?}\n{}",
        daemon_logs(&daemons)
    );
}

/// A second device added through another host's daemon is stored in the
/// shared record (as `[[device]]` TOML in PostgreSQL); logins over three
/// hosts race with a code of each device for the same step: each works
/// once, neither blocks the other.
#[test]
fn codes_of_two_devices_raced_over_three_hosts_work_once_each() {
    let pg = need!(Postgres::start());
    let h = need!(Harness::new(""));
    let (hosts, _daemons, secret) = fleet(&pg, &h, "max_attempts = 1\nlockout_after = 0");
    let second = new_secret();
    let (ok, out) = otpgate_with(
        &hosts[1].config,
        &[
            "devices",
            "add",
            "--user",
            "root",
            "key",
            "--secret",
            &second,
            "--no-confirm",
            "--force",
        ],
    );
    assert!(ok, "{out}");
    let text = pg.psql(
        "otpgate",
        "SELECT record FROM otpgate_records WHERE user_name = 'root'",
    );
    assert!(
        text.contains("version = 3") && text.contains("name = \"key\""),
        "{text}"
    );
    avoid_step_edge();
    let t = now();
    let codes = [totp_at(&secret, t), totp_at(&second, t)];
    // Answer i goes to host i % 3 and is a code of device i % 2.
    let answers: Vec<String> = (0..96).map(|i| codes[i % 2].clone()).collect();
    let runs = race_hosts(&h, &hosts, &answers);
    for device in 0..2 {
        let wins = runs
            .iter()
            .enumerate()
            .filter(|(i, r)| i % 2 == device && r.result == "PAM_SUCCESS")
            .count();
        assert_eq!(wins, 1, "device {device}: {runs:#?}");
    }
}
