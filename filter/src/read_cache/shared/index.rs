//! A partition's index: which answers it holds, in which slots, until when, how recently
//! used; small (no headers, no bodies), since every lookup copies it out of shared data.

use super::wire::{Reader, Writer};

/// Slots per partition: at most this many answers in one partition.
pub(super) const SLOTS: u16 = 128;

/// The index's format; another format's value reads as absent.
const FORMAT: u8 = 1;

/// One answer the partition holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    /// Where its value is.
    pub slot: u16,
    /// The fill's token, repeated in the slot's value: a slot reused since a reader read the
    /// index holds another token.
    pub token: u64,
    /// Hash of the object and variant it answers ([`super::variant_hash`]).
    pub variant: u64,
    /// Hash of the object ([`super::object_hash`]).
    pub object: u64,
    /// The object's bucket: for bucket-wide writes and the eviction metric.
    pub bucket: String,
    /// About the current version (no `versionId` asked for).
    pub current: bool,
    /// Hash of the answer's ETag.
    pub etag: Option<u64>,
    /// Served until then.
    pub expires_ms: f64,
    /// When last used, on the index's use count.
    pub used: u64,
    /// What the answer holds in memory ([`crate::read_cache::Answer::size`]).
    pub size: u64,
}

/// What a partition holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Index {
    /// Changed by every write that makes answers stale (and new with the index): a fill is kept
    /// only under the epoch it missed under.
    pub epoch: u64,
    /// Counts uses, for recency.
    pub uses: u64,
    pub entries: Vec<Entry>,
}

/// What making room for an answer took out.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Room {
    /// Every entry taken out (their slots to empty).
    pub removed: Vec<Entry>,
    /// The buckets of the answers evicted to fit it (least recently used first), one each.
    pub evicted: Vec<String>,
}

impl Index {
    /// An empty index.
    pub(super) fn new(epoch: u64) -> Self {
        Self {
            epoch,
            uses: 0,
            entries: Vec::new(),
        }
    }

