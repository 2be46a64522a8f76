//! The Kubernetes identity source: a watch on Pods (kube-rs `watcher`) keeping a [`PodIndex`].
//!
//! Like a reflector, a (re-)list is collected aside and swapped in whole when it is complete, so
//! a re-list never shows a half-empty index. While the API server is unreachable the watcher
//! retries with backoff and the last known index keeps answering; its [`WatchState`] says so for
//! readiness and metrics. Until the first full list has arrived nothing is answered.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::pods::{Miss, PodIndex, PodInfo};
use super::Identity;
use crate::kubernetes::watch_state::{drive, WatchState};

/// Why a pod lookup found no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No live pod has the address.
    Unknown,
    /// Several live pods claim it.
    Ambiguous,
    /// The first full pod list has not arrived yet.
    NotSynced,
}

/// Shared handle on the index and the watch state.
#[derive(Debug, Clone, Default)]
pub struct PodIdentities {
    index: Arc<RwLock<PodIndex>>,
    state: Arc<WatchState>,
}

impl PodIdentities {
    /// Starts watching pods (all namespaces, or one) on the current tokio runtime.
    pub fn spawn(client: Client, namespace: Option<&str>) -> Self {
        let api: Api<Pod> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let this = Self::default();
        let handle = this.clone();
        tokio::spawn(async move { handle.run(api).await });
        this
    }

    async fn run(self, api: Api<Pod>) {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut pending: Option<PodIndex> = None;
        let state = Arc::clone(&self.state);
        drive(stream, &state, "pods", |event| {
            self.handle(event, &mut pending)
        })
        .await;
    }

    fn handle(&self, event: Event<Pod>, pending: &mut Option<PodIndex>) {
        match event {
            Event::Init => *pending = Some(PodIndex::default()),
            Event::InitApply(pod) => {
                if let Some(p) = pending.as_mut() {
                    p.apply(pod_info(&pod));
                }
            }
            Event::InitDone => {
                if let Some(complete) = pending.take() {
                    let pods = complete.len();
                    if let Ok(mut index) = self.index.write() {
                        *index = complete;
                    }
                    self.state.listed();
                    tracing::info!(pods, "pod list loaded");
                }
            }
            Event::Apply(pod) => {
                if let Ok(mut index) = self.index.write() {
                    index.apply(pod_info(&pod));
                }
            }
            Event::Delete(pod) => {
                if let Ok(mut index) = self.index.write() {
                    index.delete(&pod_info(&pod));
                }
            }
        }
    }

    /// The identity of the live pod with `ip`.
    pub fn resolve(&self, ip: IpAddr) -> Result<Identity, Lookup> {
        if !self.state.synced() {
            return Err(Lookup::NotSynced);
        }
        let index = self.index.read().map_err(|_| Lookup::NotSynced)?;
        index.resolve(ip).map_err(|miss| match miss {
            Miss::Unknown => Lookup::Unknown,
            Miss::Ambiguous => Lookup::Ambiguous,
        })
    }

    /// The watch's health.
    pub fn state(&self) -> &WatchState {
        &self.state
    }

    /// Number of indexed pods.
    pub fn len(&self) -> usize {
        self.index.read().map_or(0, |i| i.len())
    }

    /// Whether no pod is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the index needs of a Pod object.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().filter_map(|p| p.ip.parse().ok()).collect())
        .unwrap_or_default();
    if let Some(ip) = status
        .and_then(|s| s.pod_ip.as_ref())
        .and_then(|ip| ip.parse().ok())
    {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    let phase = status.and_then(|s| s.phase.as_deref());
    PodInfo {
        uid: meta.uid.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        labels: meta.labels.clone().unwrap_or_default(),
        ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        terminated: matches!(phase, Some("Succeeded" | "Failed")),
    }
}
