//! Every decision path of the ext_authz service, through its real gRPC interface in process:
//! a tonic server on a free port, Envoy's `CheckRequest`s from a tonic client.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use s3mesh_ext_authz::identity::kubernetes::PodIdentities;
use s3mesh_ext_authz::reload::{Current, Reloader};
use s3mesh_s3_request::chunk_signing;
use support::authz_fixture::{check, config_dir, serve_routes, LOCAL, SECRET, TOKEN};
use tonic::transport::Channel;

async fn serve(
    path: &Path,
    pods: Option<PodIdentities>,
) -> (AuthorizationClient<Channel>, Arc<Current>) {
    let mut reloader = Reloader::new(path.to_owned(), pods, None);
    let current = Arc::new(Current::new(reloader.build().unwrap()));
    tokio::spawn(reloader.watch(Arc::clone(&current), Duration::from_millis(100)));
    let addr = serve_routes(Arc::clone(&current)).await;
    let client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, current)
}

/// Headers set on an allowed request, or the status and body of a denial.
enum Outcome {
    Allowed {
        set: HashMap<String, (String, i32)>,
        removed: Vec<String>,
    },
    Denied {
        status: i32,
        body: String,
        headers: HashMap<String, String>,
    },
}

fn outcome(response: &CheckResponse) -> Outcome {
    match response.http_response.as_ref().unwrap() {
        HttpResponse::OkResponse(ok) => Outcome::Allowed {
            set: ok
                .headers
                .iter()
                .map(|h| {
                    let hv = h.header.as_ref().unwrap();
                    (hv.key.clone(), (hv.value.clone(), h.append_action))
                })
                .collect(),
            removed: ok.headers_to_remove.clone(),
        },
        HttpResponse::DeniedResponse(denied) => Outcome::Denied {
            status: denied.status.as_ref().unwrap().code,
            body: denied.body.clone(),
            headers: denied
                .headers
                .iter()
                .map(|h| {
                    let hv = h.header.as_ref().unwrap();
                    (hv.key.clone(), hv.value.clone())
                })
                .collect(),
        },
        other => panic!("s3mesh never answers with {other:?}"),
    }
}

async fn ask(client: &mut AuthorizationClient<Channel>, request: CheckRequest) -> CheckResponse {
    let response = client.check(request).await.unwrap().into_inner();
    let shown = format!("{response:?}");
    assert!(!shown.contains(SECRET), "secret in a response");
    response
}

fn denied(response: &CheckResponse) -> (i32, String) {
    match outcome(response) {
        Outcome::Denied {
            status,
            body,
            headers,
        } => {
            assert_eq!(headers["content-type"], "application/xml");
            assert_eq!(headers["x-amz-request-id"], "req-42");
            assert!(body.contains("<RequestId>req-42</RequestId>"), "{body}");
            (status, body)
        }
        Outcome::Allowed { .. } => panic!("expected a denial"),
    }
}

#[tokio::test]
async fn an_allowed_request_gets_sigv4_headers_that_overwrite_the_clients() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let response = ask(
        &mut client,
        check(
            "127.0.0.2",
            "",
            "GET",
            "/team-a/k",
            &[("x-amz-meta-a", "1")],
        ),
    )
    .await;
    assert_eq!(response.status.as_ref().unwrap().code, 0);
    let Outcome::Allowed { set, removed } = outcome(&response) else {
        panic!("denied")
    };
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    let (auth, action) = &set["authorization"];
    assert_eq!(*action, overwrite);
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPA/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-a,"), "{auth}");
    assert_eq!(set["x-amz-content-sha256"].0, "UNSIGNED-PAYLOAD");
    assert_eq!(set["x-amz-date"].0.len(), 16);
    assert_eq!(removed, ["x-amz-security-token"]);
}

#[tokio::test]
async fn a_session_token_profile_sends_and_signs_its_token() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let response = ask(&mut client, check("127.0.0.5", "", "GET", "/team-s/k", &[])).await;
    let Outcome::Allowed { set, removed } = outcome(&response) else {
        panic!("denied")
    };
    assert_eq!(set["x-amz-security-token"].0, TOKEN);
    assert!(set["authorization"].0.contains(";x-amz-security-token,"));
    assert!(removed.is_empty());
}

#[tokio::test]
async fn an_unknown_caller_is_denied_with_an_s3_error() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let (status, body) =
        denied(&ask(&mut client, check("127.0.0.9", "", "GET", "/team-a/k", &[])).await);
    assert_eq!(status, 403);
    assert!(
        body.contains("<Code>AccessDenied</Code>") && body.contains("127.0.0.9"),
        "{body}"
    );
}

#[tokio::test]
async fn what_no_rule_grants_is_denied_naming_the_rule_to_ask_for() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let (status, body) = denied(
        &ask(
            &mut client,
            check("127.0.0.2", "", "DELETE", "/team-a/k", &[]),
        )
        .await,
    );
    assert_eq!(status, 403);
    assert!(body.contains("is not granted delete on bucket"), "{body}");
}

