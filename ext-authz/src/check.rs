//! One authorization decision, from Envoy's view of a request to header changes or an S3 error,
//! and one grant, from Envoy's view of a caller to that caller's policy and day keys.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use s3mesh_access::decision::{canonical_target, decide};
use s3mesh_access::grant::{Grant, GrantRequest, GrantResponse, Refusal};
use s3mesh_access::request::Request;
use s3mesh_access::signing::{ChunkSigning, HeaderChanges, ProfileKey};
use s3mesh_s3_request::S3Error;
use s3mesh_sigv4::{AmzDate, Credentials};

use crate::callers::{Callers, Refused};
use crate::config::{Config, GrantsConfig, RuleSpec, SigningConfig};
use crate::identity::kubernetes::PodIdentities;
use crate::identity::local_file::AddressIdentities;
use crate::identity::{Identity, Resolver, Unresolved};
use crate::policy::Policy;

/// What Envoy told us about the request.
#[derive(Debug, Clone, Copy)]
pub struct HttpAttributes<'a> {
    /// Address of the peer that opened the downstream connection, if Envoy sent one.
    pub source: Option<IpAddr>,
    /// The peer's mTLS principal (URI SAN), if the connection had a client certificate.
    pub principal: Option<&'a str>,
    /// The `x-forwarded-client-cert` of the check call itself (set by ext-authz's own
    /// sidecar), naming the proxy that asks; never a header of the S3 request.
    pub proxy: Option<&'a str>,
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
    callers: Callers,
    policy: Policy,
    profiles: HashMap<String, Credentials>,
    signing: SigningConfig,
    grants: GrantsConfig,
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
            callers: Callers::new(
                config.callers.verify,
                &config.callers.gateways,
                &config.identity.trust_domain,
            ),
            policy: Policy::new(rules),
            profiles,
            signing: config.signing.clone(),
            grants: config.grants.clone(),
        }
    }

    /// Decides on one request at `now`.
    pub fn check(&self, attrs: &HttpAttributes<'_>, now: SystemTime) -> Decision {
        let deny = |identity: Option<&str>, operation, error| Decision::Deny {
            identity: identity.map(str::to_owned),
            operation,
            error,
        };
        let target = match canonical_target(attrs.path) {
            Ok(t) => t,
            Err(e) => return deny(None, None, e),
        };
        let identity = match self.identify(attrs.principal, attrs.source, attrs.proxy) {
            Ok(identity) => identity,
            Err(error) => return deny(None, None, error),
        };
        let headers: Vec<(&str, &str)> = attrs
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = Request {
            method: attrs.method,
            host: attrs.host,
            path: attrs.path,
            headers: &headers,
        };
        let time = amz_date(now);
        let key_of = |profile: &str| self.profile_key(profile, time.date());
        match decide(
            &identity.name,
            self.policy.rules_for(&identity),
            key_of,
            &request,
            &target,
            time,
        ) {
            Ok(allowed) => Decision::Allow {
                identity: identity.name,
                operation: allowed.operation,
                changes: allowed.signed.changes,
                chunk_signing: allowed.signed.chunk_signing,
            },
            Err(refused) => deny(Some(&identity.name), refused.operation, refused.error),
        }
    }

    /// Issues a grant to the caller Envoy saw, with keys for the day the filter asked for (its
    /// own clock), or for today when that day is not yesterday, today or tomorrow here.
    /// `proxy` is the grant call's `x-forwarded-client-cert`, as for [`Checker::check`].
    pub fn grant(
        &self,
        request: &GrantRequest,
        proxy: Option<&str>,
        now: SystemTime,
    ) -> GrantResponse {
        let identity = match self.identify(request.principal.as_deref(), request.source, proxy) {
            Ok(identity) => identity,
            Err(error) => return GrantResponse::Refused(Refusal::from_error(&error)),
        };
        let today = amz_date(now).date();
        let day = |offset: i64| {
            let secs = unix_seconds(now).saturating_add_signed(offset * 86_400);
            AmzDate::from_unix_seconds(secs).date()
        };
        let date = if [day(-1), today.clone(), day(1)].contains(&request.date) {
            request.date.clone()
        } else {
            today
        };
        let rules = self.policy.permissions_for(&identity);
        let named: BTreeSet<&str> = rules.iter().map(|r| r.profile.as_str()).collect();
        let profiles = named
            .into_iter()
            .filter_map(|p| Some((p.to_owned(), self.profile_key(p, date.clone())?)))
            .collect();
        GrantResponse::Granted(Grant {
            identity: identity.name,
            ttl_ms: self.grants.ttl_seconds * 1000,
            rules,
            profiles,
        })
    }

    /// The caller Envoy saw, if the proxy that asks may speak for it.
    fn identify(
        &self,
        principal: Option<&str>,
        source: Option<IpAddr>,
        proxy: Option<&str>,
    ) -> Result<Identity, S3Error> {
        let identity = self
            .resolver
            .resolve(principal, source)
            .map_err(|unresolved| match &unresolved {
                Unresolved::NotReady(_) => S3Error::service_unavailable(unresolved.to_string()),
                Unresolved::Unknown(_) | Unresolved::Refused(_) => {
                    S3Error::access_denied(unresolved.to_string())
                }
            })?;
        self.callers
            .admit(proxy, &identity)
            .map_err(|refused| match &refused {
                Refused::Unverified => S3Error::service_unavailable(refused.to_string()),
                Refused::ForeignProxy(_) | Refused::NotItsOwn { .. } => {
                    S3Error::access_denied(refused.to_string())
                }
            })?;
        Ok(identity)
    }

    /// The key of `profile` for `date`, if its credentials are loaded.
    fn profile_key(&self, profile: &str, date: String) -> Option<ProfileKey> {
        let credentials = self.profiles.get(profile)?;
        Some(ProfileKey::derive(
            credentials,
            &self.signing.region,
            &self.signing.service,
            date,
        ))
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn amz_date(time: SystemTime) -> AmzDate {
    AmzDate::from_unix_seconds(unix_seconds(time))
}
