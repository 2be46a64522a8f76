//! The common ext-authz test set-up: a configuration directory with credential profiles, and
//! Envoy `CheckRequest`s as Envoy builds them.

use std::collections::HashMap;
use std::path::PathBuf;

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};

pub const SECRET: &str = "grpc-test-secret-key-0123456789abcdef";
pub const TOKEN: &str = "grpc-test-session-token-zyx";

/// A configuration directory: credentials for profiles `pa` (key only) and `ps` (with a
/// session token), and `ext-authz.yaml` with the given body.
pub fn config_dir(body: &str) -> (PathBuf, PathBuf) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("s3mesh-grpc-{}-{n}", std::process::id()));
    for (profile, token) in [("pa", None), ("ps", Some(TOKEN))] {
        let creds = dir.join("credentials").join(profile);
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(
            creds.join("access_key_id"),
            format!("AKID{}", profile.to_uppercase()),
        )
        .unwrap();
        std::fs::write(creds.join("secret_access_key"), SECRET).unwrap();
        if let Some(t) = token {
            std::fs::write(creds.join("session_token"), t).unwrap();
        }
    }
    let path = dir.join("ext-authz.yaml");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

/// Serves ext-authz's routes (the Authorization service and the grant route) over `current` on
/// a free loopback port, as the binary does; the address.
pub async fn serve_routes(
    current: std::sync::Arc<s3mesh_ext_authz::reload::Current>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(s3mesh_ext_authz::service::routes(current))
            .serve_with_incoming(s3mesh_ext_authz::service::incoming(listener)),
    );
    addr
}

/// Identities known by address, two profiles, one rule each.
pub const LOCAL: &str = "
callers: {verify: any}
identities:
  - {name: team-a, source_cidrs: [127.0.0.2/32]}
  - {name: team-s, source_cidrs: [127.0.0.5/32]}
profiles:
  pa: {credentials_dir: credentials/pa}
  ps: {credentials_dir: credentials/ps}
rules:
  - {match: {identities: [team-a]}, buckets: [team-a], operations: [read, write, list], profile: pa}
  - {match: {identities: [team-s]}, buckets: [team-s], operations: [read], profile: ps}
";

/// A `CheckRequest` for `method path` from `source` (and mTLS `principal`, if not empty).
pub fn check(
    source: &str,
    principal: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    let mut h: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    h.insert("x-request-id".into(), "req-42".into());
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: source.into(),
                        port_specifier: Some(PortSpecifier::PortValue(40000)),
                        ..SocketAddress::default()
                    })),
                }),
                principal: principal.into(),
                ..Peer::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "7".into(),
                    method: method.into(),
                    path: path.into(),
                    host: "s3.local:8480".into(),
                    headers: h,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}
