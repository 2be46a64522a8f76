//! Policy rules from `S3AccessPolicy` objects and credentials from Secrets, read through a
//! scripted fake Kubernetes API server (real list/watch JSON), applied without a restart. One
//! scenario per test; decisions are taken by the checker the reloader keeps current.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use s3mesh_ext_authz::check::{Decision, HttpAttributes};
use s3mesh_ext_authz::health::{readiness, Watches};
use s3mesh_ext_authz::kubernetes::resources::ClusterResources;
use s3mesh_ext_authz::reload::{Current, Refusals, Reloader};
use serde_json::{json, Value};
use support::fake_api_server::{eventually, Fake};

const NS: &str = "s3mesh-system";
const POLICIES: &str = "/apis/s3mesh.io/v1alpha1/namespaces/s3mesh-system/s3accesspolicies";
const SECRETS: &str = "/api/v1/namespaces/s3mesh-system/secrets";

const CONFIG: &str = "
callers: {verify: any}
cluster: {namespace: s3mesh-system, policies: true}
identities:
  - {name: team-a, source_cidrs: [127.0.0.2/32]}
profiles:
  team-a: {secret: s3-team-a}
";

fn config_file() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("s3mesh-cluster-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("authz.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    path
}

fn policy(name: &str, version: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "s3mesh.io/v1alpha1", "kind": "S3AccessPolicy",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "resourceVersion": version},
        "spec": {"rules": rules}
    })
}

fn grant(operations: &[&str]) -> Value {
    json!([{"match": {"identities": ["team-a"]}, "buckets": ["team-a"], "operations": operations, "profile": "team-a"}])
}

fn b64(s: &str) -> String {
    // A small standard base64 encoder, so the fixture shows plain values.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn secret(version: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(b64(v))))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "s3-team-a", "namespace": NS, "uid": "uid-secret", "resourceVersion": version},
        "data": data
    })
}

const KEY_1: &[(&str, &str)] = &[
    ("access_key_id", "AKIDFIRST"),
    ("secret_access_key", "first-secret-value"),
];

/// The running pieces of one scenario.
struct Cluster {
    fake: Arc<Fake>,
    current: Arc<Current>,
    watches: Watches,
    refusals: Refusals,
}

impl Cluster {
    async fn start(policies: Vec<Value>, secrets: Vec<Value>) -> Self {
        let (fake, url) = Fake::start().await;
        fake.set_items(POLICIES, policies);
        fake.set_items(SECRETS, secrets);
        let resources = ClusterResources::spawn(Fake::client(&url), NS, true, true);
        let watches = Watches {
            pods: None,
            cluster: Some(resources.clone()),
        };
        let mut reloader = Reloader::new(config_file(), None, Some(resources));
        let current = Arc::new(Current::new(reloader.build().unwrap()));
        let refusals = reloader.refusals();
        tokio::spawn(reloader.watch(Arc::clone(&current), Duration::from_millis(50)));
        eventually("first lists", || readiness(&watches, &[]).0).await;
        Self {
            fake,
            current,
            watches,
            refusals,
        }
    }

    fn decide(&self, method: &str, path: &str) -> Decision {
        let headers = HashMap::from([(
            "x-amz-content-sha256".to_owned(),
            "UNSIGNED-PAYLOAD".to_owned(),
        )]);
        let attrs = HttpAttributes {
            source: Some("127.0.0.2".parse().unwrap()),
            principal: None,
            proxy: None,
            method,
            host: "s3.local",
            path,
            headers: &headers,
        };
        // No STS profile here: the check never waits, so it can be driven in place.
        futures::executor::block_on(self.current.get().check(&attrs, SystemTime::now()))
    }

    /// The access key id the decision signs with, or `None` when denied.
    fn signer(&self, method: &str, path: &str) -> Option<String> {
        match self.decide(method, path) {
            Decision::Allow { changes, .. } => {
                let auth = &changes.set.iter().find(|(n, _)| *n == "authorization")?.1;
                let credential = auth.split("Credential=").nth(1)?;
                Some(credential.split('/').next()?.to_owned())
            }
            Decision::Deny { .. } => None,
        }
    }

    fn refusals(&self) -> Vec<String> {
        self.refusals.list()
    }
}

#[tokio::test]
async fn readiness_waits_for_both_lists_and_then_policy_objects_grant_with_the_secrets_key() {
    let (fake, url) = Fake::start().await;
    fake.set_items(POLICIES, vec![policy("team-a", "1", grant(&["read"]))]);
    let resources = ClusterResources::spawn(Fake::client(&url), NS, true, true);
    let watches = Watches {
        pods: None,
        cluster: Some(resources),
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ready, text) = readiness(&watches, &[]);
    assert!(!ready, "{text}");
    assert!(text.contains("secrets list has not been loaded"), "{text}");

    let cluster = Cluster::start(
        vec![policy("team-a", "1", grant(&["read"]))],
        vec![secret("1", KEY_1)],
    )
    .await;
    let (ready, text) = readiness(&cluster.watches, &[]);
    assert!(
        ready && text.contains("1 s3accesspolicies, 1 secrets"),
        "{text}"
    );
    assert_eq!(
        cluster.signer("GET", "/team-a/k").as_deref(),
        Some("AKIDFIRST")
    );
    assert_eq!(
        cluster.signer("PUT", "/team-a/k"),
        None,
        "write not granted"
    );
    assert_eq!(cluster.signer("GET", "/team-b/k"), None, "other bucket");
}

