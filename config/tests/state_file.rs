//! The state file (`user.toml.state`): what a login changes is written in
//! place, a torn or damaged slot falls back or is refused, and files of the
//! previous layout migrate without giving a used code back.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};

use common::*;
use otpgate_config::record::{LockoutPolicy, VerifyPolicy};
use otpgate_config::{Answer, Error, Store, StoreExt, UserFile, Verdict};
use otpgate_test_support::totp_record;

const SLOT: u64 = 4096;
/// Slots in a state file of the current layout (the first had two).
const SLOTS: u64 = 8;
const NO_LOCKOUT: LockoutPolicy = LockoutPolicy {
    after: 0,
    minutes: 15,
};
const POLICY: VerifyPolicy = VerifyPolicy {
    totp_window: 1,
    hotp_lookahead: 10,
};
const NOW: u64 = 1_700_000_000;

fn fail_once(f: &UserFile) {
    f.update(|r| {
        r.as_mut().unwrap().record_failure(NOW, NO_LOCKOUT);
        Ok(())
    })
    .unwrap();
}

fn failures(f: &UserFile) -> u32 {
    f.read().unwrap().unwrap().state.failures
}

/// The generation in slot `i` (bytes 8..16 of the slot).
fn generation(state: &fs::File, i: u64) -> u64 {
    let mut b = [0u8; 8];
    state.read_exact_at(&mut b, i * SLOT + 8).unwrap();
    u64::from_le_bytes(b)
}

fn use_code(f: &UserFile, code: &str) -> Verdict {
    let answer = Answer::parse(code.as_bytes()).unwrap();
    f.update(|r| r.as_mut().unwrap().verify(&answer, NOW, POLICY))
        .unwrap()
}

#[test]
fn a_login_writes_in_place_and_only_an_enrollment_change_renames() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let record_inode = fs::metadata(f.path()).unwrap().ino();
    let state = path_in(dir.path(), "user.toml.state");
    fail_once(&f);
    let state_inode = fs::metadata(&state).unwrap().ino();
    assert_eq!(fs::metadata(&state).unwrap().len(), SLOTS * SLOT);
    for _ in 0..5 {
        fail_once(&f);
    }
    assert_eq!(failures(&f), 6);
    assert_eq!(
        fs::metadata(f.path()).unwrap().ino(),
        record_inode,
        "record untouched"
    );
    assert_eq!(
        fs::metadata(&state).unwrap().ino(),
        state_inode,
        "state written in place"
    );
    // The record file still says 0: the state file holds the truth.
    assert!(
        fs::read_to_string(f.path())
            .unwrap()
            .contains("failures = 0")
    );

    f.update(|r| {
        r.as_mut()
            .unwrap()
            .trust_host("192.0.2.1", "sshd", None, NOW + 60, NOW);
        Ok(())
    })
    .unwrap();
    assert_ne!(
        fs::metadata(f.path()).unwrap().ino(),
        record_inode,
        "record renamed over"
    );
    let text = fs::read_to_string(f.path()).unwrap();
    assert!(
        text.contains("failures = 6"),
        "the rewrite carries the state: {text}"
    );
    assert!(text.starts_with("version = 3\nserial = \""), "{text}");
    assert_eq!(failures(&f), 6);
    fail_once(&f);
    assert_eq!(failures(&f), 7);
}

#[test]
fn an_enrollment_creates_the_state_file_so_the_first_login_writes_in_place() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let state = path_in(dir.path(), "user.toml.state");
    let created = fs::metadata(&state).expect("the enrollment made the state file");
    assert_eq!(created.len(), SLOTS * SLOT);
    let record_inode = fs::metadata(f.path()).unwrap().ino();
    assert_eq!(failures(&f), 0);

    fail_once(&f);
    assert_eq!(failures(&f), 1);
    assert_eq!(
        fs::metadata(&state).unwrap().ino(),
        created.ino(),
        "the first login wrote in place"
    );
    assert_eq!(fs::metadata(f.path()).unwrap().ino(), record_inode);
    let file = fs::File::open(&state).unwrap();
    assert_eq!((generation(&file, 0), generation(&file, 1)), (1, 2));
}

