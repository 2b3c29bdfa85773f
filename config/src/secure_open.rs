//! The one way otpgate opens a file it reads or writes with privilege: the
//! user file, its lock and temp files, the system config, imported files
//! and the files the CLI writes.
//!
//! Every open refuses to follow a symbolic link at the last component
//! (`O_NOFOLLOW`), cannot hang on a FIFO (`O_NONBLOCK`), cannot become the
//! controlling terminal (`O_NOCTTY`) and does not leak into a child
//! (`O_CLOEXEC`). Then `fstat` on the open descriptor (not the path, which
//! may have been swapped meanwhile) checks the type, owner, mode and size
//! against the caller's [`Rules`] before one byte is read, and a read stops
//! at the size limit even when the file grows under us. Each check fails
//! with one error variant, so every file says the same thing for the same
//! problem.
//!
//! Only the last component is protected: the directories on the way must be
//! trusted, either because the caller opened the directory itself (the user
//! file's, through [`Location::in_dir`]) or because they are root's (the
//! system config's).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// What a file must be for us to use it. Each caller states its rule in one
/// place and passes it to [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Who may own the file; `None`: anyone (a file we just created, or a
    /// lock file whose content is never read).
    pub owners: Option<Vec<u32>>,
    /// Mode bits that must all be clear: `0o077` refuses any access by
    /// group or others, `0o022` only write access.
    pub forbidden_mode: u32,
    /// The largest size accepted, in bytes; [`Opened::read_all`] reads no
    /// more than this.
    pub max_size: u64,
}

impl Rules {
    /// For a file this process creates or only locks: any owner, any mode,
    /// any size. What is still checked is that it is a regular file reached
    /// without a symlink.
    pub fn any_regular_file() -> Self {
        Rules {
            owners: None,
            forbidden_mode: 0,
            max_size: u64::MAX,
        }
    }
}

/// How the file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read an existing file.
    Read,
    /// Read and write, creating the file with mode 0600 when it is missing
    /// (a lock file).
    ReadWriteOrCreate,
    /// Read and write an existing file (the state file, written in place).
    ReadWrite,
    /// Create a new file with mode 0600 for writing. Anything already at
    /// the name is an error, and a symlink there is reported as
    /// [`Error::Symlink`] (nothing is written through it).
    CreateNew,
}

/// Where the file is: a name in a directory the caller opened, or a path.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    dir: BorrowedFd<'a>,
    name: &'a Path,
    shown: &'a Path,
}

impl<'a> Location<'a> {
    /// `path` itself; a relative path is taken from the working directory.
    pub fn path(path: &'a Path) -> Self {
        Location {
            dir: AT_FDCWD,
            name: path,
            shown: path,
        }
    }

    /// `name` inside the open directory `dir`; `shown` is the full path
    /// that messages name.
    pub fn in_dir<N: AsRef<Path> + ?Sized>(
        dir: BorrowedFd<'a>,
        name: &'a N,
        shown: &'a Path,
    ) -> Self {
        Location {
            dir,
            name: name.as_ref(),
            shown,
        }
    }

    /// The path messages name.
    pub fn shown(&self) -> &'a Path {
        self.shown
    }
}

/// A file that is open and passed the checks.
#[derive(Debug)]
pub struct Opened {
    file: File,
    stat: FileStat,
    path: PathBuf,
    max_size: u64,
}

impl Opened {
    /// What `fstat` said when the file was checked.
    pub fn stat(&self) -> &FileStat {
        &self.stat
    }

    /// The path messages name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for writing or locking.
    pub fn into_file(self) -> File {
        self.file
    }

    /// Reads the whole file into a buffer wiped on drop. A file that grew
    /// past the limit since it was checked is refused, not cut short.
    pub fn read_all(self) -> Result<Zeroizing<Vec<u8>>> {
        let mut bytes = Zeroizing::new(Vec::new());
        self.read_into(&mut bytes)?;
        Ok(bytes)
    }

    /// [`Opened::read_all`] for a file that holds no secret (the state
    /// file: counters and flags), so nothing to wipe: wiping is a volatile
    /// write per byte, 64 KiB of them per login for the state file's two
    /// reads.
    pub fn read_public(self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.read_into(&mut bytes)?;
        Ok(bytes)
    }

    fn read_into(self, bytes: &mut Vec<u8>) -> Result<()> {
        bytes.reserve_exact(usize::try_from(self.stat.st_size).unwrap_or(0));
        self.file
            .take(self.max_size.saturating_add(1))
            .read_to_end(bytes)
            .map_err(|e| Error::io(&self.path, "read", e))?;
        if bytes.len() as u64 > self.max_size {
            return Err(Error::TooLarge {
                path: self.path,
                size: bytes.len() as u64,
                limit: self.max_size,
            });
        }
        Ok(())
    }

