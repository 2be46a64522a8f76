//! The configuration in force, and its replacement when the file or a credential changes.
//!
//! The configuration file and every profile's credential files are polled; a change is loaded
//! and validated as a whole and swapped in atomically. A change that fails is logged with the
//! file, the field and the problem, and the last good configuration keeps serving. Mounted
//! Kubernetes Secrets and ConfigMaps change in place, so polling covers them too.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::check::Checker;
use crate::config::{Config, ConfigError};
use crate::identity::kubernetes::PodIdentities;

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

/// Loads `path` into a checker, with the pod watch (if any) carried over.
pub fn load(path: &Path, pods: Option<PodIdentities>) -> Result<Checker, ConfigError> {
    Checker::from_config(&Config::load(path)?, pods)
}

/// A digest of everything a checker is built from: the file and every credential file it
/// names. Secrets go into the digest only, never anywhere else.
fn fingerprint(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(path).ok().hash(&mut h);
    if let Ok(config) = Config::load(path) {
        for profile in config.profiles.values() {
            for name in crate::credentials::FILES {
                std::fs::read(profile.credentials_dir.join(name))
                    .ok()
                    .hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Polls `path` every `every` and swaps in a new checker when anything it depends on changed.
pub async fn watch(
    path: PathBuf,
    pods: Option<PodIdentities>,
    current: Arc<Current>,
    every: Duration,
) {
    let mut last = fingerprint(&path);
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let now = fingerprint(&path);
        if now == last {
            continue;
        }
        last = now;
        match load(&path, pods.clone()) {
            Ok(checker) => {
                current.set(checker);
                tracing::info!(config = %path.display(), "configuration reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "configuration change refused; the last good configuration keeps serving");
            }
        }
    }
}