#[test]
fn a_torn_newest_slot_falls_back_to_the_state_before_it() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    for _ in 0..3 {
        fail_once(&f);
    }
    let state = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path_in(dir.path(), "user.toml.state"))
        .unwrap();
    let newest = (0..SLOTS).max_by_key(|&i| generation(&state, i)).unwrap();
    // Half the slot's bytes never reached the disk.
    state.write_all_at(&[0u8; 40], newest * SLOT + 30).unwrap();
    assert_eq!(
        failures(&f),
        2,
        "the login being written when it tore is lost, nothing else"
    );
    // The next write goes over the torn slot and wins again.
    fail_once(&f);
    assert_eq!(failures(&f), 3);
}

#[test]
fn every_slot_damaged_is_refused_and_says_so_and_nothing_is_written() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    fail_once(&f);
    fail_once(&f);
    let path = path_in(dir.path(), "user.toml.state");
    for garbage in [
        vec![0u8; (SLOTS * SLOT) as usize],
        vec![0x5a; (SLOTS * SLOT) as usize],
        vec![0u8; (2 * SLOT) as usize],
    ] {
        fs::write(&path, &garbage).unwrap();
        let err = f.read().unwrap_err();
        assert!(matches!(err, Error::StateDamaged { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("user.toml.state") && message.contains("damaged"),
            "{message}"
        );
        let err = f
            .update(|r| {
                r.as_mut().unwrap().record_success();
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, Error::StateDamaged { .. }), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), garbage, "left as found");
    }
}

#[test]
fn a_state_file_larger_than_its_slots_is_refused() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    fail_once(&f);
    let path = path_in(dir.path(), "user.toml.state");
    let mut bytes = fs::read(&path).unwrap();
    bytes.resize(1 << 20, 0);
    fs::write(&path, bytes).unwrap();
    assert!(matches!(f.read().unwrap_err(), Error::TooLarge { .. }));
}

#[test]
fn a_two_slot_state_file_of_the_first_layout_is_read_and_rewritten_whole_with_eight() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    for _ in 0..3 {
        fail_once(&f);
    }
    let path = path_in(dir.path(), "user.toml.state");
    let bytes = fs::read(&path).unwrap();
    let state = fs::File::open(&path).unwrap();
    let newest = (0..SLOTS).max_by_key(|&i| generation(&state, i)).unwrap() as usize;
    // The first layout: two slots, the newest state in the second.
    let mut old = vec![0u8; 2 * SLOT as usize];
    let at = newest * SLOT as usize;
    old[SLOT as usize..].copy_from_slice(&bytes[at..at + SLOT as usize]);
    fs::write(&path, &old).unwrap();
    let old_inode = fs::metadata(&path).unwrap().ino();
    assert_eq!(failures(&f), 3, "read as it is");

    fail_once(&f);
    let now = fs::metadata(&path).unwrap();
    assert_eq!(now.len(), SLOTS * SLOT, "written whole in the new layout");
    assert_ne!(now.ino(), old_inode, "by rename, not in place");
    assert_eq!(failures(&f), 4);
    fail_once(&f);
    assert_eq!(
        fs::metadata(&path).unwrap().ino(),
        now.ino(),
        "then in place"
    );
    assert_eq!(failures(&f), 5);
}

#[test]
fn writes_go_round_the_ring_and_every_slot_is_used() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    let path = path_in(dir.path(), "user.toml.state");
    for n in 1..=(2 * SLOTS + 3) {
        fail_once(&f);
        assert_eq!(failures(&f), n as u32);
    }
    let state = fs::File::open(&path).unwrap();
    let mut generations: Vec<u64> = (0..SLOTS).map(|i| generation(&state, i)).collect();
    generations.sort_unstable();
    // Enrollment wrote generation 1; 19 logins wrote 2 to 20; the ring
    // holds the last eight.
    assert_eq!(generations, (13..=20).collect::<Vec<u64>>());
}

