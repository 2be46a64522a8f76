//! The local configuration file: identities, credential profiles and policy rules.
//!
//! Parsed once and validated as a whole, so a typo is reported with the field and the problem
//! before the service answers a single check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use s3mesh_access::rules::Permission;
use s3mesh_s3_request::OperationClass;

use crate::callers::Verify;
use crate::identity::{principal, Source};
use crate::sts::StsSpec;

/// Why a configuration file was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape (the message names the field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, with line and column.
        message: String,
    },
    /// A Kubernetes object (policy or Secret) that cannot be used.
    #[error("{object}: {field}: {problem}")]
    Object {
        /// Kind and `namespace/name`, e.g. `S3AccessPolicy s3mesh-system/team-a`.
        object: String,
        /// Dotted path of the offending field, e.g. `spec.rules[0].profile`.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The file parsed but says something inconsistent.
    #[error("{path}: {field}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted path of the offending field, e.g. `rules[2].profile`.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where signatures are scoped (the store's region).
    #[serde(default)]
    pub signing: SigningConfig,
    /// Which identity sources are on, in order.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Which proxies may ask, and for whom. Required: a deployment says how ext-authz tells
    /// the proxy that asks, or that only trusted proxies can reach it.
    pub callers: CallersConfig,
    /// Grants for the filter's fast path.
    #[serde(default)]
    pub grants: GrantsConfig,
    /// Policy objects and Secrets read through the Kubernetes API; absent: none are read.
    /// Read at start-up; a change takes effect at the next restart.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Callers known by their source address (the `local_file` source).
    #[serde(default)]
    pub identities: Vec<IdentitySpec>,
    /// Named credential profiles: which S3 key signs for a rule.
    pub profiles: BTreeMap<String, ProfileSpec>,
    /// What each identity may do. Anything not granted is denied. With `cluster.policies`,
    /// the rules of `S3AccessPolicy` objects follow these.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// Where the cluster's policy objects and credential Secrets are read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The one namespace read (default: ext-authz's own, from its service account). Whoever can
    /// write objects there can grant access, so keep it to the platform team.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Read `S3AccessPolicy` objects from that namespace.
    #[serde(default)]
    pub policies: bool,
}

/// Who may ask ext-authz for whom ([`crate::callers`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallersConfig {
    /// `mesh_identity`: the asking proxy is the last `x-forwarded-client-cert` element its
    /// Istio sidecar sets, and a sidecar asks only for its own workload. `any`: every caller of
    /// the port is trusted (loopback, or a NetworkPolicy that admits only the proxies).
    pub verify: Verify,
    /// SPIFFE IDs of proxies that ask for any caller (an s3mesh gateway), with `mesh_identity`.
    #[serde(default)]
    pub gateways: Vec<String>,
}

/// Grants: a caller's policy and day keys, handed to the filter for a short time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsConfig {
    /// How long the filter may use a grant before asking again: the bound within which a
    /// change of policy, credentials or a caller's identity reaches every Envoy.
    #[serde(default = "default_grant_ttl_seconds")]
    pub ttl_seconds: u64,
}

/// The longest grant lifetime accepted: revocation must stay a matter of minutes at most.
pub const MAX_GRANT_TTL_SECONDS: u64 = 300;

impl Default for GrantsConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: default_grant_ttl_seconds(),
        }
    }
}

fn default_grant_ttl_seconds() -> u64 {
    5
}

/// Signing scope settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// Region of the credential scope; S3-compatible stores mostly accept `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Service name of the credential scope.
    #[serde(default = "default_service")]
    pub service: String,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            region: default_region(),
            service: default_service(),
        }
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_service() -> String {
    "s3".to_owned()
}

/// Identity sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Sources in the order they are asked: `principal`, `kubernetes`, `local_file`.
    #[serde(default = "default_sources")]
    pub sources: Vec<Source>,
    /// Only principals `spiffe://<trust_domain>/ns/…/sa/…` are accepted.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Pod watch settings for the `kubernetes` source.
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            trust_domain: default_trust_domain(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

fn default_sources() -> Vec<Source> {
    vec![Source::LocalFile]
}

fn default_trust_domain() -> String {
    "cluster.local".to_owned()
}

/// The pod watch. The API server and credentials come from the environment (in-cluster
/// service account, or `KUBECONFIG`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Watch one namespace only (default: all namespaces).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// An identity recognised by the address its requests come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// Name used by rules and in logs and metrics.
    pub name: String,
    /// Source networks; the most specific match wins.
    pub source_cidrs: Vec<IpNet>,
}

