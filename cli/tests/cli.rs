//! The `otpgate` binary end to end: every subcommand's happy path and its
//! main refusal, against a temporary config and central storage, with codes
//! from oathtool.

mod common;

use std::os::unix::fs::symlink;
use std::process::Command;

use common::*;
use otpgate_test_support::{is_root, need, require, require_tool};

#[test]
fn help_lists_every_command_and_the_exit_statuses() {
    let r = run(BIN, &["--help"], "");
    r.ok();
    for word in [
        "enroll",
        "status",
        "verify",
        "backup-codes",
        "trusted",
        "disable",
        "devices",
        "unlock",
        "reset",
        "import",
        "completions",
        "--config",
        "--user",
        "--json",
        "Exit status",
        "locked out",
    ] {
        assert!(r.stdout.contains(word), "--help lacks {word}\n{r}");
    }
    let v = run(BIN, &["--version"], "");
    v.ok();
    assert!(v.stdout.starts_with("otpgate "), "{v}");
}

#[test]
fn usage_errors_exit_2() {
    let r = run(BIN, &["enroll", "--digits", "9"], "");
    assert_eq!(r.code, 2, "{r}");
    let r = run(BIN, &["no-such-command"], "");
    assert_eq!(r.code, 2, "{r}");
}

#[test]
fn man_page_documents_every_command_and_flag() {
    let r = run(BIN, &["man"], "");
    r.ok();
    assert!(
        r.stdout.starts_with(".ie") || r.stdout.contains(".TH otpgate 1"),
        "{r}"
    );
    for word in ["enroll", "backup\\-codes", "\\-\\-config", "Exit status"] {
        assert!(r.stdout.contains(word), "man page lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    run(BIN, &["man", "--dir", dir.path().to_str().unwrap()], "").ok();
    let enroll = std::fs::read_to_string(dir.path().join("otpgate-enroll.1")).unwrap();
    for flag in [
        "\\-\\-backup\\-codes\\-file",
        "\\-\\-qr\\-svg",
        "\\-\\-qr\\-png",
        "\\-\\-invert",
        "\\-\\-no\\-confirm",
        "\\-\\-secret",
        "\\-\\-hotp",
    ] {
        assert!(enroll.contains(flag), "otpgate-enroll.1 lacks {flag}");
    }
    assert!(dir.path().join("otpgate-trusted-remove.1").exists());
    let add = std::fs::read_to_string(dir.path().join("otpgate-devices-add.1")).unwrap();
    for flag in [
        "\\-\\-secret",
        "\\-\\-no\\-confirm",
        "\\-\\-hotp",
        "\\-\\-digits",
        "\\-\\-algorithm",
        "\\-\\-json",
    ] {
        assert!(add.contains(flag), "otpgate-devices-add.1 lacks {flag}");
    }
    for page in ["list", "remove", "rename"] {
        assert!(
            dir.path()
                .join(format!("otpgate-devices-{page}.1"))
                .exists()
        );
    }
}

#[test]
fn completions_are_generated_for_bash_and_zsh() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run(BIN, &["completions", shell], "");
        r.ok();
        assert!(r.stdout.contains("backup-codes"), "{shell}: {r}");
    }
}

#[test]
fn provisioning_prints_json_and_saves_a_0600_file() {
    let Some(env) = Env::new("") else { return };
    let r = env.user(
        &["enroll", "--secret", SECRET, "--no-confirm", "--json"],
        "",
    );
    r.ok();
    let j = r.json();
    assert_eq!(j["user"], USER);
    assert_eq!(j["secret"], SECRET);
    let uri = j["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Test:nobody%40")
            && uri.contains(&format!("secret={SECRET}"))
            && uri.contains("issuer=Test"),
        "{uri}"
    );
    let codes = j["backup_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| {
        let c = c.as_str().unwrap();
        c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit())
    }));
    let file = env.user_file(USER);
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    for c in codes {
        assert!(!text.contains(c.as_str().unwrap()), "backup code in clear");
    }
    let s = env.user(&["status", "--json"], "");
    s.ok();
    let s = s.json();
    assert_eq!(s["enrolled"], true);
    assert_eq!(s["method"], "totp");
    assert_eq!(s["algorithm"], "SHA1");
    assert_eq!(s["backup_codes_left"], 10);
    assert_eq!(s["locked_until"], serde_json::Value::Null);
    assert_eq!(s["trusted_hosts"].as_array().unwrap().len(), 0);
}

