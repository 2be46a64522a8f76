//! The rules both caches keep, checked on each: the process's [`Store`] and the workers'
//! [`SharedStore`] (with one partition, so one least-recently-used order, as in `Store`).

use std::sync::Arc;

use super::request::{ObjectId, Variant};
use super::shared::memory::Memory;
use super::store::WRITE_MEMORY_MS;
use super::{Answer, Cache, Cacheable, Lookup, Miss, SharedStore, Stale, Store};

pub(crate) fn cacheable(key: &str, range: Option<&str>) -> Cacheable {
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

pub(crate) fn answer(body: &[u8]) -> Answer {
    Answer {
        status: 200,
        headers: vec![("etag".into(), "\"e\"".into())],
        body: body.to_vec(),
    }
}

pub(crate) fn miss<C: Cache + ?Sized>(cache: &mut C, c: Cacheable, now: f64) -> Miss {
    match cache.lookup(c, now) {
        Lookup::Miss(miss) => miss,
        Lookup::Hit(_) => panic!("a miss expected"),
    }
}

pub(crate) fn is_hit<C: Cache + ?Sized>(cache: &mut C, c: Cacheable, now: f64) -> bool {
    matches!(cache.lookup(c, now), Lookup::Hit(_))
}

/// Runs `scenario` on each cache, each holding at most `max_bytes` (a failure's backtrace
/// names the line of this function that ran it).
fn each(max_bytes: u64, scenario: impl Fn(&mut dyn Probe)) {
    scenario(&mut Store::new(max_bytes));
    scenario(&mut SharedStore::new(
        Memory::default(),
        max_bytes,
        max_bytes,
        1,
    ));
}

/// A cache whose bytes a test can see.
trait Probe: Cache {
    fn held(&self) -> u64;
}

impl Probe for Store {
    fn held(&self) -> u64 {
        self.bytes()
    }
}

impl Probe for SharedStore<Memory> {
    fn held(&self) -> u64 {
        self.bytes()
    }
}

#[test]
fn an_answer_is_served_until_its_freshness_bound() {
    each(1_000, |cache| {
        let m = miss(cache, cacheable("k", None), 0.0);
        cache.fill(m, answer(b"hello"), 10.0);
        assert_eq!(
            cache.lookup(cacheable("k", None), 500.0),
            Lookup::Hit(Arc::new(answer(b"hello")))
        );
        assert!(!is_hit(cache, cacheable("k", Some("bytes=0-1")), 500.0));
        assert!(!is_hit(cache, cacheable("k", None), 1_010.0));
    });
}

#[test]
fn the_least_recently_used_answers_go_first_when_full() {
    let size = answer(b"0123456789").size();
    each(size * 2, |cache| {
        for key in ["a", "b"] {
            let m = miss(cache, cacheable(key, None), 0.0);
            assert!(cache.fill(m, answer(b"0123456789"), 0.0).is_empty());
        }
        assert!(is_hit(cache, cacheable("a", None), 1.0));
        let m = miss(cache, cacheable("c", None), 2.0);
        assert_eq!(cache.fill(m, answer(b"0123456789"), 2.0), ["b"]);
        assert!(is_hit(cache, cacheable("a", None), 3.0));
        assert!(!is_hit(cache, cacheable("b", None), 3.0));
        assert_eq!(cache.held(), size * 2);
        let m = miss(cache, cacheable("huge", None), 4.0);
        assert!(cache.fill(m, answer(&[0; 1_000]), 4.0).is_empty());
        assert!(!is_hit(cache, cacheable("huge", None), 5.0));
    });
}

#[test]
fn a_write_drops_the_object_and_keeps_overlapping_reads_out() {
    each(1_000, |cache| {
        let object = cacheable("k", None).object;
        for range in [None, Some("bytes=0-1")] {
            let m = miss(cache, cacheable("k", range), 0.0);
            cache.fill(m, answer(b"old"), 0.0);
        }
        let m = miss(cache, cacheable("k", Some("bytes=5-6")), 1.0);
        cache.invalidate(&Stale::Object(object), 2.0);
        assert_eq!(cache.held(), 0);
        cache.fill(m, answer(b"old?"), 3.0);
        assert!(!is_hit(cache, cacheable("k", Some("bytes=5-6")), 4.0));
        let after = miss(cache, cacheable("other", None), 4.0);
        cache.fill(after, answer(b"x"), 4.0);
        assert!(is_hit(cache, cacheable("other", None), 4.0));
        let bucket_read = miss(cache, cacheable("k", None), 5.0);
        cache.invalidate(&Stale::Bucket("b".into()), 6.0);
        assert!(!is_hit(cache, cacheable("other", None), 7.0));
        cache.fill(bucket_read, answer(b"y"), 7.0);
        assert!(!is_hit(cache, cacheable("k", None), 8.0));
        let after = miss(cache, cacheable("k", None), 9.0);
        cache.fill(after, answer(b"new"), 9.0);
        assert_eq!(
            cache.lookup(cacheable("k", None), 10.0),
            Lookup::Hit(Arc::new(answer(b"new")))
        );
    });
}

#[test]
fn an_answer_with_a_new_etag_drops_the_older_versions_answers() {
    each(10_000, |cache| {
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
            let m = miss(cache, c, 0.0);
            cache.fill(m, with_etag("\"1\"", body), 0.0);
        }
        // The object was overwritten directly at the store; a range not yet cached shows it.
        let m = miss(cache, cacheable("k", Some("bytes=-2")), 1.0);
        cache.fill(m, with_etag("\"2\"", b"ew"), 1.0);
        for gone in [cacheable("k", None), cacheable("k", Some("bytes=0-1"))] {
            assert!(!is_hit(cache, gone, 2.0), "an answer of the older version");
        }
        for kept in [
            cacheable("k", Some("bytes=-2")),
            versioned.clone(),
            cacheable("other", None),
        ] {
            assert!(is_hit(cache, kept, 2.0));
        }
    });
}

#[test]
fn a_read_slower_than_the_write_memory_is_not_kept() {
    each(1_000, |cache| {
        let m = miss(cache, cacheable("k", None), 0.0);
        cache.fill(m, answer(b"late"), WRITE_MEMORY_MS + 1.0);
        assert!(!is_hit(cache, cacheable("k", None), WRITE_MEMORY_MS + 2.0));
    });
}
