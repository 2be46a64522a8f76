//! Plugin configuration (the JSON `configuration` of each filter instance), parsed and
//! validated once in `on_configure`. Envoy refuses to start the filter when it is rejected.

use std::net::SocketAddr;

use serde::Deserialize;
use thiserror::Error;

/// Why a plugin configuration was refused; the message names the field.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not JSON of the expected shape (serde names the field).
    #[error("invalid s3mesh filter configuration: {0}")]
    Parse(#[from] serde_json::Error),
    /// JSON of the right shape with a bad value.
    #[error("invalid s3mesh filter configuration: {field}: {problem}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// The configuration of one filter instance, selected by `role`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase", deny_unknown_fields)]
pub enum FilterConfig {
    /// Before ext_authz: request hygiene.
    Pre(PreConfig),
    /// After ext_authz (or, in grant mode, instead of it): endpoint hints and signing.
    Post(PostConfig),
    /// Both roles in one filter instance, `pre` then `post`: grant mode only, where nothing
    /// runs between them. Saves Envoy a filter instance per stream and the operation's hand-off
    /// between the roles (measured when it was a request header: about 1.6 µs of Envoy CPU per
    /// request natively).
    Both(BothConfig),
}

/// Role `both` settings: each role's own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BothConfig {
    /// What role `pre` would be configured with.
    #[serde(default)]
    pub pre: PreConfig,
    /// What role `post` would be configured with; `grants` is required.
    pub post: PostConfig,
}

/// Role `pre` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreConfig {
    /// Domains under which clients address buckets virtual-host style
    /// (`bucket.s3.example.com`). Such requests are rewritten to path style on the bare domain
    /// before anything is signed; a host outside these domains is taken as path style.
    #[serde(default)]
    pub virtual_host_domains: Vec<String>,
    /// Hand the audit record's attributes (operation, bucket, key) to Envoy, for its access log
    /// and span tags. Off saves Envoy their cost where neither reads them.
    #[serde(default = "default_audit_attributes")]
    pub audit_attributes: bool,
}

impl Default for PreConfig {
    fn default() -> Self {
        Self {
            virtual_host_domains: Vec::new(),
            audit_attributes: default_audit_attributes(),
        }
    }
}

fn default_audit_attributes() -> bool {
    true
}

/// Role `post` settings. Durations are in milliseconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostConfig {
    /// Endpoints of the local pool (`ip:port`, IPv6 as `[addr]:port`), as the S3 cluster
    /// names them: `override_host` ignores a hint that names no host of the cluster.
    pub endpoints: Vec<String>,
    /// Endpoints in other datacenters: used only while every local endpoint is failing.
    #[serde(default)]
    pub remote_endpoints: Vec<String>,
    /// Share of requests (0.0–1.0) sent without a hint, so the cluster's fallback policy keeps
    /// sampling every endpoint and endpoints missing from this list get discovered. None while
    /// an endpoint cools down after failures: the fallback policy would favour it.
    #[serde(default = "default_unhinted_share")]
    pub unhinted_share: f64,
    /// Time constant of the latency estimate's decay after a peak.
    #[serde(default = "default_decay_ms")]
    pub decay_ms: f64,
    /// Time constant with which an avoided endpoint's penalty fades without new samples.
    #[serde(default = "default_recovery_ms")]
    pub recovery_ms: f64,
    /// Cooldown after a first failure, before the endpoint is probed; doubles with each failed
    /// probe. `Retry-After` wins. Also how long a probe may go unanswered before another.
    #[serde(default = "default_cooldown_ms")]
    pub cooldown_ms: f64,
    /// Longest cooldown, whatever `Retry-After` says.
    #[serde(default = "default_max_cooldown_ms")]
    pub max_cooldown_ms: f64,
    /// A response Envoy ends for idleness before this many body bytes reached the client is a
    /// failure of its endpoint (a stall after the headers). Later, the client may have stopped
    /// reading, which also leaves the stream idle, so it is not held against the endpoint.
    /// Keep it at or below the listener's `per_connection_buffer_limit_bytes` (Envoy's
    /// default, 1 MiB, is the default here); 0 never blames an idle response.
    #[serde(default = "default_stall_blame_bytes")]
    pub stall_blame_bytes: u64,
    /// How many identities get a label of their own in the `s3mesh_identity_*` metrics; later
    /// ones are counted as `_other` (the audit log still names them). Each label value is a
    /// series per metric in every scrape, so raise it with the metrics backend in mind; 0
    /// counts every caller as `_other`. Per process in the native shell, per worker in wasm.
    #[serde(default = "default_max_identity_labels")]
    pub max_identity_labels: usize,
    /// Hand the audit record's attributes (identity, decision, reason, endpoint chosen) to
    /// Envoy, for its access log and span tags. Off saves Envoy their cost where neither reads
    /// them.
    #[serde(default = "default_audit_attributes")]
    pub audit_attributes: bool,
    /// Grant mode: this filter decides and signs with grants from ext-authz, and Envoy's
    /// ext_authz filter is left out of the chain. Absent: ext_authz runs before this filter and
    /// signs every request.
    #[serde(default)]
    pub grants: Option<GrantsConfig>,
    /// The read cache ([`crate::read_cache`]); absent: every request goes to the store.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
}

