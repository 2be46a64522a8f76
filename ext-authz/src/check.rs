//! One authorization decision, from Envoy's view of a request to header changes or an S3 error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use s3mesh_s3_request::{RequestTarget, S3Error, S3Request};
use s3mesh_sigv4::{AmzDate, Credentials};

use crate::config::{Config, RuleSpec, SigningConfig};
use crate::identity::kubernetes::PodIdentities;
use crate::identity::local_file::AddressIdentities;
use crate::identity::{Resolver, Unresolved};
use crate::policy::Policy;
use crate::signer::{sign_request, ChunkSigning, HeaderChanges, OutgoingRequest};

/// What Envoy told us about the request.
#[derive(Debug, Clone, Copy)]
pub struct HttpAttributes<'a> {
    /// Address of the peer that opened the downstream connection, if Envoy sent one.
    pub source: Option<IpAddr>,
    /// The peer's mTLS principal (URI SAN), if the connection had a client certificate.
    pub principal: Option<&'a str>,
    /// `:method`.
    pub method: &'a str,
    /// `:authority`.
    pub host: &'a str,
    /// `:path` including the query.
    pub path: &'a str,
    /// Request headers, lower-case names.
    pub headers: &'a HashMap<String, String>,
}

/// The outcome, with what logs and metrics need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward with these header changes.
    Allow {
        /// Who was identified.
        identity: String,
        /// The S3 operation.
        operation: &'static str,
        /// Signing headers.
        changes: HeaderChanges,
        /// For chunk-signed uploads: what the `post` filter re-signs the chunks with.
        chunk_signing: Option<ChunkSigning>,
    },
    /// Answer the client with this error.
    Deny {
        /// Who was identified, if anyone.
        identity: Option<String>,
        /// The S3 operation, if the request got that far.
        operation: Option<&'static str>,
        /// The error the client receives.
        error: S3Error,
    },
}

/// Everything needed to decide, loaded once from configuration.
#[derive(Debug)]
pub struct Checker {
    resolver: Resolver,
    policy: Policy,
    profiles: HashMap<String, Credentials>,
    signing: SigningConfig,
}

impl Checker {
    /// Builds a checker from a validated configuration, the rules in force (the file's and
    /// those of policy objects) and the loaded credential profiles. `pods` is the running pod
    /// watch, required when the `kubernetes` source is on. A profile missing from `profiles`
    /// answers its requests `503`.
    pub fn new(
        config: &Config,
        rules: &[RuleSpec],
        profiles: HashMap<String, Credentials>,
        pods: Option<PodIdentities>,
    ) -> Self {
        Self {
            resolver: Resolver::new(
                config.identity.sources.clone(),
                config.identity.trust_domain.clone(),
                AddressIdentities::new(&config.identities),
                pods,
            ),
            policy: Policy::new(rules),
            profiles,
            signing: config.signing.clone(),
        }
    }

    /// Decides on one request at `now`.
    pub fn check(&self, attrs: &HttpAttributes<'_>, now: SystemTime) -> Decision {
        let deny = |identity: Option<&str>, operation, error| Decision::Deny {
            identity: identity.map(str::to_owned),
            operation,
            error,
        };
        let target = match RequestTarget::canonicalize(attrs.path) {
            Ok(t) => t,
            Err(e) => return deny(None, None, e),
        };
        if target.to_string() != attrs.path {
            // The "pre" filter canonicalizes before ext_authz; without it the signature would
            // not cover what Envoy forwards.
            return deny(
                None,
                None,
                S3Error::invalid_uri(
                    "the request target is not canonically encoded; the s3mesh \"pre\" filter must run before ext_authz",
                ),
            );
        }
        let identity = match self.resolver.resolve(attrs.principal, attrs.source) {
            Ok(identity) => identity,
            Err(unresolved) => {
                let error = match &unresolved {
                    Unresolved::NotReady(_) => S3Error::service_unavailable(unresolved.to_string()),
                    Unresolved::Unknown(_) | Unresolved::Refused(_) => {
                        S3Error::access_denied(unresolved.to_string())
                    }
                };
                return deny(None, None, error);
            }
        };
        let copy_source = attrs.headers.get("x-amz-copy-source").map(String::as_str);
        let request = S3Request::classify(attrs.method, &target, copy_source);
        let operation = request.operation.as_str();
        let profile = match self.policy.authorize(&identity, &request) {
            Ok(p) => p,
            Err(denial) => {
                return deny(
                    Some(&identity.name),
                    Some(operation),
                    S3Error::access_denied(denial.to_string()),
                )
            }
        };
        let Some(credentials) = self.profiles.get(profile) else {
            return deny(
                Some(&identity.name),
                Some(operation),
                S3Error::service_unavailable(format!(
                    "credential profile {profile:?} is not loaded"
                )),
            );
        };
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let outgoing = OutgoingRequest {
            method: attrs.method,
            host: attrs.host,
            target: &target,
            headers: attrs.headers,
        };
        match sign_request(
            &outgoing,
            credentials,
            &self.signing.region,
            &self.signing.service,
            AmzDate::from_unix_seconds(secs),
        ) {
            Ok(signed) => Decision::Allow {
                identity: identity.name,
                operation,
                changes: signed.changes,
                chunk_signing: signed.chunk_signing,
            },
            Err(error) => deny(Some(&identity.name), Some(operation), error),
        }
    }
}