#[test]
fn a_previous_layout_file_migrates_and_keeps_its_used_codes_used() {
    let dir = private_dir();
    let mut record = totp_record();
    let codes = record.new_backup_codes(4, 8).unwrap();
    record.backup.codes.remove(0); // codes[0] was used under the old layout
    record.state.failures = 2;
    // A version 1 file: the app in [totp], its step in [state].
    let hashes: Vec<String> = record
        .backup
        .codes
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    let text = format!(
        "version = 1\n[totp]\nsecret = \"{}\"\n[backup]\ncodes = [{}]\n\
         [state]\nlast_step = {}\nfailures = 2\n",
        otpgate_test_support::TEST_SECRET_BASE32,
        hashes.join(", "),
        NOW / 30
    );
    fs::write(path_in(dir.path(), "user.toml"), &text).unwrap();
    fs::set_permissions(
        path_in(dir.path(), "user.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let f = home_file(dir.path());
    let read = f.read().unwrap().unwrap();
    assert_eq!(read.backup.codes.len(), 3);
    assert_eq!(read.devices.len(), 1, "one device");
    assert_eq!(read.devices[0].name.as_str(), "app");
    assert_eq!(read.devices[0].last_step, NOW / 30, "its step came along");
    assert_eq!(
        use_code(&f, &codes[0]),
        Verdict::Wrong,
        "used before the move"
    );

    // The first write rewrites the file in the new layout...
    assert!(matches!(use_code(&f, &codes[1]), Verdict::Accepted(_)));
    let migrated = fs::read_to_string(f.path()).unwrap();
    assert!(
        migrated.starts_with("version = 3\nserial = \""),
        "{migrated}"
    );
    assert!(
        migrated.contains("[[device]]\nname = \"app\""),
        "{migrated}"
    );
    assert!(!migrated.contains("\n[totp]"), "{migrated}");
    // ...and the next ones go to the state file.
    let inode = fs::metadata(f.path()).unwrap().ino();
    assert!(matches!(use_code(&f, &codes[2]), Verdict::Accepted(_)));
    assert_eq!(fs::metadata(f.path()).unwrap().ino(), inode);
    for used in &codes[..3] {
        assert_eq!(use_code(&f, used), Verdict::Wrong);
    }
    let after = f.read().unwrap().unwrap();
    assert_eq!(after.backup.codes.len(), 1);
    assert_eq!(after.state.failures, 2, "the count came along");
    assert_eq!(after.devices[0].last_step, NOW / 30, "the step stays used");
}

#[test]
fn a_state_file_left_from_an_earlier_record_does_not_apply_to_a_new_one() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    for _ in 0..4 {
        fail_once(&f);
    }
    // Enrolling again writes a new record (a new serial): the old slots
    // name the old one and are passed over.
    f.update(|r| {
        *r = Some(totp_record());
        Ok(())
    })
    .unwrap();
    assert!(path_in(dir.path(), "user.toml.state").exists());
    assert_eq!(failures(&f), 0);
    fail_once(&f);
    assert_eq!(failures(&f), 1);
}

#[test]
fn removing_the_state_file_goes_back_to_the_state_saved_with_the_record() {
    // What the damage message offers an administrator: documented, so
    // tested.
    let dir = private_dir();
    let f = enrolled(dir.path());
    fail_once(&f);
    fs::remove_file(path_in(dir.path(), "user.toml.state")).unwrap();
    assert_eq!(failures(&f), 0);
    fail_once(&f);
    assert_eq!(failures(&f), 1, "the state file is created again");
}

#[test]
fn a_symlinked_state_file_is_refused_and_its_target_untouched() {
    let dir = private_dir();
    let f = enrolled(dir.path());
    fail_once(&f);
    let target = path_in(dir.path(), "elsewhere");
    fs::write(&target, "precious").unwrap();
    let state = path_in(dir.path(), "user.toml.state");
    fs::remove_file(&state).unwrap();
    std::os::unix::fs::symlink(&target, &state).unwrap();
    assert!(matches!(f.read().unwrap_err(), Error::Symlink { .. }));
    let err = f
        .update(|r| {
            r.as_mut().unwrap().record_success();
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
}

/// One slot of a state file as a build before devices wrote it: the
/// payload of the first layout (last_step, failures, locked_until, the HOTP
/// flag and counter, then the four lists), under the slot header and its
/// SHA-256.
fn first_layout_slot(generation: u64, serial: u64, last_step: u64, failures: u32) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut payload = Vec::new();
    payload.extend_from_slice(&last_step.to_le_bytes());
    payload.extend_from_slice(&failures.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.push(0);
    payload.extend_from_slice(&0u64.to_le_bytes());
    // Backup codes: three, the second used (bits 0 and 2 kept).
    payload.extend_from_slice(&3u16.to_le_bytes());
    payload.push(0b101);
    for _ in 0..3 {
        payload.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut slot = Vec::new();
    slot.extend_from_slice(b"OTPGSTv1");
    slot.extend_from_slice(&generation.to_le_bytes());
    slot.extend_from_slice(&serial.to_le_bytes());
    slot.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    slot.extend_from_slice(&payload);
    let digest = Sha256::digest(&slot);
    slot.extend_from_slice(&digest);
    slot
}

/// A version 2 file with a state file of the layout before devices: the
/// state reads onto device `app` (its step, the failures, the used backup
/// code); the next login writes the new layout in place, and the record
/// stays as it is until its next rewrite.
#[test]
fn a_version_2_file_with_an_old_state_slot_reads_onto_device_app_and_logs_in() {
    let dir = private_dir();
    let mut record = totp_record();
    let codes = record.new_backup_codes(3, 8).unwrap();
    let hashes: Vec<String> = record
        .backup
        .codes
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    let text = format!(
        "version = 2\nserial = \"00000000000000ab\"\n[totp]\nsecret = \"{}\"\n\
         [backup]\ncodes = [{}]\n[state]\nlast_step = 5\n",
        otpgate_test_support::TEST_SECRET_BASE32,
        hashes.join(", "),
    );
    let user = path_in(dir.path(), "user.toml");
    fs::write(&user, &text).unwrap();
    let mut state = vec![0u8; (SLOTS * SLOT) as usize];
    let slot = first_layout_slot(3, 0xab, NOW / 30, 4);
    state[..slot.len()].copy_from_slice(&slot);
    let state_path = path_in(dir.path(), "user.toml.state");
    fs::write(&state_path, &state).unwrap();
    for p in [&user, &state_path] {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let f = home_file(dir.path());
    let read = f.read().unwrap().unwrap();
    assert_eq!(read.devices[0].name.as_str(), "app");
    assert_eq!(read.devices[0].last_step, NOW / 30, "the slot's step");
    assert_eq!(read.state.failures, 4);
    assert_eq!(read.backup.codes.len(), 2);

    // The used step and backup code stay used; a login writes in place.
    let inode = fs::metadata(&user).unwrap().ino();
    let now_code = String::from_utf8(otpgate_test_support::code_at(NOW)).unwrap();
    assert!(matches!(use_code(&f, &now_code), Verdict::Replayed { .. }));
    assert_eq!(use_code(&f, &codes[1]), Verdict::Wrong);
    assert!(matches!(use_code(&f, &codes[0]), Verdict::Accepted(_)));
    assert_eq!(fs::metadata(&user).unwrap().ino(), inode, "in place");
    assert_eq!(
        fs::read_to_string(&user).unwrap(),
        text,
        "the record as it was"
    );
    // The newest slot is of the devices layout (layout byte 2 at 20).
    let bytes = fs::read(&state_path).unwrap();
    let file = fs::File::open(&state_path).unwrap();
    let newest = (0..SLOTS).max_by_key(|&i| generation(&file, i)).unwrap() as usize;
    assert_eq!(bytes[newest * SLOT as usize + 28 + 20], 2);
    let after = f.read().unwrap().unwrap();
    assert_eq!(after.devices[0].last_step, NOW / 30);
    assert_eq!(after.backup.codes.len(), 1);
}
