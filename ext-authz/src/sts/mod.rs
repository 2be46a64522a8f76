//! Temporary credentials per caller identity from the store's STS (`profiles.<name>.sts`).
//!
//! One session per profile × identity, asked for once however many requests wait for it
//! (single flight), renewed in the background once less than a third of its lifetime remains,
//! and used until shortly before it expires. While STS is down or refuses, callers keep the
//! session they have; once it is gone they get `503` naming the profile and STS's error, and
//! readiness says `degraded`. A new session is asked for when what it would be asked with
//! changes (the profile's spec, its base key, the caller's session policy).
//!
//! Nothing secret leaves this module but through [`s3mesh_sigv4::Credentials`], whose `Debug`
//! redacts: logs name the profile, identity, session name, access key id and expiry only.

pub mod call;
pub mod session_name;
pub mod session_policy;
mod spec;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use s3mesh_sigv4::Credentials;

use crate::telemetry::StsMetrics;
use call::{Ask, Client, Proof, Session, StsError};
pub use spec::StsSpec;

/// After a failed call, callers without a session get the same error for this long before
/// STS is asked again: a down STS is not hammered once per request.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// Slots unused for this long whose session has expired are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A profile whose credentials come from STS, ready to ask.
#[derive(Debug, Clone)]
pub struct StsProfile {
    /// The profile's name, for errors and logs.
    pub name: String,
    /// Its `sts:` section.
    pub spec: StsSpec,
    /// The credentials `AssumeRole` is signed with (none with a web identity).
    pub base: Option<Credentials>,
    /// Region the calls are signed for.
    pub region: String,
}

impl StsProfile {
    /// Until when a session from this profile is used: its expiry, less a margin for clocks
    /// and requests in flight (a tenth of the lifetime, at most 30 s).
    pub fn usable_until(&self, session: &Session) -> SystemTime {
        let margin = Duration::from_secs((self.spec.duration_seconds / 10).min(30));
        session
            .expires_at
            .checked_sub(margin)
            .unwrap_or(session.expires_at)
    }

    /// Whether a session still usable at `now` should be renewed: less than a third of its
    /// lifetime remains.
    fn due_for_renewal(&self, session: &Session, now: SystemTime) -> bool {
        let third = Duration::from_secs(self.spec.duration_seconds / 3);
        session
            .expires_at
            .duration_since(now)
            .map_or(true, |left| left < third)
    }

    /// What a session is asked with, as a number: a change asks for a new session.
    fn fingerprint(&self, policy: Option<&str>) -> u64 {
        let mut h = DefaultHasher::new();
        self.spec.hash(&mut h);
        self.region.hash(&mut h);
        self.base.as_ref().map(|b| &b.access_key_id).hash(&mut h);
        policy.hash(&mut h);
        h.finish()
    }

