//! The network shell: Envoy's `Authorization/Check` in, a [`Decision`] out as a
//! `CheckResponse`; and on the same port the filter's grant requests
//! ([`s3mesh_access::grant`]), JSON over HTTP/2.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};
use s3mesh_access::grant::{GrantRequest, GrantResponse, ISSUE_PATH};
use s3mesh_access::signing::ChunkSigning;
use s3mesh_s3_request::audit::{self, Attribute};
use s3mesh_s3_request::{chunk_signing, Operation, S3Error};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::callers::asking_proxy;
use crate::check::{Decision, HttpAttributes};
use crate::reload::Current;
use crate::telemetry::{check_span, grant_span, CheckMetrics};

/// Accepted gRPC connections, with Nagle off: a check's answer is several small HTTP/2 frames,
/// and with Nagle on, Envoy's delayed ACK held each answer back about 40 ms (measured: every
/// request through the local stack took 44-50 ms instead of a few).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The Authorization service over the configuration in force.
#[derive(Debug, Clone)]
pub struct AuthzService {
    current: Arc<Current>,
    metrics: CheckMetrics,
}

impl AuthzService {
    /// Serves decisions from whatever checker `current` holds at each request.
    pub fn new(current: Arc<Current>) -> Self {
        Self {
            current,
            metrics: CheckMetrics::new(),
        }
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let (metadata, _, request) = request.into_parts();
        let attributes = request.attributes.as_ref();
        let Some(http) = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            // Not an HTTP check: nothing s3mesh can authorize.
            let error = S3Error::invalid_request("ext_authz check without HTTP attributes");
            self.metrics
                .record("deny", error.code, started.elapsed().as_secs_f64());
            return Ok(Response::new(denied(&error, "", "")));
        };
        let source = attributes
            .and_then(|a| a.source.as_ref())
            .and_then(|p| p.address.as_ref())
            .and_then(|a| match &a.address {
                Some(Address::SocketAddress(s)) => s.address.parse().ok(),
                _ => None,
            });
        let principal = attributes
            .and_then(|a| a.source.as_ref())
            .map(|p| p.principal.as_str());
        let attrs = HttpAttributes {
            source,
            principal,
            proxy: asking_proxy(metadata.as_ref()),
            method: &http.method,
            host: &http.host,
            path: &http.path,
            headers: &http.headers,
        };
        // Envoy's x-request-id also appears in its access log; the stream id is the fallback.
        let request_id = http.headers.get("x-request-id").unwrap_or(&http.id);
        let span = check_span(&metadata, &http.headers);
        let checker = self.current.get();
        let decision = checker
            .check(&attrs, SystemTime::now())
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let (verdict, reason) = match &decision {
            Decision::Allow { .. } => ("allow", "granted"),
            Decision::Deny { error, .. } => ("deny", error.code),
        };
        span.record("s3mesh.decision", verdict);
        span.record("s3mesh.reason", reason);
        match &decision {
            Decision::Allow {
                identity,
                operation,
                ..
            } => {
                span.record("s3mesh.identity", identity.as_str());
                span.record("s3.operation", *operation);
            }
            Decision::Deny {
                identity,
                operation,
                ..
            } => {
                if let Some((identity, _)) = identity {
                    span.record("s3mesh.identity", identity.as_str());
                }
                if let Some(operation) = operation {
                    span.record("s3.operation", *operation);
                }
            }
        }
        let response = match decision {
            Decision::Allow {
                identity,
                identity_source,
                operation,
                changes,
                chunk_signing,
            } => {
                // Allowed requests are in Envoy's access log and the metrics; one log line
                // each would cost more than the decision.
                tracing::debug!(%request_id, %identity, operation, decision = "allow", "check");
                let mut ok = OkHttpResponseBuilder::new();
                for (name, value) in changes.set {
                    ok.add_header(
                        name,
                        value,
                        Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                        false,
                    );
                }
                for name in changes.remove {
                    ok.remove_header(name);
                }
                let mut response = CheckResponse::with_status(Status::ok("allowed"));
                response.set_http_response(ok);
                let mut metadata = chunk_signing
                    .as_ref()
                    .map(chunk_metadata)
                    .unwrap_or_default();
                add_audit(
                    &mut metadata,
                    &[
                        (Attribute::Identity, &identity),
                        (Attribute::IdentitySource, identity_source),
                        (Attribute::Decision, audit::ALLOW),
                        (Attribute::Operation, operation),
                    ],
                );
                response.dynamic_metadata = Some(metadata);
                response
            }
            Decision::Deny {
                identity,
                operation,
                error,
            } => {
                tracing::info!(
                    %request_id,
                    identity = identity.as_ref().map_or("-", |(name, _)| name.as_str()),
                    operation = operation.unwrap_or("-"),
                    decision = "deny",
                    status = error.status,
                    reason = %error.message,
                    "check"
                );
                let mut response = denied(&error, &http.path, request_id);
                let mut metadata = Struct::default();
                if let Some((name, source)) = identity {
                    let who = [
                        (Attribute::Identity, name.as_str()),
                        (Attribute::IdentitySource, source),
                    ];
                    add_audit(&mut metadata, &who);
                }
                let why = [
                    (Attribute::Decision, audit::DENY),
                    (Attribute::Reason, error.message.as_str()),
                    (Attribute::Error, error.code),
                    (
                        Attribute::Operation,
                        operation.unwrap_or(Operation::Unknown.as_str()),
                    ),
                ];
                add_audit(&mut metadata, &why);
                response.dynamic_metadata = Some(metadata);
                response
            }
        };
        self.metrics
            .record(verdict, reason, started.elapsed().as_secs_f64());
        Ok(Response::new(response))
    }
}

