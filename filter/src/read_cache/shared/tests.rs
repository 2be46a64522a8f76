//! What the shared cache adds to the rules both caches keep (`read_cache::tests`): workers see
//! each other's answers and writes, shared memory stays bounded, and damage or a lost race is
//! a miss, never a wrong answer.

use std::cell::Cell;
use std::sync::Arc;

use super::memory::Memory;
use super::*;
use crate::read_cache::tests::{answer, cacheable, is_hit, miss};

const MAX_BYTES: u64 = 64 * 1024;
const MAX_ENTRY_BYTES: u64 = 1024;

/// A worker's cache over `data`.
fn worker<D: SharedData>(data: D, seed: u64) -> SharedStore<D> {
    SharedStore::new(data, MAX_BYTES, MAX_ENTRY_BYTES, seed)
}

#[test]
fn workers_serve_each_others_answers_and_see_each_others_writes() {
    let data = Memory::default();
    let (mut one, mut two) = (worker(data.clone(), 1), worker(data.clone(), 2));
    assert_eq!(one.layout.partitions, 16);
    let m = miss(&mut one, cacheable("k", None), 0.0);
    one.fill(m, answer(b"hello"), 0.0);
    assert_eq!(
        two.lookup(cacheable("k", None), 1.0),
        Lookup::Hit(Arc::new(answer(b"hello")))
    );
    // A read on one overlaps a write on two: not kept.
    let m = miss(&mut one, cacheable("k", Some("bytes=0-1")), 2.0);
    two.invalidate(&Stale::Object(cacheable("k", None).object), 3.0);
    assert!(!is_hit(&mut one, cacheable("k", None), 4.0));
    one.fill(m, answer(b"he"), 5.0);
    assert!(!is_hit(&mut two, cacheable("k", Some("bytes=0-1")), 6.0));
    assert_eq!(one.bytes(), 0);
    assert_eq!(
        data.bytes(),
        one.partition_index_bytes(),
        "the slots were emptied"
    );
}

#[test]
fn shared_memory_stays_within_the_bound_and_its_fixed_keys() {
    let data = Memory::default();
    let mut cache = worker(data.clone(), 1);
    let body = vec![7; 900];
    let mut evictions = 0;
    for i in 0..2_000 {
        let c = cacheable(&format!("object-{i}"), None);
        let m = miss(&mut cache, c, f64::from(i));
        evictions += cache.fill(m, answer(&body), f64::from(i)).len();
    }
    assert!(cache.bytes() <= MAX_BYTES);
    assert!(evictions > 1_900, "{evictions}");
    let slots = data.bytes() - cache.partition_index_bytes();
    // Each slot also holds its request's identity and the fill's token (under 60 bytes here).
    assert!(slots as u64 <= cache.bytes() + 60 * 70, "{slots}");
    let partitions = cache.layout.partitions as usize;
    assert!(data.keys() <= partitions * (usize::from(index::SLOTS) + 1));
    let recent = cacheable("object-1999", None);
    assert!(is_hit(&mut cache, recent, 2_000.0));
}

#[test]
fn a_damaged_slot_or_index_is_a_miss_and_the_cache_recovers() {
    let data = Memory::default();
    let mut cache = worker(data.clone(), 1);
    let fill = |cache: &mut SharedStore<Memory>, now| {
        let m = miss(cache, cacheable("k", None), now);
        cache.fill(m, answer(b"hello"), now);
    };
    fill(&mut cache, 0.0);
    let partition = cache
        .layout
        .partition(object_hash(&cacheable("k", None).object));
    let slot_of = |partition| format!(".{partition}.0");
    data.damage(&slot_of(partition), b"\x01not a slot");
    assert!(!is_hit(&mut cache, cacheable("k", None), 1.0));
    fill(&mut cache, 2.0);
    assert!(is_hit(&mut cache, cacheable("k", None), 3.0));
    data.damage(&format!(".{partition}"), b"not an index");
    assert!(!is_hit(&mut cache, cacheable("k", None), 4.0));
    assert_eq!(cache.bytes(), 0);
    fill(&mut cache, 5.0);
    assert!(is_hit(&mut cache, cacheable("k", None), 6.0));
}

/// Shared data where another worker changes each key just before the next `times` sets that
/// expect a token.
struct Contended {
    data: Memory,
    times: Cell<usize>,
}

impl SharedData for Contended {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if cas.is_some() && self.times.get() > 0 {
            self.times.set(self.times.get() - 1);
            if let Some((current, _)) = self.data.get(key) {
                self.data.set(key, &current, None);
            }
        }
        self.data.set(key, value, cas)
    }
}