    /// [`Opened::read_all`] as UTF-8 text.
    pub fn read_text(self) -> Result<Zeroizing<String>> {
        let path = self.path.clone();
        let mut bytes = self.read_all()?;
        match String::from_utf8(std::mem::take(&mut *bytes)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(e) => {
                let utf8_error = e.utf8_error();
                // The bytes go back into a buffer that is wiped on drop.
                *bytes = e.into_bytes();
                Err(Error::Parse {
                    path,
                    line: 0,
                    column: 0,
                    message: format!("not UTF-8 text: {utf8_error}"),
                })
            }
        }
    }
}

/// Opens the file at `at` as `access` says and checks it against `rules`.
/// A missing file is an [`Error::Io`] for which [`Error::is_not_found`] is
/// true.
pub fn open(at: Location<'_>, access: Access, rules: &Rules) -> Result<Opened> {
    let common = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    let (flags, action) = match access {
        Access::Read => (OFlag::O_RDONLY, "open"),
        Access::ReadWriteOrCreate => (OFlag::O_RDWR | OFlag::O_CREAT, "open"),
        Access::ReadWrite => (OFlag::O_RDWR, "open"),
        Access::CreateNew => (OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, "create"),
    };
    let fd = match openat(
        at.dir,
        at.name,
        flags | common,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Err(symlink(at)),
        // O_EXCL fails on a symlink without following it; say what it is.
        Err(Errno::EEXIST) if is_symlink(at) => return Err(symlink(at)),
        Err(e) => return Err(Error::errno(at.shown, action, e)),
    };
    let stat = fstat(&fd).map_err(|e| Error::errno(at.shown, "stat", e))?;
    check(at.shown, &stat, rules)?;
    Ok(Opened {
        file: File::from(fd),
        stat,
        path: at.shown.to_path_buf(),
        max_size: rules.max_size,
    })
}

/// How [`open_dir`] opens a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirAccess {
    /// To read it or work in it (`O_RDONLY`): listing, creating, fsync.
    Read,
    /// Only to look names up in it (`O_PATH`): search permission is enough.
    Search,
}

