//! The store seam: where one user's record lives, and today's file store.
//!
//! [`Store`] is what the login flow and the CLI see: read the record, change
//! it in one transaction, describe where it is for messages. Neither builds
//! a path or knows about locks; the backend does (docs/ARCHITECTURE.md, "The
//! store seam"). [`UserFile`] is the file store, the embedded default;
//! [`MemoryStore`] keeps a record in memory, for tests that need no root.
//!
//! The file store reads through a directory file descriptor opened once, so
//! a path component swapped mid-way cannot redirect us; the file itself is
//! opened with `O_NOFOLLOW` and checked with `fstat` (type, owner, mode,
//! size) before one byte is parsed. Updates take an exclusive `flock` on a
//! sibling `<name>.lock` file, re-read, change, write a temp file in the
//! same directory, `fsync` it, `rename` it over and `fsync` the directory,
//! so a crash leaves the old file or the new one, never a mix, and two
//! logins never both use one backup code. What a login changes goes
//! instead into `<name>.state`, written in place with one `fdatasync`
//! (`state_file`); the record is rewritten only when more than login
//! state changes.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, renameat};
use nix::sys::stat::{FileStat, SFlag, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};
use zeroize::Zeroizing;

use crate::account::Account;
use crate::error::{Error, Result};
use crate::identity::{FsIdentity, with_identity};
use crate::record::hot::{self, Hot};
use crate::record::{self as record_file, EnrollmentSends, UserRecord};
use crate::secure_open::{self, Access, DirAccess, Location, Rules};
use crate::system::SystemConfig;

mod memory;
pub mod registry;
mod state_file;
pub use memory::{MemoryBackend, MemoryStore};
use registry::Registry;
use state_file::{Flush, Newest, Slot};

/// Largest user file read; real ones are under 2 KiB.
pub const MAX_USER_FILE_BYTES: u64 = 64 * 1024;
/// How long `update` waits for another login to release the lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The record of one user, wherever it is kept: a file today; a daemon or
/// a database later plug in here.
pub trait Store: Send + Sync {
    /// The record as it is now, without locking; `Ok(None)`: not enrolled.
    fn read(&self) -> Result<Option<UserRecord>>;

    /// Runs `change` as one transaction, exclusive against every other
    /// change of this user's record. `change` sees `None` when there is no
    /// record; leaving `Some` creates or replaces it, leaving `None` removes
    /// it. Nothing is written when the record is unchanged or `change`
    /// fails. `change` may run more than once (a database retries a
    /// transaction that lost a race), so it must act only on the record and
    /// on what it hands back to its caller; only the last run counts.
    fn transact(&self, change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>)
    -> Result<()>;

    /// Where the record is, for messages (a path, a socket, a database).
    fn describe(&self) -> String;

    /// Runs `change` on the sends to destinations being enrolled by a user
    /// who has no record yet (`otpgate enroll email|sms`), as one
    /// transaction like [`Store::transact`]: there is no record to count
    /// them in, and the hourly limit must hold from one run of the CLI to
    /// the next.
    fn transact_enrollment_sends(
        &self,
        change: &mut dyn FnMut(&mut EnrollmentSends) -> Result<()>,
    ) -> Result<()>;

    /// Forgets that the user was enrolled, even when their record cannot
    /// be reached (`otpgate reset --user` for a home that is gone); `true`
    /// when there was something to forget. Stores that cannot lose a
    /// record without deciding to have nothing to forget.
    fn forget(&self) -> Result<bool> {
        Ok(false)
    }
}

/// [`Store::transact`] with a result: what the last run of `change`
/// returned.
pub trait StoreExt: Store {
    fn update<T>(&self, mut change: impl FnMut(&mut Option<UserRecord>) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.transact(&mut |record| {
            out = Some(change(record)?);
            Ok(())
        })?;
        // A backend that returns Ok without running `change` is broken:
        // deny rather than guess.
        out.ok_or_else(|| Error::StoreContract {
            store: self.describe(),
        })
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn read(&self) -> Result<Option<UserRecord>> {
        (**self).read()
    }
    fn transact(
        &self,
        change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>,
    ) -> Result<()> {
        (**self).transact(change)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn transact_enrollment_sends(
        &self,
        change: &mut dyn FnMut(&mut EnrollmentSends) -> Result<()>,
    ) -> Result<()> {
        (**self).transact_enrollment_sends(change)
    }
    fn forget(&self) -> Result<bool> {
        (**self).forget()
    }
}

/// The users with a record file in `dir`: the names of its files that
/// end with `suffix`, without it, in no order. Dot files (an unfinished
/// write's temp file) are left out.
pub fn names_in(dir: &Path, suffix: &str) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| n.strip_suffix(suffix).map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect())
}

