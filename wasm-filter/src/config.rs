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
    /// After ext_authz: endpoint hints.
    Post(PostConfig),
}

/// Role `pre` settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreConfig {}

/// Role `post` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostConfig {
    /// Upstream endpoints (`ip:port`, IPv6 as `[addr]:port`) of the S3 cluster, as Envoy knows
    /// them: `override_host` ignores a hint that names no host of the cluster.
    pub endpoints: Vec<String>,
    /// Share of requests (0.0–1.0) sent without a hint, so the cluster's fallback policy keeps
    /// exploring every endpoint.
    #[serde(default = "default_unhinted_share")]
    pub unhinted_share: f64,
}

fn default_unhinted_share() -> f64 {
    0.05
}

impl FilterConfig {
    /// Parses and validates the plugin configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes)?;
        if let Self::Post(post) = &config {
            post.validate()?;
        }
        Ok(config)
    }
}

impl PostConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, problem: String| ConfigError::Invalid { field, problem };
        if self.endpoints.is_empty() {
            return Err(invalid(
                "endpoints".into(),
                "name at least one endpoint".into(),
            ));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if e.parse::<SocketAddr>().is_err() {
                return Err(invalid(
                    format!("endpoints[{i}]"),
                    format!("{e:?} is not ip:port"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.unhinted_share) {
            return Err(invalid(
                "unhinted_share".into(),
                "must be between 0.0 and 1.0".into(),
            ));
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
            FilterConfig::Pre(PreConfig {})
        );
        let post = FilterConfig::parse(br#"{"role":"post","endpoints":["127.0.0.1:1","[::1]:2"]}"#)
            .unwrap();
        let FilterConfig::Post(post) = post else {
            panic!("post expected")
        };
        assert_eq!(post.unhinted_share, 0.05);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: [(&[u8], &str); 5] = [
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
