//! A scripted fake Kubernetes API server speaking the real list and watch JSON: `GET <path>`
//! returns a `…List`, `GET <path>?watch=true` a chunked stream of `{"type": …, "object": …}`
//! lines. Collections are keyed by their URL path, e.g. `/api/v1/pods`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// What the fake API server serves.
pub struct Fake {
    /// Items a list returns, by collection path.
    items: Mutex<HashMap<String, Vec<Value>>>,
    /// Watch events `(collection path, event)` pushed to open watch streams; `None` closes them.
    events: broadcast::Sender<Option<(String, Value)>>,
    /// While true, every connection is dropped unanswered.
    down: Mutex<bool>,
    /// Lists served so far.
    lists: Mutex<usize>,
    /// Collections whose next watch is answered `410 Gone` (its resourceVersion was compacted
    /// away).
    expire_next_watch: Mutex<HashSet<String>>,
}

impl Fake {
    /// Starts serving on a free port; returns the server and its URL.
    pub async fn start() -> (Arc<Self>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(Self {
            items: Mutex::new(HashMap::new()),
            events: broadcast::channel(64).0,
            down: Mutex::new(false),
            lists: Mutex::new(0),
            expire_next_watch: Mutex::new(HashSet::new()),
        });
        let server = Arc::clone(&fake);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Arc::clone(&server).serve(stream));
            }
        });
        (fake, url)
    }

    /// A kube client for `url`.
    pub fn client(url: &str) -> kube::Client {
        let mut config = kube::Config::new(url.parse().unwrap());
        config.default_namespace = "s3mesh-system".to_owned();
        kube::Client::try_from(config).unwrap()
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
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let Some(items) = self.items.lock().unwrap().get(path).cloned() else {
                let _ = s
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
                continue;
            };
            if query.contains("watch=true") || query.contains("watch=1") {
                self.stream_watch(s, path).await;
                return;
            }
            *self.lists.lock().unwrap() += 1;
            let body = json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": items}).to_string();
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

    async fn stream_watch(&self, s: &mut TcpStream, path: &str) {
        let mut events = self.events.subscribe();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let expired = self.expire_next_watch.lock().unwrap().remove(path);
        if expired {
            let _ = write_event(s, &json!({"type": "ERROR", "object": gone()})).await;
        } else {
            while let Ok(Some((to, event))) = events.recv().await {
                if to == path && write_event(s, &event).await.is_err() {
                    return;
                }
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    }

    /// Sets what a list of `path` returns (and makes `path` exist).
    pub fn set_items(&self, path: &str, items: Vec<Value>) {
        self.items.lock().unwrap().insert(path.to_owned(), items);
    }

    /// Pushes a watch event of type `kind` (`ADDED`, `MODIFIED`, `DELETED`) to `path`'s watches.
    pub fn send_to(&self, path: &str, kind: &str, object: Value) {
        let event = json!({"type": kind, "object": object});
        let _ = self.events.send(Some((path.to_owned(), event)));
    }

    /// Ends `path`'s watches with `410 Gone`, as after a compaction.
    pub fn expire_watch(&self, path: &str) {
        self.send_to(path, "ERROR", gone());
    }

    /// Comes back after an outage long enough for the watch's resourceVersion to be compacted.
    pub fn come_back(&self) {
        let paths = self.items.lock().unwrap().keys().cloned().collect();
        *self.expire_next_watch.lock().unwrap() = paths;
        *self.down.lock().unwrap() = false;
    }

    /// Comes back with watches still valid.
    pub fn come_up(&self) {
        *self.down.lock().unwrap() = false;
    }

    /// Drops every connection, open or new, unanswered.
    pub fn go_down(&self) {
        *self.down.lock().unwrap() = true;
        let _ = self.events.send(None);
    }

    /// Lists served so far.
    pub fn lists(&self) -> usize {
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

/// Polls `check` for up to 15 s.
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