#[test]
fn enroll_with_a_right_code_saves_and_writes_the_backup_codes_file() {
    let Some(env) = Env::new("") else { return };
    let codes_file = env.user_dir().join("codes.txt");
    let r = env.user(
        &[
            "enroll",
            "--secret",
            SECRET,
            "--backup-codes-file",
            codes_file.to_str().unwrap(),
        ],
        &format!("{}\n", code(SECRET, 0)),
    );
    r.ok();
    assert!(
        r.stdout.contains("GEZD GNBV GY3T QOJQ"),
        "grouped secret\n{r}"
    );
    assert!(r.stdout.contains("otpauth://totp/"), "{r}");
    assert!(r.stdout.contains("Backup codes"), "{r}");
    assert_eq!(mode(&codes_file), 0o600);
    let written = std::fs::read_to_string(&codes_file).unwrap();
    let codes: Vec<&str> = written.lines().filter(|l| l.len() == 8).collect();
    assert_eq!(codes.len(), 10, "{written}");
    for c in &codes {
        assert_eq!(r.stdout.matches(c).count(), 1, "code shown once: {c}\n{r}");
    }
    assert_eq!(mode(&env.user_file(USER)), 0o600);
    // The confirmation code itself is used up.
    env.user(&["verify"], &format!("{}\n", code(SECRET, 0)))
        .fails(3, "already used");
}

#[test]
fn the_printed_qr_code_decodes_to_the_printed_uri() {
    let Some(env) = Env::new("") else { return };
    for invert in [false, true] {
        let mut args = vec!["enroll", "--no-confirm", "--force"];
        if invert {
            args.push("--invert");
        }
        let r = env.user(&args, "");
        r.ok();
        let uri = r
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("URI: "))
            .unwrap_or_else(|| panic!("no URI\n{r}"));
        let decoded = decode_half_blocks(&r.stdout).unwrap_or_else(|| panic!("no QR\n{r}"));
        assert_eq!(decoded, uri);
    }
}

#[test]
fn wrong_codes_save_nothing() {
    let Some(env) = Env::new("") else { return };
    let r = env.user(
        &["enroll", "--secret", SECRET],
        "000000\nnot a code\n111111\n",
    );
    r.fails(3, "nothing was saved");
    assert!(!env.user_file(USER).exists());
    // End of input is a refusal too.
    env.user(&["enroll", "--secret", SECRET], "")
        .fails(3, "no code given");
    assert!(!env.user_file(USER).exists());
}

#[test]
fn a_code_from_a_clock_ten_minutes_off_says_so() {
    let Some(env) = Env::new("") else { return };
    let ahead = oathtool_at(SECRET, now() + 600);
    let r = env.user(
        &["enroll", "--secret", SECRET],
        &format!("{ahead}\n{ahead}\n{ahead}\n"),
    );
    r.fails(3, "nothing was saved");
    assert!(
        r.stderr
            .contains("10 minutes ahead of this machine's clock"),
        "{r}"
    );
    let behind = oathtool_at(SECRET, now() - 3 * 3600);
    let r = env.user(&["enroll", "--secret", SECRET], &format!("{behind}\n"));
    assert!(r.stderr.contains("3 hours behind"), "{r}");
}