/// Where a profile's credentials come from: exactly one of a directory or a Secret, either
/// holding `access_key_id`, `secret_access_key` and optionally `session_token`; or, with `sts`,
/// sessions from the store's STS (those then sign the `AssumeRole` calls, unless a web identity
/// token does).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// A directory of files (a mounted Secret, or plain files locally); relative paths are
    /// taken from the configuration file's directory.
    #[serde(default)]
    pub credentials_dir: Option<PathBuf>,
    /// A Secret in the `cluster` namespace, read through the API and watched, so a rotated key
    /// applies without a restart or a kubelet sync delay.
    #[serde(default)]
    pub secret: Option<String>,
    /// Temporary credentials per caller identity from the store's STS.
    #[serde(default)]
    pub sts: Option<StsSpec>,
}

/// One grant.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Which callers the rule applies to.
    #[serde(rename = "match")]
    pub selector: SelectorSpec,
    /// Bucket names; a trailing `*` matches any suffix, `*` alone any bucket (and `ListBuckets`).
    pub buckets: Vec<String>,
    /// Key prefixes the rule is limited to (objects, and listings whose `prefix` lies within);
    /// empty: the whole bucket.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Operation classes granted: read, write, list, delete, multipart, bucket-admin, sharing,
    /// retention.
    pub operations: Vec<String>,
    /// The profile whose key signs requests this rule allows.
    pub profile: String,
}

impl RuleSpec {
    /// What the rule permits, without its selector.
    pub fn permission(&self) -> Permission {
        Permission {
            buckets: self.buckets.clone(),
            prefixes: self.prefixes.clone(),
            operations: self.operations.clone(),
            profile: self.profile.clone(),
        }
    }
}

/// Identity selector: every field given must match (lists: any entry).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectorSpec {
    /// Identity names: local-file names, or `namespace/service-account`.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Kubernetes namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// `namespace/service-account` pairs.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// SPIFFE IDs.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Pod labels, all of which must be present with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl SelectorSpec {
    fn is_empty(&self) -> bool {
        self.identities.is_empty()
            && self.namespaces.is_empty()
            && self.service_accounts.is_empty()
            && self.principals.is_empty()
            && self.labels.is_empty()
    }
}

