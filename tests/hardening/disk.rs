//! A full disk, a read-only mount and a disk that fails the flush: a login
//! whose backup-code use or TOTP step cannot be written (or made durable)
//! is denied (no replay window), and the log says why; a write that never
//! happened leaves the file untouched. Needs root (mount); SKIP otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use otpgate_config::otp::Algorithm;
use otpgate_tests::*;

use crate::{figure, keep_log, secret};

/// A mount that is undone when dropped (lazily, so a failing test cannot
/// leave it busy).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], at: &Path) -> Option<Mount> {
    std::fs::create_dir_all(at).expect("mkdir mount point");
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .expect("run mount");
    require(
        out.status.success(),
        &format!(
            "mount {args:?} failed (needs root with CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    )?;
    Some(Mount(at.to_path_buf()))
}

/// Everything in `dir`: names and bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Root enrolled in `dir` (central storage): the secret and 10 codes.
fn enroll_in(h: &Harness, dir: &Path, config: &str) -> (String, Vec<String>) {
    h.write_config_raw(&format!(
        "user_file = \"{}/%u.toml\"\nmax_attempts = 1\n{config}\n",
        dir.display()
    ));
    h.otp_service("");
    let s = new_secret();
    let mut record = totp_record_with(&s, Algorithm::SHA1, 6);
    let codes: Vec<String> = record
        .new_backup_codes(10, 8)
        .expect("codes")
        .iter()
        .map(|c| c.to_string())
        .collect();
    write_private(&dir.join("root.toml"), record.to_toml().as_bytes());
    secret(&s);
    codes.iter().for_each(secret);
    (s, codes)
}

/// `code` logs in once, and is refused the second time.
fn works_once(h: &Harness, code: &str) {
    h.login().answer(code).run().assert("PAM_SUCCESS");
    h.login().answer(code).run().assert("PAM_AUTH_ERR");
}

/// `run` (the `what` answer) was denied as a login whose change cannot be
/// recorded: PAM_SYSTEM_ERR, the user told, and a log line saying `why`.
fn denied_for(h: &Harness, run: &Run, what: &str, why: &str) {
    run.assert("PAM_SYSTEM_ERR");
    assert!(
        run.messages()
            .iter()
            .any(|m| m.contains("Cannot update your 2FA settings")),
        "{what}: {run:#?}"
    );
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains("outcome=error") && l.contains(why)),
        "{what}: no log line saying `{why}`: {log:#?}"
    );
}

/// Tries a backup code, a TOTP code and a wrong code where nothing can be
/// written: each must be denied with `why` in the log and leave `dir` as
/// it was. Returns the TOTP code (still unused).
fn denied_while_unwritable(h: &Harness, dir: &Path, s: &str, backup: &str, why: &str) -> String {
    avoid_step_edge();
    let totp = totp_at(s, now());
    secret(&totp);
    let before = snapshot(dir);
    h.log();
    for (what, answer) in [
        ("backup", backup),
        ("totp", totp.as_str()),
        ("wrong", "000000"),
    ] {
        let run = h.login().rhost("192.0.2.60").answer(answer).run();
        denied_for(h, &run, what, why);
        assert_eq!(snapshot(dir), before, "{what}: the directory changed");
    }
    totp
}

/// Writes 4 KiB blocks to `filler` until the file system is full; the bytes
/// written.
fn fill(filler: &mut std::fs::File) -> usize {
    let chunk = vec![0u8; 4096];
    let mut filled = 0usize;
    while filler.write_all(&chunk).is_ok() {
        filled += chunk.len();
    }
    let _ = filler.sync_all();
    filled
}