#[tokio::test]
async fn policy_changes_and_deletions_apply_without_a_restart() {
    let cluster = Cluster::start(
        vec![policy("team-a", "1", grant(&["read"]))],
        vec![secret("1", KEY_1)],
    )
    .await;
    assert_eq!(cluster.signer("PUT", "/team-a/k"), None);
    cluster.fake.send_to(
        POLICIES,
        "MODIFIED",
        policy("team-a", "2", grant(&["read", "write"])),
    );
    eventually("write granted", || {
        cluster.signer("PUT", "/team-a/k").is_some()
    })
    .await;
    cluster.fake.send_to(
        POLICIES,
        "DELETED",
        policy("team-a", "3", grant(&["read", "write"])),
    );
    eventually("all denied", || {
        cluster.signer("GET", "/team-a/k").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_bad_policy_object_is_refused_by_name_and_its_last_good_rules_keep_serving() {
    let cluster = Cluster::start(
        vec![policy("team-a", "1", grant(&["read"]))],
        vec![secret("1", KEY_1)],
    )
    .await;
    let mut bad = grant(&["read", "write"]);
    bad[0]["profile"] = json!("nobody-has-this");
    cluster
        .fake
        .send_to(POLICIES, "MODIFIED", policy("team-a", "2", bad));
    eventually("refusal reported", || !cluster.refusals().is_empty()).await;
    assert_eq!(
        cluster.refusals(),
        vec!["S3AccessPolicy s3mesh-system/team-a: spec.rules[0].profile: unknown profile \"nobody-has-this\"".to_owned()]
    );
    assert!(
        cluster.signer("GET", "/team-a/k").is_some(),
        "last good rules"
    );
    assert_eq!(
        cluster.signer("PUT", "/team-a/k"),
        None,
        "bad version not applied"
    );

    // A new object that never was good grants nothing; its typo is named.
    let mut typo = grant(&["read"]);
    typo[0]["bukets"] = json!(["team-b"]);
    cluster
        .fake
        .send_to(POLICIES, "ADDED", policy("typo", "3", typo));
    eventually("typo reported", || cluster.refusals().len() == 2).await;
    let refusals = cluster.refusals().join("\n");
    assert!(
        refusals.contains("S3AccessPolicy s3mesh-system/typo: spec: unknown field `bukets`"),
        "{refusals}"
    );
    assert!(cluster.signer("GET", "/team-a/k").is_some());
}

#[tokio::test]
async fn a_rotated_secret_applies_and_a_broken_one_keeps_the_last_good_key() {
    let cluster = Cluster::start(
        vec![policy("team-a", "1", grant(&["read"]))],
        vec![secret("1", KEY_1)],
    )
    .await;
    cluster.fake.send_to(
        SECRETS,
        "MODIFIED",
        secret(
            "2",
            &[
                ("access_key_id", "AKIDSECOND"),
                ("secret_access_key", "second-secret-value"),
            ],
        ),
    );
    eventually("rotated", || {
        cluster.signer("GET", "/team-a/k").as_deref() == Some("AKIDSECOND")
    })
    .await;
    cluster.fake.send_to(
        SECRETS,
        "MODIFIED",
        secret("3", &[("access_key_id", "AKIDBROKEN")]),
    );
    eventually("refusal reported", || !cluster.refusals().is_empty()).await;
    assert_eq!(
        cluster.refusals(),
        vec!["Secret s3mesh-system/s3-team-a: data.secret_access_key: missing or empty".to_owned()]
    );
    assert_eq!(
        cluster.signer("GET", "/team-a/k").as_deref(),
        Some("AKIDSECOND")
    );
    let logged = format!("{:?}", cluster.refusals());
    assert!(!logged.contains("second-secret-value") && !logged.contains("AKIDBROKEN"));
}

#[tokio::test]
async fn a_profile_whose_secret_never_arrived_answers_unavailable() {
    let cluster = Cluster::start(vec![policy("team-a", "1", grant(&["read"]))], vec![]).await;
    match cluster.decide("GET", "/team-a/k") {
        Decision::Deny { error, .. } => {
            assert_eq!(error.status, 503);
            assert!(
                error.message.contains("\"team-a\" is not loaded"),
                "{}",
                error.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cluster.refusals(),
        vec!["Secret s3mesh-system/s3-team-a: metadata.name: not found; profile \"team-a\" is not loaded".to_owned()]
    );
}

#[tokio::test]
async fn with_the_api_server_down_the_last_known_policies_keep_serving_and_it_relists_on_return() {
    let cluster = Cluster::start(
        vec![policy("team-a", "1", grant(&["read"]))],
        vec![secret("1", KEY_1)],
    )
    .await;
    let lists = cluster.fake.lists();
    cluster.fake.go_down();
    eventually("degraded", || {
        readiness(&cluster.watches, &[]).1.starts_with("degraded")
    })
    .await;
    assert!(
        readiness(&cluster.watches, &[]).0,
        "still ready with the last known state"
    );
    assert!(cluster.signer("GET", "/team-a/k").is_some());
    // Changed while unreachable: seen through the re-list once the API server is back.
    cluster.fake.set_items(
        POLICIES,
        vec![policy("team-a", "9", grant(&["read", "write"]))],
    );
    cluster.fake.come_back();
    eventually("re-listed", || cluster.signer("PUT", "/team-a/k").is_some()).await;
    assert!(cluster.fake.lists() > lists);
    eventually("ready", || {
        readiness(&cluster.watches, &[]).1.starts_with("ready")
    })
    .await;
}
