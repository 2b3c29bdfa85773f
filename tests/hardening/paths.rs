//! Hostile paths (the pam_oath CVE-2024-47191 class): the user points
//! `~/.config/otpgate`, its parent, the file or its lock at root-owned
//! places, statically or by a swapper racing the logins. The module, as
//! root, must never create, write or chmod anything there: it works with
//! the user's file-system identity and opens with `O_NOFOLLOW`.
//!
//! Runs as root against the real system user `otpgate-test` (created with
//! useradd when missing; see `otpgate_test_support::test_user`), its home
//! emptied for each scenario.

use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use otpgate_config::otp::Algorithm;
use otpgate_tests::*;

use crate::{figure, keep_log, pool, secret};

/// Everything under `root`: path, owner, mode, size, mtime, ctime and
/// bytes. A file created and removed again still changes its directory's
/// mtime; a chmod changes the ctime.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).expect("lstat");
        let content = if m.is_file() {
            format!("{:?}", std::fs::read(&p).unwrap_or_default())
        } else if m.file_type().is_symlink() {
            format!("-> {:?}", std::fs::read_link(&p).ok())
        } else {
            String::new()
        };
        out.push(format!(
            "{} uid={} gid={} mode={:o} size={} mtime={}.{} ctime={}.{} {content}",
            p.display(),
            m.uid(),
            m.gid(),
            m.mode(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("ls") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    out.sort();
    out
}

/// Entries under `home` not owned by `uid:gid` (each would be a root write).
fn foreign(home: &Path, uid: u32, gid: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.uid() != uid || m.gid() != gid {
            bad.push(format!("{} uid={} gid={}", p.display(), m.uid(), m.gid()));
        }
        if m.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    bad
}

struct Setup {
    h: Harness,
    user: SystemUser,
    /// Root-owned target directory (0755), reachable by the user.
    rootland: PathBuf,
    secret: String,
    helper: PathBuf,
}

impl Setup {
    fn new() -> Option<Setup> {
        let user = test_user()?;
        // Scenarios plant links there; none may see an earlier one's.
        user.empty_home();
        let h = Harness::new("")?;
        h.write_config_raw("max_attempts = 1\nlockout_after = 0\n");
        h.otp_service("");
        // The user must be able to reach the root-owned target.
        std::fs::set_permissions(h.path(""), PermissionsExt::from_mode(0o711)).expect("chmod");
        let rootland = h.path("rootland");
        std::fs::create_dir_all(rootland.join("otpgate")).expect("mkdir");
        for d in [&rootland, &rootland.join("otpgate")] {
            std::fs::set_permissions(d, PermissionsExt::from_mode(0o755)).expect("chmod");
        }
        // A valid file of root's (another secret) and a "sensitive" file.
        let root_secret = new_secret();
        secret(&root_secret);
        write_private(
            &rootland.join("otpgate/user.toml"),
            totp_record_with(&root_secret, Algorithm::SHA1, 6)
                .to_toml()
                .as_bytes(),
        );
        std::fs::write(rootland.join("shadow"), "root:$6$hash:::\n").expect("write");
        std::fs::set_permissions(rootland.join("shadow"), PermissionsExt::from_mode(0o644))
            .expect("chmod");
        // The helper, where the user may run it.
        let helper = h.path("helper");
        std::fs::copy(env!("CARGO_BIN_EXE_otpgate-hardening-helper"), &helper).expect("copy");
        std::fs::set_permissions(&helper, PermissionsExt::from_mode(0o755)).expect("chmod");
        let s = Setup {
            secret: String::new(),
            h,
            user,
            rootland,
            helper,
        };
        Some(s.enrolled())
    }

    /// `~/.config/otpgate/user.toml` as a careful user has it.
    fn enrolled(mut self) -> Setup {
        let dir = self.user.home.join(".config/otpgate");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for d in [self.user.home.join(".config"), dir.clone()] {
            std::fs::set_permissions(&d, PermissionsExt::from_mode(0o700)).expect("chmod");
            self.give(&d);
        }
        let s = new_secret();
        secret(&s);
        let file = dir.join("user.toml");
        write_private(
            &file,
            totp_record_with(&s, Algorithm::SHA1, 6)
                .to_toml()
                .as_bytes(),
        );
        self.give(&file);
        self.secret = s;
        self
    }

    fn give(&self, p: &Path) {
        lchown(p, Some(self.user.uid), Some(self.user.gid)).expect("lchown");
    }

    /// A symlink made by the user.
    fn link(&self, target: &Path, at: &Path) {
        let _ = std::fs::remove_file(at);
        symlink(target, at).expect("symlink");
        self.give(at);
    }

    fn code(&self) -> String {
        let c = totp_at(&self.secret, now());
        secret(&c);
        c
    }

    /// The code of the next time step (inside the window), for a login
    /// after others have used the current step.
    fn next_code(&self) -> String {
        let c = totp_at(&self.secret, now() + 30);
        secret(&c);
        c
    }

    fn login(&self, answer: &str) -> Run {
        self.h
            .login()
            .user(&self.user.name)
            .rhost("192.0.2.80")
            .answer(answer)
            .run()
    }

    fn config(&self) -> PathBuf {
        self.user.home.join(".config")
    }

    /// Asserts that root changed nothing it should not have: `rootland` is
    /// as `before`, and everything in the home is the user's.
    fn assert_clean(&self, before: &[String], what: &str) {
        let after = tree(&self.rootland);
        assert_eq!(after, before, "{what}: the root-owned directory changed");
        let bad = foreign(&self.user.home, self.user.uid, self.user.gid);
        assert!(bad.is_empty(), "{what}: not the user's: {bad:#?}");
    }
}

pub fn symlinks_to_root_directories_never_make_root_write_there() {
    let s = need!(Setup::new());
    // Sanity: the careful layout works.
    s.login(&s.code()).assert("PAM_SUCCESS");
    let before = tree(&s.rootland);
    let otpgate = s.config().join("otpgate");
    let real = s.config().join("otpgate.real");
    let mut results = Vec::new();
    let mut logins = 0;
    type Layout<'a> = (&'a str, Box<dyn Fn(&Setup) + 'a>, Box<dyn Fn(&Setup) + 'a>);
    let layouts: Vec<Layout> = vec![
        (
            "~/.config/otpgate -> root's dir",
            Box::new(|s: &Setup| {
                std::fs::rename(&otpgate, &real).expect("mv");
                s.link(&s.rootland.join("otpgate"), &otpgate);
            }),
            Box::new(|_: &Setup| {
                std::fs::remove_file(&otpgate).expect("rm");
                std::fs::rename(&real, &otpgate).expect("mv");
            }),
        ),
        (
            "~/.config -> root's dir",
            Box::new(|s: &Setup| {
                let c = s.config();
                std::fs::rename(&c, s.user.home.join(".config.real")).expect("mv");
                s.link(&s.rootland, &c);
            }),
            Box::new(|s: &Setup| {
                let c = s.config();
                std::fs::remove_file(&c).expect("rm");
                std::fs::rename(s.user.home.join(".config.real"), &c).expect("mv");
            }),
        ),
        (
            "user.toml -> root's file",
            Box::new(|s: &Setup| {
                let f = otpgate.join("user.toml");
                std::fs::rename(&f, otpgate.join("user.toml.real")).expect("mv");
                s.link(&s.rootland.join("otpgate/user.toml"), &f);
            }),
            Box::new(|_: &Setup| {
                let f = otpgate.join("user.toml");
                std::fs::remove_file(&f).expect("rm");
                std::fs::rename(otpgate.join("user.toml.real"), &f).expect("mv");
            }),
        ),
        (
            "user.toml.lock -> a new file in root's dir",
            Box::new(|s: &Setup| {
                let l = otpgate.join("user.toml.lock");
                let _ = std::fs::remove_file(&l);
                s.link(&s.rootland.join("otpgate/created-by-root"), &l);
            }),
            Box::new(|_: &Setup| {
                std::fs::remove_file(otpgate.join("user.toml.lock")).expect("rm");
            }),
        ),
    ];
    for (name, make, undo) in &layouts {
        make(&s);
        let mut seen = Vec::new();
        // A right code and a wrong one (a wrong one writes the failure).
        for answer in [s.code(), "000000".to_string()] {
            let run = s.login(&answer);
            logins += 1;
            assert_ne!(run.result, "PAM_SUCCESS", "{name}: {run:#?}");
            seen.push(run.result);
        }
        s.assert_clean(&before, name);
        undo(&s);
        results.push(format!("{name}: {}", seen.join("/")));
    }
    // And the careful layout still works afterwards.
    s.login(&s.next_code()).assert("PAM_SUCCESS");
    s.assert_clean(&before, "after");
    let log = s.h.journal();
    assert!(
        log.iter()
            .any(|l| l.contains("symbolic link") || l.contains("symlink")),
        "{log:#?}"
    );
    keep_log(&s.h);
    println!("{}", results.join("\n"));
    figure(
        "paths.symlinks",
        format!(
            "{logins} logins as root for real user otpgate-test against 4 symlink layouts (dir, parent, file, lock -> root-owned): none succeeded, 0 changes in the root-owned tree (names, owners, modes, mtimes, ctimes, bytes), 0 root-owned files in the home"
        ),
    );
}

pub fn a_swapper_racing_logins_never_makes_root_write_outside_the_home() {
    const SECONDS: f64 = 3.0;
    let s = need!(Setup::new());
    let before = tree(&s.rootland);
    let config = s.config();
    let otpgate = config.join("otpgate");
    // The decoys the swapper exchanges with the real paths.
    let evil_dir = config.join("otpgate.evil");
    s.link(&s.rootland.join("otpgate"), &evil_dir);
    let evil_parent = s.user.home.join(".config.evil");
    s.link(&s.rootland, &evil_parent);
    let evil_file = otpgate.join("user.toml.evil");
    s.link(&s.rootland.join("shadow"), &evil_file);
    let evil_lock = otpgate.join("user.toml.lock.evil");
    s.link(&s.rootland.join("otpgate/created-by-root"), &evil_lock);
    // Make the real lock file exist, so it can be exchanged.
    s.login(&s.code()).assert("PAM_SUCCESS");

    let rounds: [(&str, Vec<(PathBuf, PathBuf)>); 3] = [
        ("dir", vec![(otpgate.clone(), evil_dir.clone())]),
        ("parent", vec![(config.clone(), evil_parent.clone())]),
        (
            "file+lock",
            vec![
                (otpgate.join("user.toml"), evil_file.clone()),
                (otpgate.join("user.toml.lock"), evil_lock.clone()),
            ],
        ),
    ];
    let mut total_logins = 0;
    let mut total_swaps = 0u64;
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    for (name, pairs) in &rounds {
        let mut cmd = Command::new(&s.helper);
        cmd.arg("swap").arg(SECONDS.to_string());
        for (a, b) in pairs {
            cmd.arg(a).arg(b);
        }
        let swapper = cmd
            .uid(s.user.uid)
            .gid(s.user.gid)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start swapper");
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let runs = std::thread::scope(|sc| {
            sc.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    s.h.log();
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            let mut all = Vec::new();
            while start.elapsed() < Duration::from_secs_f64(SECONDS - 0.3) {
                let code = s.code();
                all.extend(pool(16, 8, |i| {
                    let answer = if i % 2 == 0 { code.as_str() } else { "000000" };
                    s.login(answer).result
                }));
            }
            stop.store(true, Ordering::SeqCst);
            all
        });
        let out = swapper.wait_with_output().expect("swapper");
        assert!(out.status.success(), "swapper: {:?}", out);
        let swaps: u64 = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("swap count");
        assert!(swaps > 100, "{name}: the swapper hardly ran ({swaps})");
        total_swaps += swaps;
        total_logins += runs.len();
        for r in runs {
            *outcomes.entry(format!("{name} {r}")).or_default() += 1;
        }
        // Put every pair back the way the user had it.
        for (a, b) in pairs {
            if std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink())
                && !std::fs::symlink_metadata(b).is_ok_and(|m| m.file_type().is_symlink())
            {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    a.as_path(),
                    nix::fcntl::AT_FDCWD,
                    b.as_path(),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .expect("swap back");
            }
        }
        s.assert_clean(&before, name);
    }
    // The user's own layout still works.
    s.login(&s.next_code()).assert("PAM_SUCCESS");
    keep_log(&s.h);
    println!("outcomes: {outcomes:#?}");
    figure(
        "paths.swap_race",
        format!(
            "{total_logins} logins as root raced by {total_swaps} atomic swaps (renameat2 RENAME_EXCHANGE, as the user) of the dir, its parent, the file and the lock with symlinks to root-owned places: 0 changes in the root-owned tree, 0 root-owned files in the home"
        ),
    );
}
