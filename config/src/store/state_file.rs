//! The state file: what logins change, written in place with one flush.
//!
//! `<name>.state` beside the record is [`FILE_BYTES`] long: a ring of
//! [`SLOTS`] slots of [`SLOT_BYTES`], each in its own page, so a write torn
//! by a power cut damages one slot at most. A slot is
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | magic `OTPGSTv1` |
//! | 8 | generation, u64 little-endian |
//! | 8 | serial of the record the overlay applies to |
//! | 4 | payload length |
//! | n | payload: a [`Hot`](crate::record::hot::Hot) overlay |
//! | 32 | SHA-256 of all of the above |
//!
//! A write goes to the slot after the newest intact one, with the next
//! generation; the lock is dropped and then the file is `fdatasync`ed
//! ([`Flush`]): its size and blocks do not change, so no metadata, no
//! rename and no directory sync. A reader takes the newest intact slot; one
//! torn by a crash falls back to an older one, and the login being written
//! was not accepted (acceptance waits for the flush). Every
//! `SLOTS - 1` writes flush the file before writing ([`flush_first`]), so
//! the newest generation whose flush returned is never the one overwritten
//! (docs/ARCHITECTURE.md, §5.4). The file is created whole (temp file,
//! rename) so it never exists without an intact slot: a file with none is
//! damage, and refused.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::stat::FileStat;
use nix::unistd::{UnlinkatFlags, unlinkat};
use sha2::{Digest, Sha256};

use super::UserFile;
use crate::error::{Error, Result};
use crate::record::UserRecord;
use crate::record::hot::Hot;
use crate::secure_open::{self, Access, Location, Rules};

/// One slot; a page, so that one slot's write never rewrites another's.
pub(super) const SLOT_BYTES: usize = 4096;
/// Slots in a file: a ring the writes go round, so that while one login's
/// write is being flushed the next ones write to other slots.
pub(super) const SLOTS: usize = 8;
/// The whole file. A file of the first layout (two slots) is read as it is
/// and written whole in this one at its next change.
pub(super) const FILE_BYTES: usize = SLOTS * SLOT_BYTES;
const MAGIC: [u8; 8] = *b"OTPGSTv1";
const HEADER_BYTES: usize = 8 + 8 + 8 + 4;
const DIGEST_BYTES: usize = 32;

/// One copy of the login state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Slot {
    /// Higher is newer; the next write takes one more than the newest.
    pub generation: u64,
    /// The serial of the record `payload` is an overlay on.
    pub serial: u64,
    pub payload: Vec<u8>,
}

/// The newest intact slot, where it is, and how many slots the file has.
#[derive(Debug, Clone)]
pub(super) struct Newest {
    pub slot: Slot,
    pub index: usize,
    pub slots: usize,
}

/// An in-place write of the state file, made but not yet flushed: the
/// change it holds counts as made only once [`Flush::finish`] returns.
#[derive(Debug)]
pub(super) struct Flush {
    file: File,
    path: PathBuf,
}

impl Flush {
    pub(super) fn finish(self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, "fdatasync", e))
    }
}

/// Whether the write of `generation` must first flush the file. A write
/// reuses the slot of the generation `SLOTS` before it, and may be torn by
/// a power cut; the newest generation whose flush has returned (and so
/// perhaps a login accepted on it) must then survive in another slot, so
/// one of the `SLOTS - 1` generations before this one must be on disk.
/// Flushing before every `(SLOTS - 1)`-th write guarantees it: the flush
/// before generation `m` makes every earlier one durable, which covers the
/// writes of `m` to `m + SLOTS - 2`; the flush before `m + SLOTS - 1`
/// takes over from there. (A file created whole is durable as a whole.)
/// The argument in full: docs/ARCHITECTURE.md, §5.4.
pub(super) fn flush_first(generation: u64) -> bool {
    generation.is_multiple_of(SLOTS as u64 - 1)
}

impl Slot {
    /// The slot's bytes; `None` when the payload does not fit (the caller
    /// rewrites the record instead).
    pub(super) fn encode(&self) -> Option<Vec<u8>> {
        let len = u32::try_from(self.payload.len()).ok()?;
        if HEADER_BYTES + self.payload.len() + DIGEST_BYTES > SLOT_BYTES {
            return None;
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + self.payload.len() + DIGEST_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.payload);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Some(out)
    }