#[test]
fn backup_codes_file_never_overwrites_or_follows_a_symlink() {
    let Some(env) = Env::new("") else { return };
    let existing = env.path("exists.txt");
    std::fs::write(&existing, "keep").unwrap();
    let link = env.path("link.txt");
    symlink(env.path("target.txt"), &link).unwrap();
    for (path, why) in [(&existing, "create: File exists"), (&link, "symbolic link")] {
        let r = env.user(
            &[
                "enroll",
                "--no-confirm",
                "--backup-codes-file",
                path.to_str().unwrap(),
            ],
            "",
        );
        r.fails(1, why);
        assert!(!env.user_file(USER).exists(), "nothing saved");
    }
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep");
    assert!(!env.path("target.txt").exists());
}

#[test]
fn qr_pictures_and_new_backup_codes_never_go_through_a_symlink() {
    let Some(env) = Env::new("") else { return };
    // A link to a file that exists and one to a file that does not: neither
    // is written through, and the refusal names the link.
    let victim = env.path("victim.txt");
    std::fs::write(&victim, "keep").unwrap();
    let to_victim = env.path("to-victim");
    symlink(&victim, &to_victim).unwrap();
    let dangling = env.path("dangling");
    symlink(env.path("nowhere"), &dangling).unwrap();
    for flag in ["--qr-svg", "--qr-png"] {
        for link in [&to_victim, &dangling] {
            let r = env.user(
                &["enroll", "--no-confirm", flag, link.to_str().unwrap()],
                "",
            );
            r.fails(1, "is a symbolic link; refusing to follow it");
            assert!(r.stderr.contains(link.to_str().unwrap()), "{r}");
            assert!(!env.user_file(USER).exists(), "nothing saved");
        }
    }
    let old = env.provision();
    let r = env.user(
        &["backup-codes", "--file", to_victim.to_str().unwrap()],
        &format!("{}\n", old[0]),
    );
    // The codes are saved already, so they are shown; the file is refused.
    r.ok();
    assert!(r.stderr.contains("is a symbolic link"), "{r}");
    assert!(r.stdout.contains("New backup codes"), "{r}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(!env.path("nowhere").exists());
}

#[test]
fn qr_pictures_are_written_as_new_0600_files() {
    let Some(env) = Env::new("") else { return };
    let (svg, png) = (env.user_dir().join("qr.svg"), env.user_dir().join("qr.png"));
    let r = env.user(
        &[
            "enroll",
            "--no-confirm",
            "--json",
            "--qr-svg",
            svg.to_str().unwrap(),
            "--qr-png",
            png.to_str().unwrap(),
        ],
        "",
    );
    r.ok();
    let uri = r.json()["otpauth_uri"].as_str().unwrap().to_string();
    assert_eq!(mode(&svg), 0o600);
    assert_eq!(mode(&png), 0o600);
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg"), "{svg_text}");
    let modules = png_modules(&std::fs::read(&png).unwrap());
    assert_eq!(
        decode_modules(&modules, true).as_deref(),
        Some(uri.as_str())
    );
}

/// Reads back the 1-bit greyscale PNG the CLI writes (stored deflate
/// blocks), as rows of pixels (true = black).
fn png_modules(png: &[u8]) -> Vec<Vec<bool>> {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let (mut pos, mut width, mut idat) = (8, 0usize, Vec::new());
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &png[pos + 4..pos + 8];
        let data = &png[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
                assert_eq!(&data[8..10], &[1, 0], "1-bit greyscale");
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    let mut p = 2; // zlib header
    loop {
        let last = idat[p] & 1 == 1;
        assert_eq!(idat[p] & 6, 0, "stored block");
        let len = u16::from_le_bytes([idat[p + 1], idat[p + 2]]) as usize;
        raw.extend_from_slice(&idat[p + 5..p + 5 + len]);
        p += 5 + len;
        if last {
            break;
        }
    }
    let row_bytes = width.div_ceil(8) + 1;
    raw.chunks(row_bytes)
        .map(|row| {
            (0..width)
                .map(|x| row[1 + x / 8] & (0x80 >> (x % 8)) == 0)
                .collect()
        })
        .collect()
}

#[test]
fn reenrolling_needs_a_current_code_or_force_as_root() {
    let Some(env) = Env::new("") else { return };
    env.provision();
    let before = std::fs::read_to_string(env.user_file(USER)).unwrap();
    // Wrong current codes: refused, nothing changes.
    env.user(&["enroll", "--no-confirm"], "000000\n000000\n000000\n")
        .fails(7, "already enrolled");
    let after = std::fs::read_to_string(env.user_file(USER)).unwrap();
    assert_eq!(
        before.lines().find(|l| l.starts_with("secret")),
        after.lines().find(|l| l.starts_with("secret"))
    );
    // A current code, then a code of the new secret.
    const NEW: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let r = env.user(
        &["enroll", "--secret", NEW],
        &format!("{}\n{}\n", code(SECRET, 0), code(NEW, 0)),
    );
    r.ok();
    env.user(&["verify"], &format!("{}\n", code(NEW, 1))).ok();
    // Root replaces it with --force, without a code.
    env.user(
        &["enroll", "--force", "--secret", SECRET, "--no-confirm"],
        "",
    )
    .ok();
    env.user(&["verify"], &format!("{}\n", code(SECRET, 1)))
        .ok();
}

#[test]
fn only_root_acts_on_other_users_and_unlocks_or_resets() {
    need!(require(is_root(), "needs root to drop to uid 65534"));
    need!(require_tool("setpriv", "util-linux"));
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args);
        run_command(&mut cmd, "")
    };
    as_nobody(&["--user", "root", "status"]).fails(5, "only root may act on another user");
    as_nobody(&["--user", "root", "reset"]).fails(5, "only root");
    as_nobody(&["--user", USER, "unlock"]).fails(5, "unlock needs root");
    as_nobody(&["--user", USER, "reset"]).fails(5, "reset needs root");
    as_nobody(&["enroll", "--force", "--no-confirm"]).fails(5, "--force needs root");
    as_nobody(&["users"]).fails(5, "users needs root");
}