/// Opens the store the system config names for `account`: the user file.
/// With `store.kind = "daemon"` the records are `otpgated`'s and no
/// process but the daemon opens them; a login asks it through
/// [`crate::remote::Daemon`], and a caller that needs the record itself is
/// refused rather than handed a file nobody reads.
pub fn open(config: &SystemConfig, account: &Account) -> Result<Box<dyn Store>> {
    if config.store.kind == crate::system::StoreKind::Daemon {
        return Err(Error::Daemon {
            socket: config.store.socket.clone().into(),
            cause: "records are kept by otpgated (store.kind = \"daemon\"), and this \
                    command does not manage them through it yet"
                .into(),
        });
    }
    Ok(Box::new(UserFile::for_account(config, account)?))
}

/// Where the flow and the CLI get stores from: the system config's choice
/// in production, memory in tests.
pub trait Backend {
    fn open(&self, config: &SystemConfig, account: &Account) -> Result<Box<dyn Store>>;
}

/// The backend the system config names.
pub struct Configured;

impl Backend for Configured {
    fn open(&self, config: &SystemConfig, account: &Account) -> Result<Box<dyn Store>> {
        open(config, account)
    }
}

/// Where one user's file is and who may own it.
#[derive(Debug)]
pub struct UserFile {
    path: PathBuf,
    dir: PathBuf,
    name: String,
    /// Acceptable owners of the file.
    owners: Vec<u32>,
    /// Acceptable owners of its directory.
    dir_owners: Vec<u32>,
    /// The home the file lies under (in-home files only): every directory
    /// from it down to the file's is checked, as sshd's StrictModes does.
    home: Option<PathBuf>,
    /// Taken for every file operation when running as root.
    identity: Option<FsIdentity>,
    /// fsync the directory after a rename (see `fsync_directory`).
    sync_directory: bool,
    /// Root's record of who is enrolled (in-home files; see `registry`).
    registry: Option<Registry>,
    /// The last record parsed, with the text it came from (wiped on drop).
    parsed: Mutex<Option<(Zeroizing<String>, Parsed)>>,
}

impl Clone for UserFile {
    fn clone(&self) -> Self {
        UserFile {
            path: self.path.clone(),
            dir: self.dir.clone(),
            name: self.name.clone(),
            owners: self.owners.clone(),
            dir_owners: self.dir_owners.clone(),
            home: self.home.clone(),
            identity: self.identity.clone(),
            sync_directory: self.sync_directory,
            registry: self.registry.clone(),
            parsed: Mutex::new(None),
        }
    }
}

impl UserFile {
    /// The file the system config assigns to `account`.
    pub fn for_account(config: &SystemConfig, account: &Account) -> Result<Self> {
        let path = config.user_file_path(account)?;
        let mut file = UserFile::new(path, account, config.user_file_in_home())?;
        file.sync_directory = config.fsync_directory;
        file.registry = config.registry(account)?;
        Ok(file)
    }