    /// The generation a slot's header claims, unchecked; `None` without
    /// the magic.
    fn claimed_generation(bytes: &[u8]) -> Option<u64> {
        let header = bytes.get(..16)?;
        (header[..8] == MAGIC)
            .then(|| u64::from_le_bytes(header[8..16].try_into().unwrap_or([0; 8])))
    }

    /// The slot in `bytes` if it is intact: magic, a length that fits, and
    /// the checksum over it all. Zeros, garbage and half a write are not.
    fn decode(bytes: &[u8]) -> Option<Slot> {
        let header = bytes.get(..HEADER_BYTES)?;
        if header[..8] != MAGIC {
            return None;
        }
        let field = |at: usize| -> [u8; 8] { header[at..at + 8].try_into().unwrap_or([0; 8]) };
        let len = u32::from_le_bytes(header[24..28].try_into().ok()?) as usize;
        let end = HEADER_BYTES.checked_add(len)?;
        let stored = bytes.get(end..end.checked_add(DIGEST_BYTES)?)?;
        let digest = Sha256::digest(&bytes[..end]);
        if digest.as_slice() != stored {
            return None;
        }
        Some(Slot {
            generation: u64::from_le_bytes(field(8)),
            serial: u64::from_le_bytes(field(16)),
            payload: bytes[HEADER_BYTES..end].to_vec(),
        })
    }
}

/// The newest intact slot of a state file's bytes; `None` when no slot is
/// intact.
pub(super) fn newest(bytes: &[u8]) -> Option<Newest> {
    let chunks: Vec<&[u8]> = bytes.chunks(SLOT_BYTES).take(SLOTS).collect();
    let slots = chunks.len();
    // Newest claimed generation first; only the checksum says a slot is
    // intact, so a damaged slot claiming any generation is passed over, and
    // the first that checks out is the newest intact one. One checksum per
    // read when nothing is damaged.
    let mut order: Vec<(u64, usize)> = chunks
        .iter()
        .enumerate()
        .filter_map(|(index, chunk)| Some((Slot::claimed_generation(chunk)?, index)))
        .collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    order.into_iter().find_map(|(_, index)| {
        let slot = Slot::decode(chunks[index])?;
        Some(Newest { slot, index, slots })
    })
}

/// A new state file's bytes: `slot` first, the others empty.
fn whole_file(slot: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; FILE_BYTES];
    bytes[..slot.len()].copy_from_slice(slot);
    bytes
}

impl UserFile {
    pub(super) fn state_name(&self) -> String {
        format!("{}.state", self.name)
    }

    /// What the state file must be: the record's owners, private, and
    /// [`SLOTS`] slots long at most.
    fn state_rules(&self) -> Rules {
        Rules {
            max_size: FILE_BYTES as u64,
            ..self.rules()
        }
    }

    /// The state file's newest intact slot; `Ok(None)` when there is no
    /// state file; [`Error::StateDamaged`] when no slot is intact.
    pub(super) fn read_state(&self, dir: &OwnedFd) -> Result<Option<Newest>> {
        let name = self.state_name();
        let path = self.dir.join(&name);
        let at = Location::in_dir(dir.as_fd(), &name, &path);
        let opened = match secure_open::open(at, Access::Read, &self.state_rules()) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = opened.read_public()?;
        match newest(&bytes) {
            Some(n) => Ok(Some(n)),
            None => Err(Error::StateDamaged {
                path,
                why: "no copy passes its checksum",
            }),
        }
    }

    /// Writes `slot` (the generation after `newest`'s) into the slot after
    /// `newest`'s in the ring and returns it to be flushed (`fdatasync`)
    /// once the lock is dropped; every `SLOTS - 1` writes flush the file
    /// first ([`flush_first`]). With no state file yet, or one of the
    /// two-slot layout, writes the file whole (temp file, flush, rename,
    /// directory flush), owned as the record (`record` is its `fstat`).
    pub(super) fn write_state(
        &self,
        dir: &OwnedFd,
        newest: Option<&Newest>,
        slot: &[u8],
        record: &FileStat,
    ) -> Result<Option<Flush>> {
        let name = self.state_name();
        let Some(newest) = newest.filter(|n| n.slots == SLOTS) else {
            return self
                .replace_named(dir, &name, &whole_file(slot), Some(record))
                .map(|()| None);
        };
        let path = self.dir.join(&name);
        let at = Location::in_dir(dir.as_fd(), &name, &path);
        let file = secure_open::open(at, Access::ReadWrite, &self.state_rules())?.into_file();
        if flush_first(newest.slot.generation + 1) {
            file.sync_data()
                .map_err(|e| Error::io(&path, "fdatasync", e))?;
        }
        let offset = ((newest.index + 1) % SLOTS * SLOT_BYTES) as u64;
        file.write_all_at(slot, offset)
            .map_err(|e| Error::io(&path, "write state slot", e))?;
        Ok(Some(Flush { file, path }))
    }

