//! The read cache over a host's shared key-value data, so that workers that share no memory
//! (proxy-wasm VMs, one per Envoy worker) share one cache. Proxy-wasm's shared data copies
//! values in and out under the host's lock, gives each value a compare-and-swap token, and
//! never removes a key.
//!
//! - **Layout**: an object hashes to one of a fixed number of partitions, so all answers about
//!   it are in one; a partition is one small index ([`index`]) and [`index::SLOTS`] slots
//!   holding one answer each ([`slot`]). The keys are fixed by the layout, so keys the host
//!   never removes do not pile up; an answer that goes has its slot set empty, which frees its
//!   memory. Each partition is least-recently-used by bytes within its share of `max_bytes`:
//!   together, an approximation of one LRU.
//! - **Concurrency**: an index changes only by compare-and-swap against the token read with
//!   it, and a slot belongs to the fill whose index change named it: that fill writes the slot
//!   after its change landed, and whoever takes an answer out empties its slot only while the
//!   slot still holds that answer (compare-and-swap on the slot). A reader serves a slot only if
//!   it carries the token and the request identity that the index named. Every write that makes
//!   answers stale gives the partition a new epoch; a fill is kept only if the partition's epoch
//!   is still the one it missed under, so a write to any object of the partition since the miss
//!   keeps it out (stricter than [`super::Store`], never looser). Races lose answers (a miss);
//!   none serves a wrong or stale one. A partition is renewed whole (emptied, new epoch) when
//!   its index is damaged or a write's change cannot land in `ATTEMPTS` tries; a fill whose
//!   index change landed just before that can still write its answer into a slot the new index
//!   does not name, where it stays, outside the byte count, until a fill takes the slot.

mod index;
mod slot;
mod wire;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::request::{Cacheable, ObjectId, Stale};
use super::{Answer, Cache, Lookup, Miss};
use crate::random::SplitMix64;
use index::{Entry, Index};

/// A host's data shared by all workers.
pub trait SharedData {
    /// The value under `key` and its compare-and-swap token; `None` if never set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Sets `key` to `value`; with `cas`, only if the key's token is still `cas` (`false`:
    /// another worker wrote it first).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// At most this many partitions (a bucket-wide write visits each).
const MAX_PARTITIONS: u64 = 64;

/// Compare-and-swap attempts of one change before giving up (a fill) or emptying the
/// partition (a write: dropping everything is always safe).
const ATTEMPTS: usize = 16;

/// The layout's version, in every key: a module of another layout uses other keys.
const LAYOUT: u8 = 1;

/// Where a cache of one size keeps what.
#[derive(Debug)]
struct Layout {
    prefix: String,
    partitions: u64,
    partition_bytes: u64,
}

impl Layout {
    /// Partitions of at least four of the largest answers each (one, if `max_bytes` is less).
    fn new(max_bytes: u64, max_entry_bytes: u64) -> Self {
        let partitions =
            (max_bytes / max_entry_bytes.saturating_mul(4).max(1)).clamp(1, MAX_PARTITIONS);
        Self {
            prefix: format!("s3mesh.read_cache.{LAYOUT}.{max_bytes}.{partitions}"),
            partitions,
            partition_bytes: max_bytes / partitions,
        }
    }

    fn partition(&self, object: u64) -> u64 {
        object % self.partitions
    }

    fn index_key(&self, partition: u64) -> String {
        format!("{}.{partition}", self.prefix)
    }

    fn slot_key(&self, partition: u64, slot: u16) -> String {
        format!("{}.{partition}.{slot}", self.prefix)
    }
}

/// The read cache of all workers that share `D`'s data.
pub struct SharedStore<D> {
    data: D,
    layout: Layout,
    /// Fill tokens and epochs.
    tokens: SplitMix64,
}

/// What a partition's index read gave.
enum Read {
    /// Never written.
    Absent,
    /// Written, but not an index this module reads (damaged, or another format).
    Unreadable,
    /// The index and its compare-and-swap token.
    Found(Index, u32),
}

impl<D: SharedData> SharedStore<D> {
    /// The cache in `data` holding at most `max_bytes` of answers of at most
    /// `max_entry_bytes` of body each; `seed` differs per worker.
    pub fn new(data: D, max_bytes: u64, max_entry_bytes: u64, seed: u64) -> Self {
        Self {
            data,
            layout: Layout::new(max_bytes, max_entry_bytes),
            tokens: SplitMix64::new(seed),
        }
    }

