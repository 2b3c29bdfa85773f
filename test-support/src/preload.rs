//! Libraries a test preloads into a process of its own to make a system
//! call fail as real hardware does.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require;

/// Builds (with gcc, at test time) a library whose `fdatasync` fails with
/// EIO, as a dying disk or a lost NFS server makes it, into `dir`; for
/// `LD_PRELOAD`. `None` (after SKIP, or a failure under `CI=true`) without
/// gcc.
pub fn failing_fdatasync_library(dir: &Path) -> Option<PathBuf> {
    let source = dir.join("eio.c");
    let library = dir.join("eio.so");
    std::fs::write(
        &source,
        "#include <errno.h>\nint fdatasync(int fd) { (void)fd; errno = EIO; return -1; }\n",
    )
    .expect("write eio.c");
    let built = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status();
    require(
        built.is_ok_and(|s| s.success()),
        "gcc missing: cannot build the failing-fdatasync library",
    )?;
    Some(library)
}
