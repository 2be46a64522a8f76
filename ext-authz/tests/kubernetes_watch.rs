//! The pod-IP identity source against a scripted fake Kubernetes API server that speaks the
//! real list and watch JSON (`GET /api/v1/pods`, then `?watch=true` as a chunked stream of
//! `{"type": …, "object": …}` lines). One scenario per test.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use s3mesh_ext_authz::health::readiness;
use s3mesh_ext_authz::identity::kubernetes::{Lookup, PodIdentities};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// What the fake API server serves.
struct Fake {
    /// Pods a list returns.
    pods: Mutex<Vec<Value>>,
    /// Watch events pushed to every open watch stream; `None` closes the streams.
    events: broadcast::Sender<Option<Value>>,
    /// While true, every connection is dropped unanswered.
    down: Mutex<bool>,
    /// Lists served so far.
    lists: Mutex<usize>,
    /// The next watch is answered `410 Gone` (its resourceVersion was compacted away).
    expire_next_watch: Mutex<bool>,
}

impl Fake {
    async fn start() -> (Arc<Self>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(Self {
            pods: Mutex::new(Vec::new()),
            events: broadcast::channel(64).0,
            down: Mutex::new(false),
            lists: Mutex::new(0),
            expire_next_watch: Mutex::new(false),
        });
        let server = Arc::clone(&fake);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Arc::clone(&server).serve(stream));
            }
        });
        (fake, url)
    }

    async fn serve(self: Arc<Self>, stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        loop {
            let mut request_line = String::new();
            if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_owned();
            let s = stream.get_mut();
            if *self.down.lock().unwrap() {
                // Unreachable: the connection is dropped without an answer.
                return;
            }
            if !target.starts_with("/api/v1/pods") {
                let _ = s
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
                continue;
            }
            if target.contains("watch=true") || target.contains("watch=1") {
                self.stream_watch(s).await;
                return;
            }
            *self.lists.lock().unwrap() += 1;
            let items = self.pods.lock().unwrap().clone();
            let body = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": items}).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if s.write_all(head.as_bytes()).await.is_err()
                || s.write_all(body.as_bytes()).await.is_err()
            {
                return;
            }
        }
    }

    async fn stream_watch(&self, s: &mut TcpStream) {
        let mut events = self.events.subscribe();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let expired = std::mem::take(&mut *self.expire_next_watch.lock().unwrap());
        if expired {
            let _ = write_event(s, &json!({"type": "ERROR", "object": gone()})).await;
        } else {
            while let Ok(Some(event)) = events.recv().await {
                if write_event(s, &event).await.is_err() {
                    return;
                }
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    }

    fn set_pods(&self, pods: Vec<Value>) {
        *self.pods.lock().unwrap() = pods;
    }

    fn send(&self, kind: &str, object: Value) {
        let _ = self
            .events
            .send(Some(json!({"type": kind, "object": object})));
    }

    fn expire_watch(&self) {
        self.send("ERROR", gone());
    }

    /// Comes back after an outage long enough for the watch's resourceVersion to be compacted.
    fn come_back(&self) {
        *self.expire_next_watch.lock().unwrap() = true;
        *self.down.lock().unwrap() = false;
    }

    fn go_down(&self) {
        *self.down.lock().unwrap() = true;
        let _ = self.events.send(None);
    }

    fn lists(&self) -> usize {
        *self.lists.lock().unwrap()
    }
}

fn gone() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "too old resource version", "reason": "Expired", "code": 410})
}

async fn write_event(s: &mut TcpStream, event: &Value) -> std::io::Result<()> {
    let line = format!("{event}\n");
    s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
        .await
}

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
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    PodIdentities::spawn(client, None)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Polls `check` for up to 15 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn name_of(pods: &PodIdentities, addr: &str) -> Option<String> {
    pods.resolve(ip(addr)).ok().map(|id| id.name)
}

#[tokio::test]
async fn nothing_is_answered_until_the_first_full_list_has_arrived() {
    let (fake, url) = Fake::start().await;
    fake.go_down();
    let pods = watching(&url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pods.resolve(ip("10.0.0.1")), Err(Lookup::NotSynced));
    assert!(!readiness(Some(&pods)).0, "not ready before the first list");
    fake.set_pods(vec![pod("u1", "uploader", "10.0.0.1", "Running", false)]);
    *fake.down.lock().unwrap() = false;
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(
        name_of(&pods, "10.0.0.1").as_deref(),
        Some("team-a/uploader")
    );
    let id = pods.resolve(ip("10.0.0.1")).unwrap();
    assert_eq!(id.labels["app"], "ingest");
    assert_eq!(id.pod_uid.as_deref(), Some("u1"));
    assert!(readiness(Some(&pods)).0);
}