#[test]
fn a_lost_race_keeps_nothing_and_a_write_always_lands() {
    let data = Memory::default();
    let contended = Contended {
        data: data.clone(),
        times: Cell::new(0),
    };
    let mut cache = worker(contended, 1);
    let mut other = worker(data.clone(), 2);
    let m = miss(&mut cache, cacheable("k", None), 0.0);
    cache.data.times.set(2);
    cache.fill(m, answer(b"hello"), 0.0);
    assert!(
        is_hit(&mut other, cacheable("k", None), 1.0),
        "kept on the third try"
    );
    let m = miss(&mut cache, cacheable("k2", None), 2.0);
    let (index_bytes, slot_bytes) = (cache.partition_index_bytes(), data.bytes());
    cache.data.times.set(ATTEMPTS);
    assert!(cache.fill(m, answer(b"x"), 2.0).is_empty());
    assert!(!is_hit(&mut other, cacheable("k2", None), 3.0));
    assert_eq!(
        (cache.partition_index_bytes(), data.bytes()),
        (index_bytes, slot_bytes),
        "nothing of the lost fill stays"
    );
    let held = data.bytes() - index_bytes;
    // The contended partition renews whole when a write cannot land by compare-and-swap.
    cache.data.times.set(ATTEMPTS);
    cache.invalidate(&Stale::Object(cacheable("k", None).object), 4.0);
    assert!(!is_hit(&mut other, cacheable("k", None), 5.0));
    assert!(data.bytes() - cache.partition_index_bytes() < held);
}

/// What a worker does to shared data.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    Get,
    Set { cas: bool },
}

/// Shared data where another worker's `step` runs just before the first operation `when` picks.
struct Interleaved {
    data: Memory,
    when: fn(Op, &str) -> bool,
    step: std::cell::RefCell<Option<Box<dyn FnOnce()>>>,
}

impl Interleaved {
    fn before(&self, op: Op, key: &str) {
        if (self.when)(op, key) {
            let step = self.step.borrow_mut().take();
            if let Some(step) = step {
                step();
            }
        }
    }
}

impl SharedData for Interleaved {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.before(Op::Get, key);
        self.data.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.before(Op::Set { cas: cas.is_some() }, key);
        self.data.set(key, value, cas)
    }
}

/// A worker of a cache of one partition (so that every object shares it) over `data`.
fn one_partition<D: SharedData>(data: D, seed: u64) -> SharedStore<D> {
    SharedStore::new(data, 4 * MAX_ENTRY_BYTES - 1, MAX_ENTRY_BYTES, seed)
}

#[test]
fn fills_racing_in_one_partition_each_keep_their_answer() {
    let data = Memory::default();
    let mut two = one_partition(data.clone(), 2);
    let theirs = miss(&mut two, cacheable("theirs", None), 0.0);
    let step: Box<dyn FnOnce()> = Box::new(move || {
        two.fill(theirs, answer(b"theirs"), 0.0);
    });
    let interleaved = Interleaved {
        data: data.clone(),
        when: |op, _| op == Op::Set { cas: true },
        step: std::cell::RefCell::new(Some(step)),
    };
    let mut one = one_partition(interleaved, 1);
    let mine = miss(&mut one, cacheable("mine", None), 0.0);
    // Both chose the same free slot; the other worker's index change landed first.
    one.fill(mine, answer(b"mine"), 0.0);
    let mut reader = one_partition(data, 3);
    for key in ["mine", "theirs"] {
        assert_eq!(
            reader.lookup(cacheable(key, None), 1.0),
            Lookup::Hit(Arc::new(answer(key.as_bytes()))),
            "{key}"
        );
    }
}

#[test]
fn a_slot_taken_again_before_it_was_emptied_keeps_its_new_answer() {
    let data = Memory::default();
    let mut two = one_partition(data.clone(), 2);
    let step: Box<dyn FnOnce()> = Box::new(move || {
        let m = miss(&mut two, cacheable("new", None), 2.0);
        two.fill(m, answer(b"new"), 2.0);
    });
    let interleaved = Interleaved {
        data: data.clone(),
        // The first read of a slot: the write below emptying the slot it took "old" out of.
        when: |op, key| op == Op::Get && key.ends_with(".0.0"),
        step: std::cell::RefCell::new(Some(step)),
    };
    let mut one = one_partition(interleaved, 1);
    let m = miss(&mut one, cacheable("old", None), 0.0);
    one.fill(m, answer(b"old"), 0.0);
    one.invalidate(&Stale::Object(cacheable("old", None).object), 1.0);
    let mut reader = one_partition(data, 3);
    assert!(!is_hit(&mut reader, cacheable("old", None), 3.0));
    assert_eq!(
        reader.lookup(cacheable("new", None), 3.0),
        Lookup::Hit(Arc::new(answer(b"new")))
    );
}
