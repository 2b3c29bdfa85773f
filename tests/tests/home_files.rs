//! The default `~/.config/otpgate/user.toml`, read and written by a root
//! process with the user's file-system identity, for a user that exists only
//! through nss_wrapper (no real account is touched).
#![forbid(unsafe_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use otpgate_config::otp::Algorithm;
use otpgate_tests::*;

const UID: u32 = 4242;

/// A harness with fake user `otpuser` (member of `wheel2fa`, gid 4343) and
/// the default `user_file`; returns the user's file path.
fn setup(config: &str, args: &str) -> Option<(Harness, FakeUser, PathBuf)> {
    let mut h = Harness::new("")?;
    let user = h.fake_user("otpuser", UID, &[("wheel2fa", 4343)])?;
    h.write_config_raw(config);
    h.otp_service(args);
    let file = user.home.join(".config/otpgate/user.toml");
    Some((h, user, file))
}

/// Creates `~/.config/otpgate` (0700, the user's).
fn make_dirs(user: &FakeUser) -> PathBuf {
    let mut dir = user.home.clone();
    for part in [".config", "otpgate"] {
        dir = dir.join(part);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.uid)).expect("chown");
    }
    dir
}

/// Enrolls the user: a TOTP file owned by them, mode 0600.
fn enroll(user: &FakeUser, file: &Path) -> String {
    make_dirs(user);
    let secret = new_secret();
    write_private(
        file,
        totp_record_with(&secret, Algorithm::SHA1, 6)
            .to_toml()
            .as_bytes(),
    );
    std::os::unix::fs::chown(file, Some(user.uid), Some(user.uid)).expect("chown");
    secret
}

#[test]
fn a_user_file_in_the_home_is_read_and_updated_with_the_users_identity() {
    let (h, user, file) = need!(setup("", ""));
    let secret = enroll(&user, &file);
    let run = h
        .login()
        .user("otpuser")
        .answer(totp_at(&secret, now()))
        .run();
    run.assert("PAM_SUCCESS");
    assert!(h.log().iter().any(|l| l.contains("user=otpuser")));
    // Rewritten (the step is remembered) by the user, not by root.
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(!text.contains("last_step = 0"), "{text}");
    let dir = file.parent().expect("dir");
    for entry in std::fs::read_dir(dir).expect("ls") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("stat");
        assert_eq!(
            meta.uid(),
            UID,
            "{:?} owned by {}",
            entry.path(),
            meta.uid()
        );
    }
}

#[test]
fn a_home_user_file_linked_to_a_root_file_is_refused() {
    let (h, user, file) = need!(setup("", ""));
    let dir = make_dirs(&user);
    let target = h.path("root-secret.toml");
    let secret = new_secret();
    write_private(
        &target,
        totp_record_with(&secret, Algorithm::SHA1, 6)
            .to_toml()
            .as_bytes(),
    );
    std::os::unix::fs::symlink(&target, &file).expect("symlink");
    let before = std::fs::read(&target).expect("read");
    let run = h
        .login()
        .user("otpuser")
        .answer(totp_at(&secret, now()))
        .run();
    assert_ne!(run.result, "PAM_SUCCESS");
    assert!(run.prompts().is_empty());
    assert!(
        h.log().iter().any(|l| l.contains("symbolic link")),
        "logged"
    );
    assert_eq!(std::fs::read(&target).expect("read"), before);
    assert!(!dir.join("user.toml.lock").exists() || dir.join("user.toml.lock").is_file());
}

#[test]
fn a_home_user_file_owned_by_root_is_refused() {
    let (h, user, file) = need!(setup("", ""));
    let secret = enroll(&user, &file);
    std::os::unix::fs::chown(&file, Some(0), Some(0)).expect("chown");
    let run = h
        .login()
        .user("otpuser")
        .answer(totp_at(&secret, now()))
        .run();
    assert_ne!(run.result, "PAM_SUCCESS");
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains("outcome=error") && l.contains("user.toml")),
        "{log:?}"
    );
}

#[test]
fn a_group_from_nss_requires_enrollment_and_an_exempt_group_skips_it() {
    let (h, _user, _file) = need!(setup("[policy]\nrequire_groups = [\"wheel2fa\"]", ""));
    let run = h.login().user("otpuser").run();
    run.assert("PAM_AUTH_ERR");
    assert_eq!(
        run.messages(),
        ["2FA is required for this account: run `otpgate enroll`"]
    );
    h.write_config_raw("[policy]\nrequire = \"all\"\nexempt_groups = [\"wheel2fa\"]");
    let run = h.login().user("otpuser").run();
    run.assert("PAM_SUCCESS");
    assert!(h.log().iter().any(|l| l.contains("method=exempt")));
}

#[test]
fn an_unknown_user_is_pam_user_unknown() {
    let (h, _user, _file) = need!(setup("", ""));
    h.login()
        .user("no-such-user-otpgate")
        .run()
        .assert("PAM_USER_UNKNOWN");
    let log = h.log();
    assert!(log.iter().any(|l| l.contains("unknown user")), "{log:?}");
}

