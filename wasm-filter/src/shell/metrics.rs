//! Envoy stats of the filter (`wasmcustom.*`, and so in `/stats/prometheus`).
//!
//! A metric defined under the same name in every worker's VM is one Envoy stat: the per-endpoint
//! in-flight gauge is therefore process-wide without any locking in the filter. Labels travel in
//! the name as `tag=.=value;.;` (the convention of Istio's `extraStatTags`); the `stats_tags` in
//! `envoy/s3mesh.yaml` turn them into Prometheus labels `s3_endpoint`, `s3_route`,
//! `s3_operation`, `s3_identity`, `s3_class` and `s3_error`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use s3mesh_filter::endpoint::Route;
use s3mesh_filter::post::CacheEvent;
use s3mesh_filter::pre::Count;
use s3mesh_filter::usage::{IdentityLabels, Usage};

/// One metric; if the host refuses to define it, updates become no-ops (stats must never fail
/// a request).
pub(super) struct Metric(Option<u32>);

impl Metric {
    fn define(kind: MetricType, name: &str) -> Self {
        Self(hostcalls::define_metric(kind, name).ok())
    }

    /// Adds `by`; nothing to add costs no host call (a GET's bytes received).
    pub(super) fn add(&self, by: i64) {
        if let (Some(id), false) = (self.0, by == 0) {
            let _ = hostcalls::increment_metric(id, by);
        }
    }

