//! The read cache of all workers: [`SharedStore`] over Envoy's shared data (every worker's VM
//! reads and writes the same keys), so that an answer one worker kept serves every worker.

use std::cell::RefCell;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::Context;
use s3mesh_filter::config::CacheConfig;
use s3mesh_filter::read_cache::{SharedData, SharedStore};

/// Envoy's shared data (of this plugin's VM id).
pub(super) struct EnvoySharedData;

impl SharedData for EnvoySharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

/// A worker's handle on the read cache: its configuration and the shared store.
pub(super) type ReadCache = (CacheConfig, RefCell<SharedStore<EnvoySharedData>>);

/// The worker's handle on the cache `config` describes; `root` seeds its tokens (nanoseconds
/// of the clock: workers configure at nearly, and almost never exactly, the same time).
pub(super) fn handle(config: CacheConfig, root: &dyn Context, context_id: u32) -> ReadCache {
    let nanos = root
        .get_current_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = nanos ^ u64::from(context_id).rotate_left(48);
    let store = SharedStore::new(
        EnvoySharedData,
        config.max_bytes,
        config.max_entry_bytes,
        seed,
    );
    (config, RefCell::new(store))
}