pub fn a_full_disk_denies_logins_that_cannot_be_recorded() {
    let h = need!(Harness::new(""));
    let mnt = h.path("full");
    let _m = need!(mount(
        &["-t", "tmpfs", "-o", "size=256k,mode=0700", "otpgate-full"],
        &mnt
    ));
    let (s, codes) = enroll_in(&h, &mnt, "");
    // The record was written without a state file (as an older otpgate
    // left it), so a login must write a new record and create the state
    // file. The lock file, which a first update would create, is made here
    // so that the denied attempts change nothing at all; then the disk fills.
    write_private(&mnt.join("root.toml.lock"), b"");
    let mut filler = std::fs::File::create(mnt.join("filler")).expect("filler");
    let filled = fill(&mut filler);
    let totp = denied_while_unwritable(&h, &mnt, &s, &codes[0], "No space left on device");
    // Room again: the very same codes work, once (they were never used).
    drop(filler);
    std::fs::remove_file(mnt.join("filler")).expect("rm filler");
    for code in [codes[0].as_str(), totp.as_str()] {
        works_once(&h, code);
    }
    // Full again, now with the state file there: a login writes into the
    // blocks it already has, so it is recorded and succeeds, once.
    let mut filler = std::fs::File::create(mnt.join("filler")).expect("filler");
    fill(&mut filler);
    works_once(&h, &codes[1]);
    drop(filler);
    std::fs::remove_file(mnt.join("filler")).expect("rm filler");
    let path = mnt.join("root.toml");
    let record = record_at(&path, "root").expect("reads").expect("enrolled");
    assert_eq!(record.backup.codes.len(), 8);

    // No inode left: not even a temp file can be created.
    let inodes = h.path("noinodes");
    let _n = need!(mount(
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=1m,nr_inodes=8,mode=0700",
            "otpgate-inodes"
        ],
        &inodes
    ));
    let (s2, codes2) = enroll_in(&h, &inodes, "");
    write_private(&inodes.join("root.toml.lock"), b"");
    let mut n = 0;
    while std::fs::File::create(inodes.join(format!("f{n}"))).is_ok() {
        n += 1;
    }
    denied_while_unwritable(&h, &inodes, &s2, &codes2[1], "No space left on device");
    keep_log(&h);
    figure(
        "disk.full",
        format!(
            "user file without a state file on a full tmpfs ({} KiB of filler) and on one out of inodes: backup, TOTP and wrong codes all denied (PAM_SYSTEM_ERR, log `No space left on device`), files byte-identical, no temp file left; with room again the same codes worked exactly once; with the state file made, a backup code on the full disk was recorded in place and worked exactly once",
            filled / 1024
        ),
    );
}

pub fn a_read_only_mount_denies_logins_that_cannot_be_recorded() {
    let h = need!(Harness::new(""));
    let rw = h.path("rw");
    std::fs::create_dir_all(&rw).expect("mkdir");
    std::fs::set_permissions(&rw, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let ro = h.path("ro");
    let _b = need!(mount(&["--bind", rw.to_str().expect("utf-8")], &ro));
    // Enrolled (and the lock file made) while writable...
    let (s, codes) = enroll_in(&h, &ro, "");
    h.login()
        .answer(codes[0].as_str())
        .run()
        .assert("PAM_SUCCESS");
    // ... then remounted read-only.
    let remount = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&ro)
        .status()
        .expect("mount");
    assert!(remount.success(), "remount read-only");
    let totp = denied_while_unwritable(&h, &ro, &s, &codes[1], "Read-only file system");
    // Writable again (the same directory, not through the ro mount): the
    // same codes work once.
    h.write_config_raw(&format!(
        "user_file = \"{}/%u.toml\"\nmax_attempts = 1\n",
        rw.display()
    ));
    for code in [codes[1].as_str(), totp.as_str()] {
        works_once(&h, code);
    }
    keep_log(&h);
    figure(
        "disk.read_only",
        "user file on a read-only bind mount: backup, TOTP and wrong codes all denied (PAM_SYSTEM_ERR, log `Read-only file system`), nothing changed; writable again, the same codes worked exactly once. There is no switch to allow read-only state: it would reopen the replay window",
    );
}

/// The flush of a login's in-place write fails: the login is denied with
/// "Cannot update your 2FA settings" and a log line naming `fdatasync`,
/// through real libpam; with a working disk again, logins work. (The code
/// that login used counts as used: its write reached the page cache, and a
/// code is never accepted on a state that may not be on disk.)
pub fn a_failing_flush_denies_the_login_and_says_so() {
    let h = need!(Harness::new(""));
    let dir = h.path("flush");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let (s, codes) = enroll_in(&h, &dir, "");
    // The first login writes the record and the state file by rename.
    h.login()
        .answer(codes[0].as_str())
        .run()
        .assert("PAM_SUCCESS");
    let eio = need!(failing_fdatasync_library(&h.path("")));
    h.log();
    let eio = eio.display().to_string();
    avoid_step_edge();
    for (what, answer) in [
        ("backup", codes[1].clone()),
        ("totp", totp_at(&s, now())),
        ("wrong", "000000".to_string()),
    ] {
        secret(&answer);
        let run = h
            .login()
            .answer(answer.as_str())
            .env("LD_PRELOAD", &eio)
            .run();
        denied_for(&h, &run, what, "fdatasync");
    }
    // A working disk again: the next code works, once.
    works_once(&h, &codes[2]);
    keep_log(&h);
    figure(
        "disk.failing_flush",
        "fdatasync failing with EIO (a preloaded library) under a login's in-place write: backup, TOTP and wrong codes all denied (PAM_SYSTEM_ERR, log names fdatasync); with a working disk the next backup code worked exactly once",
    );
}
