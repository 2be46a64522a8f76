//! The configuration in force, rebuilt whenever anything it is made of changes.
//!
//! A checker is made of the configuration file, the credential profiles (files or Secrets) and,
//! in a cluster, the rules of `S3AccessPolicy` objects. Files are polled (mounted ConfigMaps and
//! Secrets change in place); the Kubernetes watches signal their changes. Everything is then
//! loaded and validated again and swapped in atomically.
//!
//! What is refused keeps the last good version serving, at the smallest unit that can be told
//! apart: a bad file keeps the whole last good checker; a bad policy object keeps that object's
//! last good rules (none if it never was good); a bad Secret keeps that profile's last good key.
//! Every refusal is logged once, naming the file or object, the field and the problem.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::api::DynamicObject;
use s3mesh_sigv4::Credentials;

use crate::check::Checker;
use crate::config::{Config, ConfigError, RuleSpec};
use crate::credentials;
use crate::identity::kubernetes::PodIdentities;
use crate::kubernetes::policy_resource::S3AccessPolicySpec;
use crate::kubernetes::resources::ClusterResources;
use crate::sts::{Sessions, StsProfile};

/// The checker requests are decided by.
#[derive(Debug)]
pub struct Current(RwLock<Arc<Checker>>);

impl Current {
    /// Starts with `checker`.
    pub fn new(checker: Checker) -> Self {
        Self(RwLock::new(Arc::new(checker)))
    }

    /// The checker in force.
    pub fn get(&self) -> Arc<Checker> {
        match self.0.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set(&self, checker: Checker) {
        match self.0.write() {
            Ok(mut c) => *c = Arc::new(checker),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(checker),
        }
    }
}

/// Builds checkers from the configuration file and the cluster's objects, remembering what was
/// last accepted from each object.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    pods: Option<PodIdentities>,
    cluster: Option<ClusterResources>,
    /// Rules last accepted from each policy object, by name.
    policies: BTreeMap<String, Vec<RuleSpec>>,
    /// Credentials last accepted from each Secret, by name.
    secrets: BTreeMap<String, Credentials>,
    /// Refusals of the last build; each is logged when it first appears.
    refusals: Refusals,
    /// STS sessions, kept across builds.
    sessions: Sessions,
}

/// The objects the last build refused, as messages naming object, field and problem; shared
/// with readiness and metrics.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<RwLock<BTreeSet<String>>>);

impl Refusals {
    /// The current refusals, sorted.
    pub fn list(&self) -> Vec<String> {
        self.0
            .read()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces the refusals, logging the new ones.
    fn replace(&self, now: BTreeSet<String>) {
        if let Ok(mut reported) = self.0.write() {
            for refusal in now.difference(&reported) {
                tracing::error!(error = %refusal, "refused; the last good version keeps serving");
            }
            *reported = now;
        }
    }
}

impl Reloader {
    /// Reloads `path`, with the pod watch and the cluster watches (if any) carried over.
    pub fn new(
        path: PathBuf,
        pods: Option<PodIdentities>,
        cluster: Option<ClusterResources>,
    ) -> Self {
        Self {
            path,
            pods,
            cluster,
            policies: BTreeMap::new(),
            secrets: BTreeMap::new(),
            refusals: Refusals::default(),
            sessions: Sessions::new(),
        }
    }

    /// The STS sessions every checker it builds uses (for readiness).
    pub fn sessions(&self) -> Sessions {
        self.sessions.clone()
    }

    /// A checker from the current file and objects; `Err` only when the file is refused.
    pub fn build(&mut self) -> Result<Checker, ConfigError> {
        let config = Config::load(&self.path)?;
        let mut refusals = Vec::new();
        let mut rules = config.rules.clone();
        rules.extend(self.policy_rules(&config, &mut refusals));
        let mut profiles = self.profiles(&config, &mut refusals)?;
        let sts = sts_profiles(&config, &mut profiles);
        self.refusals
            .replace(refusals.iter().map(ToString::to_string).collect());
        Ok(Checker::new(
            &config,
            &rules,
            profiles,
            sts,
            self.sessions.clone(),
            self.pods.clone(),
        ))
    }

    /// The rules of every policy object: the current version where it is valid, else the last
    /// good one (if that is still valid against `config`).
    fn policy_rules(&mut self, config: &Config, refusals: &mut Vec<ConfigError>) -> Vec<RuleSpec> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let Some(objects) = cluster.policies().map(|p| p.snapshot()) else {
            return Vec::new();
        };
        let namespace = cluster.namespace();
        self.policies.retain(|name, _| objects.contains_key(name));
        let mut rules = Vec::new();
        for (name, object) in &objects {
            let label = format!("S3AccessPolicy {namespace}/{name}");
            let accepted = match policy_spec(&label, object, config) {
                Ok(spec) => {
                    self.policies.insert(name.clone(), spec.rules.clone());
                    spec.rules
                }
                Err(error) => {
                    refusals.push(error);
                    let last = self.policies.get(name).cloned().unwrap_or_default();
                    match validate_rules(&label, &last, config) {
                        Ok(()) => last,
                        Err(error) => {
                            refusals.push(error);
                            Vec::new()
                        }
                    }
                }
            };
            rules.extend(accepted);
        }
        rules
    }