#[tokio::test]
async fn host_network_pods_identify_nobody() {
    let (fake, url) = Fake::start().await;
    fake.set_pods(vec![pod("u1", "node-agent", "10.0.9.9", "Running", true)]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(pods.resolve(ip("10.0.9.9")), Err(Lookup::Unknown));
    fake.send("ADDED", pod("u2", "other", "10.0.9.9", "Running", true));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pods.resolve(ip("10.0.9.9")), Err(Lookup::Unknown));
}

#[tokio::test]
async fn a_reused_ip_belongs_to_the_new_pod_even_when_the_old_pods_delete_comes_late() {
    let (fake, url) = Fake::start().await;
    fake.set_pods(vec![pod("old", "a", "10.0.0.7", "Running", false)]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(name_of(&pods, "10.0.0.7").as_deref(), Some("team-a/a"));
    fake.send("MODIFIED", pod("old", "a", "10.0.0.7", "Succeeded", false));
    fake.send("ADDED", pod("new", "b", "10.0.0.7", "Running", false));
    eventually("new pod", || {
        name_of(&pods, "10.0.0.7").as_deref() == Some("team-a/b")
    })
    .await;
    fake.send("DELETED", pod("old", "a", "10.0.0.7", "Succeeded", false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(name_of(&pods, "10.0.0.7").as_deref(), Some("team-a/b"));
}

#[tokio::test]
async fn two_live_pods_on_one_ip_are_refused_until_one_is_deleted() {
    let (fake, url) = Fake::start().await;
    let first = pod("u1", "a", "10.0.0.8", "Running", false);
    fake.set_pods(vec![first.clone()]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    fake.send("ADDED", pod("u2", "b", "10.0.0.8", "Running", false));
    eventually("ambiguity", || {
        pods.resolve(ip("10.0.0.8")) == Err(Lookup::Ambiguous)
    })
    .await;
    fake.send("DELETED", first);
    eventually("resolved", || {
        name_of(&pods, "10.0.0.8").as_deref() == Some("team-a/b")
    })
    .await;
}

#[tokio::test]
async fn an_expired_watch_relists_and_forgets_pods_deleted_meanwhile() {
    let (fake, url) = Fake::start().await;
    fake.set_pods(vec![
        pod("u1", "a", "10.0.1.1", "Running", false),
        pod("u2", "b", "10.0.1.2", "Running", false),
    ]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    assert_eq!(fake.lists(), 1);
    // While the watch was not looking, u1 went away and u3 came.
    fake.set_pods(vec![
        pod("u2", "b", "10.0.1.2", "Running", false),
        pod("u3", "c", "10.0.1.3", "Running", false),
    ]);
    fake.expire_watch();
    eventually("re-list", || pods.state().lists() >= 2).await;
    assert!(fake.lists() >= 2);
    assert_eq!(pods.resolve(ip("10.0.1.1")), Err(Lookup::Unknown));
    assert_eq!(name_of(&pods, "10.0.1.2").as_deref(), Some("team-a/b"));
    assert_eq!(name_of(&pods, "10.0.1.3").as_deref(), Some("team-a/c"));
}

#[tokio::test]
async fn with_the_api_server_down_the_last_known_pods_keep_serving_and_readiness_says_degraded() {
    let (fake, url) = Fake::start().await;
    fake.set_pods(vec![pod("u1", "a", "10.0.2.1", "Running", false)]);
    let pods = watching(&url).await;
    eventually("first list", || pods.state().synced()).await;
    fake.go_down();
    eventually("watch failure noticed", || !pods.state().connected()).await;
    assert_eq!(name_of(&pods, "10.0.2.1").as_deref(), Some("team-a/a"));
    let (ready, text) = readiness(Some(&pods));
    assert!(ready, "{text}");
    assert!(text.starts_with("degraded"), "{text}");
    // Back up: the stale watch is refused, the watcher re-lists, readiness is plain again.
    fake.set_pods(vec![pod("u9", "z", "10.0.2.9", "Running", false)]);
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
    assert!(readiness(Some(&pods)).1.starts_with("ready"));
}
