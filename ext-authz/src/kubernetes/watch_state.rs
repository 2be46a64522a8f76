//! What every watch of the Kubernetes API reports about itself, and the loop that keeps it.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};

/// Health of one watch, for readiness and metrics.
#[derive(Debug, Default)]
pub struct WatchState {
    synced: AtomicBool,
    connected: AtomicBool,
    lists: AtomicU64,
    errors: AtomicU64,
    last_error: RwLock<Option<String>>,
}

impl WatchState {
    /// Whether the first full list has arrived.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Whether the last watch call succeeded.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Full lists applied so far (1 + re-lists).
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Acquire)
    }

    /// Watch errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Acquire)
    }

    /// The last watch error, if the watch is currently failing.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.read().ok().and_then(|e| e.clone())
    }

    /// Records that a complete list has been applied.
    pub fn listed(&self) {
        self.lists.fetch_add(1, Ordering::AcqRel);
        self.synced.store(true, Ordering::Release);
    }

    fn succeeded(&self) {
        self.connected.store(true, Ordering::Release);
        if let Ok(mut e) = self.last_error.write() {
            *e = None;
        }
    }

    fn failed(&self, error: String) {
        self.connected.store(false, Ordering::Release);
        self.errors.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut e) = self.last_error.write() {
            *e = Some(error);
        }
    }
}

/// Feeds every event of `stream` to `apply` and keeps `state` up to date, until the stream ends
/// (it does not: kube's watcher retries with backoff). `what` names the watch in logs.
pub async fn drive<K: Debug>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    state: &WatchState,
    what: &str,
    mut apply: impl FnMut(Event<K>),
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                state.succeeded();
                apply(event);
            }
            Err(error) => {
                tracing::warn!(%error, watch = what, "watch failed; serving the last known state");
                state.failed(error.to_string());
            }
        }
    }
}
