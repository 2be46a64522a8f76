//! The read cache: answers to `HeadObject` and `GetObject` (whole, or one byte range) of the
//! buckets and prefixes its configuration opts in, served by the proxy after each request has
//! been authorized as usual, so a caller who may not read an object never gets it from here;
//! and only to requests signed with the key that fetched it, so the store's own refusals to a
//! key (bucket or session policies) hold too.
//!
//! - [`request`]: which requests it may answer (anything whose answer depends on more than
//!   the object passes through) and what a write makes stale;
//! - [`answer`]: which answers of the store it keeps and which of their headers it repeats;
//! - [`store`]: the answers of one process, bounded by bytes (least recently used out first),
//!   each served only within its rule's freshness bound, dropped at once by a write through the
//!   same proxy and never put back by a read that overlapped one (the native shell's);
//! - [`shared`]: the same rules over a host's shared key-value data, so that workers that share
//!   no memory (proxy-wasm VMs) share one cache (the wasm shell's).

pub mod answer;
pub mod request;
pub mod shared;
pub mod store;

pub use answer::{Filling, CACHE_HEADER};
pub use request::{cacheable, made_stale, Cacheable, Stale};
pub use shared::{SharedData, SharedStore};
pub use store::{Answer, Lookup, Miss, Store};

/// A read cache, as a `post` stream uses it.
pub trait Cache {
    /// A fresh answer to `cacheable` at `now_ms`, or the miss to fill.
    fn lookup(&mut self, cacheable: Cacheable, now_ms: f64) -> Lookup;
    /// Keeps the store's `answer` to `miss` at `now_ms`, unless a write since the miss made it
    /// unsafe or it cannot fit; returns the buckets of the answers evicted for it, one per
    /// eviction.
    fn fill(&mut self, miss: Miss, answer: Answer, now_ms: f64) -> Vec<String>;
    /// A write at `now_ms` makes `stale` stale: its answers go now, and reads that began
    /// before it are not kept.
    fn invalidate(&mut self, stale: &Stale, now_ms: f64);
}

#[cfg(test)]
mod tests;
