//! The user-file store as a login sees it: what it refuses, what it writes,
//! and that concurrent updates lose nothing.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use otpgate_config::record::{LockoutPolicy, VerifyPolicy};
use otpgate_config::{Answer, Error, Store, StoreExt, UserFile, Verdict};
use otpgate_test_support::{is_root, totp_record};

const NO_LOCKOUT: LockoutPolicy = LockoutPolicy {
    after: 0,
    minutes: 15,
};

#[test]
fn a_new_file_is_private_to_its_owner_and_reads_back() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let meta = fs::metadata(f.path()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), me().uid);
    assert_eq!(f.read().unwrap(), Some(totp_record()));
}

#[test]
fn a_missing_file_or_directory_reads_as_not_enrolled_and_the_first_write_creates_it() {
    let dir = private_dir();
    assert_eq!(home_file(dir.path()).read().unwrap(), None);
    let gone = UserFile::new(dir.path().join("no/such/user.toml"), &me(), true).unwrap();
    assert_eq!(gone.read().unwrap(), None);
    // A change that leaves no record creates nothing.
    gone.update(|_| Ok(())).unwrap();
    assert!(!dir.path().join("no").exists());
    // Creating a record creates the directory, private to its owner.
    gone.update(|r| {
        *r = Some(totp_record());
        Ok(())
    })
    .unwrap();
    let mode = fs::metadata(dir.path().join("no/such")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(gone.read().unwrap().is_some());
}

#[test]
fn a_symlinked_file_is_refused_and_its_target_untouched() {
    let dir = private_dir();
    let target = dir.path().join("elsewhere.toml");
    fs::write(&target, totp_record().to_toml()).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&target, dir.path().join("user.toml")).unwrap();
    let f = home_file(dir.path());
    assert!(matches!(f.read(), Err(Error::Symlink { .. })));
    let before = fs::read(&target).unwrap();
    let result = f.update(|r| {
        if let Some(r) = r {
            r.state.failures = 9;
        }
        Ok(())
    });
    assert!(matches!(result, Err(Error::Symlink { .. })));
    assert_eq!(fs::read(&target).unwrap(), before);
}

#[test]
fn a_symlinked_directory_is_refused() {
    let dir = private_dir();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    symlink(&real, dir.path().join("link")).unwrap();
    let f = UserFile::new(dir.path().join("link/user.toml"), &me(), true).unwrap();
    assert!(matches!(f.read(), Err(Error::Symlink { .. })));
}

#[test]
fn group_or_world_access_is_refused() {
    for mode in [0o640, 0o604, 0o660, 0o644, 0o606] {
        let dir = private_dir();
        let f = enrolled(dir.path());
        fs::set_permissions(f.path(), fs::Permissions::from_mode(mode)).unwrap();
        match f.read() {
            Err(Error::BadMode { mode: m, .. }) => assert_eq!(m & 0o777, mode),
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
}

#[test]
fn a_directory_others_can_write_is_refused() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o770)).unwrap();
    assert!(matches!(f.read(), Err(Error::BadMode { .. })));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(f.read().unwrap().is_some(), "readable by others is fine");
}

#[test]
fn a_file_of_another_owner_is_refused() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    if is_root() {
        // Root can make the file someone else's: the user (root here)
        // must then not trust it.
        nix::unistd::chown(f.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        match f.read() {
            Err(Error::WrongOwner {
                owner, expected, ..
            }) => {
                assert_eq!(owner, 65534);
                assert_eq!(expected, vec![0]);
            }
            other => panic!("{other:?}"),
        }
    } else {
        // Without root no file can be given away; the same check on the
        // directory (ours, while another user's file is expected) fires.
        let other = otpgate_config::Account::for_tests("other", me().uid + 4242, 4242, "/x", &[]);
        let as_other = UserFile::new(f.path().to_path_buf(), &other, true).unwrap();
        assert!(matches!(as_other.read(), Err(Error::WrongOwner { .. })));
    }
}

