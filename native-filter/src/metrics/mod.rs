//! Envoy stats of the native filter, defined once per configuration with real labels (the
//! wasm shell has to encode labels in the name and extract them with `stats_tags`), except the
//! time-to-first-byte histograms' known series, which are cheaper to record with their label in
//! the name, as in wasm ([`SeriesHistogram`]). Names and
//! labels are the wasm shell's, in the `s3mesh` namespace the filter configuration's
//! `metrics_namespace` sets: `s3mesh.pre_rejected_total` in `/stats`,
//! `envoy_s3mesh_pre_rejected_total{…}` in `/stats/prometheus` (Envoy prefixes dynamic-module
//! stats with `envoy_`; wasm stats lose their `wasmcustom.` and are `s3mesh_…`).

use foldhash::HashMap;
use s3mesh_filter::endpoint::Route;
use s3mesh_s3_request::Operation;

use crate::abi::{self, ConfigEnvoyPtr, MetricUpdate, ModuleBuffer};

pub mod batch;

/// A metric's handle; `None` when Envoy refused to define it (updates are then skipped: stats
/// must never fail a request).
pub type Metric = Option<usize>;

/// Signature of Envoy's `define_counter`/`define_gauge`/`define_histogram`.
type Define = unsafe extern "C" fn(
    ConfigEnvoyPtr,
    ModuleBuffer,
    *const ModuleBuffer,
    usize,
    *mut usize,
) -> u32;

/// Applies `update` (a configuration-level metric callback) with `value` to metric `id` with
/// `labels`. A refused update is ignored: stats never fail anything.
///
/// # Safety
/// `config` is the configuration's Envoy pointer, in one of its hooks.
unsafe fn update_in_config(
    config: ConfigEnvoyPtr,
    update: MetricUpdate,
    id: usize,
    labels: &[&str],
    value: u64,
) {
    let labels = ModuleBuffer::all(labels);
    // SAFETY: per the contract above; the buffers outlive the call.
    unsafe {
        update(config, id, labels.as_ptr(), labels.len(), value);
    }
}

/// Defines metrics of one configuration.
pub struct Definer(ConfigEnvoyPtr);

impl Definer {
    /// # Safety
    /// `config` is the `filter_config_envoy_ptr` of the `config_new` hook being run, and the
    /// definer is used only during that hook.
    pub unsafe fn new(config: ConfigEnvoyPtr) -> Self {
        Self(config)
    }

    pub fn counter(&self, name: &str, labels: &[&str]) -> Metric {
        self.define(
            abi::envoy_dynamic_module_callback_http_filter_config_define_counter,
            name,
            labels,
        )
    }

    pub fn gauge(&self, name: &str, labels: &[&str]) -> Metric {
        self.define(
            abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
            name,
            labels,
        )
    }

    pub fn histogram(&self, name: &str, labels: &[&str]) -> Metric {
        self.define(
            abi::envoy_dynamic_module_callback_http_filter_config_define_histogram,
            name,
            labels,
        )
    }

    /// Creates the series of counter `id` for `labels` at 0, so that it is scraped before the
    /// first request counts in it (as the wasm shell's are).
    pub fn zero_counter(&self, id: Metric, labels: &[&str]) {
        self.zero(
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
            id,
            labels,
        );
    }

    /// As [`Self::zero_counter`], for a gauge.
    pub fn zero_gauge(&self, id: Metric, labels: &[&str]) {
        self.zero(
            abi::envoy_dynamic_module_callback_http_filter_config_set_gauge,
            id,
            labels,
        );
    }

    fn zero(&self, add: MetricUpdate, id: Metric, labels: &[&str]) {
        if let Some(id) = id {
            // SAFETY: per `new`.
            unsafe { update_in_config(self.0, add, id, labels, 0) };
        }
    }