#[tokio::test]
async fn malformed_requests_are_client_errors() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let (status, body) = denied(
        &ask(
            &mut client,
            check("127.0.0.2", "", "GET", "/team-a/a b", &[]),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("<Code>InvalidURI</Code>") && body.contains("pre"),
        "{body}"
    );
    let bogus = [("x-amz-content-sha256", "NOT-A-MODE")];
    let (status, _) = denied(
        &ask(
            &mut client,
            check("127.0.0.2", "", "PUT", "/team-a/k", &bogus),
        )
        .await,
    );
    assert_eq!(status, 400);
}

const MESH: &str = "
callers: {verify: any}
identity: {sources: [principal, local_file], trust_domain: cluster.local}
identities:
  - {name: team-a, source_cidrs: [127.0.0.2/32]}
profiles:
  pa: {credentials_dir: credentials/pa}
rules:
  - {match: {service_accounts: [gw/s3-client]}, buckets: [team-a], operations: [read], profile: pa}
";

#[tokio::test]
async fn the_mtls_principal_comes_first_and_a_foreign_trust_domain_is_refused() {
    let (_dir, path) = config_dir(MESH);
    let (mut client, _) = serve(&path, None).await;
    let ours = "spiffe://cluster.local/ns/gw/sa/s3-client";
    let response = ask(
        &mut client,
        check("127.0.0.2", ours, "GET", "/team-a/k", &[]),
    )
    .await;
    assert!(matches!(outcome(&response), Outcome::Allowed { .. }));
    // The local-file identity of the same address has no rule: the principal decided.
    let (status, _) =
        denied(&ask(&mut client, check("127.0.0.2", "", "GET", "/team-a/k", &[])).await);
    assert_eq!(status, 403);
    let foreign = "spiffe://evil.example/ns/gw/sa/s3-client";
    let (status, body) = denied(
        &ask(
            &mut client,
            check("127.0.0.2", foreign, "GET", "/team-a/k", &[]),
        )
        .await,
    );
    assert_eq!(status, 403);
    assert!(
        body.contains("not a workload identity of trust domain"),
        "{body}"
    );
}

/// Asks as the proxy whose sidecar-set `x-forwarded-client-cert` names `proxy` (none: no header).
async fn ask_as(
    client: &mut AuthorizationClient<Channel>,
    proxy: Option<&str>,
    request: CheckRequest,
) -> CheckResponse {
    let mut request = tonic::Request::new(request);
    if let Some(uri) = proxy {
        let xfcc = format!("By=spiffe://cluster.local/ns/s3mesh-system/sa/s3mesh-ext-authz;Hash=00;Subject=\"\";URI={uri}");
        request
            .metadata_mut()
            .insert("x-forwarded-client-cert", xfcc.parse().unwrap());
    }
    let response = client.check(request).await.unwrap().into_inner();
    assert!(
        !format!("{response:?}").contains(SECRET),
        "secret in a response"
    );
    response
}

#[tokio::test]
async fn a_sidecar_asks_only_for_its_own_workload_and_the_gateway_for_anybody() {
    let gateway = "spiffe://cluster.local/ns/s3mesh-system/sa/s3mesh-gateway";
    let config = MESH.replace(
        "callers: {verify: any}",
        &format!("callers: {{verify: mesh_identity, gateways: [{gateway}]}}"),
    );
    let (_dir, path) = config_dir(&config);
    let (mut client, _) = serve(&path, None).await;
    let workload = "spiffe://cluster.local/ns/gw/sa/s3-client";
    let request = || check("127.0.0.2", workload, "GET", "/team-a/k", &[]);
    for proxy in [workload, gateway] {
        let response = ask_as(&mut client, Some(proxy), request()).await;
        assert!(
            matches!(outcome(&response), Outcome::Allowed { .. }),
            "{proxy}"
        );
    }
    let other = "spiffe://cluster.local/ns/team-b/sa/app";
    let (status, body) = denied(&ask_as(&mut client, Some(other), request()).await);
    assert_eq!(status, 403);
    assert!(
        body.contains(
            "the proxy of team-b/app may ask only for its own workload, not for gw/s3-client"
        ),
        "{body}"
    );
    // No header on the call: ext-authz is not behind its sidecar. One in the S3 request's own
    // headers is the client's word and changes nothing.
    let forged = [(
        "x-forwarded-client-cert",
        "URI=spiffe://cluster.local/ns/gw/sa/s3-client",
    )];
    for request in [
        request(),
        check("127.0.0.2", workload, "GET", "/team-a/k", &forged),
    ] {
        let (status, body) = denied(&ask_as(&mut client, None, request).await);
        assert_eq!(status, 503);
        assert!(body.contains("cannot tell which proxy asked"), "{body}");
    }
    // Two header lines: not what a sidecar leaves, so nobody is named.
    let mut twice = tonic::Request::new(request());
    for uri in [workload, other] {
        let value = format!("URI={uri}").parse().unwrap();
        twice
            .metadata_mut()
            .append("x-forwarded-client-cert", value);
    }
    let response = client.check(twice).await.unwrap().into_inner();
    assert_eq!(denied(&response).0, 503);
}