#[test]
fn users_lists_who_is_enrolled_how_and_who_is_locked_out() {
    let Some(env) = Env::new("lockout_after = 1\nlockout_minutes = 5\n") else {
        return;
    };
    let r = env.run(&["users", "--json"], "");
    r.ok();
    assert_eq!(r.json()["users"], serde_json::json!([]), "{r}");
    env.provision();
    // A file of a name no account has is named, not skipped in silence.
    std::fs::write(env.user_file("otpgate-no-such-user"), "").unwrap();
    let r = env.run(&["users", "--json"], "");
    r.ok();
    let j = r.json();
    assert_eq!(j["users"].as_array().unwrap().len(), 1, "{r}");
    let user = &j["users"][0];
    assert_eq!(user["user"], USER);
    assert_eq!(user["methods"], serde_json::json!(["totp", "backup"]));
    assert_eq!(user["backup_codes_left"], 10);
    assert_eq!(user["locked_until"], serde_json::Value::Null);
    assert_eq!(j["unreadable"][0]["user"], "otpgate-no-such-user", "{r}");
    env.user(&["verify"], "000000\n").fails(6, "locked out");
    let r = env.run(&["users"], "");
    r.ok();
    let line = r.stdout.lines().find(|l| l.starts_with(USER)).unwrap_or("");
    assert!(
        line.contains("totp,backup") && line.contains("until"),
        "{r}"
    );
    assert!(r.stdout.contains("1 enrolled"), "{r}");
}

#[test]
fn status_of_a_user_who_is_not_enrolled() {
    let Some(env) = Env::new("[policy]\nrequire = \"all\"\n") else {
        return;
    };
    let r = env.user(&["status", "--json"], "");
    r.ok();
    let j = r.json();
    assert_eq!(j["enrolled"], false);
    assert_eq!(j["requirement"], "required");
    let r = env.user(&["status"], "");
    r.ok();
    assert!(r.stdout.contains("enrolled:      no"), "{r}");
    env.run(&["--user", "no-such-user-otpgate", "status"], "")
        .fails(1, "unknown user");
}

