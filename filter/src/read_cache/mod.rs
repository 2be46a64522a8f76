//! The read cache: answers to `HeadObject` and `GetObject` (whole, or one byte range) of the
//! buckets and prefixes its configuration opts in, served by the proxy after each request has
//! been authorized as usual, so a caller who may not read an object never gets it from here;
//! and only to requests signed with the key that fetched it, so the store's own refusals to a
//! key (bucket or session policies) hold too.
//!
//! - [`request`]: which requests it may answer (anything whose answer depends on more than
//!   the object passes through) and what a write makes stale;
//! - [`answer`]: which answers of the store it keeps and which of their headers it repeats;
//! - [`store`]: the answers, bounded by bytes (least recently used out first), each served
//!   only within its rule's freshness bound, dropped at once by a write through the same proxy
//!   and never put back by a read that overlapped one.

pub mod answer;
pub mod request;
pub mod store;

pub use answer::{Filling, CACHE_HEADER};
pub use request::{cacheable, made_stale, Cacheable, Stale};
pub use store::{Answer, Lookup, Miss, Store};
