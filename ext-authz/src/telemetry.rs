//! Logs, traces and metrics, set up once at start-up from the environment.
//!
//! - Logs: `tracing` to stderr, level from `RUST_LOG` (default `info`), JSON lines when
//!   `S3MESH_LOG_FORMAT=json`.
//! - Traces and metrics: OpenTelemetry over OTLP/gRPC, on when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (or its `_TRACES_`/`_METRICS_` variant) is set, and configured by the other standard
//!   `OTEL_*` variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`,
//!   `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`/`OTEL_METRICS_EXPORTER=none`). Each check is a
//!   span ([`check_span`]) parented on the caller's W3C `traceparent`.
//!
//! No secret is ever passed to a log macro or a span: credentials redact themselves in `Debug`.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::health::Watches;
use crate::reload::Refusals;

/// Name of this service in traces and metrics, unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE: &str = "s3mesh-ext-authz";

/// The exporters in use; [`Telemetry::shutdown`] flushes them.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the OTLP exporter for `signal` (`TRACES` or `METRICS`) is switched on.
fn exporting(signal: &str) -> bool {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    let chooser = format!("OTEL_{signal}_EXPORTER");
    if env(&chooser).is_some_and(|v| v != "otlp") {
        return false;
    }
    env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")).is_some()
}

fn resource() -> Resource {
    // The builder reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
    let named = env("OTEL_SERVICE_NAME").is_some();
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name(SERVICE).build()
    }
}

/// Installs logging and, when configured, the OTLP exporters. Call once, inside the runtime.
pub fn init() -> Telemetry {
    let mut problems = Vec::new();
    if env("OTEL_EXPORTER_OTLP_PROTOCOL").is_some_and(|p| p != "grpc") {
        problems.push("OTEL_EXPORTER_OTLP_PROTOCOL: only grpc is built in; exporting over grpc");
    }
    let tracer = exporting("TRACES").then(|| {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map(|exporter| {
                SdkTracerProvider::builder()
                    .with_resource(resource())
                    .with_batch_exporter(exporter)
                    .build()
            })
    });
    let meter = exporting("METRICS").then(|| {
        opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map(|exporter| {
                SdkMeterProvider::builder()
                    .with_resource(resource())
                    .with_reader(PeriodicReader::builder(exporter).build())
                    .build()
            })
    });
    let (tracer, trace_error) = split(tracer);
    let (meter, metric_error) = split(meter);
    if let Some(provider) = &meter {
        opentelemetry::global::set_meter_provider(provider.clone());
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env("S3MESH_LOG_FORMAT").as_deref() == Some("json");
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let logs = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    // Only this crate's spans become trace spans, whatever RUST_LOG says about logs.
    let spans = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE))
            .with_filter(Targets::new().with_target("s3mesh_ext_authz", LevelFilter::INFO))
    });
    tracing_subscriber::registry().with(logs).with(spans).init();
    for problem in problems {
        tracing::warn!("{problem}");
    }
    for error in [trace_error, metric_error].into_iter().flatten() {
        tracing::error!(%error, "OTLP exporter not started; continuing without it");
    }
    Telemetry { tracer, meter }
}

fn split<T, E: ToString>(built: Option<Result<T, E>>) -> (Option<T>, Option<String>) {
    match built {
        Some(Ok(t)) => (Some(t), None),
        Some(Err(e)) => (None, Some(e.to_string())),
        None => (None, None),
    }
}

impl Telemetry {
    /// Flushes and stops the exporters (bounded: a collector that is down does not hold up exit).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            let _ = tracer.shutdown_with_timeout(Duration::from_secs(2));
        }
        if let Some(meter) = self.meter {
            let _ = meter.shutdown_with_timeout(Duration::from_secs(2));
        }
    }
}

/// Reads W3C trace context from gRPC metadata or HTTP request headers.
struct Carrier<'a>(Vec<(&'a str, &'a str)>);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// The span of one check, parented on the trace context Envoy sent with the gRPC call (its
/// ext_authz client span) or, failing that, on the `traceparent` of the S3 request itself.
pub fn check_span(
    metadata: &tonic::metadata::MetadataMap,
    headers: &HashMap<String, String>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "ext_authz.check",
        otel.kind = "server",
        s3.operation = tracing::field::Empty,
        s3mesh.identity = tracing::field::Empty,
        s3mesh.decision = tracing::field::Empty,
        s3mesh.reason = tracing::field::Empty,
    );
    let grpc: Vec<(&str, &str)> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| Some((k, metadata.get(k)?.to_str().ok()?)))
        .collect();
    let carrier = if grpc.is_empty() {
        Carrier(
            headers
                .iter()
                .filter(|(k, _)| *k == "traceparent" || *k == "tracestate")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        )
    } else {
        Carrier(grpc)
    };
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
    span
}

