//! The CLI run as a real unprivileged user (`otpgate-test`), with its file
//! in its home: the default `~/.config/otpgate/user.toml` is created 0600
//! and the user's, root acts on it with `--user`; and the password check
//! before a first enrollment, through pam_wrapper and pam_matrix.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use otpgate_test_support::TEST_USER;

fn owner_and_mode(path: &Path) -> (u32, u32) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.mode() & 0o7777)
}

#[test]
fn a_user_enrolls_into_the_default_file_in_their_home_and_root_manages_it() {
    let Some(env) = HomeEnv::new(None, "enroll_password_check = false\n") else {
        return;
    };
    let home = env.user.home.clone();
    let config_dir = home.join(".config");
    // Leftovers of other tests (the end-to-end suite plants symlinks here).
    if std::fs::symlink_metadata(&config_dir).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&config_dir).unwrap();
    }
    let _ = std::fs::remove_dir_all(config_dir.join("otpgate"));

    let r = env.run_as_user(
        &["enroll", "--secret", SECRET, "--no-confirm", "--json"],
        "",
        &[],
    );
    r.ok();
    let file = home.join(".config/otpgate/user.toml");
    assert_eq!(r.json()["user"], TEST_USER);
    assert_eq!(owner_and_mode(&file), (env.user.uid, 0o600));
    assert_eq!(
        owner_and_mode(&home.join(".config/otpgate")),
        (env.user.uid, 0o700)
    );

    // The user checks a code; root reads the same file with --user.
    env.run_as_user(&["verify"], &format!("{}\n", code(SECRET, 0)), &[])
        .ok();
    // The user's own CLI cannot write root's record of who is enrolled.
    let entry = env.enrolled_dir().join(TEST_USER);
    assert!(!entry.exists(), "written by a process that is not root");
    let s = env.run_as_root(&["status", "--json"], "");
    s.ok();
    let s = s.json();
    assert_eq!(s["enrolled"], true);
    assert_eq!(s["file"], file.display().to_string());
    // Root's first read records the user; its reset forgets them.
    assert_eq!(owner_and_mode(&entry), (0, 0o600));
    assert_eq!(owner_and_mode(&env.enrolled_dir()), (0, 0o711));
    // Root's writes keep the file the user's.
    env.run_as_root(&["unlock"], "").ok();
    assert_eq!(owner_and_mode(&file), (env.user.uid, 0o600));

    // The user may not act on someone else.
    env.run_as_user(&["--user", "root", "status"], "", &[])
        .fails(5, "only root");

    env.run_as_root(&["reset"], "").ok();
    assert!(!file.exists());
    assert!(
        !entry.exists(),
        "reset leaves the user recorded as enrolled"
    );
    env.run_as_user(&["status", "--json"], "", &[]).ok();
    let _ = std::fs::remove_dir_all(config_dir.join("otpgate"));
}