/// Whoever can write `~` or `~/.config` can swap `~/.config/otpgate` for a
/// directory holding a file with a secret of their choosing: such a file is
/// never read (before, only `~/.config/otpgate` itself was checked).
#[test]
fn a_home_or_config_directory_others_can_write_is_refused() {
    let (h, user, file) = need!(setup("", ""));
    let secret = enroll(&user, &file);
    for dir in [user.home.clone(), user.home.join(".config")] {
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o020))
            .expect("chmod g+w");
        let run = h
            .login()
            .user("otpuser")
            .answer(totp_at(&secret, now()))
            .run();
        assert_ne!(run.result, "PAM_SUCCESS", "{}", dir.display());
        assert!(run.prompts().is_empty(), "{:?}", run.prompts());
        let log = h.log();
        let shown = format!("{}: mode", dir.display());
        assert!(
            log.iter()
                .any(|l| l.contains("outcome=error") && l.contains(&shown)),
            "{log:?}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode & !0o022))
            .expect("chmod back");
    }
    // Put right, the same code's successor logs in.
    h.login()
        .user("otpuser")
        .answer(totp_at(&secret, now() + 30))
        .run()
        .assert("PAM_SUCCESS");
}

/// A symlinked `~/.config` is not followed: it could lead into a directory
/// the user does not control.
#[test]
fn a_symlinked_config_directory_under_the_home_is_refused() {
    let (h, user, file) = need!(setup("", ""));
    let secret = enroll(&user, &file);
    let real = user.home.join("dotfiles");
    std::fs::rename(user.home.join(".config"), &real).expect("move .config");
    std::os::unix::fs::symlink(&real, user.home.join(".config")).expect("symlink");
    let run = h
        .login()
        .user("otpuser")
        .answer(totp_at(&secret, now()))
        .run();
    assert_ne!(run.result, "PAM_SUCCESS");
    assert!(
        h.log()
            .iter()
            .any(|l| l.contains(".config: is a symbolic link")),
        "{:?}",
        h.log()
    );
}

// --- Root's record of who is enrolled (issue #12, item 1) -----------------

/// The service the hostile review used: a password module that succeeds
/// (the password was right) and ours. Not enrolled → PAM_IGNORE → the
/// password alone logs in; that must never happen to an enrolled user.
fn password_then_code(h: &Harness) -> &'static str {
    h.service(
        "password-then-code",
        &[
            "auth required pam_permit.so".into(),
            h.module_line("required", ""),
        ],
    );
    "password-then-code"
}

/// Runs the driver in a mount namespace of its own where `home` is an
/// empty directory (an ecryptfs / systemd-homed / pam_mount / autofs home
/// before it is mounted). Nothing is left mounted: the namespace goes with
/// the process.
fn with_empty_home(h: &Harness, user: &FakeUser) -> Option<Vec<String>> {
    need_unshare()?;
    let empty = h.path("empty-home");
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::os::unix::fs::chown(&empty, Some(user.uid), Some(user.uid)).expect("chown");
    let script = r#"mount --bind "$0" "$1" && shift && exec "$@""#;
    Some(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            &empty.display().to_string(),
            &user.home.display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
    )
}

fn need_unshare() -> Option<()> {
    require_tool("unshare", "util-linux")?;
    require_tool("mount", "mount")
}

/// An enrolled fake user who logged in once with a code through
/// [`password_then_code`], as root: that is when root records the user.
struct Seen {
    h: Harness,
    user: FakeUser,
    file: PathBuf,
    secret: String,
}

fn enrolled_and_seen() -> Option<Seen> {
    let (h, user, file) = setup("", "")?;
    let secret = enroll(&user, &file);
    login(&h, None)
        .answer(totp_at(&secret, now()))
        .run()
        .assert("PAM_SUCCESS");
    assert!(
        h.enrolled_dir().join("otpuser").is_file(),
        "a login as root records the user in {}",
        h.enrolled_dir().display()
    );
    Some(Seen {
        h,
        user,
        file,
        secret,
    })
}

/// A login of the fake user through [`password_then_code`], under
/// `wrapper` when given.
fn login<'h>(h: &'h Harness, wrapper: Option<&[String]>) -> otpgate_tests::Login<'h> {
    let service = password_then_code(h);
    let login = h.login().service(service).user("otpuser");
    match wrapper {
        Some(w) => login.inside(w),
        None => login,
    }
}

#[track_caller]
fn assert_not_enrolled(h: &Harness) {
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("reason=\"not enrolled\"")),
        "{log:?}"
    );
}

