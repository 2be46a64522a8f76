//! One authorization decision, from Envoy's view of a request to header changes or an S3 error,
//! and one grant, from Envoy's view of a caller to that caller's policy and day keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use s3mesh_access::decision::{canonical_target, decide, Unavailable};
use s3mesh_access::grant::{Grant, GrantRequest, GrantResponse, Refusal};
use s3mesh_access::request::Request;
use s3mesh_access::rules::Permission;
use s3mesh_access::signing::{ChunkSigning, HeaderChanges, ProfileKey};
use s3mesh_s3_request::{S3Error, S3Request};
use s3mesh_sigv4::{AmzDate, Credentials};

use crate::callers::{Callers, Refused};
use crate::config::{Config, GrantsConfig, RuleSpec, SigningConfig};
use crate::identity::kubernetes::PodIdentities;
use crate::identity::local_file::AddressIdentities;
use crate::identity::{Identity, Resolver, Unresolved};
use crate::policy::Policy;
use crate::sts::call::Session;
use crate::sts::{session_policy, Sessions, StsProfile};

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
        /// How (see [`crate::identity::Source::as_str`]).
        identity_source: &'static str,
        /// The S3 operation.
        operation: &'static str,
        /// Signing headers.
        changes: HeaderChanges,
        /// For chunk-signed uploads: what the `post` filter re-signs the chunks with.
        chunk_signing: Option<ChunkSigning>,
    },
    /// Answer the client with this error.
    Deny {
        /// Who was identified, if anyone, and how.
        identity: Option<(String, &'static str)>,
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
    /// Profiles with credentials of their own (files or Secrets).
    profiles: HashMap<String, Credentials>,
    /// Profiles whose credentials are STS sessions per caller identity.
    sts: HashMap<String, StsProfile>,
    sessions: Sessions,
    /// Session policies by profile and identity name, with the rules they were made of (an
    /// identity's labels can select other rules).
    session_policies: Mutex<HashMap<(String, String), SessionPolicy>>,
    signing: SigningConfig,
    grants: GrantsConfig,
}

/// A generated session policy and the rules it was made of.
type SessionPolicy = (Vec<Permission>, String);

impl Checker {
    /// Builds a checker from a validated configuration, the rules in force (the file's and
    /// those of policy objects) and the loaded credential profiles. `pods` is the running pod
    /// watch, required when the `kubernetes` source is on. A profile missing from `profiles`
    /// and `sts` answers its requests `503`; `sessions` are the STS sessions, kept across
    /// reloads.
    pub fn new(
        config: &Config,
        rules: &[RuleSpec],
        profiles: HashMap<String, Credentials>,
        sts: HashMap<String, StsProfile>,
        sessions: Sessions,
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
            sts,
            sessions,
            session_policies: Mutex::new(HashMap::new()),
            signing: config.signing.clone(),
            grants: config.grants.clone(),
        }
    }

    /// Decides on one request at `now`; waits for STS only when the request's profile is an
    /// STS profile without a cached session for this caller.
    pub async fn check(&self, attrs: &HttpAttributes<'_>, now: SystemTime) -> Decision {
        let deny = |identity: Option<&Identity>, operation, error| Decision::Deny {
            identity: identity.map(|i| (i.name.clone(), i.source.as_str())),
            operation,
            error,
        };
        let target = match canonical_target(attrs.path) {
            Ok(t) => t,
            Err(e) => return deny(None, None, e),
        };
        let identity = match self.identify(attrs.principal, attrs.source, attrs.proxy) {
            Ok(identity) => identity,
            Err(error) => {
                // Named even though nobody was identified: the audit record and the metrics say
                // what was asked for.
                let copy_source = attrs.headers.get("x-amz-copy-source").map(String::as_str);
                let operation = S3Request::classify(attrs.method, &target, copy_source).operation;
                return deny(None, Some(operation.as_str()), error);
            }
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
        // `needed`: the STS profile a request needs but did not find a session of in the cache.
        let decide_with = |fetched: Option<Result<Credentials, String>>,
                           needed: &mut Option<String>| {
            let key_of = |profile: &str| match fetched {
                Some(Ok(credentials)) => Ok(self.derive(&credentials, time.date())),
                Some(Err(why)) => Err(Unavailable::NoCredentials(why)),
                None => self.cached_key(profile, &identity, time.date(), now, needed),
            };
            decide(
                &identity.name,
                self.policy.rules_for(&identity),
                key_of,
                &request,
                &target,
                time,
            )
        };
        let mut needed = None;
        let mut decided = decide_with(None, &mut needed);
        if let Some(profile) = needed {
            // The same request decides the same way: the same rule, so the same profile.
            let fetched = match self.sts.get(&profile) {
                Some(sts) => self.session(sts, &identity, now).await,
                None => Err(Unavailable::NotLoaded.to_string()),
            };
            decided = decide_with(Some(fetched.map(|s| s.credentials)), &mut None);
        }
        match decided {
            Ok(allowed) => Decision::Allow {
                identity_source: identity.source.as_str(),
                identity: identity.name,
                operation: allowed.operation,
                changes: allowed.signed.changes,
                chunk_signing: allowed.signed.chunk_signing,
            },
            Err(refused) => deny(Some(&identity), refused.operation, refused.error),
        }
    }

    /// Issues a grant to the caller Envoy saw, with keys for the day the filter asked for (its
    /// own clock), or for today when that day is not yesterday, today or tomorrow here.
    /// `proxy` is the grant call's `x-forwarded-client-cert`, as for [`Checker::check`].
    pub async fn grant(
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
        let mut profiles = BTreeMap::new();
        let mut unavailable = BTreeMap::new();
        let mut ttl = Duration::from_secs(self.grants.ttl_seconds);
        for profile in named {
            if let Some(credentials) = self.profiles.get(profile) {
                profiles.insert(profile.to_owned(), self.derive(credentials, date.clone()));
                continue;
            }
            let Some(sts) = self.sts.get(profile) else {
                continue;
            };
            match self.session(sts, &identity, now).await {
                Ok(session) => {
                    // The grant must not outlive the session it carries a key of.
                    let left = sts
                        .usable_until(&session)
                        .duration_since(now)
                        .unwrap_or_default();
                    ttl = ttl.min(left);
                    profiles.insert(
                        profile.to_owned(),
                        self.derive(&session.credentials, date.clone()),
                    );
                }
                Err(why) => {
                    unavailable.insert(profile.to_owned(), why);
                }
            }
        }
        GrantResponse::Granted(Grant {
            identity_source: identity.source.as_str().to_owned(),
            identity: identity.name,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            rules,
            profiles,
            unavailable,
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

    /// The key of `credentials` for `date`.
    fn derive(&self, credentials: &Credentials, date: String) -> ProfileKey {
        ProfileKey::derive(
            credentials,
            &self.signing.region,
            &self.signing.service,
            date,
        )
    }

    /// The key of `profile` for `identity` without waiting: its own credentials, or a cached
    /// STS session; when STS must be asked first, `needed` says so.
    fn cached_key(
        &self,
        profile: &str,
        identity: &Identity,
        date: String,
        now: SystemTime,
        needed: &mut Option<String>,
    ) -> Result<ProfileKey, Unavailable> {
        if let Some(credentials) = self.profiles.get(profile) {
            return Ok(self.derive(credentials, date));
        }
        let sts = self.sts.get(profile).ok_or(Unavailable::NotLoaded)?;
        let policy = self.session_policy(sts, identity);
        match self.sessions.cached(sts, &identity.name, policy, now) {
            Some(Ok(session)) => Ok(self.derive(&session.credentials, date)),
            Some(Err(why)) => Err(Unavailable::NoCredentials(why)),
            None => {
                *needed = Some(profile.to_owned());
                Err(Unavailable::NotLoaded)
            }
        }
    }

    /// The session of `sts` for `identity`, asked for if need be.
    async fn session(
        &self,
        sts: &StsProfile,
        identity: &Identity,
        now: SystemTime,
    ) -> Result<Session, String> {
        let policy = self.session_policy(sts, identity);
        self.sessions.get(sts, &identity.name, policy, now).await
    }

    /// The session policy of `identity` under `sts`, when the profile asks for one: from the
    /// identity's rules that name the profile.
    fn session_policy(&self, sts: &StsProfile, identity: &Identity) -> Option<String> {
        if !sts.spec.session_policy {
            return None;
        }
        let rules: Vec<Permission> = self
            .policy
            .permissions_for(identity)
            .into_iter()
            .filter(|p| p.profile == sts.name)
            .collect();
        let key = (sts.name.clone(), identity.name.clone());
        let mut cache = self
            .session_policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((made_of, policy)) = cache.get(&key) {
            if *made_of == rules {
                return Some(policy.clone());
            }
        }
        let policy = session_policy::for_rules(&rules);
        cache.insert(key, (rules, policy.clone()));
        Some(policy)
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn amz_date(time: SystemTime) -> AmzDate {
    AmzDate::from_unix_seconds(unix_seconds(time))
}