#[tokio::test]
async fn before_the_pod_list_has_arrived_requests_fail_closed_with_503() {
    let kube = "
callers: {verify: any}
identity: {sources: [kubernetes]}
profiles:
  pa: {credentials_dir: credentials/pa}
rules:
  - {match: {namespaces: [team-a]}, buckets: [team-a], operations: [read], profile: pa}
";
    let (_dir, path) = config_dir(kube);
    let (mut client, _) = serve(&path, Some(PodIdentities::default())).await;
    let response = ask(&mut client, check("10.0.0.1", "", "GET", "/team-a/k", &[])).await;
    let (status, body) = denied(&response);
    assert_eq!(status, 503);
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");
}

#[tokio::test]
async fn a_policy_change_applies_without_restart_and_a_bad_one_keeps_the_last_good() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let get = || check("127.0.0.2", "", "GET", "/team-a/k", &[]);
    assert!(matches!(
        outcome(&ask(&mut client, get()).await),
        Outcome::Allowed { .. }
    ));
    // Revoke: team-a loses read.
    std::fs::write(&path, LOCAL.replace("[read, write, list]", "[write]")).unwrap();
    let mut revoked = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if matches!(
            outcome(&ask(&mut client, get()).await),
            Outcome::Denied { .. }
        ) {
            revoked = true;
            break;
        }
    }
    assert!(revoked, "revocation did not take effect within 5 s");
    // A broken file is refused; the revoked (last good) policy keeps serving.
    std::fs::write(&path, "rules: [not, a, policy").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        outcome(&ask(&mut client, get()).await),
        Outcome::Denied { .. }
    ));
    let put = check("127.0.0.2", "", "PUT", "/team-a/k", &[]);
    assert!(matches!(
        outcome(&ask(&mut client, put).await),
        Outcome::Allowed { .. }
    ));
}

#[tokio::test]
async fn chunk_signed_uploads_carry_their_re_signing_material_in_dynamic_metadata_only() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let chunked = [
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
    ];
    let response = ask(
        &mut client,
        check("127.0.0.2", "", "PUT", "/team-a/k", &chunked),
    )
    .await;
    let Outcome::Allowed { set, .. } = outcome(&response) else {
        panic!("chunk-signed upload refused");
    };
    let fields = &response.dynamic_metadata.as_ref().expect("metadata").fields;
    let text = |name: &str| match fields.get(name).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let seed = text(chunk_signing::SEED_SIGNATURE);
    assert!(set["authorization"]
        .0
        .ends_with(&format!("Signature={seed}")));
    assert_eq!(
        set["x-amz-content-sha256"].0,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    );
    assert_eq!(text(chunk_signing::AMZ_DATE), set["x-amz-date"].0);
    assert!(text(chunk_signing::SCOPE).ends_with("/us-east-1/s3/aws4_request"));
    assert_eq!(text(chunk_signing::SIGNING_KEY).len(), 64);
    assert!(
        !format!("{response:?}").contains(SECRET),
        "the secret itself is never sent"
    );

    // Any other request carries no re-signing material.
    let plain = ask(&mut client, check("127.0.0.2", "", "GET", "/team-a/k", &[])).await;
    let fields = &plain.dynamic_metadata.expect("audit metadata").fields;
    assert!(
        fields.keys().all(|k| !k.starts_with("s3mesh_chunk")),
        "{fields:?}"
    );
}

/// The audit record's attributes ext-authz leaves in dynamic metadata, as text.
fn audit_metadata(response: &CheckResponse) -> HashMap<String, String> {
    let fields = &response.dynamic_metadata.as_ref().expect("metadata").fields;
    fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_decision_leaves_who_and_why_for_the_audit_record() {
    let (_dir, path) = config_dir(LOCAL);
    let (mut client, _) = serve(&path, None).await;
    let get = check("127.0.0.2", "", "GET", "/team-a/k", &[]);
    let allowed = audit_metadata(&ask(&mut client, get).await);
    assert_eq!(allowed["identity"], "team-a");
    assert_eq!(allowed["identity_source"], "local_file");
    assert_eq!(allowed["decision"], "allow");
    assert!(!allowed.contains_key("reason"));

    let delete = check("127.0.0.2", "", "DELETE", "/team-a/k", &[]);
    let no_rule = audit_metadata(&ask(&mut client, delete).await);
    assert_eq!(no_rule["identity"], "team-a");
    assert_eq!(no_rule["decision"], "deny");
    assert!(
        no_rule["reason"].contains("is not granted delete"),
        "{no_rule:?}"
    );

    let stranger = check("127.0.0.9", "", "GET", "/team-a/k", &[]);
    let unknown = audit_metadata(&ask(&mut client, stranger).await);
    assert!(!unknown.contains_key("identity"));
    assert_eq!(unknown["decision"], "deny");
    assert!(unknown["reason"].contains("127.0.0.9"), "{unknown:?}");
}