    /// Histogram `name` labelled `label`, with a series of its own for each of `values`.
    pub fn histogram_series<'a>(
        &self,
        name: &str,
        label: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) -> SeriesHistogram {
        let series = values
            .into_iter()
            .filter_map(|value| {
                let id = self.histogram(&format!("{label}=.={value};.;{name}"), &[])?;
                Some((value.to_owned(), id))
            })
            .collect();
        SeriesHistogram {
            series,
            labelled: self.histogram(name, &[label]),
        }
    }

    fn define(&self, define: Define, name: &str, labels: &[&str]) -> Metric {
        let labels = ModuleBuffer::all(labels);
        let mut id = 0usize;
        // SAFETY: per `new`; the buffers outlive the call and `id` is written before it returns.
        let result = unsafe { define(self.0, name.into(), labels.as_ptr(), labels.len(), &mut id) };
        (result == abi::METRICS_SUCCESS).then_some(id)
    }
}

/// A histogram with one label whose values are mostly known when the configuration loads (the
/// configured endpoints, the S3 operations): each of those series is defined on its own, with
/// its label in the name (`tag=.=value;.;name`, which the `stats_tags` of `envoy/s3mesh.yaml`,
/// or Istio's `extraStatTags`, turn back into the label), so that a record skips Envoy's
/// resolution of label values into a stat name (a symbol-table insert and a scope lookup on
/// every labelled record: measured, the three labelled histograms of a request cost 2.5 µs of
/// Envoy CPU). Values not known then (discovered endpoints) go to the labelled histogram.
pub struct SeriesHistogram {
    series: HashMap<String, usize>,
    labelled: Metric,
}

impl SeriesHistogram {
    /// Where `value`'s sample goes: a series of its own (no labels to pass), else the labelled
    /// histogram with `value` as its label.
    pub fn series(&self, value: &str) -> Option<(usize, bool)> {
        match self.series.get(value) {
            Some(id) => Some((*id, false)),
            None => self.labelled.map(|id| (id, true)),
        }
    }
}

/// The metrics of role `pre`.
pub struct PreMetrics {
    pub rejected: Metric,
    pub stripped_headers: Metric,
    /// Labelled by `s3_operation`.
    pub operation_requests: Metric,
}

impl PreMetrics {
    pub fn define(d: &Definer) -> Self {
        Self {
            rejected: d.counter("pre_rejected_total", &[]),
            stripped_headers: d.counter("pre_stripped_headers_total", &[]),
            operation_requests: d.counter("operation_requests_total", &["s3_operation"]),
        }
    }
}

/// The operations most requests are (object reads, writes, deletes, multipart uploads,
/// listings): their time-to-first-byte series are defined up front (see [`SeriesHistogram`]);
/// every series is scraped from then on, so the rarer operations stay labelled.
const FREQUENT_OPERATIONS: [Operation; 11] = [
    Operation::GetObject,
    Operation::HeadObject,
    Operation::PutObject,
    Operation::CopyObject,
    Operation::DeleteObject,
    Operation::CreateMultipartUpload,
    Operation::UploadPart,
    Operation::CompleteMultipartUpload,
    Operation::ListObjectsV2,
    Operation::ListObjects,
    Operation::HeadBucket,
];

/// The metrics of role `post`.
pub struct PostMetrics {
    pub unhinted: Metric,
    pub discovered_endpoints: Metric,
    pub grants_fetched: Metric,
    pub grants_renewed: Metric,
    pub grant_failures: Metric,
    pub grant_denied: Metric,
    pub store_refused_signature: Metric,
    /// Labelled by `s3_endpoint`.
    pub endpoint_selected: Metric,
    /// Labelled by `s3_endpoint`.
    pub endpoint_errors: Metric,
    /// Labelled by `s3_endpoint`.
    pub endpoint_in_flight: Metric,
    /// Labelled by `s3_endpoint`.
    pub endpoint_ttfb_ms: SeriesHistogram,
    /// Labelled by `s3_endpoint`, `s3_route`.
    pub endpoint_requests: Metric,
    /// Labelled by `s3_operation`.
    pub operation_ttfb_ms: SeriesHistogram,
    /// Labelled by `s3_identity`, `s3_class`.
    pub identity_requests: Metric,
    /// Labelled by `s3_identity`, `s3_class`, `s3_error`.
    pub identity_errors: Metric,
    /// Labelled by `s3_identity`, `s3_class`.
    pub identity_bytes_received: Metric,
    /// Labelled by `s3_identity`, `s3_class`.
    pub identity_bytes_sent: Metric,
    /// Labelled by `s3_identity`, `s3_class`.
    pub identity_duration_ms: Metric,
    /// Labelled by `s3_bucket`.
    pub cache_hits: Metric,
    /// Labelled by `s3_bucket`.
    pub cache_misses: Metric,
    /// Labelled by `s3_bucket`.
    pub cache_evictions: Metric,
    /// Labelled by `s3_bucket`: body bytes served from the cache.
    pub cache_hit_bytes: Metric,
}

