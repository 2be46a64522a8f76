//! The read cache's part of one `post` stream ([`crate::read_cache`]): after the request is
//! authorized, a write drops what it makes stale, a cacheable read is answered from the cache
//! or its miss noted; the store's answer to a miss is gathered as it streams through and kept
//! when the stream ends complete.

use std::sync::Arc;

use s3mesh_s3_request::{Operation, OperationClass};

use super::host::{CacheEvent, Host};
use crate::config::CacheConfig;
use crate::pre::header;
use crate::read_cache::{self, Answer, Cacheable, Filling, Lookup, Miss, Stale};
use crate::signature_diagnosis::Forwarded;

/// What one stream has to do with the cache.
#[derive(Debug, Default)]
pub(super) struct CacheFlow {
    /// A cacheable read the cache could not answer.
    miss: Option<Miss>,
    /// The store's answer to it, as it arrives.
    filling: Option<Filling>,
    /// What this write makes stale: dropped again when it ends (a read may have refilled it
    /// from the store while the write was under way).
    stale: Option<Stale>,
    /// The object's `content-length` of a `HeadObject` answered from the cache, put back as the
    /// answer passes this filter: Envoy drops it from a bodiless local reply (the wasm shell's
    /// way to answer; the native shell's response keeps it).
    head_length: Option<String>,
}

/// What the cache made of an authorized request.
#[derive(Debug)]
pub(super) enum Cached {
    /// Not its business: no cache, a request it may not answer, or a write.
    Passing,
    /// One it may answer but has no fresh answer for: the store answers.
    Missed,
    /// Answered by this, to be sent (nothing else may happen to the request).
    Hit(Arc<Answer>),
}

/// What the cache has to do with an authorized request.
enum Seen {
    Passing,
    Stale(Stale),
    Cacheable(Cacheable),
}

impl CacheFlow {
    /// The request (`operation`, headers as `forwarded`) is authorized: looked up, or what it
    /// makes stale dropped.
    pub(super) fn on_authorized(
        &mut self,
        host: &mut impl Host,
        operation: Operation,
        forwarded: &Forwarded,
        now_ms: f64,
    ) -> Cached {
        // Decided from the configuration alone, so that the store's lock is held only for the
        // store's own work.
        let seen = match host.cache_config() {
            None => return Cached::Passing,
            Some(config) => seen(config, operation, forwarded),
        };
        match seen {
            Seen::Passing => Cached::Passing,
            Seen::Stale(stale) => {
                host.read_cache(|store| store.invalidate(&stale, now_ms));
                self.stale = Some(stale);
                Cached::Passing
            }
            Seen::Cacheable(cacheable) => {
                let bucket = cacheable.object.bucket.clone();
                let head = cacheable.variant.head;
                match host.read_cache(|store| store.lookup(cacheable, now_ms)) {
                    None => Cached::Passing,
                    Some(Lookup::Miss(miss)) => {
                        host.count_cache(&bucket, CacheEvent::Miss);
                        self.miss = Some(miss);
                        Cached::Missed
                    }
                    Some(Lookup::Hit(answer)) => {
                        let bytes = answer.body.len() as u64;
                        host.count_cache(&bucket, CacheEvent::Hit { bytes });
                        if head {
                            self.head_length =
                                header(&answer.headers, "content-length").map(str::to_owned);
                        }
                        Cached::Hit(answer)
                    }
                }
            }
        }
    }

    /// The store's answer began: gathered if it may be kept. (Or this filter's own answer from
    /// the cache passes.)
    pub(super) fn on_response_headers(&mut self, host: &mut impl Host) {
        if let Some(length) = self.head_length.take() {
            host.set_response_header("content-length", &length);
        }
        let Some(miss) = &self.miss else {
            return;
        };
        let headers = host.response_headers();
        let status = header(&headers, ":status")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let variant = &miss.cacheable.variant;
        let max_body = host.cache_config().map(|config| config.max_entry_bytes);
        let keepable = max_body.is_some_and(|max| {
            read_cache::answer::keepable(
                status,
                &headers,
                variant.head,
                variant.range.is_some(),
                max,
            )
        });
        match keepable {
            true => self.filling = Some(Filling::start(status, &headers, variant.head)),
            false => self.miss = None,
        }
    }

    /// `size` bytes of the store's answer arrived.
    pub(super) fn on_response_body(&mut self, host: &mut impl Host, size: usize) {
        let Some(filling) = self.filling.as_mut() else {
            return;
        };
        let mut fits = true;
        host.read_response_body(size, &mut |piece| fits = fits && filling.push(piece));
        if !fits {
            self.filling = None;
        }
    }

    /// The stream ended: a write drops what it made stale again; a complete answer to a miss
    /// is kept.
    pub(super) fn on_complete(&mut self, host: &mut impl Host, now_ms: f64) {
        if let Some(stale) = self.stale.take() {
            host.read_cache(|store| store.invalidate(&stale, now_ms));
        }
        let (Some(miss), Some(filling)) = (self.miss.take(), self.filling.take()) else {
            return;
        };
        let Some(answer) = filling.finish() else {
            return;
        };
        let evicted = host.read_cache(|store| store.fill(miss, answer, now_ms));
        for bucket in evicted.unwrap_or_default() {
            host.count_cache(&bucket, CacheEvent::Evicted);
        }
    }
}

/// Whether `config` makes an authorized request (`operation`, headers as `forwarded`) a write
/// that makes answers stale, a read the cache may answer, or neither. Listings never are.
fn seen(config: &CacheConfig, operation: Operation, forwarded: &Forwarded) -> Seen {
    let listing = operation.class() == Some(OperationClass::List);
    let (Some(method), Some(path), false) = (
        forwarded.header(":method"),
        forwarded.header(":path"),
        listing,
    ) else {
        return Seen::Passing;
    };
    if let Some(stale) = read_cache::made_stale(config, operation, method, path) {
        return Seen::Stale(stale);
    }
    match read_cache::cacheable(config, operation, method, path, |n| forwarded.header(n)) {
        Some(cacheable) => Seen::Cacheable(cacheable),
        None => Seen::Passing,
    }
}
