//! As root (sshd, login, sudo), files in a user's home are touched only with
//! the user's file-system identity: the user cannot make root read or write
//! anything they could not themselves. Needs root (CI runs as root); skips
//! elsewhere with a message.
//!
//! The test user is uid/gid 65534 (nobody): no account is created.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, chown};
use otpgate_config::{Account, Error, Store, StoreExt, UserFile};
use otpgate_test_support::{is_root, require, totp_record};

const NOBODY: u32 = 65534;

fn nobody(home: &Path) -> Account {
    Account::for_tests("nobody", NOBODY, NOBODY, home.to_str().unwrap(), &[])
}

/// A traversable base with a home owned by nobody inside.
fn setup() -> Option<(tempfile::TempDir, PathBuf)> {
    require(is_root(), "privilege-switch tests need root")?;
    let base = tempfile::tempdir().unwrap();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = base.path().join("home");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    chown(
        &home,
        Some(Uid::from_raw(NOBODY)),
        Some(Gid::from_raw(NOBODY)),
    )
    .unwrap();
    Some((base, home))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn root_writes_a_home_file_as_the_user() {
    let Some((_base, home)) = setup() else { return };
    let f = UserFile::new(home.join(".config/otpgate/user.toml"), &nobody(&home), true).unwrap();
    f.ensure_dir().unwrap();
    f.update(|r| {
        *r = Some(totp_record());
        Ok(())
    })
    .unwrap();
    for p in [
        home.join(".config"),
        home.join(".config/otpgate"),
        home.join(".config/otpgate/user.toml"),
        home.join(".config/otpgate/user.toml.lock"),
    ] {
        let m = fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY), "{}", p.display());
    }
    assert_eq!(f.read().unwrap(), Some(totp_record()));
    // Root's own identity is back afterwards: root can still create a
    // root-owned file.
    let probe = home.join("probe");
    fs::write(&probe, "x").unwrap();
    assert_eq!(fs::metadata(&probe).unwrap().uid(), 0);
}

#[test]
fn a_home_link_into_a_root_only_directory_reaches_nothing() {
    let Some((base, home)) = setup() else { return };
    // Root's private directory, with a file that looks like a user file.
    let secret_dir = base.path().join("root-only");
    fs::create_dir(&secret_dir).unwrap();
    fs::set_permissions(&secret_dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(secret_dir.join("otpgate")).unwrap();
    fs::write(
        secret_dir.join("otpgate/user.toml"),
        totp_record().to_toml(),
    )
    .unwrap();
    fs::set_permissions(
        secret_dir.join("otpgate/user.toml"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // The user points ~/.config at it.
    symlink(&secret_dir, home.join(".config")).unwrap();
    let before = listing(&secret_dir.join("otpgate"));
    let f = UserFile::new(home.join(".config/otpgate/user.toml"), &nobody(&home), true).unwrap();
    // A symlinked ~/.config is refused outright now (every directory below
    // the home is opened without following one).
    let err = f.read().unwrap_err();
    assert!(matches!(&err, Error::Symlink { .. }), "{err}");
    assert!(
        f.update(|r| {
            *r = Some(totp_record());
            Ok(())
        })
        .is_err()
    );
    assert!(
        f.ensure_dir().is_err(),
        "cannot create inside root's directory"
    );
    assert_eq!(
        listing(&secret_dir.join("otpgate")),
        before,
        "nothing created as root"
    );
}

#[test]
fn a_home_directory_swapped_for_a_link_to_a_root_directory_is_refused() {
    let Some((base, home)) = setup() else { return };
    // A world-readable root directory (like /etc) holding a root file.
    let etc = base.path().join("etc-like");
    fs::create_dir(&etc).unwrap();
    fs::write(etc.join("user.toml"), totp_record().to_toml()).unwrap();
    fs::set_permissions(etc.join("user.toml"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(home.join(".config")).unwrap();
    chown(
        &home.join(".config"),
        Some(Uid::from_raw(NOBODY)),
        Some(Gid::from_raw(NOBODY)),
    )
    .unwrap();
    symlink(&etc, home.join(".config/otpgate")).unwrap();
    let before = listing(&etc);
    let f = UserFile::new(home.join(".config/otpgate/user.toml"), &nobody(&home), true).unwrap();
    assert!(matches!(f.read(), Err(Error::Symlink { .. })));
    assert!(matches!(f.update(|_| Ok(())), Err(Error::Symlink { .. })));
    assert_eq!(listing(&etc), before);

    // Through a link one level higher the directory is root's and the
    // file is root's: with the user's identity it cannot even be opened
    // (or, were it readable, its owner is refused), and no lock or temp
    // file is created there.
    fs::remove_file(home.join(".config/otpgate")).unwrap();
    fs::create_dir(etc.join("otpgate")).unwrap();
    fs::write(etc.join("otpgate/user.toml"), totp_record().to_toml()).unwrap();
    fs::set_permissions(
        etc.join("otpgate/user.toml"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::remove_dir(home.join(".config")).unwrap();
    symlink(&etc, home.join(".config")).unwrap();
    let before = listing(&etc.join("otpgate"));
    let err = f.read().unwrap_err();
    assert!(
        matches!(&err, Error::Symlink { .. })
            || matches!(&err, Error::WrongOwner { owner: 0, .. })
            || matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied),
        "{err}"
    );
    fs::set_permissions(
        etc.join("otpgate/user.toml"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(matches!(
        f.read(),
        Err(Error::Symlink { .. })
            | Err(Error::WrongOwner { owner: 0, .. })
            | Err(Error::BadMode { .. })
    ));
    assert!(f.update(|_| Ok(())).is_err());
    assert_eq!(listing(&etc.join("otpgate")), before);
}

#[test]
fn a_hard_link_to_a_root_file_is_refused_for_its_owner() {
    let Some((base, home)) = setup() else { return };
    // protected_hardlinks usually stops this; where it does not, the owner
    // check must.
    let root_file = base.path().join("root.toml");
    fs::write(&root_file, totp_record().to_toml()).unwrap();
    fs::set_permissions(&root_file, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(home.join("d")).unwrap();
    chown(
        &home.join("d"),
        Some(Uid::from_raw(NOBODY)),
        Some(Gid::from_raw(NOBODY)),
    )
    .unwrap();
    if fs::hard_link(&root_file, home.join("d/user.toml")).is_err() {
        return;
    }
    let f = UserFile::new(home.join("d/user.toml"), &nobody(&home), true).unwrap();
    assert!(f.read().is_err());
}
