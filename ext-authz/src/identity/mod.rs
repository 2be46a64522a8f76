//! Who is calling, from what Envoy saw of the connection, never from a request header.
//!
//! Sources, strongest first, each switched on by configuration:
//! - [`principal`]: the mTLS peer's SPIFFE ID (`attributes.source.principal`);
//! - [`kubernetes`]: the source IP, looked up among live pods by a watch ([`pods`]);
//! - [`local_file`]: source networks named in the configuration file (no Kubernetes).
//!
//! The first source that knows the caller decides. A principal from another trust domain, or a
//! pod IP claimed by two live pods, is refused rather than passed to a weaker source.

pub mod kubernetes;
pub mod local_file;
pub mod pods;
pub mod principal;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

/// Which source established an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The mTLS peer principal.
    Principal,
    /// A live pod's IP, through the Kubernetes API.
    #[serde(rename = "kubernetes")]
    PodIp,
    /// A network from the configuration file.
    #[default]
    LocalFile,
}

impl Source {
    /// Name used in configuration, logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Principal => "principal",
            Self::PodIp => "kubernetes",
            Self::LocalFile => "local_file",
        }
    }
}

/// A resolved caller: what policy selectors can match on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `namespace/service-account` (principal, pod IP) or the configured name (local file).
    pub name: String,
    /// Where it came from.
    pub source: Source,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes service account.
    pub service_account: Option<String>,
    /// Pod labels (pod-IP identities only).
    pub labels: BTreeMap<String, String>,
    /// SPIFFE ID (principal identities only).
    pub principal: Option<String>,
    /// `namespace/name` of the pod (pod-IP identities only).
    pub pod: Option<String>,
    /// UID of the pod the identity is bound to (pod-IP identities only).
    pub pod_uid: Option<String>,
}

/// Why nobody could be identified; the message goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// No enabled source knows the caller.
    #[error("no s3mesh identity is configured for {0}")]
    Unknown(String),
    /// The caller presented something that must not be passed over to a weaker source.
    #[error("{0}")]
    Refused(String),
    /// A source that must answer is not ready (the first pod list has not arrived).
    #[error("s3mesh cannot identify callers yet: {0}; retry shortly")]
    NotReady(String),
}

/// The enabled sources, in order.
#[derive(Debug)]
pub struct Resolver {
    sources: Vec<Source>,
    trust_domain: String,
    local: local_file::AddressIdentities,
    pods: Option<kubernetes::PodIdentities>,
}

impl Resolver {
    /// Combines the sources; `pods` must be present when `sources` names `kubernetes`.
    pub fn new(
        sources: Vec<Source>,
        trust_domain: String,
        local: local_file::AddressIdentities,
        pods: Option<kubernetes::PodIdentities>,
    ) -> Self {
        Self {
            sources,
            trust_domain,
            local,
            pods,
        }
    }

    /// Identifies the peer of a connection from its principal (if any) and address.
    pub fn resolve(
        &self,
        principal: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Identity, Unresolved> {
        let principal = principal.filter(|p| !p.is_empty());
        for source in &self.sources {
            match source {
                Source::Principal => {
                    if let Some(p) = principal {
                        return principal::resolve(p, &self.trust_domain).ok_or_else(|| {
                            Unresolved::Refused(format!(
                                "peer principal {p:?} is not a workload identity of trust domain {:?}",
                                self.trust_domain
                            ))
                        });
                    }
                }
                Source::PodIp => {
                    let (Some(ip), Some(pods)) = (address, &self.pods) else {
                        continue;
                    };
                    match pods.resolve(ip) {
                        Ok(identity) => return Ok(identity),
                        Err(kubernetes::Lookup::Unknown) => {}
                        Err(kubernetes::Lookup::Ambiguous) => {
                            return Err(Unresolved::Refused(format!(
                                "source address {ip} is claimed by more than one live pod; access is refused until that is resolved"
                            )))
                        }
                        Err(kubernetes::Lookup::NotSynced) => {
                            return Err(Unresolved::NotReady("the pod list has not been loaded".into()))
                        }
                    }
                }
                Source::LocalFile => {
                    if let Some(identity) = address.and_then(|ip| self.local.resolve(ip)) {
                        return Ok(identity);
                    }
                }
            }
        }
        let who = address.map_or("an unknown address".to_owned(), |ip| ip.to_string());
        Err(Unresolved::Unknown(who))
    }
}