    /// Creates the state file of a record about to be written whole with
    /// `serial`, when it has none: one slot holding the record's own login
    /// state, so that its first login writes in place like every later one
    /// instead of creating the file (a temp file, two flushes and a rename
    /// on that login's path). The caller renames the record after this and
    /// syncs the directory once for both. Should the record's rename not
    /// happen, the slot names a serial no record has and is never applied.
    /// A record whose state does not fit a slot gets no state file here;
    /// its first login creates one, as before.
    pub(super) fn create_state(
        &self,
        dir: &OwnedFd,
        serial: u64,
        record: &UserRecord,
        owner: Option<&FileStat>,
    ) -> Result<()> {
        let Some(hot) = Hot::between(record, record) else {
            return Ok(());
        };
        let slot = Slot {
            generation: 1,
            serial,
            payload: hot.encode(),
        };
        let Some(slot) = slot.encode() else {
            return Ok(());
        };
        self.rename_into_place(dir, &self.state_name(), &whole_file(&slot), owner)
    }

    /// Removes the state file with its record (no error if there is none).
    pub(super) fn remove_state(&self, dir: &OwnedFd) -> Result<()> {
        let name = self.state_name();
        match unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::errno(self.dir.join(name), "remove", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's bytes and the count of writes to it they reflect.
    type Page = (Vec<u8>, u64);

    /// A model of the ring on a disk with a page cache. Writes land in the
    /// cache; a flush started after a write completes later, taking each
    /// page it found dirty to the disk (as it was then, or as rewritten
    /// since; never older than what an earlier write-back of that page put
    /// there, as the kernel writes a page back one write-back at a time).
    /// A power cut is judged at its worst: every page whose cache content
    /// is not on disk is torn. Writers follow `write_state`: the next
    /// generation into the slot after the newest, flushing the file first
    /// when `rule` says so, and their own flush after.
    struct Ring {
        disk: Vec<Page>,
        cache: Vec<Page>,
        /// The newest generation in the cache and its slot.
        newest: (u64, usize),
        /// Flushes in flight: the generation whose login waits on it, and
        /// the dirty pages as they were when it started.
        flushes: Vec<(u64, Vec<(usize, Page)>)>,
        /// The newest generation whose login's flush returned.
        acknowledged: u64,
        rng: u64,
    }

    impl Ring {
        /// A file created whole (synced) with generation 1 in slot 0.
        fn new(seed: u64) -> Ring {
            let mut pages = vec![(vec![0u8; SLOT_BYTES], 0); SLOTS];
            pages[0] = (page(1), 1);
            Ring {
                disk: pages.clone(),
                cache: pages,
                newest: (1, 0),
                flushes: Vec::new(),
                acknowledged: 1,
                rng: seed | 1,
            }
        }

        fn random(&mut self, below: u64) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng % below
        }

        fn write(&mut self, rule: fn(u64) -> bool) {
            let generation = self.newest.0 + 1;
            if rule(generation) {
                self.disk = self.cache.clone();
            }
            let index = (self.newest.1 + 1) % SLOTS;
            self.cache[index] = (page(generation), self.cache[index].1 + 1);
            self.newest = (generation, index);
            let dirty = (0..SLOTS)
                .filter(|&i| self.disk[i].1 != self.cache[i].1)
                .map(|i| (i, self.cache[i].clone()))
                .collect();
            self.flushes.push((generation, dirty));
        }

        fn finish_a_flush(&mut self) {
            if self.flushes.is_empty() {
                return;
            }
            let which = self.random(self.flushes.len() as u64) as usize;
            let (generation, pages) = self.flushes.remove(which);
            for (i, then) in pages {
                let written = if self.random(2) == 0 {
                    then
                } else {
                    self.cache[i].clone()
                };
                if written.1 > self.disk[i].1 {
                    self.disk[i] = written;
                }
            }
            self.acknowledged = self.acknowledged.max(generation);
        }

        /// The generation a reader finds after the worst power cut now.
        fn after_worst_power_cut(&self) -> u64 {
            let bytes: Vec<u8> = (0..SLOTS)
                .flat_map(|i| {
                    let (page, writes) = &self.disk[i];
                    if *writes == self.cache[i].1 {
                        page.clone()
                    } else {
                        vec![0x5a; SLOT_BYTES]
                    }
                })
                .collect();
            newest(&bytes).map_or(0, |n| n.slot.generation)
        }
    }

    fn page(generation: u64) -> Vec<u8> {
        let mut bytes = slot(generation);
        bytes.resize(SLOT_BYTES, 0);
        bytes
    }

    /// Runs random histories of writes, flushes finishing in any order and
    /// power cuts; the first (by seed) where a power cut loses a generation
    /// whose flush had returned, if any.
    fn ring_loses_an_acknowledged_write(rule: fn(u64) -> bool, runs: u64) -> Option<u64> {
        (1..=runs).find(|&seed| {
            let mut ring = Ring::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            (0..150).any(|_| {
                match ring.random(8) {
                    0..=4 => ring.write(rule),
                    5 | 6 => ring.finish_a_flush(),
                    _ => return ring.after_worst_power_cut() < ring.acknowledged,
                }
                false
            })
        })
    }

    #[test]
    fn no_power_cut_loses_a_generation_whose_flush_returned() {
        assert_eq!(ring_loses_an_acknowledged_write(flush_first, 400), None);
    }

    #[test]
    fn the_model_finds_the_loss_without_the_flush_before_reuse() {
        // The check above can fail: writers that never flush before reusing
        // a slot lose acknowledged generations in some history.
        assert!(ring_loses_an_acknowledged_write(|_| false, 400).is_some());
        // Nor with one write too many between flushes.
        assert!(
            ring_loses_an_acknowledged_write(|g| g.is_multiple_of(SLOTS as u64), 400).is_some()
        );
    }

    fn slot(generation: u64) -> Vec<u8> {
        Slot {
            generation,
            serial: 0x1234,
            payload: vec![7; 40],
        }
        .encode()
        .unwrap()
    }

    fn file(first: &[u8], second: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; FILE_BYTES];
        bytes[..first.len()].copy_from_slice(first);
        bytes[SLOT_BYTES..SLOT_BYTES + second.len()].copy_from_slice(second);
        bytes
    }

