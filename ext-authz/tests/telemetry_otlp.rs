//! OpenTelemetry from the real `s3mesh-ext-authz` binary, configured only by the standard
//! `OTEL_*` variables, into an OTLP/gRPC collector run by the test: one span per check,
//! parented on the caller's `traceparent`, and the check metrics by decision and reason.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::authz_fixture::{check, config_dir, LOCAL, SECRET};
use support::fake_api_server::eventually;

/// One data point of a sum: metric name, attributes, value.
type SumPoint = (String, Vec<(String, String)>, i64);

/// What the collector received.
#[derive(Default)]
struct Collector {
    spans: Mutex<Vec<Span>>,
    /// Every sum data point.
    sums: Mutex<Vec<SumPoint>>,
    /// Metric names seen.
    names: Mutex<Vec<String>>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Collector>);

#[tonic::async_trait]
impl TraceService for Shared {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.spans.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Shared {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        for metric in request
            .into_inner()
            .resource_metrics
            .into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
        {
            self.0.names.lock().unwrap().push(metric.name.clone());
            if let Some(Data::Sum(sum)) = metric.data {
                for point in sum.data_points {
                    let value = match point.value {
                        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => v,
                        _ => continue,
                    };
                    let attrs = point.attributes.iter().map(text).collect();
                    self.0
                        .sums
                        .lock()
                        .unwrap()
                        .push((metric.name.clone(), attrs, value));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn text(kv: &KeyValue) -> (String, String) {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    (kv.key.clone(), value)
}

/// The ext-authz process, killed when the test ends, however it ends.
struct Authz(Child);

impl Drop for Authz {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `env`, and returns it with its gRPC address and its log lines.
fn start_authz(
    config: &std::path::Path,
    env: &[(&str, String)],
) -> (Authz, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_s3mesh-ext-authz"))
        .args(["--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
        .env("S3MESH_LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let authz = Authz(child);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let seen = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(listen) = v["fields"]["listen"].as_str() {
                    let _ = tx.send(listen.to_owned());
                }
            }
            seen.lock().unwrap().push(line);
        }
    });
    let listen = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    (authz, listen, lines)
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

#[tokio::test]
async fn each_check_is_a_span_parented_on_traceparent_and_counted_by_decision_and_reason() {
    let collector = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let (_dir, config) = config_dir(LOCAL);
    let (_authz, listen, logs) = start_authz(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
            ("OTEL_SERVICE_NAME", "authz-under-test".to_owned()),
        ],
    );
    let mut client = AuthorizationClient::connect(format!("http://{listen}"))
        .await
        .unwrap();

    // Envoy's trace context arrives as gRPC metadata; the S3 request's own header is the
    // fallback.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let envoy_span = "00f067aa0ba902b7";
    let mut allowed = tonic::Request::new(check("127.0.0.2", "", "GET", "/team-a/k", &[]));
    allowed.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-{envoy_span}-01").parse().unwrap(),
    );
    client.check(allowed).await.unwrap();
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let header = format!("00-{other_trace}-b7ad6b7169203331-01");
    let denied = check(
        "127.0.0.2",
        "",
        "PUT",
        "/team-b/k",
        &[("traceparent", header.as_str())],
    );
    client.check(denied).await.unwrap();

    let spans = || collector.0.spans.lock().unwrap().clone();
    eventually("two check spans", || spans().len() >= 2).await;
    let spans = spans();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let allow = spans
        .iter()
        .find(|s| hex(&s.trace_id) == trace)
        .expect("span in Envoy's trace");
    assert_eq!(allow.name, "ext_authz.check");
    assert_eq!(hex(&allow.parent_span_id), envoy_span);
    assert_eq!(attribute(allow, "s3mesh.decision"), Some("allow"));
    assert_eq!(attribute(allow, "s3mesh.identity"), Some("team-a"));
    assert_eq!(attribute(allow, "s3.operation"), Some("GetObject"));
    let deny = spans
        .iter()
        .find(|s| hex(&s.trace_id) == other_trace)
        .expect("span in the request's trace");
    assert_eq!(attribute(deny, "s3mesh.decision"), Some("deny"));
    assert_eq!(attribute(deny, "s3mesh.reason"), Some("AccessDenied"));

    let counted = |decision: &str, reason: &str| {
        collector
            .0
            .sums
            .lock()
            .unwrap()
            .iter()
            .any(|(name, attrs, v)| {
                name == "s3mesh.authz.checks"
                    && *v >= 1
                    && attrs.contains(&("decision".to_owned(), decision.to_owned()))
                    && attrs.contains(&("reason".to_owned(), reason.to_owned()))
            })
    };
    eventually("checks counted", || {
        counted("allow", "granted") && counted("deny", "AccessDenied")
    })
    .await;
    let names = collector.0.names.lock().unwrap().clone();
    for name in ["s3mesh.authz.check.duration", "s3mesh.authz.config.refused"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not exported: {names:?}"
        );
    }
    // Even at trace level, no secret reaches the log.
    let logs = logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("ext_authz.check") || logs.contains("check"),
        "{logs}"
    );
    assert!(!logs.contains(SECRET), "a secret reached the log");
}
