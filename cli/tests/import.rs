//! `otpgate import google-authenticator` on files written by the real
//! `google-authenticator` CLI (Debian libpam-google-authenticator): after
//! the import, oathtool codes and the old scratch codes work through
//! `otpgate verify`.

mod common;

use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::PathBuf;
use std::process::Command;

use common::*;
use otpgate_test_support::require_tool;

/// Runs `google-authenticator ARGS -s FILE` and hands the file to nobody
/// (the import reads it with the user's identity). Returns the file and
/// its lines.
fn ga_file(env: &Env, args: &[&str]) -> Option<(PathBuf, Vec<String>)> {
    require_tool("google-authenticator", "libpam-google-authenticator")?;
    let dir = env.path("home");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.join(".google_authenticator");
    let status = Command::new("google-authenticator")
        .args(args)
        .args(["-f", "-Q", "none", "-q", "-s"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    chown(&file, Some(65534), Some(65534)).unwrap();
    let lines = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    Some((file, lines))
}

#[test]
fn a_totp_file_imports_with_its_scratch_codes() {
    let Some(env) = Env::new("") else { return };
    let Some((file, lines)) = ga_file(
        &env,
        &["-t", "-d", "-r", "3", "-R", "30", "-w", "3", "-e", "5"],
    ) else {
        return;
    };
    let secret = lines[0].clone();
    let scratch: Vec<&String> = lines
        .iter()
        .filter(|l| l.len() == 8 && !l.starts_with('"'))
        .collect();
    assert_eq!(scratch.len(), 5);
    let r = env.user(
        &[
            "import",
            "google-authenticator",
            file.to_str().unwrap(),
            "--json",
        ],
        "",
    );
    r.ok();
    let j = r.json();
    assert_eq!(j["method"], "totp");
    assert_eq!(j["backup_codes_left"], 5);
    assert!(r.stderr.contains("RATE_LIMIT"), "{r}");
    assert_eq!(mode(&env.user_file(USER)), 0o600);
    // -w 3 is one step either side, as in google-authenticator.
    env.user(&["verify"], &format!("{}\n", code(&secret, -1)))
        .ok();
    env.user(&["verify"], &format!("{}\n", code(&secret, 0)))
        .ok();
    env.user(&["verify"], &format!("{}\n", code(&secret, 3)))
        .fails(3, "wrong code");
    env.user(&["verify", "--consume"], &format!("{}\n", scratch[0]))
        .ok();
    env.user(&["verify", "--consume"], &format!("{}\n", scratch[0]))
        .fails(3, "wrong code");
    env.user(&["verify"], &format!("{}\n", scratch[4])).ok();
    // A second import over the enrollment needs a current code.
    env.user(
        &["import", "google-authenticator", file.to_str().unwrap()],
        "000000\n\n\n",
    )
    .fails(7, "already enrolled");
    env.user(
        &["import", "google-authenticator", file.to_str().unwrap()],
        &format!("{}\n", code(&secret, 1)),
    )
    .ok();
}

#[test]
fn a_hotp_file_imports_with_its_counter() {
    let Some(env) = Env::new("") else { return };
    let Some((file, lines)) = ga_file(&env, &["-c", "-u", "-w", "5", "-e", "2"]) else {
        return;
    };
    let secret = lines[0].clone();
    let counter: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("\" HOTP_COUNTER "))
        .unwrap()
        .parse()
        .unwrap();
    env.user(
        &["import", "google-authenticator", file.to_str().unwrap()],
        "",
    )
    .ok();
    let hotp = |c: u64| {
        let out = Command::new("oathtool")
            .args(["--hotp", "-b", "-c", &c.to_string(), &secret])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // WINDOW_SIZE 5: the expected counter and four more.
    env.user(&["verify"], &format!("{}\n", hotp(counter + 5)))
        .fails(3, "wrong code");
    env.user(&["verify"], &format!("{}\n", hotp(counter + 4)))
        .ok();
    let s = env.user(&["status", "--json"], "").json();
    assert_eq!(s["counter"], counter + 5);
}

/// The imported app is a device of the name asked for (default `app`).
#[test]
fn an_import_goes_into_a_named_device() {
    let Some(env) = Env::new("") else { return };
    let Some((file, _)) = ga_file(
        &env,
        &["-t", "-d", "-r", "3", "-R", "30", "-w", "3", "-e", "5"],
    ) else {
        return;
    };
    let file = file.to_str().unwrap();
    env.user(
        &[
            "import",
            "google-authenticator",
            file,
            "--device",
            "bad name",
        ],
        "",
    )
    .fails(2, "device name");
    let r = env.user(
        &[
            "import",
            "google-authenticator",
            file,
            "--device",
            "phone",
            "--json",
        ],
        "",
    );
    r.ok();
    assert_eq!(r.json()["device"], "phone");
    let list = env.user(&["devices", "list", "--json"], "").json();
    assert_eq!(list["devices"][0]["name"], "phone");
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
}

#[test]
fn import_refuses_a_symlink_and_a_missing_file() {
    let Some(env) = Env::new("") else { return };
    let Some((file, _)) = ga_file(&env, &["-t", "-d", "-u", "-w", "3", "-e", "1"]) else {
        return;
    };
    let link = env.path("home/link");
    symlink(&file, &link).unwrap();
    env.user(
        &["import", "google-authenticator", link.to_str().unwrap()],
        "",
    )
    .fails(1, "symbolic link");
    env.user(
        &[
            "import",
            "google-authenticator",
            env.path("home/none").to_str().unwrap(),
        ],
        "",
    )
    .fails(1, "No such file");
    assert!(!env.user_file(USER).exists());
}

#[test]
fn import_refuses_a_file_others_may_read_a_fifo_and_another_owner() {
    let Some(env) = Env::new("") else { return };
    let Some((file, _)) = ga_file(&env, &["-t", "-d", "-u", "-w", "3", "-e", "1"]) else {
        return;
    };
    let import = |path: &std::path::Path| {
        env.user(
            &["import", "google-authenticator", path.to_str().unwrap()],
            "",
        )
    };
    // pam_google_authenticator refuses such a file too.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
    import(&file).fails(1, "gives group or others access");
    // Readable by the user, so that the owner is what is refused.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    chown(&file, Some(1), Some(1)).unwrap();
    import(&file).fails(1, "owned by uid 1, expected uid 65534 or uid 0");
    let fifo = env.path("home/fifo");
    Command::new("mkfifo").arg(&fifo).status().unwrap();
    chown(&fifo, Some(65534), Some(65534)).unwrap();
    import(&fifo).fails(1, "is a FIFO, not a regular file");
    assert!(!env.user_file(USER).exists());
}

/// `SECRET` ("12345678901234567890") in hex, as a usersfile holds it.
const HEX_SECRET: &str = "3132333435363738393031323334353637383930";

/// `t` as liboath writes TIME: local time in `tz`, `%Y-%m-%dT%H:%M:%SL`.
fn oath_time(t: u64, tz: &str) -> String {
    let out = Command::new("date")
        .env("TZ", tz)
        .args(["-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SL"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn hotp_hex(counter: u64) -> String {
    let out = Command::new("oathtool")
        .args(["--hotp", "-c", &counter.to_string(), HEX_SECRET])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Writes a root-owned 0600 usersfile, as /etc/users.oath is.
fn users_oath(env: &Env, text: &str) -> String {
    let path = env.path("users.oath");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

#[test]
fn a_pam_oath_totp_line_keeps_its_replay_guard_in_local_time() {
    let Some(env) = Env::new("") else { return };
    // The last code used two steps ago, written in a zone far from UTC.
    let now = now();
    let tz = "Asia/Kolkata";
    let used_at = now - 60;
    let last = oathtool_at(SECRET, used_at);
    let file = users_oath(
        &env,
        &format!(
            "HOTP/T30/6\troot\t-\t{HEX_SECRET}\t0\n\
             HOTP/T30/6\t{USER}\t-\t{HEX_SECRET}\t0\t{last}\t{}\n",
            oath_time(used_at, tz)
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.env("TZ", tz).args([
        "--config",
        env.config.to_str().unwrap(),
        "--user",
        USER,
        "import",
        "oath",
        &file,
        "--json",
    ]);
    let r = run_command(&mut cmd, "");
    r.ok();
    assert_eq!(r.json()["method"], "totp");
    assert!(!r.stderr.contains("note:"), "{r}");
    // That code and older ones are used; the one after it works once.
    env.user(&["verify"], &format!("{last}\n"))
        .fails(3, "already used");
    env.user(
        &["verify"],
        &format!("{}\n", oathtool_at(SECRET, used_at - 30)),
    )
    .fails(3, "");
    env.user(
        &["verify"],
        &format!("{}\n", oathtool_at(SECRET, used_at + 30)),
    )
    .ok();
}

#[test]
fn a_pam_oath_hotp_line_goes_on_after_its_last_used_counter() {
    let Some(env) = Env::new("") else { return };
    let file = users_oath(
        &env,
        &format!(
            "HOTP\t{USER}\t-\t{HEX_SECRET}\t4\t{}\t2024-01-02T03:04:05L\n",
            hotp_hex(4)
        ),
    );
    env.user(&["import", "oath", &file], "").ok();
    env.user(&["verify"], &format!("{}\n", hotp_hex(4)))
        .fails(3, "");
    env.user(&["verify"], &format!("{}\n", hotp_hex(5))).ok();

    // A fresh line (no last OTP): its counter is the first usable one.
    let file = users_oath(&env, &format!("HOTP/E/8 {USER} - {HEX_SECRET} 4\n"));
    env.user(&["import", "oath", &file, "--force"], "").ok();
    let eight = Command::new("oathtool")
        .args(["--hotp", "-d", "8", "-c", "4", HEX_SECRET])
        .output()
        .unwrap();
    let eight = String::from_utf8(eight.stdout).unwrap();
    env.user(&["verify"], &eight).ok();
    let s = env.user(&["status", "--json"], "").json();
    assert_eq!(
        (s["digits"].as_u64(), s["counter"].as_u64()),
        (Some(8), Some(5))
    );
}

#[test]
fn a_usersfile_others_may_write_is_refused() {
    let Some(env) = Env::new("") else { return };
    let file = users_oath(&env, &format!("HOTP {USER} - {HEX_SECRET} 0\n"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o620)).unwrap();
    env.user(&["import", "oath", &file], "")
        .fails(1, "gives group or others access");
    // Readable by others is what pam_oath lives with; only writing matters.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.user(&["import", "oath", &file], "").ok();
    let link = env.path("users.link");
    symlink(&file, &link).unwrap();
    env.user(&["import", "oath", link.to_str().unwrap(), "--force"], "")
        .fails(1, "symbolic link");
}

#[test]
fn a_usersfile_without_the_users_line_is_refused() {
    let Some(env) = Env::new("") else { return };
    let file = users_oath(&env, &format!("HOTP/T30 root - {HEX_SECRET}\n"));
    env.user(&["import", "oath", &file], "")
        .fails(1, &format!("no line for {USER}"));
    assert!(!env.user_file(USER).exists());
}