#[test]
fn verify_accepts_once_refuses_wrong_and_keeps_backup_codes_unless_consumed() {
    let Some(env) = Env::new("") else { return };
    env.user(&["verify"], "123456\n").fails(4, "not enrolled");
    let backup = env.provision();
    let c = code(SECRET, 0);
    let r = env.user(&["verify", "--json"], &format!("{c}\n"));
    r.ok();
    assert_eq!(r.json()["method"], "totp");
    env.user(&["verify"], &format!("{c}\n"))
        .fails(3, "already used");
    env.user(&["verify"], "000000\n").fails(3, "wrong code");
    // An older step than the last one used is refused too.
    env.user(&["verify"], &format!("{}\n", code(SECRET, -1)))
        .fails(3, "already used");

    let r = env.user(&["verify", "--json"], &format!("{}\n", backup[0]));
    r.ok();
    let j = r.json();
    assert_eq!(
        (j["method"].as_str(), j["consumed"].as_bool()),
        (Some("backup"), Some(false))
    );
    assert_eq!(j["backup_codes_left"], 10);
    let r = env.user(
        &["verify", "--consume", "--json"],
        &format!("{}\n", backup[0]),
    );
    r.ok();
    assert_eq!(r.json()["backup_codes_left"], 9);
    env.user(&["verify", "--consume"], &format!("{}\n", backup[0]))
        .fails(3, "wrong code");
    // Spaces and dashes are fine in a typed code.
    let spaced = format!("{}-{}\n", &backup[1][..4], &backup[1][4..]);
    env.user(&["verify"], &spaced).ok();
}

#[test]
fn lockout_refuses_even_right_codes_until_root_unlocks() {
    let Some(env) = Env::new("lockout_after = 2\nlockout_minutes = 5\n") else {
        return;
    };
    env.provision();
    env.user(&["verify"], "000000\n").fails(3, "wrong code");
    env.user(&["verify"], "000000\n").fails(6, "locked out");
    env.user(&["verify"], &format!("{}\n", code(SECRET, 0)))
        .fails(6, "locked out");
    let s = env.user(&["status", "--json"], "");
    assert!(s.json()["locked_until"].as_u64().unwrap() > now());
    env.user(&["unlock"], "").ok();
    env.user(&["verify"], &format!("{}\n", code(SECRET, 0)))
        .ok();
    let r = env.user(&["unlock"], "");
    r.ok();
    assert!(r.stdout.contains("was not locked"), "{r}");
    env.run(&["--user", "daemon", "unlock"], "")
        .fails(4, "not enrolled");
}

#[test]
fn backup_codes_are_replaced_after_a_current_code() {
    let Some(env) = Env::new("backup_codes = 5\nbackup_code_digits = 10\n") else {
        return;
    };
    env.user(&["backup-codes"], "").fails(4, "not enrolled");
    let old = env.provision();
    assert_eq!(old.len(), 5);
    env.user(&["backup-codes", "--json"], "000000\n\n\n")
        .fails(3, "wrong codes");
    let r = env.user(
        &["backup-codes", "--json"],
        &format!("{}\n", code(SECRET, 0)),
    );
    r.ok();
    let new: Vec<String> = r.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(new.len(), 5);
    assert!(new.iter().all(|c| c.len() == 10));
    env.user(&["verify"], &format!("{}\n", old[0]))
        .fails(3, "wrong code");
    env.user(&["verify"], &format!("{}\n", new[0])).ok();
    // A backup code is a current code too; root may skip it with --force.
    env.user(&["backup-codes"], &format!("{}\n", new[1])).ok();
    let r = env.user(&["backup-codes", "--force"], "");
    r.ok();
    assert!(r.stdout.contains("New backup codes"), "{r}");
}