#[test]
fn central_storage_needs_a_root_directory() {
    let dir = private_dir();
    let central = UserFile::new(dir.path().join("alice.toml"), &me(), false).unwrap();
    let result = central.read();
    if is_root() {
        assert_eq!(result.unwrap(), None);
    } else {
        let err = result.unwrap_err();
        assert!(err.to_string().contains("expected uid 0"), "{err}");
    }
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = private_dir();
    nix::unistd::mkfifo(
        &dir.path().join("user.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let f = home_file(dir.path());
    match f.read() {
        Err(Error::NotRegular { kind, .. }) => assert_eq!(kind, "FIFO"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_directory_in_place_of_the_file_is_refused() {
    let dir = private_dir();
    fs::create_dir(dir.path().join("user.toml")).unwrap();
    assert!(matches!(
        home_file(dir.path()).read(),
        Err(Error::NotRegular { .. })
    ));
}

#[test]
fn a_one_megabyte_file_is_refused() {
    let dir = private_dir();
    let path = dir.path().join("user.toml");
    let mut text = totp_record().to_toml();
    text.push_str(&format!("# {}\n", "x".repeat(1 << 20)));
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    match home_file(dir.path()).read() {
        Err(Error::TooLarge { size, limit, .. }) => {
            assert!(size > limit);
            assert_eq!(limit, 64 * 1024);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_is_refused_with_its_position_and_left_alone() {
    let dir = private_dir();
    let path = dir.path().join("user.toml");
    let garbage = "version = 1\n[totp\nsecret = \"JBSWY3DPEHPK3PXP\"\n";
    fs::write(&path, garbage).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let f = home_file(dir.path());
    let err = f.read().unwrap_err();
    assert!(err.to_string().contains("user.toml:2:"), "{err}");
    // An update refuses too and keeps the file as it was.
    assert!(f.update(|_| Ok(())).is_err());
    assert_eq!(fs::read_to_string(&path).unwrap(), garbage);

    fs::write(&path, b"\xff\xfe binary").unwrap();
    assert!(f.read().unwrap_err().to_string().contains("UTF-8"));
}

#[test]
fn nothing_is_written_when_unchanged_or_when_the_change_fails() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let inode = fs::metadata(f.path()).unwrap().ino();
    f.update(|_| Ok(())).unwrap();
    assert_eq!(fs::metadata(f.path()).unwrap().ino(), inode, "rewritten");
    let failed: Result<(), Error> = f.update(|r| {
        r.as_mut().unwrap().state.failures = 5;
        Err(Error::Clock {
            message: "test".into(),
        })
    });
    assert!(failed.is_err());
    assert_eq!(f.read().unwrap().unwrap().state.failures, 0);
    assert_eq!(fs::metadata(f.path()).unwrap().ino(), inode);
}

#[test]
fn a_change_replaces_the_file_atomically_and_removal_deletes_it() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let inode = fs::metadata(f.path()).unwrap().ino();
    f.update(|r| r.as_mut().unwrap().new_backup_codes(5, 8).map(|_| ()))
        .unwrap();
    assert_ne!(fs::metadata(f.path()).unwrap().ino(), inode, "renamed over");
    assert_eq!(f.read().unwrap().unwrap().backup.codes.len(), 5);
    f.update(|r| {
        r.as_mut().unwrap().state.failures = 3;
        Ok(())
    })
    .unwrap();
    f.update(|r| {
        *r = None;
        Ok(())
    })
    .unwrap();
    assert!(!f.path().exists());
    assert!(
        !path_in(dir.path(), "user.toml.state").exists(),
        "state removed with the record"
    );
    assert_eq!(f.read().unwrap(), None);
}

#[test]
fn stale_temp_files_from_a_crash_are_cleaned_up_by_the_next_rewrite() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let stale = dir.path().join(".user.toml.tmp-99999-deadbeef");
    fs::write(&stale, "half a fi").unwrap();
    // A login's in-place write makes no temp file and lists nothing.
    f.update(|r| {
        r.as_mut().unwrap().state.failures = 1;
        Ok(())
    })
    .unwrap();
    assert!(stale.exists());
    f.update(|r| {
        r.as_mut()
            .unwrap()
            .trust_host("192.0.2.1", "sshd", None, 1_700_000_060, 1_700_000_000);
        Ok(())
    })
    .unwrap();
    assert!(!stale.exists());
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        vec!["user.toml", "user.toml.lock", "user.toml.state"]
    );
}

#[test]
fn a_symlinked_lock_file_is_refused() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let victim = dir.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    fs::remove_file(dir.path().join("user.toml.lock")).unwrap();
    symlink(&victim, dir.path().join("user.toml.lock")).unwrap();
    assert!(matches!(f.update(|_| Ok(())), Err(Error::Symlink { .. })));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
}

#[test]
fn hundred_threads_updating_one_file_lose_no_update() {
    let dir = private_dir();
    let f = Arc::new(enrolled(dir.path()));
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    // A reader that parses the file continuously: it must never see a torn
    // or half-written file.
    let reader = {
        let (f, done, reads) = (f.clone(), done.clone(), reads.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let r = f.read().expect("file parses during updates");
                assert!(r.is_some());
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let writers: Vec<_> = (0..100)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    f.update(|r| {
                        r.as_mut().unwrap().record_failure(0, NO_LOCKOUT);
                        Ok(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(f.read().unwrap().unwrap().state.failures, 500);
    assert!(reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_backup_code_raced_by_hundred_threads_works_exactly_once() {
    let dir = private_dir();
    let f = home_file(dir.path());
    let mut record = totp_record();
    let codes = record.new_backup_codes(10, 8).unwrap();
    let code = codes[0].to_string();
    f.update(|r| {
        *r = Some(record.clone());
        Ok(())
    })
    .unwrap();
    let f = Arc::new(f);
    let policy = VerifyPolicy {
        totp_window: 1,
        hotp_lookahead: 10,
    };
    let barrier = Arc::new(std::sync::Barrier::new(100));
    let accepted: usize = (0..100)
        .map(|_| {
            let (f, code, barrier) = (f.clone(), code.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let answer = Answer::parse(code.as_bytes()).unwrap();
                f.update(|r| r.as_mut().unwrap().verify(&answer, 1_700_000_000, policy))
                    .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|v| matches!(v, Verdict::Accepted(_)))
        .count();
    assert_eq!(accepted, 1);
    assert_eq!(f.read().unwrap().unwrap().backup.codes.len(), 9);
}

#[test]
fn a_file_changed_between_read_and_update_is_read_again() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    assert_eq!(f.read().unwrap().unwrap().state.failures, 0);
    // Another login replaces the file (a new inode, as every update does).
    let other = home_file(dir.path());
    other
        .update(|r| {
            r.as_mut().unwrap().state.failures = 7;
            Ok(())
        })
        .unwrap();
    let seen = f
        .update(|r| Ok(r.as_ref().unwrap().state.failures))
        .unwrap();
    assert_eq!(seen, 7, "a stale parse was reused");
    // An edit in place (same inode) is noticed too.
    let mut record = f.read().unwrap().unwrap();
    record.state.failures = 12345;
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(f.path())
        .unwrap();
    fs::write(f.path(), record.to_toml()).unwrap();
    assert_eq!(f.read().unwrap().unwrap().state.failures, 12345);
}

/// Issue #12, item 6: a change that would write more than a read accepts
/// is refused before anything is written, so the user is not locked out by
/// a file the next login cannot read.
#[test]
fn a_record_too_large_to_read_back_is_never_written() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let before = fs::read(f.path()).unwrap();
    let mut big = totp_record();
    big.new_backup_codes(2000, 8).unwrap();
    assert!(big.to_toml().len() as u64 > otpgate_config::store::MAX_USER_FILE_BYTES);
    let err = f
        .update(|r| {
            *r = Some(big.clone());
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(fs::read(f.path()).unwrap(), before, "the file is unchanged");
    assert_eq!(f.read().unwrap(), Some(totp_record()));
    let temps = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(temps, 0, "no temp file left");
}