    pub(super) fn record(&self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    pub(super) fn get(&self) -> u64 {
        self.0
            .and_then(|id| hostcalls::get_metric(id).ok())
            .unwrap_or(0)
    }
}

fn tagged(tag: &str, value: &str, name: &str) -> String {
    format!("{tag}=.={value};.;{name}")
}

/// Per upstream endpoint.
pub(super) struct EndpointMetrics {
    pub(super) selected: Metric,
    pub(super) errors: Metric,
    pub(super) in_flight: Metric,
    pub(super) ttfb_ms: Metric,
    /// Requests served, by how they reached the endpoint.
    pub(super) routes: RouteMetrics,
}

/// One counter per [`Route`].
pub(super) struct RouteMetrics([Metric; Route::ALL.len()]);

impl RouteMetrics {
    pub(super) fn get(&self, route: Route) -> &Metric {
        &self.0[route.index()]
    }
}

/// Per S3 operation.
pub(super) struct OperationMetrics {
    pub(super) requests: Metric,
    pub(super) ttfb_ms: Metric,
}

/// Per bucket of the read cache.
pub(super) struct CacheMetrics {
    hits: Metric,
    misses: Metric,
    evictions: Metric,
    hit_bytes: Metric,
}

/// Per identity label and operation class.
pub(super) struct IdentityMetrics {
    requests: Metric,
    bytes_received: Metric,
    bytes_sent: Metric,
    duration_ms: Metric,
}

/// `s3mesh_identity_errors_total` by identity label, class and error code.
type IdentityErrors = HashMap<(String, &'static str, String), Rc<Metric>>;

/// Every metric of one root context, labelled ones created on first use.
pub(super) struct Metrics {
    pre_rejected: Metric,
    pre_stripped_headers: Metric,
    pub(super) post_unhinted: Metric,
    pub(super) discovered_endpoints: Metric,
    pub(super) grants_fetched: Metric,
    pub(super) grants_renewed: Metric,
    pub(super) grant_failures: Metric,
    pub(super) grant_denied: Metric,
    pub(super) store_refused_signature: Metric,
    endpoints: RefCell<HashMap<String, Rc<EndpointMetrics>>>,
    operations: RefCell<HashMap<&'static str, Rc<OperationMetrics>>>,
    caches: RefCell<HashMap<String, Rc<CacheMetrics>>>,
    /// This worker's identity labels (the bound is per worker).
    identity_labels: RefCell<IdentityLabels>,
    identities: RefCell<HashMap<(String, &'static str), Rc<IdentityMetrics>>>,
    identity_errors: RefCell<IdentityErrors>,
}

impl Metrics {
    /// The metrics of a root; `max_identity_labels` bounds the identity label values.
    pub(super) fn define(max_identity_labels: usize) -> Self {
        let counter = |name| Metric::define(MetricType::Counter, name);
        Self {
            pre_rejected: counter("s3mesh_pre_rejected_total"),
            pre_stripped_headers: counter("s3mesh_pre_stripped_headers_total"),
            post_unhinted: counter("s3mesh_post_unhinted_total"),
            discovered_endpoints: counter("s3mesh_endpoints_discovered_total"),
            grants_fetched: counter("s3mesh_grants_fetched_total"),
            grants_renewed: counter("s3mesh_grants_renewed_total"),
            grant_failures: counter("s3mesh_grant_failures_total"),
            grant_denied: counter("s3mesh_grant_denied_total"),
            store_refused_signature: counter("s3mesh_store_refused_signature_total"),
            endpoints: RefCell::default(),
            operations: RefCell::default(),
            caches: RefCell::default(),
            identity_labels: RefCell::new(IdentityLabels::new(max_identity_labels)),
            identities: RefCell::default(),
            identity_errors: RefCell::default(),
        }
    }

    /// Adds to role `pre`'s metrics.
    pub(super) fn count_pre(&self, count: Count) {
        match count {
            Count::Stripped(headers) => self
                .pre_stripped_headers
                .add(i64::try_from(headers).unwrap_or(i64::MAX)),
            Count::Operation(operation) => self.operation(operation.as_str()).requests.add(1),
            Count::Rejected => self.pre_rejected.add(1),
        }
    }

    pub(super) fn endpoint(&self, address: &str) -> Rc<EndpointMetrics> {
        if let Some(found) = self.endpoints.borrow().get(address) {
            return Rc::clone(found);
        }
        let mut map = self.endpoints.borrow_mut();
        let entry = map.entry(address.to_owned()).or_insert_with(|| {
            let m = |kind, name| Metric::define(kind, &tagged("s3_endpoint", address, name));
            Rc::new(EndpointMetrics {
                selected: m(MetricType::Counter, "s3mesh_endpoint_selected_total"),
                errors: m(MetricType::Counter, "s3mesh_endpoint_errors_total"),
                in_flight: m(MetricType::Gauge, "s3mesh_endpoint_in_flight"),
                ttfb_ms: m(MetricType::Histogram, "s3mesh_endpoint_ttfb_ms"),
                routes: RouteMetrics(Route::ALL.map(|route| {
                    let name = tagged("s3_route", route.as_str(), "s3mesh_endpoint_requests_total");
                    Metric::define(MetricType::Counter, &tagged("s3_endpoint", address, &name))
                })),
            })
        });
        Rc::clone(entry)
    }

    pub(super) fn operation(&self, name: &'static str) -> Rc<OperationMetrics> {
        let mut map = self.operations.borrow_mut();
        let entry = map.entry(name).or_insert_with(|| {
            let m = |kind, metric| Metric::define(kind, &tagged("s3_operation", name, metric));
            Rc::new(OperationMetrics {
                requests: m(MetricType::Counter, "s3mesh_operation_requests_total"),
                ttfb_ms: m(MetricType::Histogram, "s3mesh_operation_ttfb_ms"),
            })
        });
        Rc::clone(entry)
    }

    /// Adds a read cache event to its bucket's metrics.
    pub(super) fn count_cache(&self, bucket: &str, event: CacheEvent) {
        let metrics = Rc::clone(
            self.caches
                .borrow_mut()
                .entry(bucket.to_owned())
                .or_insert_with(|| {
                    let m = |name| {
                        Metric::define(MetricType::Counter, &tagged("s3_bucket", bucket, name))
                    };
                    Rc::new(CacheMetrics {
                        hits: m("s3mesh_cache_hits_total"),
                        misses: m("s3mesh_cache_misses_total"),
                        evictions: m("s3mesh_cache_evictions_total"),
                        hit_bytes: m("s3mesh_cache_hit_bytes_total"),
                    })
                }),
        );
        match event {
            CacheEvent::Hit { bytes } => {
                metrics.hits.add(1);
                metrics
                    .hit_bytes
                    .add(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            CacheEvent::Miss => metrics.misses.add(1),
            CacheEvent::Evicted => metrics.evictions.add(1),
        }
    }

    /// Adds a finished request to its caller's metrics.
    pub(super) fn record_usage(&self, usage: &Usage<'_>) {
        let label = self
            .identity_labels
            .borrow_mut()
            .label(usage.identity)
            .to_owned();
        let tags = |name: &str| {
            tagged(
                "s3_identity",
                &label,
                &tagged("s3_class", usage.class, name),
            )
        };
        let key = (label.clone(), usage.class);
        let metrics = Rc::clone(self.identities.borrow_mut().entry(key).or_insert_with(|| {
            Rc::new(IdentityMetrics {
                requests: Metric::define(
                    MetricType::Counter,
                    &tags("s3mesh_identity_requests_total"),
                ),
                bytes_received: Metric::define(
                    MetricType::Counter,
                    &tags("s3mesh_identity_bytes_received_total"),
                ),
                bytes_sent: Metric::define(
                    MetricType::Counter,
                    &tags("s3mesh_identity_bytes_sent_total"),
                ),
                duration_ms: Metric::define(
                    MetricType::Histogram,
                    &tags("s3mesh_identity_duration_ms"),
                ),
            })
        }));
        metrics.requests.add(1);
        metrics
            .bytes_received
            .add(i64::try_from(usage.bytes_in).unwrap_or(i64::MAX));
        metrics
            .bytes_sent
            .add(i64::try_from(usage.bytes_out).unwrap_or(i64::MAX));
        metrics.duration_ms.record(usage.duration_ms);
        if let Some(code) = usage.error {
            let key = (label.clone(), usage.class, code.to_owned());
            let errors = Rc::clone(self.identity_errors.borrow_mut().entry(key).or_insert_with(
                || {
                    let name = tagged("s3_error", code, "s3mesh_identity_errors_total");
                    Rc::new(Metric::define(MetricType::Counter, &tags(&name)))
                },
            ));
            errors.add(1);
        }
    }
}
