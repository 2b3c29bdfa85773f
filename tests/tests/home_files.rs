//! The default `~/.config/otpgate/user.toml`, read and written by a root
//! process with the user's file-system identity, for a user that exists only
//! through nss_wrapper (no real account is touched).
#![forbid(unsafe_code)]

use std::os::unix::fs::MetadataExt;
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
    use std::os::unix::fs::PermissionsExt;
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