    fn read(&self, partition: u64) -> Read {
        match self.data.get(&self.layout.index_key(partition)) {
            None => Read::Absent,
            Some((value, cas)) => match Index::decode(&value) {
                Some(index) => Read::Found(index, cas),
                None => Read::Unreadable,
            },
        }
    }

    /// Replaces the partition with an empty one of a new epoch, whatever it held (`read` as
    /// last read): safe whenever, since it drops every answer and every fill under way.
    fn renew(&mut self, partition: u64, read: &Read) -> Index {
        let index = Index::new(self.tokens.next_u64());
        self.data
            .set(&self.layout.index_key(partition), &index.encode(), None);
        if !matches!(read, Read::Absent) {
            self.empty_all(partition);
        }
        index
    }

    /// Empties every slot of `partition`.
    fn empty_all(&self, partition: u64) {
        for slot in 0..index::SLOTS {
            self.data
                .set(&self.layout.slot_key(partition, slot), &[], None);
        }
    }

    /// Empties the slot of `entry`, taken out of `partition`, unless another fill has taken the
    /// slot since.
    fn empty(&self, partition: u64, entry: &Entry) {
        let key = self.layout.slot_key(partition, entry.slot);
        if let Some((value, cas)) = self.data.get(&key) {
            if slot::token(&value) == Some(entry.token) {
                self.data.set(&key, &[], Some(cas));
            }
        }
    }

    /// Takes out of `partition` what `stale` says, under a new epoch.
    fn invalidate_partition(&mut self, partition: u64, stale: impl Fn(&Entry) -> bool) {
        let mut read = self.read(partition);
        for _ in 0..ATTEMPTS {
            let Read::Found(mut index, cas) = read else {
                break;
            };
            index.epoch = self.tokens.next_u64();
            let removed = index.remove_where(&stale);
            if self.data.set(
                &self.layout.index_key(partition),
                &index.encode(),
                Some(cas),
            ) {
                for entry in &removed {
                    self.empty(partition, entry);
                }
                return;
            }
            read = self.read(partition);
        }
        self.renew(partition, &read);
    }

    /// Bytes of answers held, as the indexes count them.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        (0..self.layout.partitions)
            .map(|p| match self.read(p) {
                Read::Found(index, _) => index.bytes(),
                _ => 0,
            })
            .sum()
    }

    /// Bytes of the partitions' index values in shared data.
    #[cfg(test)]
    pub(crate) fn partition_index_bytes(&self) -> usize {
        (0..self.layout.partitions)
            .filter_map(|p| self.data.get(&self.layout.index_key(p)))
            .map(|(value, _)| value.len())
            .sum()
    }
}

impl<D: SharedData> Cache for SharedStore<D> {
    fn lookup(&mut self, cacheable: Cacheable, now_ms: f64) -> Lookup {
        let partition = self.layout.partition(object_hash(&cacheable.object));
        let (mut index, cas) = match self.read(partition) {
            Read::Found(index, cas) => (index, cas),
            read => {
                let index = self.renew(partition, &read);
                return Lookup::Miss(Miss {
                    cacheable,
                    clock: index.epoch,
                    at_ms: now_ms,
                });
            }
        };
        let variant = variant_hash(&cacheable);
        let answer = index
            .find(variant)
            .filter(|entry| now_ms < entry.expires_ms)
            .and_then(|entry| {
                let (value, _) = self
                    .data
                    .get(&self.layout.slot_key(partition, entry.slot))?;
                slot::decode(&value, entry.token, &cacheable)
            });
        match answer {
            Some(answer) => {
                // Recency is best effort: another worker's change since the read wins.
                index.touch(variant);
                self.data.set(
                    &self.layout.index_key(partition),
                    &index.encode(),
                    Some(cas),
                );
                Lookup::Hit(Arc::new(answer))
            }
            None => Lookup::Miss(Miss {
                cacheable,
                clock: index.epoch,
                at_ms: now_ms,
            }),
        }
    }