/// Opens the directory at `at`, not through a symlink at its name unless
/// `follow_name` (a path root's config gave, such as a home behind
/// `/home -> /srv/home`), and checks that one of `owners` owns it and that
/// neither group nor others may write it (sshd's StrictModes: whoever else
/// can write a directory can swap what is in it). `None`: it does not
/// exist.
pub fn open_dir(
    at: Location<'_>,
    access: DirAccess,
    follow_name: bool,
    owners: &[u32],
) -> Result<Option<OwnedFd>> {
    let mut flags = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    flags |= match access {
        DirAccess::Read => OFlag::O_RDONLY,
        DirAccess::Search => OFlag::O_PATH,
    };
    if !follow_name {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = match openat(at.dir, at.name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(symlink(at)),
        Err(e) => return Err(Error::errno(at.shown, "open directory", e)),
    };
    let st = fstat(&fd).map_err(|e| Error::errno(at.shown, "stat directory", e))?;
    if !owners.contains(&st.st_uid) {
        return Err(Error::WrongOwner {
            path: at.shown.to_path_buf(),
            owner: st.st_uid,
            expected: owners.to_vec(),
        });
    }
    if st.st_mode & 0o022 != 0 {
        return Err(Error::BadMode {
            path: at.shown.to_path_buf(),
            mode: st.st_mode,
        });
    }
    Ok(Some(fd))
}

/// Opens `at` for reading, checks it and reads it whole as UTF-8 text.
pub fn read_text(at: Location<'_>, rules: &Rules) -> Result<Zeroizing<String>> {
    open(at, Access::Read, rules)?.read_text()
}

/// The checks on an open file's `fstat`, in the order an admin fixes them.
fn check(path: &Path, st: &FileStat, rules: &Rules) -> Result<()> {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG {
        return Err(Error::NotRegular {
            path: path.into(),
            kind: kind_name(kind),
        });
    }
    if let Some(owners) = &rules.owners
        && !owners.contains(&st.st_uid)
    {
        return Err(Error::WrongOwner {
            path: path.into(),
            owner: st.st_uid,
            expected: owners.clone(),
        });
    }
    if st.st_mode & rules.forbidden_mode != 0 {
        return Err(Error::BadMode {
            path: path.into(),
            mode: st.st_mode,
        });
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > rules.max_size {
        return Err(Error::TooLarge {
            path: path.into(),
            size,
            limit: rules.max_size,
        });
    }
    Ok(())
}

fn symlink(at: Location<'_>) -> Error {
    Error::Symlink {
        path: at.shown.to_path_buf(),
    }
}

fn is_symlink(at: Location<'_>) -> bool {
    fstatat(at.dir.as_fd(), at.name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
        SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK
    })
}

/// The name of a file type, for [`Error::NotRegular`].
fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFLNK => "symbolic link",
        _ => "special file",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink as make_symlink};
    use std::time::{Duration, Instant};

    use super::*;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn private(max_size: u64) -> Rules {
        Rules {
            owners: Some(vec![me()]),
            forbidden_mode: 0o077,
            max_size,
        }
    }

    fn file_with(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_private_file_of_the_right_owner_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "f", "hello\n", 0o600);
        let text = read_text(Location::path(&path), &private(64)).unwrap();
        assert_eq!(text.as_str(), "hello\n");
        let opened = open(Location::path(&path), Access::Read, &private(64)).unwrap();
        assert_eq!(opened.stat().st_size, 6);
        assert_eq!(opened.path(), path);
    }

    #[test]
    fn a_name_in_an_open_directory_is_read_through_it() {
        let dir = tempfile::tempdir().unwrap();
        file_with(dir.path(), "f", "in dir", 0o600);
        let fd = nix::fcntl::open(
            dir.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let shown = dir.path().join("f");
        let text = read_text(Location::in_dir(fd.as_fd(), "f", &shown), &private(64)).unwrap();
        assert_eq!(text.as_str(), "in dir");
    }

    #[test]
    fn a_symlink_is_refused_for_reading_locking_and_creating() {
        let dir = tempfile::tempdir().unwrap();
        let target = file_with(dir.path(), "target", "secret", 0o600);
        let link = dir.path().join("link");
        make_symlink(&target, &link).unwrap();
        for access in [Access::Read, Access::ReadWriteOrCreate, Access::CreateNew] {
            let err = open(Location::path(&link), access, &private(64)).unwrap_err();
            assert!(
                matches!(&err, Error::Symlink { path } if *path == link),
                "{err}"
            );
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        // A dangling link: creating must not create its target.
        let dangling = dir.path().join("dangling");
        make_symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let err = open(
            Location::path(&dangling),
            Access::CreateNew,
            &Rules::any_regular_file(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Symlink { .. }), "{err}");
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
    }

    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let started = Instant::now();
        for access in [Access::Read, Access::ReadWriteOrCreate] {
            let err = open(Location::path(&fifo), access, &private(64)).unwrap_err();
            assert!(
                matches!(err, Error::NotRegular { kind: "FIFO", .. }),
                "{err}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = open(Location::path(dir.path()), Access::Read, &private(64)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn another_owner_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "f", "x", 0o600);
        let someone_else = me().wrapping_add(1);
        let rules = Rules {
            owners: Some(vec![someone_else]),
            ..private(64)
        };
        let err = open(Location::path(&path), Access::Read, &rules).unwrap_err();
        assert!(
            matches!(&err, Error::WrongOwner { owner, expected, .. }
                if *owner == me() && *expected == vec![someone_else]),
            "{err}"
        );
    }

    #[test]
    fn forbidden_mode_bits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let readable = file_with(dir.path(), "r", "x", 0o640);
        let err = open(Location::path(&readable), Access::Read, &private(64)).unwrap_err();
        assert!(matches!(err, Error::BadMode { mode, .. } if mode & 0o777 == 0o640));
        assert!(err.to_string().contains("chmod go-rwx"), "{err}");
        // Only write access forbidden: readable passes, writable does not.
        let no_write = Rules {
            forbidden_mode: 0o022,
            ..private(64)
        };
        open(Location::path(&readable), Access::Read, &no_write).unwrap();
        let writable = file_with(dir.path(), "w", "x", 0o620);
        let err = open(Location::path(&writable), Access::Read, &no_write).unwrap_err();
        assert!(matches!(err, Error::BadMode { .. }), "{err}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_and_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "f", "12345", 0o600);
        let err = open(Location::path(&path), Access::Read, &private(4)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    size: 5,
                    limit: 4,
                    ..
                }
            ),
            "{err}"
        );
        // Grown after the check: the read stops at the limit and refuses.
        let opened = open(Location::path(&path), Access::Read, &private(5)).unwrap();
        std::fs::write(&path, "1234567890").unwrap();
        let err = opened.read_all().unwrap_err();
        assert!(matches!(err, Error::TooLarge { size: 6, .. }), "{err}");
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"\xff\xfe").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_text(Location::path(&path), &private(64)).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_text(Location::path(&dir.path().join("none")), &private(64)).unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn create_new_makes_a_0600_file_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new");
        let opened = open(
            Location::path(&path),
            Access::CreateNew,
            &Rules::any_regular_file(),
        )
        .unwrap();
        assert_eq!(opened.stat().st_mode & 0o777, 0o600);
        use std::io::Write;
        opened.into_file().write_all(b"one").unwrap();
        let err = open(
            Location::path(&path),
            Access::CreateNew,
            &Rules::any_regular_file(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Io { action: "create", source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
    }

    #[test]
    fn read_write_or_create_opens_an_existing_file_or_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let rules = Rules::any_regular_file();
        let first = open(Location::path(&path), Access::ReadWriteOrCreate, &rules).unwrap();
        assert_eq!(first.stat().st_mode & 0o777, 0o600);
        let again = open(Location::path(&path), Access::ReadWriteOrCreate, &rules).unwrap();
        assert_eq!(again.stat().st_ino, first.stat().st_ino);
    }
}