/// A pam_wrapper service dir whose `otpgate` service checks passwords
/// with pam_matrix against `TEST_USER:right-password`.
fn pam_service(env: &HomeEnv) -> Option<Vec<(String, String)>> {
    let module = pam_matrix()?;
    let services = env.path("pam.d");
    std::fs::create_dir(&services).unwrap();
    let passdb = env.path("passdb");
    std::fs::write(&passdb, format!("{TEST_USER}:right-password:otpgate\n")).unwrap();
    std::fs::write(
        services.join("otpgate"),
        format!(
            "auth required {m} passdb={p}\naccount required {m} passdb={p}\n",
            m = module.display(),
            p = passdb.display()
        ),
    )
    .unwrap();
    Some(vec![
        ("LD_PRELOAD".into(), "libpam_wrapper.so".into()),
        ("PAM_WRAPPER".into(), "1".into()),
        (
            "PAM_WRAPPER_SERVICE_DIR".into(),
            services.display().to_string(),
        ),
    ])
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Makes `path` the test user's, with `mode`, as a careful user has it.
fn give_to_user(env: &HomeEnv, path: &Path, mode: u32) {
    std::os::unix::fs::chown(path, Some(env.user.uid), Some(env.user.gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_first_enrollment_needs_the_users_password_through_pam() {
    let dir = unique_name("password");
    let template = format!("%h/{dir}/user.toml");
    let Some(env) = HomeEnv::new(Some(&template), "") else {
        return;
    };
    let Some(pam_env) = pam_service(&env) else {
        return;
    };
    let pam_env = as_refs(&pam_env);
    let file = env.user.home.join(&dir).join("user.toml");
    let enroll = ["enroll", "--secret", SECRET, "--no-confirm", "--json"];

    // Wrong passwords: refused, nothing saved.
    let r = env.run_as_user(&enroll, "wrong\nstill-wrong\nno\n", &pam_env);
    r.fails(3, "password of otpgate-test was not confirmed");
    assert!(r.stderr.contains("Wrong password, try again."), "{r}");
    assert!(r.stdout.is_empty(), "{r}");
    assert!(!file.exists());
    // No answer at all: refused too.
    env.run_as_user(&enroll, "", &pam_env)
        .fails(3, "not confirmed");
    assert!(!file.exists());

    // The right one (after a wrong one) enrolls.
    let r = env.run_as_user(&enroll, "wrong\nright-password\n", &pam_env);
    r.ok();
    assert_eq!(r.json()["user"], TEST_USER);
    assert!(!r.stdout.contains("right-password"), "{r}");
    assert_eq!(owner_and_mode(&file), (env.user.uid, 0o600));

    // Re-enrolling asks for a current code, not the password.
    let r = env.run_as_user(&enroll, &format!("{}\n", code(SECRET, 1)), &pam_env);
    r.ok();

    // Root provisions without a password (no PAM service involved).
    env.run_as_root(&["reset"], "").ok();
    env.run_as_root(&enroll, "").ok();
    assert!(file.exists());
    let _ = std::fs::remove_dir_all(env.user.home.join(&dir));
}

/// Attack (issue #12, item 6): the user wrote a config of their own with
/// `enroll_password_check = false` and passed it with `--config`: the first
/// enrollment skipped the password. A config root does not own is refused
/// for a non-root user; the password is asked as the system config says.
#[test]
fn a_users_own_config_cannot_switch_off_the_password_check() {
    let dir = unique_name("ownconfig");
    let Some(env) = HomeEnv::new(Some(&format!("%h/{dir}/user.toml")), "") else {
        return;
    };
    let Some(pam_env) = pam_service(&env) else {
        return;
    };
    let pam_env = as_refs(&pam_env);
    let own = env.user.home.join(format!("{dir}.toml"));
    std::fs::write(
        &own,
        format!("user_file = \"%h/{dir}/user.toml\"\nenroll_password_check = false\n"),
    )
    .unwrap();
    give_to_user(&env, &own, 0o600);
    let file = env.user.home.join(&dir).join("user.toml");
    let enroll = ["enroll", "--secret", SECRET, "--no-confirm"];
    let r = env.run_as_user_with(&own, &enroll, "", &pam_env);
    r.fails(5, "not owned by root");
    assert!(!file.exists(), "enrolled through the user's own config");
    // Root's config asks for the password.
    env.run_as_user(&enroll, "wrong\nno\nno\n", &pam_env)
        .fails(3, "not confirmed");
    assert!(!file.exists());
    let _ = std::fs::remove_file(&own);
    let _ = std::fs::remove_dir_all(env.user.home.join(&dir));
}

/// An administrator's (root-owned) config may switch the check off.
#[test]
fn the_password_check_can_be_switched_off() {
    let dir = unique_name("nocheck");
    let template = format!("%h/{dir}/user.toml");
    let Some(env) = HomeEnv::new(Some(&template), "enroll_password_check = false\n") else {
        return;
    };
    // No PAM service at all: nothing would answer.
    let r = env.run_as_user(
        &["enroll", "--secret", SECRET, "--no-confirm", "--json"],
        "",
        &[],
    );
    r.ok();
    assert!(!r.stderr.contains("password"), "{r}");
    let _ = std::fs::remove_dir_all(env.user.home.join(&dir));
}

/// Root enrolling a user (`--user`) writes the backup codes and QR files
/// the user's way: a symlinked directory the user planted cannot make root
/// leave files holding their secret in a directory only root may write;
/// a plain path in the home gets a file the user owns.
#[test]
fn root_writing_a_users_files_cannot_be_pointed_into_a_root_directory() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique_name("root-output");
    let Some(env) = HomeEnv::new(Some(&format!("~/{name}/user.toml")), "") else {
        return;
    };
    let work = env.user.home.join(&name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work).unwrap();
    give_to_user(&env, &work, 0o700);
    let root_only = env.dir.path().join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = work.join("out");
    std::os::unix::fs::symlink(&root_only, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(env.user.uid), Some(env.user.gid)).unwrap();

    for flag in ["--backup-codes-file", "--qr-svg"] {
        let target = link.join("secret-file");
        let r = env.run_as_root(
            &[
                "enroll",
                "--secret",
                SECRET,
                "--no-confirm",
                flag,
                target.to_str().unwrap(),
            ],
            "",
        );
        assert_ne!(r.code, 0, "{flag}: {}", r.stderr);
        assert_eq!(
            std::fs::read_dir(&root_only).unwrap().count(),
            0,
            "{flag}: a file was written into the root-only directory"
        );
        assert!(!work.join("user.toml").exists(), "{flag}: enrolled anyway");
    }

    let plain = work.join("codes.txt");
    env.run_as_root(
        &[
            "enroll",
            "--secret",
            SECRET,
            "--no-confirm",
            "--backup-codes-file",
            plain.to_str().unwrap(),
        ],
        "",
    )
    .ok();
    assert_eq!(owner_and_mode(&plain), (env.user.uid, 0o600));
    let _ = std::fs::remove_dir_all(&work);
}