    /// How the next call proves it may assume the role: the base credentials, or the web
    /// identity token as the file holds it now (a rotated token is used from the next call on).
    fn proof(&self) -> Result<Proof, StsError> {
        Ok(match (&self.spec.web_identity_token_file, &self.base) {
            (Some(path), _) => {
                // A projected token is a small file on a tmpfs: read in place.
                let token = std::fs::read_to_string(path).map_err(|e| StsError::Token {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Proof::WebIdentity(token.trim().to_owned())
            }
            (None, Some(base)) => Proof::Base(base.clone()),
            (None, None) => {
                return Err(StsError::Token {
                    path: "-".to_owned(),
                    reason: "the profile has neither base credentials nor a token file".to_owned(),
                })
            }
        })
    }

    /// Asks STS for `identity`'s session, counting the call.
    async fn ask(
        &self,
        client: &Client,
        metrics: &StsMetrics,
        identity: &str,
        policy: Option<&str>,
    ) -> Result<Session, StsError> {
        let result = self.call(client, identity, policy).await;
        metrics.record(
            &self.name,
            result.as_ref().map_or_else(StsError::kind, |_| "ok"),
        );
        result
    }

    async fn call(
        &self,
        client: &Client,
        identity: &str,
        policy: Option<&str>,
    ) -> Result<Session, StsError> {
        let proof = self.proof()?;
        let session_name = session_name::for_identity(identity);
        let ask = Ask {
            endpoint: &self.spec.endpoint,
            region: &self.region,
            role_arn: &self.spec.role_arn,
            session_name: &session_name,
            duration_seconds: self.spec.duration_seconds,
            policy,
            proof: &proof,
        };
        let session = client.send(&ask, SystemTime::now()).await?;
        let expires_in = session
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tracing::info!(
            profile = %self.name,
            identity,
            session_name,
            access_key_id = %session.credentials.access_key_id,
            expires_in_s = expires_in.as_secs(),
            "STS session"
        );
        Ok(session)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    profile: String,
    identity: String,
    fingerprint: u64,
}

#[derive(Debug, Default)]
struct State {
    session: Option<Session>,
    /// The last call's error, while no later call succeeded.
    failure: Option<(String, Instant)>,
    renewing: bool,
    used: Option<Instant>,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<State>,
    /// Held while a call is made: one call per slot at a time.
    asking: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a call's result.
    fn settle(&self, result: &Result<Session, StsError>) {
        let mut state = self.state();
        match result {
            Ok(session) => {
                state.session = Some(session.clone());
                state.failure = None;
            }
            Err(error) => state.failure = Some((error.to_string(), Instant::now())),
        }
    }
}

/// The sessions of every STS profile, shared by every version of the checker (a reload keeps
/// them) and by readiness.
#[derive(Debug, Clone)]
pub struct Sessions(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    client: Result<Client, String>,
    metrics: StsMetrics,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    swept: Mutex<Instant>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    /// No sessions yet.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            client: Client::new()
                .map_err(|e| format!("cannot load the system's root certificates: {e}")),
            metrics: StsMetrics::new(),
            slots: Mutex::new(HashMap::new()),
            swept: Mutex::new(Instant::now()),
        }))
    }

    /// The session of `identity` under `profile` with session policy `policy`: the cached one
    /// while usable at `now`, else one asked for now. The error says why there is none, naming
    /// STS's answer.
    pub async fn get(
        &self,
        profile: &StsProfile,
        identity: &str,
        policy: Option<String>,
        now: SystemTime,
    ) -> Result<Session, String> {
        let client = self.0.client.as_ref().map_err(Clone::clone)?;
        let slot = self.slot(profile, identity, policy.as_deref());
        if let Some(answer) = self.answer(&slot, profile, identity, &policy, now) {
            return answer;
        }
        let _asking = slot.asking.lock().await;
        // Whoever held the lock may have settled it meanwhile.
        if let Some(answer) = self.answer(&slot, profile, identity, &policy, SystemTime::now()) {
            return answer;
        }
        let result = profile
            .ask(client, &self.0.metrics, identity, policy.as_deref())
            .await;
        slot.settle(&result);
        result.map_err(|error| {
            tracing::warn!(profile = %profile.name, identity, %error, "no STS session");
            error.to_string()
        })
    }

    /// [`Self::get`] without waiting: the cached session (its renewal started when due), or a
    /// failure too recent to ask again; `None` when STS must be asked.
    pub fn cached(
        &self,
        profile: &StsProfile,
        identity: &str,
        policy: Option<String>,
        now: SystemTime,
    ) -> Option<Result<Session, String>> {
        let slot = self.slot(profile, identity, policy.as_deref());
        self.answer(&slot, profile, identity, &policy, now)
    }

    /// What the slot answers without a call: a usable session (starting its renewal when
    /// due), or a failure too recent to ask again; `None`: ask.
    fn answer(
        &self,
        slot: &Arc<Slot>,
        profile: &StsProfile,
        identity: &str,
        policy: &Option<String>,
        now: SystemTime,
    ) -> Option<Result<Session, String>> {
        let mut state = slot.state();
        state.used = Some(Instant::now());
        if let Some(session) = state
            .session
            .clone()
            .filter(|s| now < profile.usable_until(s))
        {
            let failed_lately = state
                .failure
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() < RETRY_AFTER_FAILURE);
            if profile.due_for_renewal(&session, now) && !state.renewing && !failed_lately {
                state.renewing = true;
                self.renew(
                    Arc::clone(slot),
                    profile.clone(),
                    identity.to_owned(),
                    policy.clone(),
                );
            }
            return Some(Ok(session));
        }
        match &state.failure {
            Some((error, at)) if at.elapsed() < RETRY_AFTER_FAILURE => Some(Err(error.clone())),
            _ => None,
        }
    }

    /// Renews the slot's session in the background; the current one serves meanwhile, and
    /// still serves (until it expires) if the renewal fails.
    fn renew(
        &self,
        slot: Arc<Slot>,
        profile: StsProfile,
        identity: String,
        policy: Option<String>,
    ) {
        let Ok(client) = self.0.client.clone() else {
            return;
        };
        let metrics = self.0.metrics.clone();
        tokio::spawn(async move {
            let result = {
                let _asking = slot.asking.lock().await;
                profile
                    .ask(&client, &metrics, &identity, policy.as_deref())
                    .await
            };
            if let Err(error) = &result {
                tracing::warn!(profile = %profile.name, identity, %error, "STS session not renewed; the current one serves until it expires");
            }
            slot.settle(&result);
            slot.state().renewing = false;
        });
    }

    fn slot(&self, profile: &StsProfile, identity: &str, policy: Option<&str>) -> Arc<Slot> {
        let key = Key {
            profile: profile.name.clone(),
            identity: identity.to_owned(),
            fingerprint: profile.fingerprint(policy),
        };
        let mut slots = self.0.slots.lock().unwrap_or_else(PoisonError::into_inner);
        self.sweep(&mut slots);
        Arc::clone(slots.entry(key).or_default())
    }

    /// Forgets, at most once a minute, slots long unused whose session is over.
    fn sweep(&self, slots: &mut HashMap<Key, Arc<Slot>>) {
        let mut swept = self.0.swept.lock().unwrap_or_else(PoisonError::into_inner);
        if swept.elapsed() < Duration::from_secs(60) {
            return;
        }
        *swept = Instant::now();
        let now = SystemTime::now();
        slots.retain(|_, slot| {
            let state = slot.state();
            let recent = state.used.is_some_and(|u| u.elapsed() < FORGET_AFTER);
            let live = state.session.as_ref().is_some_and(|s| now < s.expires_at);
            recent || live
        });
    }

    /// Each profile × identity whose last call failed, with STS's error: for readiness.
    pub fn failures(&self) -> Vec<String> {
        let slots = self.0.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<String> = slots
            .iter()
            .filter_map(|(key, slot)| {
                let state = slot.state();
                let (error, _) = state.failure.as_ref()?;
                let serving = state
                    .session
                    .as_ref()
                    .is_some_and(|s| SystemTime::now() < s.expires_at);
                Some(format!(
                    "STS profile {:?} for {:?}: {error}{}",
                    key.profile,
                    key.identity,
                    if serving {
                        " (the current session serves until it expires)"
                    } else {
                        ""
                    }
                ))
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(token_file: Option<std::path::PathBuf>) -> StsProfile {
        StsProfile {
            name: "p".into(),
            spec: StsSpec {
                endpoint: "https://sts.example.com".into(),
                role_arn: "arn:aws:iam::1:role/r".into(),
                web_identity_token_file: token_file,
                duration_seconds: 900,
                session_policy: false,
                region: None,
            },
            base: None,
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn a_rotated_token_file_is_used_from_the_next_call_on() {
        let dir = std::env::temp_dir().join(format!("s3mesh-sts-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        let profile = profile(Some(file.clone()));
        let token = |p: &StsProfile| match p.proof() {
            Ok(Proof::WebIdentity(t)) => Ok(t),
            Ok(Proof::Base(_)) => Err("base".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        std::fs::write(&file, "first-token\n").unwrap();
        assert_eq!(token(&profile), Ok("first-token".to_owned()));
        std::fs::write(&file, "rotated-token").unwrap();
        assert_eq!(token(&profile), Ok("rotated-token".to_owned()));
        std::fs::remove_file(&file).unwrap();
        let gone = token(&profile).unwrap_err();
        assert!(
            gone.starts_with("cannot read the web identity token file"),
            "{gone}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn renewal_is_due_once_a_third_of_the_lifetime_remains_and_use_ends_before_expiry() {
        let profile = profile(None);
        let now = SystemTime::now();
        let session = |left: u64| Session {
            credentials: Credentials {
                access_key_id: "ASIA".into(),
                secret_access_key: "s".into(),
                session_token: Some("t".into()),
            },
            expires_at: now + Duration::from_secs(left),
        };
        assert!(!profile.due_for_renewal(&session(301), now));
        assert!(profile.due_for_renewal(&session(299), now));
        let s = session(900);
        assert_eq!(
            profile.usable_until(&s),
            s.expires_at - Duration::from_secs(30)
        );
    }
}