/// The span of one grant request, parented on the `traceparent` the filter passed on from the
/// S3 request that needed the grant (a renewal in the background has none: a trace of its own).
pub fn grant_span(headers: &axum::http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        "ext_authz.grant",
        otel.kind = "server",
        s3mesh.identity = tracing::field::Empty,
        s3mesh.decision = tracing::field::Empty,
    );
    let carrier = Carrier(
        ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|k| Some((k, headers.get(k)?.to_str().ok()?)))
            .collect(),
    );
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    span
}

/// The check instruments.
#[derive(Debug, Clone)]
pub struct CheckMetrics {
    checks: Counter<u64>,
    duration: Histogram<f64>,
    grants: Counter<u64>,
}

impl CheckMetrics {
    /// Instruments on the global meter (no-ops when metrics are not exported).
    pub fn new() -> Self {
        let meter = meter();
        Self {
            checks: meter
                .u64_counter("s3mesh.authz.checks")
                .with_description("ext_authz checks, by decision and reason")
                .build(),
            duration: meter
                .f64_histogram("s3mesh.authz.check.duration")
                .with_unit("s")
                .with_description("Time to decide one check")
                .with_boundaries(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05,
                ])
                .build(),
            grants: meter
                .u64_counter("s3mesh.authz.grants")
                .with_description("grants asked for by the filter, by decision")
                .build(),
        }
    }

    /// Records one grant request: `issued` or `refused`.
    pub fn record_grant(&self, decision: &'static str) {
        self.grants.add(1, &[KeyValue::new("decision", decision)]);
    }

    /// Records one check. `reason` is the S3 error code of a denial, `granted` otherwise.
    pub fn record(&self, decision: &'static str, reason: &'static str, seconds: f64) {
        let attributes = [
            KeyValue::new("decision", decision),
            KeyValue::new("reason", reason),
        ];
        self.checks.add(1, &attributes);
        self.duration.record(seconds, &attributes[..1]);
    }
}

impl Default for CheckMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Calls to the store's STS ([`crate::sts`]).
#[derive(Debug, Clone)]
pub struct StsMetrics {
    calls: Counter<u64>,
}

impl StsMetrics {
    /// Instruments on the global meter (no-ops when metrics are not exported).
    pub fn new() -> Self {
        Self {
            calls: meter()
                .u64_counter("s3mesh.authz.sts.calls")
                .with_description("Calls to the store's STS, by profile and result")
                .build(),
        }
    }

    /// Records one call of `profile`: `ok`, `refused`, `unreachable`, `malformed` or `token`.
    pub fn record(&self, profile: &str, result: &'static str) {
        self.calls.add(
            1,
            &[
                KeyValue::new("profile", profile.to_owned()),
                KeyValue::new("result", result),
            ],
        );
    }
}

impl Default for StsMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn meter() -> Meter {
    opentelemetry::global::meter(SERVICE)
}

/// Registers the gauges read at each export: objects each watch knows (the identity cache is
/// the `pods` one), whether each watch is synced and connected, its errors, and the refused
/// configuration objects.
pub fn register_gauges(watches: Watches, refusals: Refusals) {
    let meter = meter();
    let each = move |observe: &dyn Fn(
        &'static str,
        &crate::kubernetes::watch_state::WatchState,
        usize,
    )| {
        for (kind, state, known) in watches.each() {
            observe(kind, state, known);
        }
    };
    let each = std::sync::Arc::new(each);
    let known = std::sync::Arc::clone(&each);
    meter
        .u64_observable_gauge("s3mesh.authz.watch.objects")
        .with_description("Objects a Kubernetes watch knows; for pods, the identity cache size")
        .with_callback(move |o| {
            known(&|kind, _, n| o.observe(n as u64, &[KeyValue::new("kind", kind)]));
        })
        .build();
    let health = std::sync::Arc::clone(&each);
    meter
        .u64_observable_gauge("s3mesh.authz.watch.state")
        .with_description("1 when a watch is in that state: synced (first list loaded), connected")
        .with_callback(move |o| {
            health(&|kind, state, _| {
                for (name, on) in [("synced", state.synced()), ("connected", state.connected())] {
                    o.observe(
                        u64::from(on),
                        &[KeyValue::new("kind", kind), KeyValue::new("state", name)],
                    );
                }
            });
        })
        .build();
    meter
        .u64_observable_counter("s3mesh.authz.watch.errors")
        .with_description("Failed watch calls since start")
        .with_callback(move |o| {
            each(&|kind, state, _| o.observe(state.errors(), &[KeyValue::new("kind", kind)]));
        })
        .build();
    meter
        .u64_observable_gauge("s3mesh.authz.config.refused")
        .with_description("Policy objects and Secrets refused at the last reload")
        .with_callback(move |o| o.observe(refusals.list().len() as u64, &[]))
        .build();
}