    fn fill(&mut self, miss: Miss, answer: Answer, now_ms: f64) -> Vec<String> {
        let size = answer.size();
        if miss.outlived(now_ms) || size > self.layout.partition_bytes {
            return Vec::new();
        }
        let Miss {
            cacheable,
            clock: epoch,
            ..
        } = miss;
        let object = object_hash(&cacheable.object);
        let partition = self.layout.partition(object);
        let new = Entry {
            slot: 0,
            token: 0,
            variant: variant_hash(&cacheable),
            object,
            bucket: cacheable.object.bucket.clone(),
            current: cacheable.variant.version.is_none(),
            etag: answer.etag().map(|etag| hash_of(&etag)),
            expires_ms: now_ms + cacheable.ttl_ms as f64,
            used: 0,
            size,
        };
        for _ in 0..ATTEMPTS {
            let Read::Found(mut index, cas) = self.read(partition) else {
                return Vec::new();
            };
            if index.epoch != epoch {
                return Vec::new();
            }
            let room = index.make_room(&new, self.layout.partition_bytes, now_ms);
            let Some(slot) = index.free_slot(&room.removed) else {
                return Vec::new();
            };
            let token = self.tokens.next_u64();
            index.insert(Entry {
                slot,
                token,
                ..new.clone()
            });
            let key = self.layout.index_key(partition);
            if !self.data.set(&key, &index.encode(), Some(cas)) {
                // Another worker changed the partition first.
                continue;
            }
            // The slot is this fill's now; readers miss until its answer is there.
            let value = slot::encode(token, &cacheable, &answer);
            self.data
                .set(&self.layout.slot_key(partition, slot), &value, None);
            for entry in room.removed.iter().filter(|e| e.slot != slot) {
                self.empty(partition, entry);
            }
            return room.evicted;
        }
        Vec::new()
    }

    fn invalidate(&mut self, stale: &Stale, _now_ms: f64) {
        match stale {
            Stale::Object(object) => {
                let object = object_hash(object);
                let partition = self.layout.partition(object);
                self.invalidate_partition(partition, |e| e.object == object);
            }
            Stale::Bucket(bucket) => {
                for partition in 0..self.layout.partitions {
                    self.invalidate_partition(partition, |e| e.bucket == *bucket);
                }
            }
        }
    }
}

/// A hash every worker computes alike (the same module, `DefaultHasher`'s fixed keys).
fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn object_hash(object: &ObjectId) -> u64 {
    hash_of(object)
}

fn variant_hash(cacheable: &Cacheable) -> u64 {
    hash_of(&(&cacheable.object, &cacheable.variant))
}

/// Shared data in memory with Envoy's semantics (a token per value from one counter; a set
/// with a token fails on a key another set changed since), for tests: clones share it.
#[cfg(test)]
pub(crate) mod memory {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    /// Each key's value and token.
    type Values = HashMap<String, (Vec<u8>, u32)>;

    #[derive(Clone, Default)]
    pub(crate) struct Memory {
        values: Rc<RefCell<Values>>,
        tokens: Rc<RefCell<u32>>,
    }

    impl Memory {
        /// Bytes of all values.
        pub(crate) fn bytes(&self) -> usize {
            self.values.borrow().values().map(|(v, _)| v.len()).sum()
        }

        /// Keys ever set.
        pub(crate) fn keys(&self) -> usize {
            self.values.borrow().len()
        }

        /// Overwrites every value whose key ends with `suffix` with `value`.
        pub(crate) fn damage(&self, suffix: &str, value: &[u8]) {
            for (key, (v, _)) in self.values.borrow_mut().iter_mut() {
                if key.ends_with(suffix) {
                    *v = value.to_vec();
                }
            }
        }
    }

    impl super::SharedData for Memory {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.values.borrow().get(key).cloned()
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let mut values = self.values.borrow_mut();
            if let (Some(cas), Some((_, token))) = (cas, values.get(key)) {
                if cas != *token {
                    return false;
                }
            }
            let mut tokens = self.tokens.borrow_mut();
            *tokens += 1;
            values.insert(key.to_owned(), (value.to_vec(), *tokens));
            true
        }
    }
}

#[cfg(test)]
mod tests;