    /// A file at `path` belonging to `account`. In the home (`in_home`),
    /// the file and its directory belong to the user and are accessed with
    /// the user's identity; in central storage the directory must be root's
    /// and the file may be root's or the user's.
    pub fn new(path: PathBuf, account: &Account, in_home: bool) -> Result<Self> {
        let invalid = |message: &str| Error::Invalid {
            source: "config".into(),
            key: "user_file".into(),
            message: format!("{}: {message}", path.display()),
        };
        let dir = path
            .parent()
            .filter(|d| d.is_absolute())
            .ok_or_else(|| invalid("needs an absolute path with a directory"))?
            .to_path_buf();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.starts_with('.') || n.len() > 1)
            .ok_or_else(|| invalid("needs a UTF-8 file name"))?
            .to_string();
        // In the home, the user's own; in central storage, root's directory
        // holding a file of root's or the user's.
        let (owners, dir_owners) = if in_home {
            (vec![account.uid], dedup(vec![account.uid, 0]))
        } else {
            (dedup(vec![account.uid, 0]), vec![0])
        };
        let home = (in_home && dir.starts_with(&account.home)).then(|| account.home.clone());
        Ok(UserFile {
            dir,
            name,
            owners,
            dir_owners,
            home,
            // Only a root process switches identity (see `with_identity`);
            // skipping it otherwise also skips reading the group database.
            identity: (in_home && nix::unistd::geteuid().is_root() && account.uid != 0)
                .then(|| FsIdentity::of(account)),
            sync_directory: true,
            registry: None,
            parsed: Mutex::new(None),
            path,
        })
    }

    /// `account`'s record in a directory of `owner`'s alone (`otpgated`'s
    /// state directory): the file and the directory must be `owner`'s, the
    /// user owns nothing there and is never switched to. `config` says how
    /// durable a rename is (`fsync_directory`).
    pub fn owned_by(
        path: PathBuf,
        account: &Account,
        owner: u32,
        config: &SystemConfig,
    ) -> Result<Self> {
        let mut file = UserFile::new(path, account, false)?;
        file.owners = vec![owner];
        file.dir_owners = vec![owner];
        file.sync_directory = config.fsync_directory;
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// With no directory there is no file and nothing to lock: a change
    /// that creates a record creates the directory (as the file's owner,
    /// mode 0700) and runs again with the lock held.
    fn change_without_directory(
        &self,
        change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>,
    ) -> Result<Seen> {
        let seen = self.missing(None)?;
        let mut record = None;
        change(&mut record)?;
        if record.is_none() {
            return Ok(seen);
        }
        let dir = self.create_and_open_dir()?;
        self.change_at(&dir, change)
    }

    /// The locked read-change-write of [`Store::transact`] in `dir`.
    fn change_at(
        &self,
        dir: &OwnedFd,
        change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>,
    ) -> Result<Seen> {
        let (seen, flush) = {
            let _lock = self.lock(dir)?;
            self.change_locked(dir, change)?
        };
        // After the lock: the next login of this user reads, decides and
        // writes while this write is being flushed (docs/ARCHITECTURE.md,
        // §5.4). This change counts as made only once the flush returns.
        if let Some(flush) = flush {
            flush.finish()?;
        }
        Ok(seen)
    }

    /// [`UserFile::change_at`] with the lock held; an in-place write of
    /// the state file is returned unflushed.
    fn change_locked(
        &self,
        dir: &OwnedFd,
        change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>,
    ) -> Result<(Seen, Option<Flush>)> {
        let found = self.read_at(dir)?;
        let original = found.as_ref().map(|f| f.record.clone());
        // Before `change` sees "no record": an enrolled user's missing file
        // is an error, not a blank page to write on.
        let before = match original {
            Some(_) => Seen::Present,
            None => self.missing(Some(dir))?,
        };
        let mut record = original.clone();
        change(&mut record)?;
        if record == original {
            return Ok((before, None));
        }
        match &record {
            Some(r) => {
                let flush = self.write_at(dir, found.as_ref(), r)?;
                if before == Seen::Disabled {
                    self.remove_marker(dir)?;
                }
                Ok((Seen::Present, flush))
            }
            None => {
                // The marker first: a crash between the two leaves the
                // file, which wins over the marker.
                self.write_marker(dir)?;
                self.remove_at(dir)?;
                Ok((Seen::Removed, None))
            }
        }
    }

    /// Writes `record` where `found` was: only the login state, in place,
    /// when that is all that changed and the file has a serial to bind it
    /// to; otherwise the whole record, by rename, with a new serial (the
    /// state file's slots then name an older serial and are ignored). An
    /// in-place write is returned to be flushed once the lock is dropped.
    fn write_at(
        &self,
        dir: &OwnedFd,
        found: Option<&Found>,
        record: &UserRecord,
    ) -> Result<Option<Flush>> {
        if let Some(found) = found
            && let Some(slot) = state_slot(found, record)
        {
            return self.write_state(dir, found.state.as_ref(), &slot, &found.file.stat);
        }
        let serial = random_u64()?;
        let old = found.map(|f| &f.file.stat);
        if found.is_none_or(|f| f.state.is_none()) {
            self.create_state(dir, serial, record, old)?;
        }
        let mut whole = record.clone();
        whole.version = record_file::VERSION;
        whole.serial = Some(hot::format_serial(serial));
        self.replace_at(dir, &whole, old).map(|()| None)
    }

    /// What a missing record means (the caller found no file; `dir` is its
    /// directory when that exists): the user disabled it (marker), it was
    /// never there, or, with a registry entry and no marker, it is
    /// unavailable ([`Error::Unavailable`]).
    fn missing(&self, dir: Option<&OwnedFd>) -> Result<Seen> {
        let Some(registry) = &self.registry else {
            return Ok(Seen::Absent);
        };
        if let Some(dir) = dir
            && self.has_marker(dir)?
        {
            return Ok(Seen::Disabled);
        }
        if registry.contains()? {
            return Err(Error::Unavailable {
                user: registry.user().to_string(),
                store: self.describe(),
                entry: registry.entry_path(),
            });
        }
        Ok(Seen::Absent)
    }

    /// Brings the registry in line with what was seen, as root (outside
    /// the user's identity): a record means enrolled; a record removed, or
    /// the user's "disabled" marker, means not.
    fn note(&self, seen: Seen) -> Result<()> {
        let Some(registry) = &self.registry else {
            return Ok(());
        };
        match seen {
            Seen::Present => registry.add(),
            Seen::Removed | Seen::Disabled => registry.remove().map(|_| ()),
            Seen::Absent => Ok(()),
        }
    }

    fn marker_name(&self) -> String {
        format!("{}.disabled", self.name)
    }

    fn has_marker(&self, dir: &OwnedFd) -> Result<bool> {
        let name = self.marker_name();
        match fstatat(dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::errno(self.dir.join(name), "stat", e)),
        }
    }

    /// Leaves `<name>.disabled` where the file was: the user turned
    /// otpgate off, so the next login as root takes them off the registry
    /// (a process that is not root cannot).
    fn write_marker(&self, dir: &OwnedFd) -> Result<()> {
        if self.registry.is_none() {
            return Ok(());
        }
        let name = self.marker_name();
        let path = self.dir.join(&name);
        let at = Location::in_dir(dir.as_fd(), &name, &path);
        secure_open::open(at, Access::ReadWriteOrCreate, &Rules::any_regular_file())?;
        Ok(())
    }

    fn remove_marker(&self, dir: &OwnedFd) -> Result<()> {
        let name = self.marker_name();
        match unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => self.sync_dir(dir),
            Err(e) => Err(Error::errno(self.dir.join(name), "remove", e)),
        }
    }

    /// Creates the file's directory (and missing parents) with mode 0700,
    /// as the file's owner. The first write does this itself.
    pub fn ensure_dir(&self) -> Result<()> {
        with_identity(self.identity.as_ref(), || self.create_dir())
    }

    /// [`UserFile::ensure_dir`] with the identity already taken.
    fn create_dir(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, "create directory", e))
    }

    /// Creates the directory (see [`UserFile::ensure_dir`]) and opens it,
    /// with the identity already taken.
    fn create_and_open_dir(&self) -> Result<OwnedFd> {
        self.create_dir()?;
        self.open_dir()?.ok_or_else(|| {
            Error::io(
                &self.dir,
                "open directory",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }

    /// Opens the file's directory. Under a home, the home and every
    /// directory below it are opened one by one without following a
    /// symlink, and each is checked: whoever else can write `~` or
    /// `~/.config` can swap everything under it. `None`: some directory on
    /// the way does not exist.
    fn open_dir(&self) -> Result<Option<OwnedFd>> {
        let Some(home) = &self.home else {
            return self.open_checked(None, &self.dir, &self.dir);
        };
        // The home's own path comes from the passwd entry (root's word): it
        // may lie behind a symlink such as /home -> /srv/home.
        let Some(mut fd) = self.open_checked(None, home, home)? else {
            return Ok(None);
        };
        let mut path = home.clone();
        let below = self.dir.strip_prefix(home).unwrap_or(Path::new(""));
        for part in below.components() {
            let std::path::Component::Normal(name) = part else {
                return Err(Error::Symlink {
                    path: self.dir.clone(),
                });
            };
            path.push(name);
            match self.open_checked(Some(&fd), Path::new(name), &path)? {
                Some(next) => fd = next,
                None => return Ok(None),
            }
        }
        Ok(Some(fd))
    }

    /// Opens directory `name` (relative to `at`, or absolute), refusing a
    /// symlink where `at` is given, and checks its owner and mode; `path`
    /// names it in errors.
    fn open_checked(
        &self,
        at: Option<&OwnedFd>,
        name: &Path,
        path: &Path,
    ) -> Result<Option<OwnedFd>> {
        // The last directory never through a symlink; the home's own path
        // (opened with `at` = None under a home) may be.
        let follow = at.is_none() && self.home.is_some();
        let location = match at {
            Some(dir) => Location::in_dir(dir.as_fd(), name, path),
            // Only the home's path or the central directory: `name` is
            // the whole path.
            None => Location::path(name),
        };
        secure_open::open_dir(location, DirAccess::Read, follow, &self.dir_owners)
    }

    /// Opens, checks and parses the file in `dir`, and lays the state
    /// file's newest slot over it when that slot names this file's serial.
    fn read_at(&self, dir: &OwnedFd) -> Result<Option<Found>> {
        let Some(file) = self.read_base(dir)? else {
            return Ok(None);
        };
        let state = self.read_state(dir)?;
        let record = match &state {
            Some(newest) if Some(newest.slot.serial) == file.serial => {
                Hot::decode(&newest.slot.payload)
                    .and_then(|hot| hot.apply(&file.base))
                    .ok_or_else(|| Error::StateDamaged {
                        path: self.dir.join(self.state_name()),
                        why: "the newest copy does not fit the record",
                    })?
            }
            // No slot for this version of the record: it was rewritten
            // after the last slot, with the state of that moment.
            _ => file.base.clone(),
        };
        Ok(Some(Found {
            file,
            state,
            record,
        }))
    }

    /// [`UserFile::read_at`] without the lock. A slot being written as we
    /// read is passed over for the other; should both look damaged (a
    /// second write began on the other slot in between), the read is
    /// repeated under the lock, where no write runs.
    fn read_unlocked(&self, dir: &OwnedFd) -> Result<Option<Found>> {
        match self.read_at(dir) {
            Err(Error::StateDamaged { .. }) => {
                let _lock = self.lock(dir)?;
                self.read_at(dir)
            }
            other => other,
        }
    }

    /// The record file as written, parsed once per text: a login reads the
    /// file before the prompt and again under the lock, and the second
    /// parse is skipped when the text is the same. The text, not the
    /// file's `stat`: an inode freed by one rename can be reused by the
    /// next with the same size inside one tick of the file timestamps.
    fn read_base(&self, dir: &OwnedFd) -> Result<Option<Parsed>> {
        let at = Location::in_dir(dir.as_fd(), &self.name, &self.path);
        let opened = match secure_open::open(at, Access::Read, &self.rules()) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let stat = *opened.stat();
        let text = opened.read_text()?;
        if let Ok(slot) = self.parsed.lock()
            && let Some((cached, parsed)) = slot.as_ref()
            && **cached == *text
        {
            return Ok(Some(Parsed {
                stat,
                ..parsed.clone()
            }));
        }
        let mut base = UserRecord::from_toml(&self.path, &text)?;
        // The serial and the version are the file's, not the record's:
        // callers compare records, and every write is of this version.
        let serial = base.serial.take().as_deref().and_then(hot::parse_serial);
        base.version = record_file::VERSION;
        let parsed = Parsed { base, serial, stat };
        if let Ok(mut slot) = self.parsed.lock() {
            *slot = Some((text, parsed.clone()));
        }
        Ok(Some(parsed))
    }

    /// What the file must be: the owner's alone (no access for group or
    /// others, as the TOTP secret is in it), and small.
    fn rules(&self) -> Rules {
        Rules {
            owners: Some(self.owners.clone()),
            forbidden_mode: 0o077,
            max_size: MAX_USER_FILE_BYTES,
        }
    }

    fn lock_name(&self) -> String {
        format!("{}.lock", self.name)
    }

    /// Temp files of the file `name` (the record's, or its sends').
    fn temp_prefix(name: &str) -> String {
        format!(".{name}.tmp-")
    }

    /// Beside the record: sends to destinations being enrolled while there
    /// is no record yet (see `transact_enrollment_sends`).
    fn sends_name(&self) -> String {
        format!("{}.sends", self.name)
    }

    /// Takes the exclusive lock, waiting up to [`LOCK_TIMEOUT`].
    fn lock(&self, dir: &OwnedFd) -> Result<Flock<File>> {
        let name = self.lock_name();
        let lock_path = self.dir.join(&name);
        let at = Location::in_dir(dir.as_fd(), &name, &lock_path);
        // Its content is never read, so only its type matters; only the
        // directory's owner (or root) can have made it (see `open_dir`).
        let file = secure_open::open(at, Access::ReadWriteOrCreate, &Rules::any_regular_file())?
            .into_file();
        match try_lock_yielding(file) {
            Ok(lock) => Ok(lock),
            Err((file, Errno::EWOULDBLOCK | Errno::EINTR)) => wait_for_lock(file, lock_path),
            Err((_, e)) => Err(Error::errno(&lock_path, "lock", e)),
        }
    }

    /// Temp files left by a process killed mid-write; only ever called with
    /// the lock held, so none of them is being written.
    fn remove_stale_temps(&self, dir: &OwnedFd) {
        let prefixes = [
            UserFile::temp_prefix(&self.name),
            UserFile::temp_prefix(&self.sends_name()),
            UserFile::temp_prefix(&self.state_name()),
        ];
        let Ok(fd) = dir.as_fd().try_clone_to_owned() else {
            return;
        };
        let Ok(mut listing) = nix::dir::Dir::from_fd(fd) else {
            return;
        };
        let stale: Vec<String> = listing
            .iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
            .collect();
        for name in stale {
            let _ = unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// Writes `record` to a temp file, syncs it and renames it over the file.
    fn replace_at(&self, dir: &OwnedFd, record: &UserRecord, old: Option<&FileStat>) -> Result<()> {
        let text = Zeroizing::new(record.to_toml());
        self.replace_named(dir, &self.name, text.as_bytes(), old)
    }

    /// Writes `bytes` to a temp file, syncs it and renames it over `name`
    /// in `dir`, then syncs `dir`; `old` is the file it replaces, if any.
    fn replace_named(
        &self,
        dir: &OwnedFd,
        name: &str,
        bytes: &[u8],
        old: Option<&FileStat>,
    ) -> Result<()> {
        self.rename_into_place(dir, name, bytes, old)
            .and_then(|()| self.sync_dir(dir))
    }

    /// [`UserFile::replace_named`] without the directory sync, for a file
    /// whose rename a later one's sync makes durable.
    fn rename_into_place(
        &self,
        dir: &OwnedFd,
        name: &str,
        bytes: &[u8],
        old: Option<&FileStat>,
    ) -> Result<()> {
        // Here, not at every locked change: a login that writes in place
        // makes no temp file and need not list the directory.
        self.remove_stale_temps(dir);
        let path = self.dir.join(name);
        // Never write what the next read refuses: that would lock the
        // user out (and the old file stays as it was).
        if bytes.len() as u64 > MAX_USER_FILE_BYTES {
            return Err(Error::TooLarge {
                path,
                size: bytes.len() as u64,
                limit: MAX_USER_FILE_BYTES,
            });
        }
        let temp = format!(
            "{}{}-{:08x}",
            UserFile::temp_prefix(name),
            std::process::id(),
            random_u32()
        );
        let temp_path = self.dir.join(&temp);
        let at = Location::in_dir(dir.as_fd(), &temp, &temp_path);
        let fd = OwnedFd::from(
            secure_open::open(at, Access::CreateNew, &Rules::any_regular_file())?.into_file(),
        );
        let result = self.fill(fd, &temp_path, bytes, old).and_then(|()| {
            renameat(dir, temp.as_str(), dir, name)
                .map_err(|e| Error::errno(&path, "rename temp file over", e))
        });
        if result.is_err() {
            let _ = unlinkat(dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Fills and syncs the temp file; central storage written by root
    /// keeps the owner the old file had.
    fn fill(
        &self,
        fd: OwnedFd,
        temp_path: &Path,
        bytes: &[u8],
        old: Option<&FileStat>,
    ) -> Result<()> {
        if let Some(old) = old
            && self.identity.is_none()
            && nix::unistd::geteuid().is_root()
            && old.st_uid != 0
        {
            fchown(
                &fd,
                Some(Uid::from_raw(old.st_uid)),
                Some(Gid::from_raw(old.st_gid)),
            )
            .map_err(|e| Error::errno(temp_path, "chown temp file", e))?;
        }
        let mut file = File::from(fd);
        file.write_all(bytes)
            .map_err(|e| Error::io(temp_path, "write", e))?;
        fsync(&file).map_err(|e| Error::errno(temp_path, "fsync", e))
    }

    /// Makes a rename or unlink in `dir` durable, unless configured not to.
    fn sync_dir(&self, dir: &OwnedFd) -> Result<()> {
        if !self.sync_directory {
            return Ok(());
        }
        fsync(dir).map_err(|e| Error::errno(&self.dir, "fsync directory", e))
    }

    /// The locked read-change-write of the sends file (same lock as the
    /// record: one user's state changes one at a time).
    fn change_sends_at(
        &self,
        dir: &OwnedFd,
        change: &mut dyn FnMut(&mut EnrollmentSends) -> Result<()>,
    ) -> Result<()> {
        let _lock = self.lock(dir)?;
        let name = self.sends_name();
        let path = self.dir.join(&name);
        let at = Location::in_dir(dir.as_fd(), &name, &path);
        let (original, old) = match secure_open::open(at, Access::Read, &self.rules()) {
            Ok(opened) => {
                let st = *opened.stat();
                (
                    EnrollmentSends::from_toml(&path, &opened.read_text()?)?,
                    Some(st),
                )
            }
            Err(e) if e.is_not_found() => (EnrollmentSends::default(), None),
            Err(e) => return Err(e),
        };
        let mut sends = original.clone();
        change(&mut sends)?;
        if sends == original {
            return Ok(());
        }
        if sends.is_empty() {
            unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| Error::errno(&path, "remove", e))?;
            return self.sync_dir(dir);
        }
        self.replace_named(dir, &name, sends.to_toml().as_bytes(), old.as_ref())
    }

    /// Removes the record, then its state file (a crash between leaves a
    /// state file no record's serial names).
    fn remove_at(&self, dir: &OwnedFd) -> Result<()> {
        unlinkat(dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| Error::errno(&self.path, "remove", e))?;
        self.remove_state(dir)?;
        self.sync_dir(dir)
    }
}

impl Store for UserFile {
    /// Reads the file without locking (a rename makes every read see a
    /// whole file, and a slot being written is passed over for the other).
    /// `Ok(None)` when it or its directory does not exist and the user is
    /// not recorded as enrolled.
    fn read(&self) -> Result<Option<UserRecord>> {
        let (record, seen) = with_identity(self.identity.as_ref(), || {
            let Some(dir) = self.open_dir()? else {
                return Ok((None, self.missing(None)?));
            };
            match self.read_unlocked(&dir)? {
                Some(found) => Ok((Some(found.record), Seen::Present)),
                None => Ok((None, self.missing(Some(&dir))?)),
            }
        })?;
        self.note(seen)?;
        Ok(record)
    }

    /// Locks, re-reads, changes, and writes a temp file renamed over the
    /// file (or removes it), all with the owner's file-system identity;
    /// then, as root, records in the registry what became of it.
    fn transact(
        &self,
        change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>,
    ) -> Result<()> {
        let seen = with_identity(self.identity.as_ref(), || match self.open_dir()? {
            Some(dir) => self.change_at(&dir, change),
            None => self.change_without_directory(change),
        })?;
        self.note(seen)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// `<name>.sends` beside the record, with the record's lock, owner
    /// and identity; the directory is created (as the owner) if missing.
    fn transact_enrollment_sends(
        &self,
        change: &mut dyn FnMut(&mut EnrollmentSends) -> Result<()>,
    ) -> Result<()> {
        with_identity(self.identity.as_ref(), || {
            let dir = match self.open_dir()? {
                Some(dir) => dir,
                None => self.create_and_open_dir()?,
            };
            self.change_sends_at(&dir, change)
        })
    }

    fn forget(&self) -> Result<bool> {
        match &self.registry {
            Some(registry) => registry.remove(),
            None => Ok(false),
        }
    }
}

/// The record file as parsed.
#[derive(Debug, Clone)]
struct Parsed {
    /// The record, without its serial, as of this build's version.
    base: UserRecord,
    /// The file's serial; `None` in a file this build has not written.
    serial: Option<u64>,
    stat: FileStat,
}

/// A user's record as found on disk.
#[derive(Debug)]
struct Found {
    /// The record file as written; its `stat` gives the owner of what
    /// replaces it.
    file: Parsed,
    /// The state file's newest intact slot, if there is a state file.
    state: Option<Newest>,
    /// `base` with the login state of `state` when it names `base`.
    record: UserRecord,
}

/// The state-file slot that records the change from `found` to `record`,
/// when only login state changed, `found` has a serial, and it fits.
fn state_slot(found: &Found, record: &UserRecord) -> Option<Vec<u8>> {
    let serial = found.file.serial?;
    let hot = Hot::between(&found.file.base, record)?;
    Slot {
        generation: found.state.as_ref().map_or(0, |n| n.slot.generation) + 1,
        serial,
        payload: hot.encode(),
    }
    .encode()
}

/// What a read or a change found of the user's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// There is a record (it may have just been written).
    Present,
    /// This change removed it (and left the "disabled" marker).
    Removed,
    /// No file, and the user's "disabled" marker.
    Disabled,
    /// No file, and no sign there ever was one.
    Absent,
}

/// How many times a login that finds the lock taken gives up the CPU and
/// tries again before it starts to wait ([`try_lock_yielding`]).
const LOCK_YIELDS: u32 = 3;

/// Takes the lock if it is free now or frees within [`LOCK_YIELDS`] turns
/// of the scheduler. The lock is held for a read, a decision and one
/// `pwrite` (tens of microseconds; the flush runs after it, §5.4), so a
/// login that finds it taken often gets it by letting the holder run on:
/// cheaper than a wait, which wakes a waiter thread and then this one. With
/// 64 processes logging in as one user on two cores this took throughput
/// from ~4,100 to ~5,000 logins/s (benches/run.sh). A process that takes
/// the lock this way may pass one that waits; the wait stays bounded by
/// [`LOCK_TIMEOUT`].
fn try_lock_yielding(mut file: File) -> std::result::Result<Flock<File>, (File, Errno)> {
    for _ in 0..LOCK_YIELDS {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) => file = back,
            other => return other,
        }
        std::thread::yield_now();
    }
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
}

/// Set while this process has a lock-waiter thread: one at most.
static WAITER_RUNNING: AtomicBool = AtomicBool::new(false);
/// How often a wait without the waiter thread tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// Waits for a lock another login holds. A blocking `flock` wakes the
/// moment the lock frees (polling with sleeps would leave waiters asleep
/// while it is free, and starve some under contention: p99 of 0.7 s with 64
/// concurrent logins). Linux has no timed `flock`, so a helper thread blocks
/// on a duplicate descriptor (the same open file description: the lock it
/// takes is ours) while we wait at most [`LOCK_TIMEOUT`]. After a timeout
/// the thread takes and drops the lock whenever it frees, and a blocked
/// `flock` cannot be cancelled: a lock held forever would keep it forever.
/// So a process has at most one such thread; a wait that finds it taken
/// (another wait, or one that timed out) polls instead.
fn wait_for_lock(file: File, lock_path: PathBuf) -> Result<Flock<File>> {
    if WAITER_RUNNING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return poll_for_lock(file, lock_path);
    }
    let wait = match spawn_waiter(&file, &lock_path) {
        Ok(wait) => wait,
        Err(e) => {
            WAITER_RUNNING.store(false, Ordering::Release);
            return Err(e);
        }
    };
    match wait.recv_timeout(LOCK_TIMEOUT) {
        Ok(Ok(())) => Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| Error::errno(&lock_path, "lock", e)),
        Ok(Err(e)) => Err(Error::io(&lock_path, "lock", e)),
        Err(_) => Err(lock_timeout(lock_path)),
    }
}

/// Starts the one waiter thread; it clears [`WAITER_RUNNING`] when its
/// `flock` returns, however late.
fn spawn_waiter(file: &File, lock_path: &Path) -> Result<mpsc::Receiver<std::io::Result<()>>> {
    let waiter = file
        .try_clone()
        .map_err(|e| Error::io(lock_path, "duplicate lock descriptor", e))?;
    let (done, wait) = mpsc::channel();
    std::thread::Builder::new()
        .name("otpgate-lock".into())
        .spawn(move || {
            // std's `File::lock` is a blocking flock(LOCK_EX), retried on
            // EINTR; dropping `waiter` closes only its descriptor, so the
            // lock stays with `file` (or frees, if `file` is gone).
            let taken = waiter.lock();
            drop(waiter);
            WAITER_RUNNING.store(false, Ordering::Release);
            let _ = done.send(taken);
        })
        .map_err(|e| Error::io(lock_path, "start lock waiter", e))?;
    Ok(wait)
}

/// Tries the lock every [`LOCK_POLL`] until [`LOCK_TIMEOUT`].
fn poll_for_lock(mut file: File, lock_path: PathBuf) -> Result<Flock<File>> {
    let until = Instant::now() + LOCK_TIMEOUT;
    loop {
        std::thread::sleep(LOCK_POLL);
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < until => file = back,
            Err((_, Errno::EWOULDBLOCK | Errno::EINTR)) => return Err(lock_timeout(lock_path)),
            Err((_, e)) => return Err(Error::errno(&lock_path, "lock", e)),
        }
    }
}

fn lock_timeout(path: PathBuf) -> Error {
    Error::LockTimeout {
        path,
        seconds: LOCK_TIMEOUT.as_secs(),
    }
}

fn dedup(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

/// A new record serial. Distinct serials are what tell a state slot of
/// this version of the record from a slot of an earlier one; two equal
/// among one user's rewrites is a 2^-64 chance per pair.
fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|source| Error::Random {
        what: "a record serial",
        source,
    })?;
    Ok(u64::from_ne_bytes(b))
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // A name clash only makes O_EXCL fail, which is reported; no need to
    // fail harder when randomness is short.
    let _ = getrandom::fill(&mut b);
    u32::from_ne_bytes(b)
}