/// The read cache: answers to `HeadObject` and `GetObject` (whole or one range) of the buckets
/// and prefixes its rules name, served by the proxy after each request is authorized.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory the answers may take in all, bodies and headers, shared by all workers; the
    /// least recently used go first (in wasm, within each of up to 64 partitions of it, each
    /// at least four times `max_entry_bytes`).
    #[serde(default = "default_cache_max_bytes")]
    pub max_bytes: u64,
    /// The largest body kept: a bigger answer passes through uncached.
    #[serde(default = "default_cache_max_entry_bytes")]
    pub max_entry_bytes: u64,
    /// What is cached: the first rule whose bucket and key prefix match.
    pub rules: Vec<CacheRule>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_cache_max_bytes(),
            max_entry_bytes: default_cache_max_entry_bytes(),
            rules: Vec::new(),
        }
    }
}

/// Objects the read cache keeps answers for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    /// The bucket.
    pub bucket: String,
    /// Keys starting with this (empty: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// How long an answer is served after the store gave it: the staleness accepted for
    /// writes that do not pass through this Envoy (writes through it drop answers at once).
    #[serde(default = "default_cache_ttl_ms")]
    pub ttl_ms: u64,
}

fn default_cache_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_cache_max_entry_bytes() -> u64 {
    1024 * 1024
}
fn default_cache_ttl_ms() -> u64 {
    5_000
}

/// Where and how grants are asked for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsConfig {
    /// The Envoy cluster of ext-authz (HTTP/2, the one ext_authz would use).
    pub cluster: String,
    /// `:authority` of grant requests.
    #[serde(default = "default_grant_authority")]
    pub authority: String,
    /// How long a request waits for its grant before failing closed with `503`.
    #[serde(default = "default_grant_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_grant_authority() -> String {
    "s3mesh-ext-authz".to_owned()
}
fn default_grant_timeout_ms() -> u64 {
    1_000
}

fn default_unhinted_share() -> f64 {
    0.005
}
fn default_decay_ms() -> f64 {
    5_000.0
}
fn default_recovery_ms() -> f64 {
    5_000.0
}
fn default_cooldown_ms() -> f64 {
    1_000.0
}
fn default_max_cooldown_ms() -> f64 {
    30_000.0
}
fn default_stall_blame_bytes() -> u64 {
    1024 * 1024
}

fn default_max_identity_labels() -> usize {
    100
}

impl FilterConfig {
    /// Parses and validates the plugin configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes)?;
        match &config {
            Self::Pre(pre) => pre.validate()?,
            Self::Post(post) => post.validate()?,
            Self::Both(both) => both.validate()?,
        }
        Ok(config)
    }
}

impl BothConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let within = |role: &str, error: ConfigError| match error {
            ConfigError::Invalid { field, problem } => ConfigError::Invalid {
                field: format!("{role}.{field}"),
                problem,
            },
            other => other,
        };
        self.pre.validate().map_err(|e| within("pre", e))?;
        self.post.validate().map_err(|e| within("post", e))?;
        if self.post.grants.is_none() {
            return Err(ConfigError::Invalid {
                field: "post.grants".into(),
                problem: "role both needs grant mode: in the per-request mode ext_authz runs \
                          between pre and post, so configure them as two filters"
                    .into(),
            });
        }
        Ok(())
    }
}

impl PreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, d) in self.virtual_host_domains.iter().enumerate() {
            let valid = !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !d.starts_with('.')
                && !d.ends_with('.');
            if !valid {
                return Err(ConfigError::Invalid {
                    field: format!("virtual_host_domains[{i}]"),
                    problem: format!("{d:?} is not a DNS name (no port, no wildcard)"),
                });
            }
        }
        Ok(())
    }
}

impl PostConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            field: field.to_owned(),
            problem,
        };
        if self.endpoints.is_empty() {
            return Err(invalid("endpoints", "name at least one endpoint".into()));
        }
        let lists = [
            ("endpoints", &self.endpoints),
            ("remote_endpoints", &self.remote_endpoints),
        ];
        let mut seen = std::collections::HashSet::new();
        for (list, addresses) in lists {
            for (i, e) in addresses.iter().enumerate() {
                let field = format!("{list}[{i}]");
                if e.parse::<SocketAddr>().is_err() {
                    return Err(invalid(&field, format!("{e:?} is not ip:port")));
                }
                if !seen.insert(e) {
                    return Err(invalid(&field, format!("{e:?} is listed twice")));
                }
            }
        }
        if !(0.0..=1.0).contains(&self.unhinted_share) {
            return Err(invalid(
                "unhinted_share",
                "must be between 0.0 and 1.0".into(),
            ));
        }
        if let Some(grants) = &self.grants {
            if grants.cluster.is_empty() {
                return Err(invalid("grants.cluster", "name ext-authz's cluster".into()));
            }
            if !(1..=60_000).contains(&grants.timeout_ms) {
                return Err(invalid(
                    "grants.timeout_ms",
                    "must be between 1 and 60000".into(),
                ));
            }
        }
        if let Some(cache) = &self.cache {
            cache.validate()?;
        }
        let durations = [
            ("decay_ms", self.decay_ms),
            ("recovery_ms", self.recovery_ms),
            ("cooldown_ms", self.cooldown_ms),
            ("max_cooldown_ms", self.max_cooldown_ms),
        ];
        for (field, value) in durations {
            if !(value.is_finite() && value > 0.0) {
                return Err(invalid(
                    field,
                    "must be a positive number of milliseconds".into(),
                ));
            }
        }
        Ok(())
    }
}