    /// Every profile's credentials. A bad directory refuses the file; a bad or missing Secret
    /// leaves its profile with the last good key, or unloaded.
    fn profiles(
        &mut self,
        config: &Config,
        refusals: &mut Vec<ConfigError>,
    ) -> Result<HashMap<String, Credentials>, ConfigError> {
        let secrets = self
            .cluster
            .as_ref()
            .and_then(|c| c.secrets().map(|s| (c.namespace(), s.snapshot())));
        let mut profiles = HashMap::new();
        for (name, spec) in &config.profiles {
            if let Some(dir) = &spec.credentials_dir {
                profiles.insert(name.clone(), credentials::load_dir(name, dir)?);
                continue;
            }
            let Some(secret) = &spec.secret else {
                continue;
            };
            let Some((namespace, objects)) = &secrets else {
                // Added by a reload: the Secret watch starts with the process.
                refusals.push(ConfigError::Object {
                    object: format!("profile {name:?}"),
                    field: "secret".to_owned(),
                    problem: "Secrets are watched only if a profile used one at start-up; restart ext-authz to load it".to_owned(),
                });
                continue;
            };
            let label = format!("Secret {namespace}/{secret}");
            let loaded = match objects.get(secret) {
                Some(object) => credentials::from_secret(&label, object),
                None => Err(ConfigError::Object {
                    object: label,
                    field: "metadata.name".to_owned(),
                    problem: format!("not found; profile {name:?} is not loaded"),
                }),
            };
            match loaded {
                Ok(credentials) => {
                    self.secrets.insert(secret.clone(), credentials);
                }
                Err(error) => refusals.push(error),
            }
            if let Some(credentials) = self.secrets.get(secret) {
                profiles.insert(name.clone(), credentials.clone());
            }
        }
        Ok(profiles)
    }

    /// What the builds refuse, kept current as they run.
    pub fn refusals(&self) -> Refusals {
        self.refusals.clone()
    }

    /// Rebuilds whenever the file (polled every `every`) or a watched object changes, and swaps
    /// the result into `current`.
    pub async fn watch(mut self, current: Arc<Current>, every: Duration) {
        let mut last = fingerprint(&self.path);
        let mut ticker = tokio::time::interval(every);
        let mut objects = self.cluster.as_ref().map(ClusterResources::subscribe);
        loop {
            let object_changed = async {
                match objects.as_mut() {
                    Some(receiver) => receiver.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticker.tick() => {
                    let now = fingerprint(&self.path);
                    if now == last {
                        continue;
                    }
                    last = now;
                }
                changed = object_changed => {
                    if !changed {
                        objects = None;
                        continue;
                    }
                }
            }
            match self.build() {
                Ok(checker) => {
                    current.set(checker);
                    tracing::info!(config = %self.path.display(), "configuration reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "configuration change refused; the last good configuration keeps serving");
                }
            }
        }
    }
}

/// The STS profiles of `config`, each taking its base credentials (if any) out of `profiles`:
/// those sign `AssumeRole` calls, never S3 requests. An STS profile whose base credentials were
/// not loaded is left out (its requests answer `503`, and the refusal says why).
fn sts_profiles(
    config: &Config,
    profiles: &mut HashMap<String, Credentials>,
) -> HashMap<String, StsProfile> {
    let mut sts = HashMap::new();
    for (name, spec) in &config.profiles {
        let Some(sts_spec) = &spec.sts else {
            continue;
        };
        let base = profiles.remove(name);
        if base.is_none() && sts_spec.web_identity_token_file.is_none() {
            continue;
        }
        sts.insert(
            name.clone(),
            StsProfile {
                name: name.clone(),
                spec: sts_spec.clone(),
                base,
                region: sts_spec
                    .region
                    .clone()
                    .unwrap_or_else(|| config.signing.region.clone()),
            },
        );
    }
    sts
}

/// The spec of a policy object, parsed and every rule validated against `config`.
fn policy_spec(
    label: &str,
    object: &DynamicObject,
    config: &Config,
) -> Result<S3AccessPolicySpec, ConfigError> {
    let spec = object.data.get("spec").cloned().unwrap_or_default();
    let spec: S3AccessPolicySpec =
        serde_json::from_value(spec).map_err(|e| ConfigError::Object {
            object: label.to_owned(),
            field: "spec".to_owned(),
            problem: e.to_string(),
        })?;
    validate_rules(label, &spec.rules, config)?;
    Ok(spec)
}

fn validate_rules(label: &str, rules: &[RuleSpec], config: &Config) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        config
            .validate_rule(rule)
            .map_err(|(field, problem)| ConfigError::Object {
                object: label.to_owned(),
                field: format!("spec.rules[{i}].{field}"),
                problem,
            })?;
    }
    Ok(())
}

/// A digest of the file and every credential file it names. Secrets go into the digest only,
/// never anywhere else.
fn fingerprint(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(path).ok().hash(&mut h);
    if let Ok(config) = Config::load(path) {
        for dir in config
            .profiles
            .values()
            .filter_map(|p| p.credentials_dir.as_ref())
        {
            for name in credentials::FILES {
                std::fs::read(dir.join(name)).ok().hash(&mut h);
            }
        }
    }
    h.finish()
}
