//! The system calls that have no safe wrapper, each behind a safe function.
//!
//! This is the crate's only module allowed `unsafe` (`lib.rs` denies it
//! elsewhere); every block says why it is sound. What lives here:
//!
//! - [`set_thread_groups`]: the supplementary groups of the calling thread
//!   only. glibc's `setgroups` (and nix's, which calls it) changes them in
//!   every thread of the process (its "setxid" broadcast, POSIX's
//!   per-process credentials), so a login thread taking a user's groups to
//!   open that user's file would lend them to every other thread of sshd or
//!   of a multi-threaded PAM application. The raw system call is per thread,
//!   as Linux credentials are.
//! - [`isolate_command`]: the hook that runs in the forked child of a
//!   channel command just before `exec` (new session, no controlling
//!   terminal, inherited descriptors closed, a process limit).
//! - [`Subreaper`]: this process adopts the orphans of a command while a
//!   send runs, so none can escape by reparenting to init.
//!
//! Everything else the crate needs from the kernel goes through nix's safe
//! API.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The raw `setgroups` system call that takes 32-bit group ids. On 32-bit
/// x86 and ARM, `SYS_setgroups` is the legacy 16-bit call.
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;

/// Sets the supplementary groups of the calling thread only (other threads
/// keep theirs). Needs `CAP_SETGID`.
pub fn set_thread_groups(groups: &[u32]) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: setgroups(2) reads exactly `len` gid_t values from the
    // pointer, which points at a live Vec of that length (a dangling but
    // aligned pointer for an empty Vec, with len 0: nothing is read). It
    // writes no memory. The kernel call changes only this task's
    // credentials, which is the point (glibc's wrapper would change every
    // thread's).
    let rc = unsafe { libc::syscall(SYS_SETGROUPS, groups.len(), groups.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The most processes the command's user may have at once while the
/// command runs (`RLIMIT_NPROC`, counted per real uid): a fork bomb stops
/// there, and the kill loop after the send always catches up.
pub const COMMAND_MAX_PROCESSES: libc::rlim_t = 64;

/// Makes the command that `cmd` starts a process of its own: a new session
/// with no controlling terminal (so `/dev/tty` cannot be opened and no
/// `TIOCSTI` can reach the login's terminal), every inherited descriptor
/// above 2 closed at `exec` (sshd's sockets, anything the host process left
/// open), and at most [`COMMAND_MAX_PROCESSES`] processes for its user.
///
/// `cmd` must not also ask for a process group (`process_group`): a group
/// leader cannot start a session, and the spawn would fail.
pub fn isolate_command(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child between fork and exec, where
    // only async-signal-safe calls are allowed (another thread of the parent
    // may have held a lock at the fork). `in_child` makes three system calls
    // (setsid, close_range, setrlimit) through libc's thin wrappers, builds
    // its error from errno, and allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(in_child);
    }
}

/// The body of [`isolate_command`], in the forked child (after std set the
/// uid and gid, before `exec`).
fn in_child() -> io::Result<()> {
    // SAFETY: setsid(2) takes no argument and touches no memory of ours.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    // CLOEXEC rather than closing now: std's own pipe that reports an exec
    // failure to the parent must stay open until the exec, and is already
    // close-on-exec.
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets descriptor
    // flags; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let limit = libc::rlimit {
        rlim_cur: COMMAND_MAX_PROCESSES,
        rlim_max: COMMAND_MAX_PROCESSES,
    };
    // SAFETY: setrlimit(2) reads one rlimit from a pointer to a live local.
    if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// While alive, this process is a child subreaper (`PR_SET_CHILD_SUBREAPER`):
/// a descendant whose parent dies is reparented to it instead of to init, so
/// whatever a command starts stays findable (and killable) among this
/// process's children, however it regrouped. Dropping it restores the flag
/// as it was.
///
/// The flag is per process, so one `Subreaper` exists at a time: `enter`
/// waits for the previous one to go (sends of one process run one after the
/// other; a login process sends one message at a time anyway). That also
/// makes "children that appeared during the send" mean "this send's".
pub struct Subreaper {
    was: bool,
    _one: std::sync::MutexGuard<'static, ()>,
}

/// Held by the one live [`Subreaper`].
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Subreaper {
    pub fn enter() -> io::Result<Subreaper> {
        use nix::sys::prctl;
        // A panic while held poisons nothing we rely on: the flag is
        // re-read below.
        let one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let was = prctl::get_child_subreaper().map_err(io::Error::from)?;
        if !was {
            prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        }
        Ok(Subreaper { was, _one: one })
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        if !self.was {
            let _ = nix::sys::prctl::set_child_subreaper(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_has_its_own_session_and_no_inherited_descriptor() {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        use std::os::fd::AsRawFd;
        // A descriptor a careless host left inheritable.
        let extra = std::fs::File::open("/dev/null").unwrap();
        fcntl(&extra, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let fd = extra.as_raw_fd();
        let script = format!(
            "test -e /proc/self/fd/{fd} && echo inherited; \
             ps -o sid= -p $$ | tr -d ' '; echo $$; \
             grep 'Max processes' /proc/$$/limits | tr -s ' ' | cut -d' ' -f3"
        );
        let run = |isolate: bool| {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(&script);
            if isolate {
                isolate_command(&mut cmd);
            }
            String::from_utf8(cmd.output().unwrap().stdout).unwrap()
        };
        assert!(
            run(false).starts_with("inherited\n"),
            "the test cannot see a leak"
        );
        let text = run(true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], lines[1], "not a session leader: {text}");
        assert_eq!(lines[2], COMMAND_MAX_PROCESSES.to_string());
    }

    #[test]
    fn the_subreaper_flag_is_restored() {
        let s = Subreaper::enter().unwrap();
        assert!(nix::sys::prctl::get_child_subreaper().unwrap());
        drop(s);
        // Another test's send may hold it by now; ours restored it before
        // letting that one in, so take it again to look.
        let again = Subreaper::enter().unwrap();
        assert!(!again.was, "the flag was left set");
        drop(again);
    }
}
