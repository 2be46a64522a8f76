//! The cached answers: bounded by bytes, least recently used out first, each served only
//! within its freshness bound, never put back by a read that overlapped a write, and of one
//! version of an object at a time (the ETag the store gave last).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::request::{Cacheable, ObjectId, Stale, Variant};
use super::Cache;
use crate::pre::header;

/// How long a write is remembered against reads that began before it; a read answered later
/// than this after it began is not kept.
pub const WRITE_MEMORY_MS: f64 = 60_000.0;

/// An answer of the store, as the cache keeps and serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `200`, or `206` for a range.
    pub status: u16,
    /// The response headers worth repeating ([`super::answer::kept_header`]).
    pub headers: Vec<(String, String)>,
    /// The body (empty for `HeadObject`).
    pub body: Vec<u8>,
}

impl Answer {
    /// What the answer holds in memory, as the cache's bound counts it.
    pub fn size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        (headers + self.body.len()) as u64
    }

    /// The object's ETag as the store gave it.
    pub fn etag(&self) -> Option<&str> {
        header(&self.headers, "etag")
    }
}

struct Entry {
    /// Shared with the streams it is being sent to: a hit copies no body under the lock.
    answer: Arc<Answer>,
    expires_ms: f64,
    /// Its place in [`Store::recency`].
    used: u64,
}

/// A miss the cache may fill with the store's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    /// The request.
    pub cacheable: Cacheable,
    /// The cache's write clock when it missed (a count of writes, or a token each write
    /// changes): a write after it makes its answer unsafe to keep.
    pub clock: u64,
    /// When it missed.
    pub at_ms: f64,
}

impl Miss {
    /// Whether the store's answer, arriving at `now_ms`, came too long after the miss for the
    /// cache to still know every write that overlapped it ([`WRITE_MEMORY_MS`]).
    pub fn outlived(&self, now_ms: f64) -> bool {
        now_ms - self.at_ms > WRITE_MEMORY_MS
    }
}

/// What looking up a request found.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// A fresh answer.
    Hit(Arc<Answer>),
    /// None: the store's answer may fill it.
    Miss(Miss),
}

/// The cache of one filter configuration in one process (the native shell's; wasm workers share
/// a [`super::SharedStore`]).
pub struct Store {
    max_bytes: u64,
    bytes: u64,
    entries: HashMap<ObjectId, HashMap<Variant, Entry>>,
    /// Least recently used first.
    recency: BTreeMap<u64, (ObjectId, Variant)>,
    uses: u64,
    /// Counts writes seen; a write records its value against what it made stale.
    clock: u64,
    stale_objects: HashMap<ObjectId, (u64, f64)>,
    stale_buckets: HashMap<String, (u64, f64)>,
}

impl Store {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            uses: 0,
            clock: 0,
            stale_objects: HashMap::new(),
            stale_buckets: HashMap::new(),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The store just answered for `object`'s current version with `etag`: answers about the
    /// current version with another ETag are of a version overwritten where this proxy did not
    /// see it, and go, so that no reader mixes two versions' bytes (a footer from one, a column
    /// chunk from the other). Answers about a named `versionId` never change and stay.
    fn drop_other_versions(&mut self, object: &ObjectId, etag: Option<&str>) {
        let older: Vec<Variant> = self
            .entries
            .get(object)
            .into_iter()
            .flatten()
            .filter(|(variant, entry)| variant.version.is_none() && entry.answer.etag() != etag)
            .map(|(variant, _)| variant.clone())
            .collect();
        for variant in older {
            self.remove(object, &variant);
        }
    }

    fn remove(&mut self, object: &ObjectId, variant: &Variant) {
        let Some(variants) = self.entries.get_mut(object) else {
            return;
        };
        if let Some(entry) = variants.remove(variant) {
            self.bytes -= entry.answer.size();
            self.recency.remove(&entry.used);
        }
        if variants.is_empty() {
            self.entries.remove(object);
        }
    }
}