impl Config {
    /// Reads, parses and validates `path`; relative credential directories are resolved.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses and validates `text` as the file at `path` (which names it in errors and anchors
    /// relative credential directories).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for profile in config.profiles.values_mut() {
            let token_file = profile
                .sts
                .as_mut()
                .and_then(|sts| sts.web_identity_token_file.as_mut());
            for path in [profile.credentials_dir.as_mut(), token_file]
                .into_iter()
                .flatten()
            {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        config
            .validate()
            .map_err(|(field, problem)| ConfigError::Invalid {
                path: path.to_owned(),
                field,
                problem,
            })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_GRANT_TTL_SECONDS).contains(&self.grants.ttl_seconds) {
            return Err((
                "grants.ttl_seconds".to_owned(),
                format!("must be between 1 and {MAX_GRANT_TTL_SECONDS}"),
            ));
        }
        for (i, gateway) in self.callers.gateways.iter().enumerate() {
            let field = format!("callers.gateways[{i}]");
            if self.callers.verify == Verify::Any {
                return Err((field, "gateways are only told apart with verify: mesh_identity; with any, every caller is trusted".to_owned()));
            }
            if principal::resolve(gateway, &self.identity.trust_domain).is_none() {
                return Err((
                    field,
                    format!(
                        "{gateway:?} is not spiffe://{}/ns/<namespace>/sa/<service-account>",
                        self.identity.trust_domain
                    ),
                ));
            }
        }
        let sources = &self.identity.sources;
        if sources.is_empty() {
            return Err((
                "identity.sources".to_owned(),
                "name at least one of principal, kubernetes, local_file; with none, every request is refused".to_owned(),
            ));
        }
        for (i, source) in sources.iter().enumerate() {
            if sources[..i].contains(source) {
                return Err((
                    format!("identity.sources[{i}]"),
                    format!("{} is listed twice", source.as_str()),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, identity) in self.identities.iter().enumerate() {
            if seen.insert(identity.name.as_str(), i).is_some() {
                return Err((
                    format!("identities[{i}].name"),
                    format!("{:?} is defined twice", identity.name),
                ));
            }
        }
        let mut cidrs = BTreeMap::new();
        for (i, identity) in self.identities.iter().enumerate() {
            for cidr in &identity.source_cidrs {
                if let Some(other) = cidrs.insert(cidr.trunc(), identity.name.as_str()) {
                    return Err((
                        format!("identities[{i}].source_cidrs"),
                        format!("{cidr} is already claimed by identity {other:?}; one network must name one caller"),
                    ));
                }
            }
        }
        for (name, profile) in &self.profiles {
            if let Some(sts) = &profile.sts {
                let has_base = profile.credentials_dir.is_some() || profile.secret.is_some();
                sts.validate(has_base).map_err(|(field, problem)| {
                    (format!("profiles.{name}.sts.{field}"), problem)
                })?;
            }
            match (&profile.credentials_dir, &profile.secret) {
                (None, None) if profile.sts.is_some() => {}
                (Some(_), None) => {}
                (None, Some(_)) if self.cluster.is_some() => {}
                (None, Some(_)) => {
                    return Err((
                        format!("profiles.{name}.secret"),
                        "Secrets are read through the Kubernetes API: add a `cluster:` section"
                            .to_owned(),
                    ))
                }
                _ => {
                    return Err((
                        format!("profiles.{name}"),
                        "give exactly one of credentials_dir and secret".to_owned(),
                    ))
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            self.validate_rule(rule)
                .map_err(|(field, problem)| (format!("rules[{i}].{field}"), problem))?;
        }
        Ok(())
    }

    /// Checks one rule against this configuration's identities and profiles; the error's field
    /// is relative to the rule. Rules from policy objects go through the same check.
    pub fn validate_rule(&self, rule: &RuleSpec) -> Result<(), (String, String)> {
        if rule.selector.is_empty() {
            return Err(("match".to_owned(), "selects nobody; name identities, namespaces, service_accounts, principals or labels".to_owned()));
        }
        for name in &rule.selector.identities {
            // Names with a '/' are namespace/service-account identities from Kubernetes.
            if !name.contains('/') && !self.identities.iter().any(|i| &i.name == name) {
                return Err((
                    "match.identities".to_owned(),
                    format!("unknown identity {name:?}"),
                ));
            }
        }
        if !self.profiles.contains_key(&rule.profile) {
            return Err((
                "profile".to_owned(),
                format!("unknown profile {:?}", rule.profile),
            ));
        }
        for op in &rule.operations {
            if OperationClass::from_name(op).is_none() {
                return Err((
                    "operations".to_owned(),
                    format!(
                        "unknown class {op:?}; use read, write, list, delete, multipart, bucket-admin, sharing or retention"
                    ),
                ));
            }
        }
        if rule.buckets.is_empty() {
            return Err((
                "buckets".to_owned(),
                "must name at least one bucket".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("s3mesh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{n}.yaml"));
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    const GOOD: &str = "
callers: {verify: any}
identities:
  - {name: a, source_cidrs: [127.0.0.2/32]}
profiles:
  pa: {credentials_dir: creds/a}
rules:
  - {match: {identities: [a]}, buckets: [a], operations: [read, write], profile: pa}
";

    #[test]
    fn loads_and_resolves_relative_credential_dirs() {
        let c = load(GOOD).unwrap();
        assert!(c.profiles["pa"]
            .credentials_dir
            .as_ref()
            .unwrap()
            .is_absolute());
        assert_eq!(c.signing.region, "us-east-1");
    }

    #[test]
    fn selectors_must_select_someone_and_sources_must_exist() {
        let err = load(&GOOD.replace("match: {identities: [a]}", "match: {}")).unwrap_err();
        assert!(
            err.to_string().contains("rules[0].match: selects nobody"),
            "{err}"
        );
        let k8s = load(&GOOD.replace(
            "match: {identities: [a]}",
            "match: {identities: [team-a/uploader]}",
        ));
        assert!(
            k8s.is_ok(),
            "namespace/service-account names need no local identity"
        );
        let err = load(&format!("identity: {{sources: [principal, dns]}}\n{GOOD}")).unwrap_err();
        assert!(err.to_string().contains("dns"), "{err}");
        let err = load(&format!("identity: {{sources: []}}\n{GOOD}")).unwrap_err();
        assert!(
            err.to_string()
                .contains("identity.sources: name at least one"),
            "{err}"
        );
        let err = load(&format!(
            "identity: {{sources: [local_file, local_file]}}\n{GOOD}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("identity.sources[1]"), "{err}");
    }

    #[test]
    fn a_profile_names_exactly_one_source_and_secrets_need_a_cluster() {
        let err = load(&GOOD.replace(
            "{credentials_dir: creds/a}",
            "{credentials_dir: creds/a, secret: s}",
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("profiles.pa: give exactly one of credentials_dir and secret"),
            "{err}"
        );
        let secret = GOOD.replace("{credentials_dir: creds/a}", "{secret: s3-a}");
        let err = load(&secret).unwrap_err();
        assert!(
            err.to_string()
                .contains("profiles.pa.secret: Secrets are read through the Kubernetes API"),
            "{err}"
        );
        let c = load(&format!("cluster: {{policies: true}}\n{secret}")).unwrap();
        assert_eq!(c.profiles["pa"].secret.as_deref(), Some("s3-a"));
        assert_eq!(
            c.cluster.unwrap().namespace,
            None,
            "defaults to the pod's own"
        );
    }

    #[test]
    fn an_sts_profile_is_signed_by_base_credentials_or_a_web_identity() {
        let sts =
            "sts: {endpoint: \"https://sts.example.com\", role_arn: \"arn:aws:iam::1:role/r\"";
        let assume = GOOD.replace(
            "{credentials_dir: creds/a}",
            &format!("{{credentials_dir: creds/a, {sts}, duration_seconds: 900}}}}"),
        );
        let c = load(&assume).unwrap();
        assert_eq!(c.profiles["pa"].sts.as_ref().unwrap().duration_seconds, 900);
        let web = GOOD.replace(
            "{credentials_dir: creds/a}",
            &format!("{{{sts}, web_identity_token_file: token}}}}"),
        );
        let c = load(&web).unwrap();
        let token = c.profiles["pa"]
            .sts
            .as_ref()
            .unwrap()
            .web_identity_token_file
            .clone();
        assert!(token.unwrap().ends_with("token") && c.profiles["pa"].credentials_dir.is_none());
        for (text, says) in [
            (
                GOOD.replace("{credentials_dir: creds/a}", &format!("{{{sts}}}}}")),
                "profiles.pa.sts.role_arn: AssumeRole is signed with base credentials",
            ),
            (
                assume.replace("https://sts", "sts"),
                "profiles.pa.sts.endpoint: \"sts.example.com\" is not an http:// or https:// URL",
            ),
            (
                assume
                    .replace("role/r", "role/r\", duration_seconds: 5, x: \"")
                    .replace(", duration_seconds: 900", ""),
                "unknown field `x`",
            ),
            (
                assume.replace("900", "5"),
                "profiles.pa.sts.duration_seconds: must be between 10 and 43200",
            ),
            (
                web.replace("{sts:", "{credentials_dir: creds/a, sts:"),
                "profiles.pa.sts.web_identity_token_file: a web identity needs no base credentials",
            ),
        ] {
            let err = load(&text).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn callers_must_be_stated_and_gateways_be_workload_identities() {
        let err = load(&GOOD.replace("callers: {verify: any}\n", "")).unwrap_err();
        assert!(err.to_string().contains("missing field `callers`"), "{err}");
        let gateway = "spiffe://cluster.local/ns/s3mesh-system/sa/s3mesh-gateway";
        let mesh = GOOD.replace(
            "{verify: any}",
            &format!("{{verify: mesh_identity, gateways: [{gateway}]}}"),
        );
        assert_eq!(load(&mesh).unwrap().callers.gateways, [gateway]);
        let err = load(&mesh.replace("cluster.local/ns", "other.domain/ns")).unwrap_err();
        assert!(
            err.to_string()
                .contains("callers.gateways[0]: \"spiffe://other.domain"),
            "{err}"
        );
        let err = load(&mesh.replace("mesh_identity", "any")).unwrap_err();
        assert!(
            err.to_string()
                .contains("only told apart with verify: mesh_identity"),
            "{err}"
        );
    }

    #[test]
    fn refuses_unknown_fields_naming_them() {
        let err = load(&GOOD.replace("profile: pa}", "profile: pa, bukcets: [x]}")).unwrap_err();
        assert!(err.to_string().contains("bukcets"), "{err}");
    }

    #[test]
    fn refuses_inconsistent_references_naming_the_field() {
        let err = load(&GOOD.replace("profile: pa}", "profile: nope}")).unwrap_err();
        assert!(
            err.to_string()
                .contains("rules[0].profile: unknown profile \"nope\""),
            "{err}"
        );
        let err = load(&GOOD.replace("[read, write]", "[read, wrte]")).unwrap_err();
        assert!(err.to_string().contains("rules[0].operations"), "{err}");
        let twice = GOOD.replace(
            "identities:\n",
            "identities:\n  - {name: b, source_cidrs: [127.0.0.2/32]}\n",
        );
        let err = load(&twice).unwrap_err();
        assert!(err.to_string().contains("already claimed"), "{err}");
    }
}