#[track_caller]
fn assert_unavailable(h: &Harness, run: &Run) {
    run.assert("PAM_AUTH_ERR");
    assert!(run.prompts().is_empty(), "{:?}", run.prompts());
    assert!(
        run.messages()
            .contains(&"Your 2FA settings are unavailable; ask your administrator."),
        "{run:#?}"
    );
    let log = h.log();
    assert!(
        log.iter().any(|l| l.contains("outcome=deny")
            && l.contains("reason=\"settings unavailable: otpuser is enrolled")),
        "{log:?}"
    );
}

#[test]
fn an_enrolled_user_whose_home_is_an_empty_mount_is_denied_not_ignored() {
    let Seen {
        h, user, secret, ..
    } = need!(enrolled_and_seen());
    let wrapper = need!(with_empty_home(&h, &user));
    // Before: "not enrolled", PAM_IGNORE, and the password alone got in.
    let run = login(&h, Some(&wrapper)).run();
    assert_unavailable(&h, &run);
    // With the home back, the next code logs in.
    login(&h, None)
        .answer(totp_at(&secret, now() + 30))
        .run()
        .assert("PAM_SUCCESS");
}

#[test]
fn an_enrolled_user_whose_config_directory_was_moved_away_is_denied() {
    let Seen { h, user, file, .. } = need!(enrolled_and_seen());
    std::fs::rename(user.home.join(".config"), user.home.join("config.away")).expect("mv");
    let run = login(&h, None).run();
    assert_unavailable(&h, &run);
    // The same with only the file gone (`rm ~/.config/otpgate/user.toml`).
    std::fs::rename(user.home.join("config.away"), user.home.join(".config")).expect("mv");
    std::fs::remove_file(&file).expect("rm");
    let run = login(&h, None).run();
    assert_unavailable(&h, &run);
}

#[test]
fn a_never_enrolled_user_is_still_ignored_with_or_without_a_home() {
    let (h, user, _file) = need!(setup("", ""));
    let run = login(&h, None).run();
    run.assert("PAM_SUCCESS");
    assert_not_enrolled(&h);
    let wrapper = need!(with_empty_home(&h, &user));
    let run = login(&h, Some(&wrapper)).run();
    run.assert("PAM_SUCCESS");
    assert_not_enrolled(&h);
    assert!(!h.enrolled_dir().join("otpuser").exists());
}

/// A config the CLI reads as the fake user (root's, 0644) with this
/// harness's registry.
fn cli_config(h: &Harness) -> PathBuf {
    let path = h.path("cli.toml");
    std::fs::write(
        &path,
        format!("enrolled_dir = \"{}\"\n", h.enrolled_dir().display()),
    )
    .expect("write cli config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

/// `otpgate --config CLI ARGS`, as `as_user` (or root), seeing the fake
/// users, under `wrapper` when given.
fn cli(h: &Harness, as_user: Option<&FakeUser>, wrapper: &[String], args: &[&str], stdin: &str) {
    let config = cli_config(h);
    let mut cmd = command_inside(wrapper, &otpgate_tests::sshd::otpgate_cli());
    cmd.arg("--config").arg(&config).args(args);
    cmd.envs(h.driver_env().iter().map(|(k, v)| (k, v)));
    if let Some(user) = as_user {
        use std::os::unix::process::CommandExt;
        cmd.uid(user.uid).gid(user.uid).env("HOME", &user.home);
    }
    let out = output_with_stdin(&mut cmd, stdin);
    assert!(
        out.status.success(),
        "otpgate {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_user_who_disabled_otpgate_is_ignored_even_with_the_home_gone() {
    let Seen {
        h,
        user,
        file,
        secret,
    } = need!(enrolled_and_seen());
    // `otpgate disable` as the user: it cannot touch root's record, so it
    // leaves `user.toml.disabled` for the next login as root.
    let code = format!("{}\n", totp_at(&secret, now() + 30));
    cli(&h, Some(&user), &[], &["disable"], &code);
    assert!(!file.exists());
    assert!(file.with_extension("toml.disabled").is_file());
    let run = login(&h, None).run();
    run.assert("PAM_SUCCESS");
    assert_not_enrolled(&h);
    assert!(
        !h.enrolled_dir().join("otpuser").exists(),
        "the login as root took the user off the registry"
    );
    let wrapper = need!(with_empty_home(&h, &user));
    login(&h, Some(&wrapper)).run().assert("PAM_SUCCESS");
}

#[test]
fn root_resetting_a_user_whose_home_is_gone_lets_them_in_as_not_enrolled() {
    let Seen { h, user, file, .. } = need!(enrolled_and_seen());
    let wrapper = need!(with_empty_home(&h, &user));
    let run = login(&h, Some(&wrapper)).run();
    assert_unavailable(&h, &run);
    cli(&h, None, &wrapper, &["--user", "otpuser", "reset"], "");
    assert!(!h.enrolled_dir().join("otpuser").exists());
    let run = login(&h, Some(&wrapper)).run();
    run.assert("PAM_SUCCESS");
    assert_not_enrolled(&h);
    // The file in the real home was left alone (it could not be reached).
    assert!(file.is_file());
}
