//! `otpgate import google-authenticator` on files written by the real
//! `google-authenticator` CLI (Debian libpam-google-authenticator): after
//! the import, oathtool codes and the old scratch codes work through
//! `otpgate verify`.

mod common;

use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::PathBuf;
use std::process::Command;

use common::*;

/// Runs `google-authenticator ARGS -s FILE` and hands the file to nobody
/// (the import reads it with the user's identity). Returns the file and
/// its lines.
fn ga_file(env: &Env, args: &[&str]) -> Option<(PathBuf, Vec<String>)> {
    if !require(
        have("google-authenticator"),
        "google-authenticator is not installed (Debian libpam-google-authenticator)",
    ) {
        return None;
    }
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
