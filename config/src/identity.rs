//! Running file operations with a user's file-system identity.
//!
//! A root process (sshd, login, the CLI under sudo) that touches a file in
//! a user's home must not do it as root: the user controls every path
//! component there and could point a symlink at `/etc/shadow`. Linux's
//! `setfsuid`/`setfsgid` change only the identity used for file access, only
//! for the calling thread, and can always be switched back by root, which
//! makes them the right tool inside a PAM module (unlike `seteuid`, they do
//! not let the user signal or ptrace the process). The supplementary
//! groups are switched for the calling thread only, with the raw system
//! call ([`crate::sys`]): glibc's `setgroups` changes them in every thread
//! of the process, which would lend a user's groups to sshd's or a PAM
//! application's other threads while one of them reads that user's file.

use nix::unistd::{Gid, Uid, geteuid, getgroups, setfsgid, setfsuid};

use crate::account::Account;
use crate::error::{Error, Result};
use crate::sys::set_thread_groups;

/// Whose file-system identity to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsIdentity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl FsIdentity {
    /// The identity of `account`, with all its groups.
    pub fn of(account: &Account) -> Self {
        FsIdentity {
            uid: account.uid,
            gid: account.gid,
            groups: account.nix_gids().iter().map(|g| g.as_raw()).collect(),
        }
    }
}

/// Runs `f` with the file-system identity `id` when this process is root
/// and `id` is not; otherwise runs it as it is (an unprivileged process can
/// only reach what its user may anyway). The previous identity is restored
/// afterwards; if that fails the error is returned even when `f` succeeded,
/// so the caller denies instead of carrying on half-switched.
pub fn with_identity<T>(id: Option<&FsIdentity>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(id) = id else { return f() };
    if !geteuid().is_root() || id.uid == 0 {
        return f();
    }
    let guard = Switched::enter(id)?;
    let result = f();
    guard.leave()?;
    result
}

/// Proof that the identity is switched; leaving restores it. Dropped
/// without `leave` (a panic in the closure), it restores in `drop` and
/// aborts the process if that fails: better a dead login process than one
/// that goes on with the wrong identity.
struct Switched {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    done: bool,
}

/// Passing an invalid id to `setfsuid`/`setfsgid` changes nothing and
/// returns the current one: the only way to read them back.
const QUERY: u32 = u32::MAX;

fn current_fsuid() -> Uid {
    setfsuid(Uid::from_raw(QUERY))
}

fn current_fsgid() -> Gid {
    setfsgid(Gid::from_raw(QUERY))
}

impl Switched {
    fn enter(id: &FsIdentity) -> Result<Self> {
        let groups = getgroups().map_err(|e| Error::Privilege {
            action: format!("getgroups: {e}"),
        })?;
        let saved = Switched {
            uid: current_fsuid(),
            gid: current_fsgid(),
            groups,
            done: false,
        };
        // From here on, `saved` restores whatever was changed if we bail out.
        set_thread_groups(&id.groups).map_err(|e| Error::Privilege {
            action: format!("setgroups for uid {}: {e}", id.uid),
        })?;
        setfsgid(Gid::from_raw(id.gid));
        setfsuid(Uid::from_raw(id.uid));
        if current_fsgid().as_raw() != id.gid || current_fsuid().as_raw() != id.uid {
            return Err(Error::Privilege {
                action: format!("setfsuid/setfsgid to {}:{} did not take", id.uid, id.gid),
            });
        }
        Ok(saved)
    }

    fn restore(&self) -> Result<()> {
        setfsuid(self.uid);
        setfsgid(self.gid);
        let groups: Vec<u32> = self.groups.iter().map(|g| g.as_raw()).collect();
        set_thread_groups(&groups).map_err(|e| Error::Privilege {
            action: format!("restoring groups: {e}"),
        })?;
        if current_fsuid() != self.uid || current_fsgid() != self.gid {
            return Err(Error::Privilege {
                action: "restoring the file-system identity did not take".into(),
            });
        }
        Ok(())
    }

    fn leave(mut self) -> Result<()> {
        self.done = true;
        self.restore()
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        if !self.done && self.restore().is_err() {
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_root_or_identity_the_closure_runs_unchanged() {
        let before = (current_fsuid(), current_fsgid());
        assert_eq!(with_identity(None, || Ok(7)).unwrap(), 7);
        let id = FsIdentity {
            uid: 0,
            gid: 0,
            groups: vec![0],
        };
        assert_eq!(with_identity(Some(&id), || Ok(8)).unwrap(), 8);
        assert_eq!((current_fsuid(), current_fsgid()), before);
    }

    /// The `Groups:` line of `/proc/thread-self/status`: the calling
    /// thread's own supplementary groups, as the kernel sees them.
    fn thread_groups() -> String {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Issue #12, item 6: while one thread has a user's identity, another
    /// thread keeps its own groups. With glibc's `setgroups` (the code before
    /// this fix), thread B saw the user's groups (`4242 4243`) here.
    #[test]
    fn switching_groups_in_one_thread_leaves_the_other_threads_alone() {
        use std::sync::mpsc;
        if otpgate_test_support::require_root().is_none() {
            return;
        }
        let id = FsIdentity {
            uid: 4242,
            gid: 4242,
            groups: vec![4242, 4243],
        };
        let (to_b, b_rx) = mpsc::channel::<()>();
        let (to_a, a_rx) = mpsc::channel::<String>();
        let b = std::thread::spawn(move || {
            let before = thread_groups();
            b_rx.recv().unwrap();
            to_a.send(thread_groups()).unwrap();
            before
        });
        let (inside, seen_by_b) = with_identity(Some(&id), || {
            let inside = thread_groups();
            to_b.send(()).unwrap();
            Ok((inside, a_rx.recv().unwrap()))
        })
        .unwrap();
        let before_b = b.join().unwrap();
        assert_eq!(inside, "4242 4243", "thread A did not switch");
        assert_eq!(seen_by_b, before_b, "thread B got thread A's groups");
        assert_ne!(before_b, inside);
    }
}
