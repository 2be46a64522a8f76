//! Grants: what ext-authz hands the filter so that it can decide and sign in process.
//!
//! On a miss the filter POSTs a [`GrantRequest`] (the caller as Envoy sees it: mTLS principal,
//! source address) to ext-authz at [`ISSUE_PATH`]; ext-authz identifies the caller exactly as it
//! does per request and answers a [`GrantResponse`]: the caller's rules and a day-scoped key per
//! profile (never a secret), valid for `ttl_ms` from receipt, or a refusal. A grant is the
//! caller's whole policy, so a change of policy, credentials or identity takes effect when the
//! grant expires: the revocation bound is the grant lifetime.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use s3mesh_s3_request::S3Error;
use s3mesh_sigv4::AmzDate;

use crate::decision::{canonical_target, decide, Allowed, Refused, Unavailable};
use crate::request::Request;
use crate::rules::{Permission, Rule, RuleError};
use crate::signing::ProfileKey;

/// The HTTP path, on ext-authz's gRPC port, where grants are issued.
pub const ISSUE_PATH: &str = "/s3mesh.grant.v1/issue";

/// Who is asking, as Envoy saw the connection. Never from a request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The peer's mTLS principal (URI SAN), if the connection had a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The downstream peer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// `YYYYMMDD` by the filter's clock: the day the keys must sign for.
    pub date: String,
}

/// ext-authz's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum GrantResponse {
    /// The caller's policy and keys.
    Granted(Grant),
    /// The caller cannot be served (unknown, ambiguous, or identity not ready yet).
    Refused(Refusal),
}

/// One caller's policy and keys, for a short time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The identity's name, for denials and logs.
    pub identity: String,
    /// How the identity was established (`principal`, `kubernetes`, `local_file`), for the
    /// audit record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity_source: String,
    /// How long, from receipt, the filter may use this grant.
    pub ttl_ms: u64,
    /// The rules that select this identity, in policy order.
    pub rules: Vec<Permission>,
    /// The key of every loaded profile those rules name; a profile missing here answers `503`.
    pub profiles: BTreeMap<String, ProfileKey>,
    /// Profiles those rules name whose credentials could not be obtained, and why (an STS
    /// error): the `503` says so.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unavailable: BTreeMap<String, String>,
}

/// Why no grant was issued, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// HTTP status for the client: 403, or 503 while identity cannot be decided yet.
    pub status: u16,
    /// The message the client receives.
    pub message: String,
}

impl Refusal {
    /// The refusal of an identity error.
    pub fn from_error(error: &S3Error) -> Self {
        Self {
            status: error.status,
            message: error.message.clone(),
        }
    }

    /// The client's error.
    pub fn to_error(&self) -> S3Error {
        match self.status {
            403 => S3Error::access_denied(self.message.clone()),
            _ => S3Error::service_unavailable(self.message.clone()),
        }
    }
}

/// A grant the filter can use: rules compiled, keys checked to be of one day.
#[derive(Debug, Clone)]
pub struct CompiledGrant {
    identity: String,
    identity_source: String,
    rules: Vec<Rule>,
    profiles: BTreeMap<String, ProfileKey>,
    unavailable: BTreeMap<String, String>,
    date: Option<String>,
}

/// Why a grant from ext-authz is unusable (a version mismatch or a bug: the filter fails the
/// request closed with `503`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A rule that does not compile.
    #[error("rule {index}: {error}")]
    Rule {
        /// Position in `rules`.
        index: usize,
        /// What is wrong.
        error: RuleError,
    },
    /// Keys of different days.
    #[error("profile keys are for different days")]
    MixedDates,
}

impl Grant {
    /// Compiles the rules and checks the keys.
    pub fn compile(&self) -> Result<CompiledGrant, GrantError> {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(index, p)| Rule::compile(p).map_err(|error| GrantError::Rule { index, error }))
            .collect::<Result<_, _>>()?;
        let mut dates = self.profiles.values().map(|k| &k.date);
        let date = dates.next().cloned();
        if dates.any(|d| Some(d) != date.as_ref()) {
            return Err(GrantError::MixedDates);
        }
        Ok(CompiledGrant {
            identity: self.identity.clone(),
            identity_source: self.identity_source.clone(),
            rules,
            profiles: self.profiles.clone(),
            unavailable: self.unavailable.clone(),
            date,
        })
    }
}

