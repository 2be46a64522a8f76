//! The pod-IP identity source against a scripted fake Kubernetes API server that speaks the
//! real list and watch JSON (`GET /api/v1/pods`, then `?watch=true` as a chunked stream of
//! `{"type": …, "object": …}` lines). One scenario per test.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use s3mesh_ext_authz::health::{readiness, Watches};
use s3mesh_ext_authz::identity::kubernetes::{Lookup, PodIdentities};
use serde_json::{json, Value};
use support::fake_api_server::{eventually, Fake};

const PODS: &str = "/api/v1/pods";

fn pod(uid: &str, sa: &str, ip: &str, phase: &str, host_network: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{uid}"), "namespace": "team-a", "uid": uid,
                     "resourceVersion": "101", "labels": {"app": "ingest"}},
        "spec": {"serviceAccountName": sa, "hostNetwork": host_network,
                 "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}
    })
}

async fn watching(url: &str) -> PodIdentities {
    PodIdentities::spawn(Fake::client(url), None)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn name_of(pods: &PodIdentities, addr: &str) -> Option<String> {
    pods.resolve(ip(addr)).ok().map(|id| id.name)
}

#[tokio::test]
async fn nothing_is_answered_until_the_first_full_list_has_arrived() {
    let (fake, url) = Fake::start().await;
    fake.set_items(PODS, vec![]);
    fake.go_down();
    let pods = watching(&url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pods.resolve(ip("10.0.0.1")), Err(Lookup::NotSynced));
    assert!(
        !readiness(
            &Watches {
                pods: Some(pods.clone()),
                cluster: None,
            },
            &[],
        )
        .0,
        "not ready before the first list"
    );
    fake.set_items(
        PODS,
        vec![pod("u1", "uploader", "10.0.0.1", "Running", false)],
    );
    fake.come_up();
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(
        name_of(&pods, "10.0.0.1").as_deref(),
        Some("team-a/uploader")
    );
    let id = pods.resolve(ip("10.0.0.1")).unwrap();
    assert_eq!(id.labels["app"], "ingest");
    assert_eq!(id.pod_uid.as_deref(), Some("u1"));
    assert!(
        readiness(
            &Watches {
                pods: Some(pods.clone()),
                cluster: None,
            },
            &[],
        )
        .0
    );
}

#[tokio::test]
async fn host_network_pods_identify_nobody() {
    let (fake, url) = Fake::start().await;
    fake.set_items(
        PODS,
        vec![pod("u1", "node-agent", "10.0.9.9", "Running", true)],
    );
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(pods.resolve(ip("10.0.9.9")), Err(Lookup::Unknown));
    fake.send_to(
        PODS,
        "ADDED",
        pod("u2", "other", "10.0.9.9", "Running", true),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pods.resolve(ip("10.0.9.9")), Err(Lookup::Unknown));
}

#[tokio::test]
async fn a_reused_ip_belongs_to_the_new_pod_even_when_the_old_pods_delete_comes_late() {
    let (fake, url) = Fake::start().await;
    fake.set_items(PODS, vec![pod("old", "a", "10.0.0.7", "Running", false)]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(name_of(&pods, "10.0.0.7").as_deref(), Some("team-a/a"));
    fake.send_to(
        PODS,
        "MODIFIED",
        pod("old", "a", "10.0.0.7", "Succeeded", false),
    );
    fake.send_to(PODS, "ADDED", pod("new", "b", "10.0.0.7", "Running", false));
    eventually("new pod", || {
        name_of(&pods, "10.0.0.7").as_deref() == Some("team-a/b")
    })
    .await;
    fake.send_to(
        PODS,
        "DELETED",
        pod("old", "a", "10.0.0.7", "Succeeded", false),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(name_of(&pods, "10.0.0.7").as_deref(), Some("team-a/b"));
}

#[tokio::test]
async fn two_live_pods_on_one_ip_are_refused_until_one_is_deleted() {
    let (fake, url) = Fake::start().await;
    let first = pod("u1", "a", "10.0.0.8", "Running", false);
    fake.set_items(PODS, vec![first.clone()]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    fake.send_to(PODS, "ADDED", pod("u2", "b", "10.0.0.8", "Running", false));
    eventually("ambiguity", || {
        pods.resolve(ip("10.0.0.8")) == Err(Lookup::Ambiguous)
    })
    .await;
    fake.send_to(PODS, "DELETED", first);
    eventually("resolved", || {
        name_of(&pods, "10.0.0.8").as_deref() == Some("team-a/b")
    })
    .await;
}

#[tokio::test]
async fn an_expired_watch_relists_and_forgets_pods_deleted_meanwhile() {
    let (fake, url) = Fake::start().await;
    fake.set_items(
        PODS,
        vec![
            pod("u1", "a", "10.0.1.1", "Running", false),
            pod("u2", "b", "10.0.1.2", "Running", false),
        ],
    );
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(fake.lists(), 1);
    // While the watch was not looking, u1 went away and u3 came.
    fake.set_items(
        PODS,
        vec![
            pod("u2", "b", "10.0.1.2", "Running", false),
            pod("u3", "c", "10.0.1.3", "Running", false),
        ],
    );
    fake.expire_watch(PODS);
    eventually("re-list", || pods.state().lists() >= 2).await;
    assert!(fake.lists() >= 2);
    assert_eq!(pods.resolve(ip("10.0.1.1")), Err(Lookup::Unknown));
    assert_eq!(name_of(&pods, "10.0.1.2").as_deref(), Some("team-a/b"));
    assert_eq!(name_of(&pods, "10.0.1.3").as_deref(), Some("team-a/c"));
}

#[tokio::test]
async fn with_the_api_server_down_the_last_known_pods_keep_serving_and_readiness_says_degraded() {
    let (fake, url) = Fake::start().await;
    fake.set_items(PODS, vec![pod("u1", "a", "10.0.2.1", "Running", false)]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    fake.go_down();
    eventually("watch failure noticed", || !pods.state().connected()).await;
    assert_eq!(name_of(&pods, "10.0.2.1").as_deref(), Some("team-a/a"));
    let (ready, text) = readiness(
        &Watches {
            pods: Some(pods.clone()),
            cluster: None,
        },
        &[],
    );
    assert!(ready, "{text}");
    assert!(text.starts_with("degraded"), "{text}");
    // Back up: the stale watch is refused, the watcher re-lists, readiness is plain again.
    fake.set_items(PODS, vec![pod("u9", "z", "10.0.2.9", "Running", false)]);
    fake.come_back();
    eventually("recovered", || {
        name_of(&pods, "10.0.2.9").as_deref() == Some("team-a/z")
    })
    .await;
    assert_eq!(
        pods.resolve(ip("10.0.2.1")),
        Err(Lookup::Unknown),
        "deleted during the outage"
    );
    eventually("connected", || pods.state().connected()).await;
    assert!(readiness(
        &Watches {
            pods: Some(pods.clone()),
            cluster: None,
        },
        &[],
    )
    .1
    .starts_with("ready"));
}