#[test]
fn trusted_hosts_are_listed_removed_and_cleared() {
    let Some(env) = Env::new("") else { return };
    env.user(&["trusted", "list"], "").fails(4, "not enrolled");
    env.provision();
    let file = env.user_file(USER);
    let mut text = std::fs::read_to_string(&file).unwrap();
    let later = now() + 86_400;
    let since = now() - 60;
    for (host, service, until) in [
        ("203.0.113.7", "sshd", later),
        ("198.51.100.1", "su", later),
        ("192.0.2.9", "sshd", 1000),
    ] {
        text.push_str(&format!(
            "\n[[trusted_host]]\nhost = \"{host}\"\nservice = \"{service}\"\nsince = {since}\nuntil = {until}\n"
        ));
    }
    // Written before trusts were bound to a service: not honoured, not listed.
    text.push_str(&format!(
        "\n[[trusted_host]]\nhost = \"192.0.2.10\"\nuntil = {later}\n"
    ));
    std::fs::write(&file, text).unwrap();
    // The enrollment's state file no longer fits a record edited by hand
    // (its lists changed); no login has happened, so it holds nothing the
    // record does not, and goes.
    std::fs::remove_file(format!("{}.state", file.display())).unwrap();
    let r = env.user(&["trusted", "list", "--json"], "");
    r.ok();
    let hosts = r.json()["trusted_hosts"].as_array().unwrap().clone();
    assert_eq!(hosts.len(), 2, "expired and service-less hosts hidden\n{r}");
    assert_eq!(hosts[0]["host"], "203.0.113.7");
    assert_eq!(hosts[0]["service"], "sshd");
    assert_eq!(hosts[0]["since"], since);
    assert_eq!(hosts[0]["until"], later);
    let r = env.user(&["trusted", "list"], "");
    assert!(
        r.stdout.contains("198.51.100.1  service su  since 20"),
        "{r}"
    );
    // `status` lines its values up in one column, trusted hosts included.
    let r = env.user(&["status"], "");
    r.ok();
    // Where the value starts: the first character after `label:` and its
    // padding.
    let columns: Vec<usize> = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.ends_with(':'))
        .map(|l| {
            let colon = l.find(':').expect("a label line");
            colon + 1 + (l[colon + 1..].len() - l[colon + 1..].trim_start().len())
        })
        .collect();
    assert!(
        columns.len() >= 7 && columns.iter().all(|&c| c == columns[0]),
        "{columns:?}\n{r}"
    );
    assert!(r.stdout.contains("trusted hosts:\n    "), "{r}");
    assert!(r.stdout.contains("\n    198.51.100.1  service su"), "{r}");
    assert!(!r.stdout.contains("192.0.2.10"), "{r}");
    // Shown in local time, with the zone named.
    let mut cmd = Command::new(BIN);
    cmd.env("TZ", "Asia/Kolkata").args([
        "--config",
        env.config.to_str().unwrap(),
        "--user",
        USER,
        "trusted",
        "list",
    ]);
    let r = run_command(&mut cmd, "");
    let local = Command::new("date")
        .env("TZ", "Asia/Kolkata")
        .args(["-d", &format!("@{later}"), "+%Y-%m-%d %H:%M:%S IST"])
        .output()
        .unwrap();
    let local = String::from_utf8(local.stdout).unwrap();
    assert!(
        r.stdout.contains(&format!("  until {}", local.trim())),
        "{r}"
    );
    env.user(&["trusted", "remove", "203.0.113.7"], "").ok();
    env.user(&["trusted", "remove", "203.0.113.7"], "")
        .fails(9, "is not a trusted host");
    // Nothing to remove is its own status, not an I/O error's.
    env.user(&["disable", "email", "--force"], "")
        .fails(9, "has no codes by email to remove");
    let r = env.user(&["trusted", "clear"], "");
    r.ok();
    assert!(r.stdout.contains("Removed 1 trusted host."), "{r}");
    let r = env.user(&["status", "--json"], "");
    assert_eq!(r.json()["trusted_hosts"].as_array().unwrap().len(), 0);
}

#[test]
fn disable_needs_a_current_code_and_removes_the_file() {
    let Some(env) = Env::new("") else { return };
    env.user(&["disable"], "").fails(4, "not enrolled");
    env.provision();
    env.user(&["disable"], "000000\n111111\n222222\n")
        .fails(3, "nothing was changed");
    assert!(env.user_file(USER).exists());
    let r = env.user(&["disable"], &format!("{}\n", code(SECRET, 0)));
    r.ok();
    assert!(r.stdout.contains("disabled"), "{r}");
    assert!(!env.user_file(USER).exists());
}

