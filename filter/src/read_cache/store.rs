//! The cached answers: bounded by bytes, least recently used out first, each served only
//! within its freshness bound, never put back by a read that overlapped a write, and of one
//! version of an object at a time (the ETag the store gave last).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::request::{Cacheable, ObjectId, Stale, Variant};
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
    /// The write clock when it missed: a write after it makes its answer unsafe to keep.
    pub clock: u64,
    /// When it missed.
    pub at_ms: f64,
}

/// What looking up a request found.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// A fresh answer.
    Hit(Arc<Answer>),
    /// None: the store's answer may fill it.
    Miss(Miss),
}

/// The cache of one filter configuration (the process natively, a worker in wasm).
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

    /// A fresh answer to `cacheable` at `now_ms`, or the miss to fill.
    pub fn lookup(&mut self, cacheable: Cacheable, now_ms: f64) -> Lookup {
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

    /// Keeps the store's `answer` to `miss` at `now_ms`, unless a write since the miss made it
    /// unsafe or it cannot fit; returns the buckets of the answers evicted for it, one per
    /// eviction.
    pub fn fill(&mut self, miss: Miss, answer: Answer, now_ms: f64) -> Vec<String> {
        let Miss {
            cacheable,
            clock,
            at_ms,
        } = miss;
        let written_since = |stale: Option<&(u64, f64)>| stale.is_some_and(|(at, _)| *at > clock);
        let unsafe_now = now_ms - at_ms > WRITE_MEMORY_MS
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

    /// A write at `now_ms` makes `stale` stale: its answers go now, and reads that began
    /// before it are not kept.
    pub fn invalidate(&mut self, stale: &Stale, now_ms: f64) {
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

/// Forgets the writes older than `oldest_ms`: no read that began before them is still kept.
fn forget_before<K>(marks: &mut HashMap<K, (u64, f64)>, oldest_ms: f64) {
    marks.retain(|_, (_, at)| *at >= oldest_ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cacheable(key: &str, range: Option<&str>) -> Cacheable {
        Cacheable {
            object: ObjectId {
                bucket: "b".into(),
                key: key.as_bytes().to_vec(),
            },
            variant: Variant {
                key_id: "AKID".into(),
                head: false,
                version: None,
                range: range.map(str::to_owned),
            },
            ttl_ms: 1_000,
        }
    }

    fn answer(body: &[u8]) -> Answer {
        Answer {
            status: 200,
            headers: vec![("etag".into(), "\"e\"".into())],
            body: body.to_vec(),
        }
    }

    fn miss(store: &mut Store, c: Cacheable, now: f64) -> Miss {
        match store.lookup(c, now) {
            Lookup::Miss(miss) => miss,
            Lookup::Hit(_) => panic!("a miss expected"),
        }
    }

    #[test]
    fn an_answer_is_served_until_its_freshness_bound() {
        let mut store = Store::new(1_000);
        let m = miss(&mut store, cacheable("k", None), 0.0);
        store.fill(m, answer(b"hello"), 10.0);
        assert_eq!(
            store.lookup(cacheable("k", None), 500.0),
            Lookup::Hit(Arc::new(answer(b"hello")))
        );
        assert!(matches!(
            store.lookup(cacheable("k", Some("bytes=0-1")), 500.0),
            Lookup::Miss(_)
        ));
        assert!(matches!(
            store.lookup(cacheable("k", None), 1_010.0),
            Lookup::Miss(_)
        ));
        assert_eq!(store.bytes(), 0, "the expired answer is dropped");
    }

    #[test]
    fn the_least_recently_used_answers_go_first_when_full() {
        let size = answer(b"0123456789").size();
        let mut store = Store::new(size * 2);
        for key in ["a", "b"] {
            let m = miss(&mut store, cacheable(key, None), 0.0);
            assert!(store.fill(m, answer(b"0123456789"), 0.0).is_empty());
        }
        assert!(matches!(
            store.lookup(cacheable("a", None), 1.0),
            Lookup::Hit(_)
        ));
        let m = miss(&mut store, cacheable("c", None), 2.0);
        assert_eq!(store.fill(m, answer(b"0123456789"), 2.0), ["b"]);
        assert!(matches!(
            store.lookup(cacheable("a", None), 3.0),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            store.lookup(cacheable("b", None), 3.0),
            Lookup::Miss(_)
        ));
        assert_eq!(store.bytes(), size * 2);
        let m = miss(&mut store, cacheable("huge", None), 4.0);
        assert!(store.fill(m, answer(&[0; 1_000]), 4.0).is_empty());
        assert!(matches!(
            store.lookup(cacheable("huge", None), 5.0),
            Lookup::Miss(_)
        ));
    }

    #[test]
    fn a_write_drops_the_object_and_keeps_overlapping_reads_out() {
        let mut store = Store::new(1_000);
        let object = cacheable("k", None).object;
        for range in [None, Some("bytes=0-1")] {
            let m = miss(&mut store, cacheable("k", range), 0.0);
            store.fill(m, answer(b"old"), 0.0);
        }
        let before_write = miss(&mut store, cacheable("other", None), 1.0);
        let m = miss(&mut store, cacheable("k", Some("bytes=5-6")), 1.0);
        store.invalidate(&Stale::Object(object), 2.0);
        assert_eq!(store.bytes(), 0);
        store.fill(m, answer(b"old?"), 3.0);
        assert!(matches!(
            store.lookup(cacheable("k", Some("bytes=5-6")), 4.0),
            Lookup::Miss(_)
        ));
        store.fill(before_write, answer(b"x"), 3.0);
        assert!(
            matches!(store.lookup(cacheable("other", None), 4.0), Lookup::Hit(_)),
            "another object"
        );
        let bucket_read = miss(&mut store, cacheable("k", None), 5.0);
        store.invalidate(&Stale::Bucket("b".into()), 6.0);
        assert!(matches!(
            store.lookup(cacheable("other", None), 7.0),
            Lookup::Miss(_)
        ));
        store.fill(bucket_read, answer(b"y"), 7.0);
        assert!(matches!(
            store.lookup(cacheable("k", None), 8.0),
            Lookup::Miss(_)
        ));
        let after = miss(&mut store, cacheable("k", None), 9.0);
        store.fill(after, answer(b"new"), 9.0);
        assert_eq!(
            store.lookup(cacheable("k", None), 10.0),
            Lookup::Hit(Arc::new(answer(b"new")))
        );
    }

    #[test]
    fn an_answer_with_a_new_etag_drops_the_older_versions_answers() {
        let mut store = Store::new(10_000);
        let with_etag = |etag: &str, body: &[u8]| Answer {
            headers: vec![("etag".into(), etag.into())],
            ..answer(body)
        };
        let mut versioned = cacheable("k", None);
        versioned.variant.version = Some("v1".into());
        for (c, body) in [
            (cacheable("k", None), &b"old"[..]),
            (cacheable("k", Some("bytes=0-1")), b"ol"),
            (versioned.clone(), b"v1"),
            (cacheable("other", None), b"x"),
        ] {
            let m = miss(&mut store, c, 0.0);
            store.fill(m, with_etag("\"1\"", body), 0.0);
        }
        // The object was overwritten directly at the store; a range not yet cached shows it.
        let m = miss(&mut store, cacheable("k", Some("bytes=-2")), 1.0);
        store.fill(m, with_etag("\"2\"", b"ew"), 1.0);
        for gone in [cacheable("k", None), cacheable("k", Some("bytes=0-1"))] {
            assert!(
                matches!(store.lookup(gone, 2.0), Lookup::Miss(_)),
                "an answer of the older version"
            );
        }
        for kept in [
            cacheable("k", Some("bytes=-2")),
            versioned,
            cacheable("other", None),
        ] {
            assert!(matches!(store.lookup(kept, 2.0), Lookup::Hit(_)));
        }
    }

    #[test]
    fn a_read_slower_than_the_write_memory_is_not_kept() {
        let mut store = Store::new(1_000);
        let m = miss(&mut store, cacheable("k", None), 0.0);
        store.fill(m, answer(b"late"), WRITE_MEMORY_MS + 1.0);
        assert!(matches!(
            store.lookup(cacheable("k", None), WRITE_MEMORY_MS + 2.0),
            Lookup::Miss(_)
        ));
    }
}