/// The gRPC service and the grant route, on one port.
pub fn routes(current: Arc<Current>) -> tonic::service::Routes {
    let grants = Arc::clone(&current);
    let metrics = CheckMetrics::new();
    let router = tonic::service::Routes::new(AuthorizationServer::new(AuthzService::new(current)))
        .into_axum_router()
        .route(
            ISSUE_PATH,
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (current, metrics) = (Arc::clone(&grants), metrics.clone());
                let span = grant_span(&headers);
                async move { issue_grant(&current, &metrics, asking_proxy(&headers), &body).await }
                    .instrument(span)
            }),
        );
    tonic::service::Routes::from(router)
}

/// Answers one grant request from `proxy` (the call's `x-forwarded-client-cert`): `200` with a
/// [`GrantResponse`] (granted or refused), `400` for a request that is not a [`GrantRequest`].
async fn issue_grant(
    current: &Current,
    metrics: &CheckMetrics,
    proxy: Option<&str>,
    body: &[u8],
) -> (StatusCode, [(HeaderName, &'static str); 1], Vec<u8>) {
    let json = [(CONTENT_TYPE, "application/json")];
    let request: GrantRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("not a grant request: {e}");
            return (StatusCode::BAD_REQUEST, json, message.into_bytes());
        }
    };
    let checker = current.get();
    let response = checker.grant(&request, proxy, SystemTime::now()).await;
    let span = tracing::Span::current();
    match &response {
        GrantResponse::Granted(grant) => {
            span.record("s3mesh.identity", grant.identity.as_str());
            span.record("s3mesh.decision", "issued");
            metrics.record_grant("issued");
            tracing::debug!(
                identity = %grant.identity,
                rules = grant.rules.len(),
                ttl_ms = grant.ttl_ms,
                "grant issued"
            );
        }
        GrantResponse::Refused(refusal) => {
            span.record("s3mesh.decision", "refused");
            metrics.record_grant("refused");
            tracing::info!(
                principal = request.principal.as_deref().unwrap_or("-"),
                source = ?request.source,
                status = refusal.status,
                reason = %refusal.message,
                "grant refused"
            );
        }
    }
    match serde_json::to_vec(&response) {
        Ok(bytes) => (StatusCode::OK, json, bytes),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            format!("cannot encode the grant: {e}").into_bytes(),
        ),
    }
}

/// The re-signing material as ext_authz dynamic metadata, which Envoy keeps inside the proxy
/// for the `post` filter (never sent upstream or to the client).
fn chunk_metadata(chunks: &ChunkSigning) -> Struct {
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    };
    let fields = [
        (chunk_signing::SEED_SIGNATURE, text(&chunks.seed)),
        (chunk_signing::AMZ_DATE, text(&chunks.amz_date)),
        (chunk_signing::SCOPE, text(&chunks.scope)),
        (chunk_signing::SIGNING_KEY, text(&chunks.key.to_hex())),
    ];
    Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// Adds audit record attributes to ext_authz's dynamic metadata, where Envoy's access log
/// reads them (the per-request mode's identity and decision: `s3mesh_s3_request::audit`).
fn add_audit(metadata: &mut Struct, attributes: &[(Attribute, &str)]) {
    for (attribute, value) in attributes {
        let value = Value {
            kind: Some(Kind::StringValue((*value).to_owned())),
        };
        metadata.fields.insert(attribute.name().to_owned(), value);
    }
}

fn denied(error: &S3Error, resource: &str, request_id: &str) -> CheckResponse {
    let resource = resource.split('?').next().unwrap_or(resource);
    let mut body = DeniedHttpResponseBuilder::new();
    body.set_http_status(status_code(error.status))
        .add_header("content-type", "application/xml", None, false)
        .add_header("x-amz-request-id", request_id, None, false)
        .set_body(error.to_xml(resource, request_id));
    let grpc = match error.status {
        403 => Status::permission_denied(error.code),
        503 => Status::unavailable(error.code),
        _ => Status::invalid_argument(error.code),
    };
    let mut response = CheckResponse::with_status(grpc);
    response.set_http_response(body);
    response
}

fn status_code(status: u16) -> HttpStatusCode {
    match status {
        400 => HttpStatusCode::BadRequest,
        403 => HttpStatusCode::Forbidden,
        503 => HttpStatusCode::ServiceUnavailable,
        _ => HttpStatusCode::InternalServerError,
    }
}