    /// Bytes of the answers held.
    pub(super) fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The entry answering `variant`.
    pub(super) fn find(&self, variant: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.variant == variant)
    }

    /// Marks `variant`'s entry used now.
    pub(super) fn touch(&mut self, variant: u64) {
        self.uses += 1;
        let uses = self.uses;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.variant == variant) {
            entry.used = uses;
        }
    }

    /// Takes out the entries `stale` says.
    pub(super) fn remove_where(&mut self, stale: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let (removed, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| stale(e));
        self.entries = kept;
        removed
    }

    /// Makes room for `new` (its slot, token and use not yet set) in `cap` bytes at `now_ms`:
    /// out go the answer it replaces, expired answers, answers about the current version with
    /// another ETag than its (when it is about the current version: see
    /// [`crate::read_cache::Store`]), then the least recently used until it fits.
    pub(super) fn make_room(&mut self, new: &Entry, cap: u64, now_ms: f64) -> Room {
        let mut removed = self.remove_where(|e| {
            e.variant == new.variant
                || e.expires_ms <= now_ms
                || (new.current && e.current && e.object == new.object && e.etag != new.etag)
        });
        let mut evicted = Vec::new();
        while self.bytes() + new.size > cap || self.entries.len() >= usize::from(SLOTS) {
            let Some(lru) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used) else {
                break;
            };
            let entry = self.entries.swap_remove(lru);
            evicted.push(entry.bucket.clone());
            removed.push(entry);
        }
        Room { removed, evicted }
    }

    /// A slot no entry uses, preferring one that `removed` did not use either (a reader may
    /// still be reading those).
    pub(super) fn free_slot(&self, removed: &[Entry]) -> Option<u16> {
        let used = |slot: u16, entries: &[Entry]| entries.iter().any(|e| e.slot == slot);
        let free = || (0..SLOTS).filter(|&s| !used(s, &self.entries));
        free()
            .find(|&s| !used(s, removed))
            .or_else(|| free().next())
    }

    /// Adds `entry`, used now.
    pub(super) fn insert(&mut self, mut entry: Entry) {
        self.uses += 1;
        entry.used = self.uses;
        self.entries.push(entry);
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FORMAT);
        w.u64(self.epoch);
        w.u64(self.uses);
        w.u16(u16::try_from(self.entries.len()).unwrap_or(u16::MAX));
        for e in &self.entries {
            w.u16(e.slot);
            w.u64(e.token);
            w.u64(e.variant);
            w.u64(e.object);
            w.str(&e.bucket);
            w.u8(u8::from(e.current));
            w.opt_u64(e.etag);
            w.f64(e.expires_ms);
            w.u64(e.used);
            w.u64(e.size);
        }
        w.finish()
    }

    /// The index in `value`; `None` if it is not one.
    pub(super) fn decode(value: &[u8]) -> Option<Self> {
        let mut r = Reader::new(value);
        if r.u8()? != FORMAT {
            return None;
        }
        let epoch = r.u64()?;
        let uses = r.u64()?;
        let count = r.u16()?;
        let mut entries = Vec::with_capacity(usize::from(count.min(SLOTS)));
        for _ in 0..count {
            entries.push(Entry {
                slot: r.u16()?,
                token: r.u64()?,
                variant: r.u64()?,
                object: r.u64()?,
                bucket: r.str()?.to_owned(),
                current: r.bool()?,
                etag: r.opt_u64()?,
                expires_ms: r.f64()?,
                used: r.u64()?,
                size: r.u64()?,
            });
        }
        r.end()?;
        Some(Self {
            epoch,
            uses,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(variant: u64, object: u64, size: u64) -> Entry {
        Entry {
            slot: 0,
            token: 0,
            variant,
            object,
            bucket: format!("b{object}"),
            current: true,
            etag: Some(1),
            expires_ms: 100.0,
            used: 0,
            size,
        }
    }

    fn index_of(entries: impl IntoIterator<Item = Entry>) -> Index {
        let mut index = Index::new(7);
        for e in entries {
            let slot = index.free_slot(&[]).expect("a free slot");
            index.insert(Entry { slot, ..e });
        }
        index
    }

    #[test]
    fn an_index_reads_back_and_a_damaged_one_reads_as_absent() {
        let index = index_of([
            entry(1, 10, 5),
            Entry {
                etag: None,
                current: false,
                ..entry(2, 10, 6)
            },
        ]);
        let value = index.encode();
        assert_eq!(Index::decode(&value), Some(index));
        assert_eq!(Index::decode(&value[..value.len() - 1]), None);
        assert_eq!(Index::decode(&[]), None);
        let mut other_format = value;
        other_format[0] = FORMAT + 1;
        assert_eq!(Index::decode(&other_format), None);
    }

    #[test]
    fn room_is_made_from_the_replaced_the_expired_the_other_version_then_the_least_used() {
        let mut index = index_of([
            entry(1, 10, 10),
            Entry {
                expires_ms: 5.0,
                ..entry(2, 20, 10)
            },
            entry(3, 30, 10),
            Entry {
                etag: Some(2),
                ..entry(4, 40, 10)
            },
            Entry {
                etag: Some(2),
                current: false,
                ..entry(5, 40, 10)
            },
            entry(6, 60, 10),
        ]);
        index.touch(3);
        index.touch(5);
        let new = Entry {
            size: 25,
            ..entry(1, 40, 0)
        };
        let room = index.make_room(&new, 45, 50.0);
        let variants = |entries: &[Entry]| entries.iter().map(|e| e.variant).collect::<Vec<_>>();
        // Out: 1 (replaced), 2 (expired), 4 (an older ETag of object 40's current version; 5,
        // a named version, stays), then 6 (the least recently used: 3 and 5 were used since)
        // so that 25 more bytes fit in 45.
        assert_eq!(variants(&room.removed), [1, 2, 4, 6]);
        assert_eq!(room.evicted, ["b60"]);
        assert_eq!(variants(&index.entries), [3, 5]);
        assert_eq!(index.bytes() + new.size, 45);
        assert_eq!(
            index.free_slot(&room.removed),
            Some(6),
            "one no reader may be reading"
        );
    }

    #[test]
    fn a_full_partition_evicts_for_a_slot_even_with_bytes_to_spare() {
        let mut index = index_of((0..u64::from(SLOTS)).map(|v| entry(v + 1, v + 1, 1)));
        assert_eq!(index.free_slot(&[]), None);
        let room = index.make_room(&entry(999, 999, 1), u64::MAX, 0.0);
        assert_eq!(room.evicted, ["b1"]);
        assert_eq!(index.free_slot(&room.removed), Some(0));
    }
}
