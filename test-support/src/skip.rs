//! The one "need X or SKIP" rule, and the checks tests feed it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// True when `CI=true`: every test must then run, a missing prerequisite is
/// a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `Some(())` when `ok`. Otherwise prints `SKIP: why` (stderr) and returns
/// `None`, or panics when `CI=true` (CI must run every test). With `?` in a
/// helper returning `Option`, or [`need!`](crate::need) in a test.
#[track_caller]
pub fn require(ok: bool, why: &str) -> Option<()> {
    if ok {
        return Some(());
    }
    assert!(!in_ci(), "CI=true and a test cannot run: {why}");
    eprintln!("SKIP: {why}");
    None
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// [`require`] root.
#[track_caller]
pub fn require_root() -> Option<()> {
    require(
        is_root(),
        "needs root (root-owned files, chown, real users; CI runs the tests as root)",
    )
}

/// True when `program` is an executable file: a path with a `/`, or a name
/// found on `PATH` (as the shell's `command -v` finds it). Nothing is run.
pub fn have(program: &str) -> bool {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

/// [`require`] that `program` (from Debian `package`) is installed.
#[track_caller]
pub fn require_tool(program: &str, package: &str) -> Option<()> {
    require(
        have(program),
        &format!("`{program}` not found (Debian package {package})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn have_finds_programs_on_path_and_by_path_without_running_them() {
        assert!(have("sh"));
        assert!(have("/bin/sh"));
        assert!(!have("otpgate-no-such-program"));
        assert!(!have("/etc/passwd"), "not executable");
        assert!(!have("/"), "a directory");
    }

    #[test]
    fn a_missing_prerequisite_skips_or_fails_under_ci() {
        assert_eq!(require(true, "never printed"), Some(()));
        let missing = std::panic::catch_unwind(|| require(false, "a test of the SKIP rule"));
        if in_ci() {
            assert!(missing.is_err(), "CI=true must fail");
        } else {
            assert_eq!(missing.ok(), Some(None));
        }
    }
}