impl Cache for Store {
    fn lookup(&mut self, cacheable: Cacheable, now_ms: f64) -> Lookup {
        let found = self
            .entries
            .get_mut(&cacheable.object)
            .and_then(|variants| variants.get_mut(&cacheable.variant));
        match found {
            Some(entry) if now_ms < entry.expires_ms => {
                self.uses += 1;
                self.recency.remove(&entry.used);
                entry.used = self.uses;
                let answer = Arc::clone(&entry.answer);
                let key = (cacheable.object, cacheable.variant);
                self.recency.insert(self.uses, key);
                Lookup::Hit(answer)
            }
            found => {
                if found.is_some() {
                    self.remove(&cacheable.object, &cacheable.variant);
                }
                Lookup::Miss(Miss {
                    cacheable,
                    clock: self.clock,
                    at_ms: now_ms,
                })
            }
        }
    }

    fn fill(&mut self, miss: Miss, answer: Answer, now_ms: f64) -> Vec<String> {
        let outlived = miss.outlived(now_ms);
        let Miss {
            cacheable, clock, ..
        } = miss;
        let written_since = |stale: Option<&(u64, f64)>| stale.is_some_and(|(at, _)| *at > clock);
        let unsafe_now = outlived
            || written_since(self.stale_objects.get(&cacheable.object))
            || written_since(self.stale_buckets.get(&cacheable.object.bucket));
        let size = answer.size();
        if unsafe_now || size > self.max_bytes {
            return Vec::new();
        }
        self.remove(&cacheable.object, &cacheable.variant);
        if cacheable.variant.version.is_none() {
            self.drop_other_versions(&cacheable.object, answer.etag());
        }
        let mut evicted = Vec::new();
        while self.bytes + size > self.max_bytes {
            let Some((_, (object, variant))) = self.recency.pop_first() else {
                break;
            };
            evicted.push(object.bucket.clone());
            self.remove(&object, &variant);
        }
        self.uses += 1;
        self.bytes += size;
        let entry = Entry {
            answer: Arc::new(answer),
            expires_ms: now_ms + cacheable.ttl_ms as f64,
            used: self.uses,
        };
        self.recency.insert(
            self.uses,
            (cacheable.object.clone(), cacheable.variant.clone()),
        );
        self.entries
            .entry(cacheable.object)
            .or_default()
            .insert(cacheable.variant, entry);
        evicted
    }

    fn invalidate(&mut self, stale: &Stale, now_ms: f64) {
        self.clock += 1;
        let mark = (self.clock, now_ms);
        forget_before(&mut self.stale_objects, now_ms - WRITE_MEMORY_MS);
        forget_before(&mut self.stale_buckets, now_ms - WRITE_MEMORY_MS);
        let objects: Vec<ObjectId> = match stale {
            Stale::Object(object) => {
                self.stale_objects.insert(object.clone(), mark);
                vec![object.clone()]
            }
            Stale::Bucket(bucket) => {
                self.stale_buckets.insert(bucket.clone(), mark);
                self.entries
                    .keys()
                    .filter(|o| o.bucket == *bucket)
                    .cloned()
                    .collect()
            }
        };
        for object in objects {
            let variants: Vec<Variant> = self
                .entries
                .get(&object)
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default();
            for variant in variants {
                self.remove(&object, &variant);
            }
        }
    }
}

/// Forgets the writes older than `oldest_ms`: no read that began before them is still kept.
fn forget_before<K>(marks: &mut HashMap<K, (u64, f64)>, oldest_ms: f64) {
    marks.retain(|_, (_, at)| *at >= oldest_ms);
}

#[cfg(test)]
mod tests {
    //! What only the process's store does; the rules both caches keep are checked in
    //! `read_cache::tests`.
    use super::*;
    use crate::read_cache::tests::{answer, cacheable, miss};

    #[test]
    fn an_expired_answer_goes_when_looked_up() {
        let mut store = Store::new(1_000);
        let m = miss(&mut store, cacheable("k", None), 0.0);
        store.fill(m, answer(b"hello"), 0.0);
        assert!(matches!(
            store.lookup(cacheable("k", None), 1_000.0),
            Lookup::Miss(_)
        ));
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn a_write_keeps_out_only_reads_of_what_it_made_stale() {
        let mut store = Store::new(1_000);
        let other = miss(&mut store, cacheable("other", None), 1.0);
        let object = cacheable("k", None).object;
        store.invalidate(&Stale::Object(object), 2.0);
        store.fill(other, answer(b"x"), 3.0);
        assert!(matches!(
            store.lookup(cacheable("other", None), 4.0),
            Lookup::Hit(_)
        ));
    }
}
