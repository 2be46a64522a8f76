//! Counters in Envoy's stats (`wasmcustom.s3mesh_*`, and so in `/stats/prometheus`).
//!
//! A metric defined under the same name in every worker's VM is one Envoy stat, so these are
//! process-wide without any locking in the filter.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// One counter; a failed host call leaves it undefined and increments become no-ops.
#[derive(Default)]
pub(super) struct Counter(Option<u32>);

impl Counter {
    fn define(name: &str) -> Self {
        Self(hostcalls::define_metric(MetricType::Counter, name).ok())
    }

    pub(super) fn inc(&self, by: i64) {
        if let Some(id) = self.0 {
            // A stats failure must never fail a request.
            let _ = hostcalls::increment_metric(id, by);
        }
    }
}

/// The filter's counters.
#[derive(Default)]
pub(super) struct Metrics {
    pub(super) pre_requests: Counter,
    pub(super) pre_rejected: Counter,
    pub(super) pre_stripped_headers: Counter,
    pub(super) post_hinted: Counter,
    pub(super) post_unhinted: Counter,
}

impl Metrics {
    pub(super) fn define() -> Self {
        Self {
            pre_requests: Counter::define("s3mesh_pre_requests_total"),
            pre_rejected: Counter::define("s3mesh_pre_rejected_total"),
            pre_stripped_headers: Counter::define("s3mesh_pre_stripped_headers_total"),
            post_hinted: Counter::define("s3mesh_post_hinted_total"),
            post_unhinted: Counter::define("s3mesh_post_unhinted_total"),
        }
    }
}
