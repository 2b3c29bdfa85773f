//! The state file: what logins change, written in place with one flush.
//!
//! `<name>.state` beside the record is [`FILE_BYTES`] long: two slots of
//! [`SLOT_BYTES`], each in its own page, so a write torn by a power cut
//! damages one slot at most. A slot is
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
//! A write goes to the slot that does not hold the newest intact one, with
//! the next generation, then `fdatasync`: the file's size and blocks do not
//! change, so no metadata, no rename and no directory sync. A reader takes
//! the newest intact slot; one torn by a crash falls back to the other,
//! whose state is the one before the login that was being written, and
//! that login was not accepted (acceptance waits for the flush). The file
//! is created whole (temp file, rename) so it never exists without an
//! intact slot: a file with none is damage, and refused.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::sys::stat::FileStat;
use nix::unistd::{UnlinkatFlags, unlinkat};
use sha2::{Digest, Sha256};

use super::UserFile;
use crate::error::{Error, Result};
use crate::record::UserRecord;
use crate::record::hot::Hot;
use crate::secure_open::{self, Access, Location, Rules};

/// One slot; a page, so that one slot's write never rewrites the other's.
pub(super) const SLOT_BYTES: usize = 4096;
/// The whole file: two slots.
pub(super) const FILE_BYTES: usize = 2 * SLOT_BYTES;
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

/// The newest intact slot and where it is.
#[derive(Debug, Clone)]
pub(super) struct Newest {
    pub slot: Slot,
    pub index: usize,
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
    (0..2)
        .filter_map(|index| {
            let start = index * SLOT_BYTES;
            let end = (start + SLOT_BYTES).min(bytes.len());
            let slot = Slot::decode(bytes.get(start..end)?)?;
            Some(Newest { slot, index })
        })
        .max_by_key(|n| n.slot.generation)
}

/// A new state file's bytes: `slot` first, the second slot empty.
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
    /// exactly two slots long at most.
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
        let bytes = opened.read_all()?;
        match newest(&bytes) {
            Some(n) => Ok(Some(n)),
            None => Err(Error::StateDamaged {
                path,
                why: "no copy passes its checksum",
            }),
        }
    }

    /// Writes `slot` over the slot that is not `newest` and flushes it
    /// (`fdatasync`); with no state file yet, creates it whole, owned as
    /// the record (`record` is its `fstat`).
    pub(super) fn write_state(
        &self,
        dir: &OwnedFd,
        newest: Option<&Newest>,
        slot: &[u8],
        record: &FileStat,
    ) -> Result<()> {
        let name = self.state_name();
        let Some(newest) = newest else {
            return self.replace_named(dir, &name, &whole_file(slot), Some(record));
        };
        let path = self.dir.join(&name);
        let at = Location::in_dir(dir.as_fd(), &name, &path);
        let file = secure_open::open(at, Access::ReadWrite, &self.state_rules())?.into_file();
        let offset = ((1 - newest.index) * SLOT_BYTES) as u64;
        file.write_all_at(slot, offset)
            .map_err(|e| Error::io(&path, "write state slot", e))?;
        file.sync_data()
            .map_err(|e| Error::io(&path, "fdatasync", e))
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