#[test]
fn reset_removes_the_enrollment_without_a_code() {
    let Some(env) = Env::new("") else { return };
    env.user(&["reset"], "").fails(4, "not enrolled");
    env.provision();
    let r = env.user(&["reset", "--json"], "");
    r.ok();
    assert_eq!(r.json()["ok"], true);
    assert!(!env.user_file(USER).exists());
}

#[test]
fn hotp_enrollment_confirms_with_the_first_counter_code() {
    let Some(env) = Env::new("") else { return };
    let hotp = |counter: u64| {
        let out = Command::new("oathtool")
            .args(["--hotp", "-b", "-c", &counter.to_string(), SECRET])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    env.user(
        &["enroll", "--hotp", "--secret", SECRET],
        &format!("{}\n", hotp(0)),
    )
    .ok();
    let s = env.user(&["status", "--json"], "").json();
    assert_eq!(
        (s["method"].as_str(), s["counter"].as_u64()),
        (Some("hotp"), Some(1))
    );
    env.user(&["verify"], &format!("{}\n", hotp(0)))
        .fails(3, "wrong code");
    env.user(&["verify"], &format!("{}\n", hotp(3))).ok();
}

#[test]
fn a_bad_config_is_one_line_on_stderr_and_exit_1() {
    let Some(env) = Env::new("colour = \"blue\"\n") else {
        return;
    };
    let r = env.user(&["status"], "");
    r.fails(1, "colour");
    let r = run(
        BIN,
        &["--config", "/nonexistent/otpgate.toml", "status"],
        "",
    );
    r.fails(1, "/nonexistent/otpgate.toml");
}

/// Another base32 secret, for a second device.
const OTHER: &str = "MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK";

fn device_names(r: &Run) -> Vec<String> {
    r.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn devices_are_listed_added_renamed_and_removed_and_each_code_works_once() {
    let Some(env) = Env::new("") else { return };
    env.user(&["devices", "list"], "").fails(4, "not enrolled");
    env.provision();
    let r = env.user(&["devices", "list", "--json"], "");
    r.ok();
    assert_eq!(device_names(&r), ["app"]);
    assert_eq!(r.json()["devices"][0]["kind"], "totp");

    let r = env.user(
        &[
            "devices",
            "add",
            "phone",
            "--secret",
            OTHER,
            "--no-confirm",
            "--json",
        ],
        "",
    );
    r.ok();
    assert_eq!(r.json()["device"], "phone");
    let r = env.user(&["devices", "list", "--json"], "");
    assert_eq!(device_names(&r), ["app", "phone"]);
    let text = std::fs::read_to_string(env.user_file(USER)).unwrap();
    assert!(text.starts_with("version = 3\n"), "{text}");
    assert_eq!(text.matches("[[device]]").count(), 2, "{text}");

    // A code of each device works once; the same step on the other device
    // is not a replay.
    let (mine, theirs) = (code(SECRET, 0), code(OTHER, 0));
    let r = env.user(&["verify", "--json"], &format!("{theirs}\n"));
    r.ok();
    assert_eq!(r.json()["device"], "phone", "verify names the device");
    let r = env.user(&["verify"], &format!("{mine}\n"));
    r.ok();
    assert!(r.stdout.contains("TOTP code of device app is right"), "{r}");
    env.user(&["verify"], &format!("{theirs}\n"))
        .fails(3, "already used");
    env.user(&["verify"], &format!("{mine}\n"))
        .fails(3, "already used");

    let r = env.user(&["status", "--json"], "");
    let devices = r.json()["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2, "{r}");
    assert_eq!(devices[1]["name"], "phone");
    let r = env.user(&["status"], "");
    assert!(r.stdout.contains("yes (2 devices)"), "{r}");
    assert!(
        r.stdout.contains("    phone  TOTP, SHA1, 6 digits, 30 s"),
        "{r}"
    );

    // Names: checked, unique.
    env.user(
        &[
            "devices",
            "add",
            "bad name",
            "--secret",
            OTHER,
            "--no-confirm",
        ],
        "",
    )
    .fails(2, "device name");
    env.user(
        &["devices", "add", "phone", "--secret", OTHER, "--no-confirm"],
        "",
    )
    .fails(1, "already");
    env.user(&["devices", "rename", "phone", "app"], "")
        .fails(1, "already");
    env.user(&["devices", "rename", "phone", "spare"], "").ok();
    env.user(&["devices", "remove", "phone"], "")
        .fails(9, "no device phone");

    // Removed: its codes are refused, the other device's still work.
    env.user(&["devices", "remove", "spare"], "").ok();
    env.user(&["verify"], &format!("{}\n", code(OTHER, 1)))
        .fails(3, "wrong code");
    env.user(&["verify"], &format!("{}\n", code(SECRET, 1)))
        .ok();

    // The last device removes the app, and with no other method the
    // enrollment (as `disable app` does).
    let r = env.user(&["devices", "remove", "app"], "");
    r.ok();
    assert!(r.stdout.contains("enrollment is removed"), "{r}");
    assert!(!env.user_file(USER).exists());
}

#[test]
fn adding_a_device_to_ones_own_account_needs_a_current_code() {
    let Some(env) = Env::new("") else { return };
    // root's own account: root acting for itself is asked, like anyone.
    env.run(&["enroll", "--secret", SECRET, "--no-confirm"], "")
        .ok();
    env.run(
        &["devices", "add", "phone", "--secret", OTHER, "--no-confirm"],
        "000000\n111111\n222222\n",
    )
    .fails(3, "nothing was changed");
    let r = env.run(&["devices", "list", "--json"], "");
    assert_eq!(device_names(&r), ["app"]);
    // A code of the existing device, then one of the new one to confirm.
    env.run(
        &["devices", "add", "phone", "--secret", OTHER],
        &format!("{}\n{}\n", code(SECRET, 0), code(OTHER, 0)),
    )
    .ok();
    let r = env.run(&["devices", "list", "--json"], "");
    assert_eq!(device_names(&r), ["app", "phone"]);
    // The confirmation code stays used on the new device.
    env.run(&["verify"], &format!("{}\n", code(OTHER, 0)))
        .fails(3, "already used");
    // Removing needs one too.
    env.run(&["devices", "remove", "phone"], "000000\n111111\n222222\n")
        .fails(3, "nothing was changed");
    env.run(
        &["devices", "remove", "phone"],
        &format!("{}\n", code(SECRET, 1)),
    )
    .ok();
}

#[test]
fn a_version_2_file_reads_as_device_app_and_migrates_at_the_next_rewrite() {
    let Some(env) = Env::new("") else { return };
    let old = format!(
        "version = 2\n[totp]\nsecret = \"{SECRET}\"\n[state]\nlast_step = {}\n",
        now() / 30
    );
    std::fs::write(env.user_file(USER), &old).unwrap();
    std::fs::set_permissions(
        env.user_file(USER),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let r = env.user(&["devices", "list", "--json"], "");
    assert_eq!(device_names(&r), ["app"]);
    // Its step stays used.
    env.user(&["verify"], &format!("{}\n", code(SECRET, 0)))
        .fails(3, "already used");
    env.user(
        &["devices", "add", "phone", "--secret", OTHER, "--no-confirm"],
        "",
    )
    .ok();
    let text = std::fs::read_to_string(env.user_file(USER)).unwrap();
    assert!(text.starts_with("version = 3\n"), "{text}");
    assert!(
        text.contains("name = \"app\"") && !text.contains("\n[totp]"),
        "{text}"
    );
    env.user(&["verify"], &format!("{}\n", code(SECRET, 0)))
        .fails(3, "already used");
    env.user(&["verify"], &format!("{}\n", code(SECRET, 1)))
        .ok();
}