    #[test]
    fn the_newest_intact_slot_wins() {
        let n = newest(&file(&slot(4), &slot(5))).unwrap();
        assert_eq!((n.index, n.slot.generation), (1, 5));
        let n = newest(&file(&slot(7), &slot(5))).unwrap();
        assert_eq!((n.index, n.slot.generation), (0, 7));
        assert_eq!(n.slot.payload, vec![7; 40]);
    }

    #[test]
    fn a_damaged_slot_claiming_a_later_generation_is_passed_over() {
        let mut forged = slot(5);
        forged[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let n = newest(&file(&forged, &slot(4))).unwrap();
        assert_eq!((n.index, n.slot.generation), (1, 4));
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other() {
        let mut torn = slot(6);
        let half = torn.len() / 2;
        torn[half..].fill(0);
        let n = newest(&file(&slot(5), &torn)).unwrap();
        assert_eq!(n.slot.generation, 5);
        let mut flipped = slot(6);
        flipped[30] ^= 1;
        assert_eq!(
            newest(&file(&slot(5), &flipped)).unwrap().slot.generation,
            5
        );
    }

    #[test]
    fn no_intact_slot_is_none() {
        assert!(newest(&[0u8; FILE_BYTES]).is_none());
        assert!(newest(&[0xa5u8; FILE_BYTES]).is_none());
        assert!(newest(&[]).is_none());
        // A length pointing past the end is not read past it.
        let mut long = slot(1);
        long[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(newest(&file(&long, &[])).is_none());
        // Cut short: only the first slot, and it is intact.
        let short = slot(3);
        assert_eq!(newest(&short).unwrap().slot.generation, 3);
    }

    #[test]
    fn a_payload_too_large_for_a_slot_is_not_encoded() {
        let big = Slot {
            generation: 1,
            serial: 1,
            payload: vec![0; SLOT_BYTES],
        };
        assert!(big.encode().is_none());
    }
}