impl CompiledGrant {
    /// Whether the keys sign for `date` (`YYYYMMDD`); a grant without keys fits any day.
    pub fn signs_for(&self, date: &str) -> bool {
        self.date.as_deref().is_none_or(|d| d == date)
    }

    /// The identity the grant was issued to.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How the identity was established (empty from an ext-authz that does not say).
    pub fn identity_source(&self) -> &str {
        &self.identity_source
    }

    /// Decides on `request` at `time` exactly as ext-authz would per request.
    pub fn decide(&self, request: &Request<'_>, time: AmzDate) -> Result<Allowed, Refused> {
        let target = canonical_target(request.path)?;
        decide(
            &self.identity,
            self.rules.iter(),
            |profile| {
                self.profiles.get(profile).ok_or_else(|| {
                    self.unavailable
                        .get(profile)
                        .map_or(Unavailable::NotLoaded, |why| {
                            Unavailable::NoCredentials(why.clone())
                        })
                })
            },
            request,
            &target,
            time,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3mesh_sigv4::Credentials;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn grant(date: &str) -> Grant {
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SECRET.into(),
            session_token: Some("session-token-value".into()),
        };
        Grant {
            identity: "team-a/reader".into(),
            identity_source: "principal".into(),
            ttl_ms: 5_000,
            rules: vec![Permission {
                buckets: vec!["data".into()],
                prefixes: vec![],
                operations: vec!["read".into()],
                profile: "p".into(),
            }],
            profiles: [(
                "p".to_owned(),
                ProfileKey::derive(&credentials, "us-east-1", "s3", date.into()),
            )]
            .into(),
            unavailable: BTreeMap::new(),
        }
    }

    fn request<'a>(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            host: "s3.local",
            path,
            headers: &[],
        }
    }

    const MAY_24_2013: u64 = 1_369_353_600;

    #[test]
    fn a_grant_round_trips_as_json_without_the_secret_and_decides_like_the_policy() {
        let response = GrantResponse::Granted(grant("20130524"));
        let json = serde_json::to_string(&response).unwrap();
        assert!(!json.contains(SECRET));
        let back: GrantResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, response);
        let GrantResponse::Granted(g) = back else {
            panic!("granted expected")
        };
        let compiled = g.compile().unwrap();
        assert!(compiled.signs_for("20130524") && !compiled.signs_for("20130525"));
        let time = AmzDate::from_unix_seconds(MAY_24_2013);
        let allowed = compiled.decide(&request("GET", "/data/k"), time).unwrap();
        assert_eq!(allowed.operation, "GetObject");
        let denied = compiled
            .decide(&request("PUT", "/data/k"), time)
            .unwrap_err();
        assert_eq!(denied.error.status, 403);
        assert!(denied
            .error
            .message
            .contains("\"team-a/reader\" is not granted write"));
        let debug = format!("{:?}", g.profiles);
        assert!(
            !debug.contains(&g.profiles["p"].key.to_hex())
                && !debug.contains("session-token-value"),
            "{debug}"
        );
    }

    #[test]
    fn keys_of_another_day_and_uncanonical_targets_are_refused() {
        let compiled = grant("20130523").compile().unwrap();
        let time = AmzDate::from_unix_seconds(MAY_24_2013);
        let stale = compiled
            .decide(&request("GET", "/data/k"), time)
            .unwrap_err();
        assert_eq!(stale.error.status, 503);
        let raw = compiled
            .decide(&request("GET", "/data/a b"), time)
            .unwrap_err();
        assert_eq!((raw.error.status, raw.error.code), (400, "InvalidURI"));
    }

    #[test]
    fn unusable_grants_and_requests_are_rejected_by_name() {
        let mut bad = grant("20130524");
        bad.rules[0].operations = vec!["everything".into()];
        assert!(bad
            .compile()
            .unwrap_err()
            .to_string()
            .starts_with("rule 0: operations"));
        let unknown = r#"{"principal":null,"source":"10.0.0.1","date":"20130524","user":"x"}"#;
        assert!(serde_json::from_str::<GrantRequest>(unknown).is_err());
        let refused = Refusal {
            status: 403,
            message: "who?".into(),
        };
        assert_eq!(refused.to_error().code, "AccessDenied");
    }
}
