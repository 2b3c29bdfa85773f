//! A store that keeps records in memory: the flow and CLI tests run on it
//! without root, and it checks the seam's contract as it goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Backend, Store};
use crate::account::Account;
use crate::error::{Error, Result};
use crate::record::{EnrollmentSends, UserRecord};
use crate::system::SystemConfig;

/// One user's record in memory. Transactions are serialized by a mutex;
/// with [`MemoryStore::retrying`] every change runs twice, the first run
/// thrown away, as a database retries a transaction, so a change that
/// acts outside the record shows up in tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    name: String,
    record: Mutex<Option<UserRecord>>,
    writes: AtomicUsize,
    retry: AtomicBool,
    read_only: AtomicBool,
    unavailable: AtomicBool,
    sends: Mutex<EnrollmentSends>,
}

impl MemoryStore {
    /// An empty store (not enrolled) named `name` in messages.
    pub fn new(name: &str) -> Self {
        MemoryStore {
            name: name.to_string(),
            ..MemoryStore::default()
        }
    }

    /// A store holding `record`.
    pub fn with(name: &str, record: UserRecord) -> Self {
        let store = MemoryStore::new(name);
        *store.slot() = Some(record);
        store
    }

    /// Runs every change twice from then on (see the type's doc).
    pub fn retrying(self) -> Self {
        self.retry.store(true, Ordering::Relaxed);
        self
    }

    /// Refuses every write from then on, as a full or read-only disk does.
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Relaxed);
    }

    /// From then on the record cannot be reached though the user is
    /// enrolled, as a home that is not mounted ([`Error::Unavailable`]),
    /// until [`Store::forget`].
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::Relaxed);
    }

    fn check_available(&self) -> Result<()> {
        if self.unavailable.load(Ordering::Relaxed) {
            return Err(Error::Unavailable {
                user: self.name.clone(),
                store: self.describe(),
                entry: format!("memory:{}:enrolled", self.name).into(),
            });
        }
        Ok(())
    }

    /// The record now, without the contract's ceremony (tests).
    pub fn snapshot(&self) -> Option<UserRecord> {
        self.slot().clone()
    }

    /// Replaces the record behind every transaction's back (tests: another
    /// host or an admin changed it).
    pub fn put(&self, record: Option<UserRecord>) {
        *self.slot() = record;
    }

    /// How many transactions changed the record.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::Relaxed)
    }

    fn slot(&self) -> MutexGuard<'_, Option<UserRecord>> {
        // A test that panicked mid-change poisons the mutex; the record
        // itself was not changed (changes apply to a copy).
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn read(&self) -> Result<Option<UserRecord>> {
        self.check_available()?;
        Ok(self.slot().clone())
    }

    fn transact(
        &self,
        change: &mut dyn FnMut(&mut Option<UserRecord>) -> Result<()>,
    ) -> Result<()> {
        self.check_available()?;
        let mut slot = self.slot();
        if self.retry.load(Ordering::Relaxed) {
            let mut discarded = slot.clone();
            change(&mut discarded)?;
        }
        let mut record = slot.clone();
        change(&mut record)?;
        if record == *slot {
            return Ok(());
        }
        if self.read_only.load(Ordering::Relaxed) {
            return Err(Error::io(
                self.describe(),
                "write",
                std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
            ));
        }
        *slot = record;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("memory:{}", self.name)
    }

    fn transact_enrollment_sends(
        &self,
        change: &mut dyn FnMut(&mut EnrollmentSends) -> Result<()>,
    ) -> Result<()> {
        let mut slot = self.sends.lock().unwrap_or_else(|e| e.into_inner());
        let mut sends = slot.clone();
        change(&mut sends)?;
        *slot = sends;
        Ok(())
    }

    fn forget(&self) -> Result<bool> {
        Ok(self.unavailable.swap(false, Ordering::Relaxed))
    }
}

/// Memory stores by user name: what [`Backend::open`] hands the flow.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    stores: Mutex<HashMap<String, Arc<MemoryStore>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    /// The store of `user`, created empty on first use.
    pub fn store(&self, user: &str) -> Arc<MemoryStore> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(MemoryStore::new(user)))
            .clone()
    }

    /// Puts `store` in place for `user`.
    pub fn insert(&self, user: &str, store: MemoryStore) -> Arc<MemoryStore> {
        let store = Arc::new(store);
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores.insert(user.to_string(), store.clone());
        store
    }
}

impl Backend for MemoryBackend {
    fn open(&self, _config: &SystemConfig, account: &Account) -> Result<Box<dyn Store>> {
        Ok(Box::new(self.store(&account.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreExt;

    fn record() -> UserRecord {
        UserRecord::new_channels_only()
    }

    #[test]
    fn an_unchanged_record_is_not_written_and_a_failed_change_leaves_it() {
        let s = MemoryStore::with("a", record());
        s.update(|_| Ok(())).unwrap();
        assert_eq!(s.writes(), 0);
        let err = s.update(|r| {
            r.take();
            Err::<(), _>(Error::Clock {
                message: "no".into(),
            })
        });
        assert!(err.is_err());
        assert!(s.snapshot().is_some(), "a failed change must not apply");
        s.update(|r| Ok(r.take())).unwrap();
        assert_eq!((s.snapshot(), s.writes()), (None, 1));
    }

    #[test]
    fn retrying_runs_the_change_twice_and_keeps_the_last_run() {
        let s = MemoryStore::with("a", record()).retrying();
        let mut runs = 0;
        let last = s
            .update(|_| {
                runs += 1;
                Ok(runs)
            })
            .unwrap();
        assert_eq!((runs, last), (2, 2));
    }

    #[test]
    fn a_read_only_store_refuses_changes_but_not_reads() {
        let s = MemoryStore::with("a", record());
        s.set_read_only(true);
        assert!(s.update(|r| Ok(r.take())).is_err());
        assert!(s.read().unwrap().is_some());
    }
}
