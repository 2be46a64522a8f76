//! Policy objects and credential Secrets, watched in ext-authz's own namespace.
//!
//! Each kind is kept as a name → object map that, like a reflector's store, is swapped whole
//! when a (re-)list completes. Every change bumps a generation that [`crate::reload`] waits on
//! to rebuild the checker. Policy objects are watched untyped so that one malformed object is
//! refused by name at rebuild time instead of failing the whole list.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::policy_resource::S3AccessPolicy;
use super::watch_state::{drive, WatchState};

/// One watched kind: the objects by name, and the watch's health.
#[derive(Debug)]
pub struct Collection<K> {
    objects: RwLock<BTreeMap<String, K>>,
    state: WatchState,
}

impl<K> Default for Collection<K> {
    fn default() -> Self {
        Self {
            objects: RwLock::new(BTreeMap::new()),
            state: WatchState::default(),
        }
    }
}

impl<K: Clone + Resource> Collection<K> {
    /// A copy of the objects, by name.
    pub fn snapshot(&self) -> BTreeMap<String, K> {
        self.objects.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// The watch's health.
    pub fn state(&self) -> &WatchState {
        &self.state
    }

    /// Number of objects known.
    pub fn len(&self) -> usize {
        self.objects.read().map_or(0, |o| o.len())
    }

    /// Whether no object is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one watch event; `true` when the visible objects changed.
    fn apply(&self, event: Event<K>, pending: &mut Option<BTreeMap<String, K>>) -> bool {
        match event {
            Event::Init => {
                *pending = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                if let Some(p) = pending.as_mut() {
                    p.insert(object.name_any(), object);
                }
                false
            }
            Event::InitDone => {
                let Some(complete) = pending.take() else {
                    return false;
                };
                if let Ok(mut objects) = self.objects.write() {
                    *objects = complete;
                }
                self.state.listed();
                true
            }
            Event::Apply(object) => {
                if let Ok(mut objects) = self.objects.write() {
                    objects.insert(object.name_any(), object);
                }
                true
            }
            Event::Delete(object) => {
                if let Ok(mut objects) = self.objects.write() {
                    objects.remove(&object.name_any());
                }
                true
            }
        }
    }
}

/// The watched policy objects and Secrets of one namespace.
#[derive(Debug, Clone)]
pub struct ClusterResources {
    namespace: String,
    policies: Option<Arc<Collection<DynamicObject>>>,
    secrets: Option<Arc<Collection<Secret>>>,
    generation: watch::Sender<u64>,
}

impl ClusterResources {
    /// Starts the watches on the current tokio runtime: `S3AccessPolicy` objects when
    /// `policies`, Secrets when `secrets`, both in `namespace`.
    pub fn spawn(client: Client, namespace: &str, policies: bool, secrets: bool) -> Self {
        let this = Self {
            namespace: namespace.to_owned(),
            policies: policies.then(Default::default),
            secrets: secrets.then(Default::default),
            generation: watch::channel(0).0,
        };
        if let Some(collection) = &this.policies {
            let resource = ApiResource::erase::<S3AccessPolicy>(&());
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
            tokio::spawn(
                this.clone()
                    .run(api, Arc::clone(collection), "s3accesspolicies"),
            );
        }
        if let Some(collection) = &this.secrets {
            let api = Api::<Secret>::namespaced(client, namespace);
            tokio::spawn(this.clone().run(api, Arc::clone(collection), "secrets"));
        }
        this
    }

    async fn run<K>(self, api: Api<K>, collection: Arc<Collection<K>>, what: &'static str)
    where
        K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut pending = None;
        drive(stream, collection.state(), what, |event| {
            if collection.apply(event, &mut pending) {
                self.generation.send_modify(|g| *g += 1);
            }
        })
        .await;
    }

    /// The namespace watched.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The policy objects, when watched.
    pub fn policies(&self) -> Option<&Collection<DynamicObject>> {
        self.policies.as_deref()
    }

    /// The Secrets, when watched.
    pub fn secrets(&self) -> Option<&Collection<Secret>> {
        self.secrets.as_deref()
    }

    /// A receiver that sees the generation change whenever a watched object does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
