//! Grants over the network exactly as the filter asks for them (JSON POSTed to the gRPC port
//! over HTTP/2), and the proof that a grant decides and signs exactly like a per-request check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use s3mesh_access::grant::{GrantRequest, GrantResponse, ISSUE_PATH};
use s3mesh_access::request::Request;
use s3mesh_ext_authz::check::{Decision, HttpAttributes};
use s3mesh_ext_authz::reload::{Current, Reloader};
use s3mesh_sigv4::AmzDate;
use support::authz_fixture::{config_dir, serve_routes, LOCAL, SECRET};
use tonic::transport::Channel;
use tower::ServiceExt;

async fn serve(body: &str) -> (Channel, Arc<Current>) {
    let (_dir, path) = config_dir(body);
    let mut reloader = Reloader::new(path, None, None);
    let current = Arc::new(Current::new(reloader.build().unwrap()));
    let addr = serve_routes(Arc::clone(&current)).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, current)
}

/// POSTs `body` to the grant path; the status and the response body.
async fn post(channel: &Channel, body: &str) -> (u16, String) {
    post_as(channel, None, body).await
}

/// POSTs `body` as the proxy whose `x-forwarded-client-cert` (from ext-authz's sidecar) is
/// `xfcc`.
async fn post_as(channel: &Channel, xfcc: Option<&str>, body: &str) -> (u16, String) {
    let mut request =
        axum::http::Request::post(ISSUE_PATH).header("content-type", "application/json");
    if let Some(xfcc) = xfcc {
        request = request.header("x-forwarded-client-cert", xfcc);
    }
    let request = request
        .body(tonic::body::Body::new(body.to_owned()))
        .unwrap();
    let response = channel.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn today() -> String {
    AmzDate::from_unix_seconds(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .date()
}

#[tokio::test]
async fn a_known_caller_gets_its_rules_and_day_keys_never_the_secret() {
    let (channel, _) = serve(&format!("grants: {{ttl_seconds: 7}}\n{LOCAL}")).await;
    let ask = format!(r#"{{"source":"127.0.0.2","date":"{}"}}"#, today());
    let (status, body) = post(&channel, &ask).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(SECRET));
    let GrantResponse::Granted(grant) = serde_json::from_str(&body).unwrap() else {
        panic!("granted expected: {body}")
    };
    assert_eq!((grant.identity.as_str(), grant.ttl_ms), ("team-a", 7_000));
    assert_eq!(grant.rules.len(), 1);
    assert_eq!(grant.rules[0].buckets, ["team-a"]);
    // Only the profile its rules name.
    assert_eq!(grant.profiles.keys().collect::<Vec<_>>(), ["pa"]);
    assert_eq!(grant.profiles["pa"].date, today());
    assert_eq!(grant.profiles["pa"].access_key_id, "AKIDPA");
}

#[tokio::test]
async fn unknown_callers_are_refused_and_malformed_requests_rejected() {
    let (channel, _) = serve(LOCAL).await;
    let ask = format!(r#"{{"source":"127.0.0.9","date":"{}"}}"#, today());
    let (status, body) = post(&channel, &ask).await;
    assert_eq!(status, 200);
    let GrantResponse::Refused(refusal) = serde_json::from_str(&body).unwrap() else {
        panic!("refused expected: {body}")
    };
    assert_eq!(refusal.status, 403);
    assert!(refusal.message.contains("127.0.0.9"), "{}", refusal.message);
    // An identity claimed in the request is no field of it.
    let claim = r#"{"source":"127.0.0.9","date":"20260101","identity":"team-a"}"#;
    let (status, body) = post(&channel, claim).await;
    assert_eq!(status, 400);
    assert!(body.contains("unknown field `identity`"), "{body}");
}

#[tokio::test]
async fn in_the_mesh_a_sidecar_gets_grants_only_for_its_own_workload() {
    let config = "
callers: {verify: mesh_identity}
identity: {sources: [principal]}
profiles:
  pa: {credentials_dir: credentials/pa}
rules:
  - {match: {namespaces: [team-a]}, buckets: [team-a], operations: [read], profile: pa}
";
    let (channel, _) = serve(config).await;
    let ask = format!(
        r#"{{"principal":"spiffe://cluster.local/ns/team-a/sa/app","date":"{}"}}"#,
        today()
    );
    let sidecar = |ns: &str| format!("Hash=00;URI=spiffe://cluster.local/ns/{ns}/sa/app");
    let (status, body) = post_as(&channel, Some(&sidecar("team-a")), &ask).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""identity":"team-a/app""#), "{body}");
    let (_, body) = post_as(&channel, Some(&sidecar("team-b")), &ask).await;
    assert!(body.contains(r#""status":403"#), "{body}");
    assert!(body.contains("may ask only for its own workload"), "{body}");
    assert!(!body.contains("profiles"), "no keys in a refusal: {body}");
    let (_, body) = post_as(&channel, None, &ask).await;
    assert!(body.contains(r#""status":503"#), "{body}");
    assert!(!body.contains(SECRET));
}

#[tokio::test]
async fn a_day_far_from_ours_gets_todays_keys() {
    let (channel, _) = serve(LOCAL).await;
    let (_, body) = post(&channel, r#"{"source":"127.0.0.2","date":"19990101"}"#).await;
    let GrantResponse::Granted(grant) = serde_json::from_str(&body).unwrap() else {
        panic!("granted expected: {body}")
    };
    assert_eq!(grant.profiles["pa"].date, today());
}

/// The same request, decided per request and with a grant at the same instant: the same header
/// changes, byte for byte, and the same denials.
#[tokio::test]
async fn a_grant_decides_and_signs_exactly_like_a_per_request_check() {
    let (_, current) = serve(LOCAL).await;
    let checker = current.get();
    let now = SystemTime::now();
    let amz = AmzDate::from_unix_seconds(now.duration_since(UNIX_EPOCH).unwrap().as_secs());
    for (source, session) in [("127.0.0.2", false), ("127.0.0.5", true)] {
        let ask = GrantRequest {
            principal: None,
            source: Some(source.parse().unwrap()),
            date: amz.date(),
        };
        let GrantResponse::Granted(grant) = checker.grant(&ask, None, now).await else {
            panic!("granted expected")
        };
        let grant = grant.compile().unwrap();
        for (method, path) in [
            ("GET", "/team-a/k"),
            ("PUT", "/team-a/dir/a%20b"),
            ("GET", "/team-s/x?versionId=1"),
            ("DELETE", "/team-a/k"),
            ("GET", "/"),
        ] {
            let headers = [
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                ("x-amz-meta-color", "blue"),
            ];
            let map: HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let attrs = HttpAttributes {
                source: Some(source.parse().unwrap()),
                principal: None,
                proxy: None,
                method,
                host: "s3.local",
                path,
                headers: &map,
            };
            let per_request = checker.check(&attrs, now).await;
            let request = Request {
                method,
                host: "s3.local",
                path,
                headers: &headers,
            };
            let granted = grant.decide(&request, amz);
            match (per_request, granted) {
                (Decision::Allow { changes, .. }, Ok(allowed)) => {
                    assert_eq!(changes, allowed.signed.changes, "{method} {path}");
                    let token = changes
                        .set
                        .iter()
                        .any(|(n, _)| *n == "x-amz-security-token");
                    assert_eq!(token, session);
                }
                (Decision::Deny { error, .. }, Err(refused)) => {
                    assert_eq!(error, refused.error, "{method} {path}")
                }
                (a, b) => panic!("{method} {path}: per request {a:?}, grant {b:?}"),
            }
        }
    }
}