impl PostMetrics {
    /// Sets endpoint `address`'s in-flight gauge to `count`.
    ///
    /// # Safety
    /// `config` is the configuration's Envoy pointer, in one of its hooks on the main thread.
    pub unsafe fn set_in_flight(&self, config: ConfigEnvoyPtr, address: &str, count: u64) {
        if let Some(id) = self.endpoint_in_flight {
            let set = abi::envoy_dynamic_module_callback_http_filter_config_set_gauge;
            // SAFETY: per the contract above.
            unsafe { update_in_config(config, set, id, &[address], count) };
        }
    }

    /// Defines the metrics, with the series of every configured endpoint and cached bucket
    /// at 0.
    pub fn define(d: &Definer, endpoints: &[&str], cached_buckets: &[&str]) -> Self {
        let bucket = ["s3_bucket"];
        let endpoint = ["s3_endpoint"];
        let operations = FREQUENT_OPERATIONS.iter().map(Operation::as_str);
        let identity = ["s3_identity", "s3_class"];
        let metrics = Self {
            unhinted: d.counter("post_unhinted_total", &[]),
            discovered_endpoints: d.counter("endpoints_discovered_total", &[]),
            grants_fetched: d.counter("grants_fetched_total", &[]),
            grants_renewed: d.counter("grants_renewed_total", &[]),
            grant_failures: d.counter("grant_failures_total", &[]),
            grant_denied: d.counter("grant_denied_total", &[]),
            store_refused_signature: d.counter("store_refused_signature_total", &[]),
            endpoint_selected: d.counter("endpoint_selected_total", &endpoint),
            endpoint_errors: d.counter("endpoint_errors_total", &endpoint),
            endpoint_in_flight: d.gauge("endpoint_in_flight", &endpoint),
            endpoint_ttfb_ms: d.histogram_series(
                "endpoint_ttfb_ms",
                "s3_endpoint",
                endpoints.iter().copied(),
            ),
            endpoint_requests: d.counter("endpoint_requests_total", &["s3_endpoint", "s3_route"]),
            operation_ttfb_ms: d.histogram_series("operation_ttfb_ms", "s3_operation", operations),
            identity_requests: d.counter("identity_requests_total", &identity),
            identity_errors: d.counter(
                "identity_errors_total",
                &["s3_identity", "s3_class", "s3_error"],
            ),
            identity_bytes_received: d.counter("identity_bytes_received_total", &identity),
            identity_bytes_sent: d.counter("identity_bytes_sent_total", &identity),
            identity_duration_ms: d.histogram("identity_duration_ms", &identity),
            cache_hits: d.counter("cache_hits_total", &bucket),
            cache_misses: d.counter("cache_misses_total", &bucket),
            cache_evictions: d.counter("cache_evictions_total", &bucket),
            cache_hit_bytes: d.counter("cache_hit_bytes_total", &bucket),
        };
        for &name in cached_buckets {
            for counter in [
                metrics.cache_hits,
                metrics.cache_misses,
                metrics.cache_evictions,
                metrics.cache_hit_bytes,
            ] {
                d.zero_counter(counter, &[name]);
            }
        }
        for &address in endpoints {
            d.zero_counter(metrics.endpoint_selected, &[address]);
            d.zero_counter(metrics.endpoint_errors, &[address]);
            d.zero_gauge(metrics.endpoint_in_flight, &[address]);
            for route in Route::ALL {
                d.zero_counter(metrics.endpoint_requests, &[address, route.as_str()]);
            }
        }
        metrics
    }
}