impl CacheConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, problem: &str| ConfigError::Invalid {
            field,
            problem: problem.to_owned(),
        };
        if self.rules.is_empty() {
            return Err(invalid("cache.rules".into(), "name at least one bucket"));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > self.max_bytes {
            return Err(invalid(
                "cache.max_entry_bytes".into(),
                "must be between 1 and cache.max_bytes",
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.bucket.is_empty() {
                return Err(invalid(format!("cache.rules[{i}].bucket"), "name a bucket"));
            }
            if !(1..=3_600_000).contains(&rule.ttl_ms) {
                return Err(invalid(
                    format!("cache.rules[{i}].ttl_ms"),
                    "must be between 1 and 3600000 (an hour)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_roles() {
        assert_eq!(
            FilterConfig::parse(br#"{"role":"pre"}"#).unwrap(),
            FilterConfig::Pre(PreConfig::default())
        );
        let post = FilterConfig::parse(br#"{"role":"post","endpoints":["127.0.0.1:1","[::1]:2"]}"#)
            .unwrap();
        let FilterConfig::Post(post) = post else {
            panic!("post expected")
        };
        assert_eq!(post.unhinted_share, 0.005);
        assert!(post.remote_endpoints.is_empty());
        assert_eq!(post.grants, None);
        let granting =
            br#"{"role":"post","endpoints":["127.0.0.1:1"],"grants":{"cluster":"ext_authz"}}"#;
        let Ok(FilterConfig::Post(post)) = FilterConfig::parse(granting) else {
            panic!("post expected")
        };
        let grants = post.grants.unwrap();
        assert_eq!(
            (grants.authority.as_str(), grants.timeout_ms),
            ("s3mesh-ext-authz", 1_000)
        );
        let both =
            br#"{"role":"both","post":{"endpoints":["127.0.0.1:1"],"grants":{"cluster":"x"}}}"#;
        let Ok(FilterConfig::Both(both)) = FilterConfig::parse(both) else {
            panic!("both expected")
        };
        assert_eq!(both.pre, PreConfig::default());
        assert!(both.post.grants.is_some());
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: [(&[u8], &str); 16] = [
            (br#"{"role":"post","endpoints":["127.0.0.1:1"],"cache":{"rules":[]}}"#, "cache.rules"),
            (br#"{"role":"post","endpoints":["127.0.0.1:1"],"cache":{"rules":[{"bucket":"b","ttl_ms":0}]}}"#, "cache.rules[0].ttl_ms"),
            (br#"{"role":"post","endpoints":["127.0.0.1:1"],"cache":{"max_bytes":1,"rules":[{"bucket":"b"}]}}"#, "cache.max_entry_bytes"),
            (br#"{"role":"both","post":{"endpoints":["127.0.0.1:1"]}}"#, "post.grants"),
            (br#"{"role":"both","pre":{"virtual_host_domains":["*"]},"post":{"endpoints":["127.0.0.1:1"],"grants":{"cluster":"x"}}}"#, "pre.virtual_host_domains[0]"),
            (br#"{"role":"both","post":{"endpoints":[],"grants":{"cluster":"x"}}}"#, "post.endpoints"),
            (br#"{"role":"post","endpoints":["127.0.0.1:1"],"grants":{"cluster":""}}"#, "grants.cluster"),
            (br#"{"role":"post","endpoints":["127.0.0.1:1"],"grants":{"cluster":"x","timeout_ms":0}}"#, "grants.timeout_ms"),
            (br#"{"role":"pre","virtual_host_domains":["*.s3.local"]}"#, "virtual_host_domains[0]"),
            (br#"{"role":"post","endpoints":["127.0.0.1:1"],"remote_endpoints":["127.0.0.1:1"]}"#, "remote_endpoints[0]"),
            (br#"{"role":"post","endpoints":["127.0.0.1:1"],"decay_ms":0}"#, "decay_ms"),
            (br#"{"role":"middle"}"#, "middle"),
            (br#"{"role":"pre","endpoints":[]}"#, "endpoints"),
            (
                br#"{"role":"post","endpoints":["localhost:80"]}"#,
                "endpoints[0]",
            ),
            (br#"{"role":"post","endpoints":[]}"#, "endpoints"),
            (
                br#"{"role":"post","endpoints":["127.0.0.1:1"],"unhinted_share":2}"#,
                "unhinted_share",
            ),
        ];
        for (json, field) in cases {
            let err = FilterConfig::parse(json).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
