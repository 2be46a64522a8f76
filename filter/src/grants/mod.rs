//! Grant mode (role `post` with `grants` configured): the filter decides and signs in process
//! with grants from ext-authz ([`s3mesh_access::grant`]) instead of Envoy's ext_authz filter
//! asking ext-authz on every request.
//!
//! A grant is kept per caller (mTLS principal and source address, as Envoy saw the
//! connection: never a header) until it expires. Each worker keeps the grants it has used
//! decoded in a [`GrantCache`]; Envoy's shared data holds them for every worker
//! ([`encode_record`]), so one worker's fetch serves all. A grant whose keys are for another day
//! than today counts as expired.
//!
//! A caller in use never waits for a grant after its first: once a request finds its grant in
//! the last fifth of its lifetime, the caller is queued ([`GrantCache::want_refresh`]) and the
//! worker's root context fetches a new one in the background ([`GrantCache::take_wanted`]), so
//! requests keep being signed while it comes. The grant in hand is never used past its expiry:
//! the revocation bound stays the grant lifetime.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use s3mesh_access::grant::{CompiledGrant, Grant, GrantRequest, GrantResponse};
use s3mesh_s3_request::S3Error;

/// Prefix of the shared-data keys of grants (versioned with the wire format).
pub const SHARED_KEY_PREFIX: &str = "s3mesh.grant.v1/";

/// Past this many entries, a worker drops its expired grants before adding one.
const PRUNE_ABOVE: usize = 1024;

/// The caller as Envoy saw the connection: whom a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The peer's mTLS principal, if it presented a certificate.
    pub principal: Option<String>,
    /// The downstream peer's address.
    pub source: Option<IpAddr>,
}

impl Caller {
    /// The caller from Envoy's `source.address` (`ip:port`, IPv6 as `[ip]:port`) and principal.
    pub fn new(principal: Option<String>, source_address: Option<&str>) -> Self {
        let source = source_address.and_then(|a| {
            a.parse::<std::net::SocketAddr>()
                .map(|s| s.ip())
                .or_else(|_| a.parse::<IpAddr>())
                .ok()
        });
        Self { principal, source }
    }

    /// The shared-data key of this caller's grant.
    pub fn shared_key(&self) -> String {
        let source = self.source.map(|s| s.to_string()).unwrap_or_default();
        let principal = self.principal.as_deref().unwrap_or_default();
        format!("{SHARED_KEY_PREFIX}{source}|{principal}")
    }

    /// The body of the grant request for `date` (`YYYYMMDD`).
    pub fn grant_request(&self, date: String) -> Vec<u8> {
        let request = GrantRequest {
            principal: self.principal.clone(),
            source: self.source,
            date,
        };
        serde_json::to_vec(&request).unwrap_or_default()
    }
}

/// A grant in use, with when to fetch its successor and when it stops being usable (host
/// clock, milliseconds since the epoch).
#[derive(Debug, Clone)]
pub struct Held {
    /// The compiled grant.
    pub grant: Arc<CompiledGrant>,
    /// From then on, a request that uses the grant asks for its successor.
    pub refresh_ms: u64,
    /// Expiry.
    pub expires_ms: u64,
}

impl Held {
    /// A grant received at `now_ms` that lives `ttl_ms`.
    pub fn new(grant: CompiledGrant, now_ms: u64, ttl_ms: u64) -> Self {
        Self {
            grant: Arc::new(grant),
            refresh_ms: now_ms.saturating_add(ttl_ms - ttl_ms / 5),
            expires_ms: now_ms.saturating_add(ttl_ms),
        }
    }

    fn usable(&self, now_ms: u64, date: &str) -> bool {
        now_ms < self.expires_ms && self.grant.signs_for(date)
    }
}

/// A usable grant, and whether its successor should be fetched.
#[derive(Debug, Clone)]
pub struct Found {
    /// The grant.
    pub grant: Arc<CompiledGrant>,
    /// It is in the last fifth of its lifetime.
    pub refresh: bool,
}

/// Decoded grants (one worker's in the wasm shell, the process's in the native one), and the
/// callers whose grants are being renewed.
#[derive(Debug, Default)]
pub struct GrantCache {
    entries: HashMap<Caller, Held>,
    /// Callers to renew at the root context's next tick.
    wanted: Vec<Caller>,
    /// Callers whose renewal is under way.
    renewing: HashSet<Caller>,
}

impl GrantCache {
    /// The caller's grant, if still usable at `now_ms` on `date`.
    pub fn get(&self, caller: &Caller, now_ms: u64, date: &str) -> Option<Found> {
        self.entries
            .get(caller)
            .filter(|h| h.usable(now_ms, date))
            .map(|h| Found {
                grant: Arc::clone(&h.grant),
                refresh: now_ms >= h.refresh_ms,
            })
    }

    /// Queues `caller`'s grant for renewal, unless it is queued or under way; `true` when it
    /// was not.
    pub fn want_refresh(&mut self, caller: &Caller) -> bool {
        let new = !self.renewing.contains(caller) && !self.wanted.contains(caller);
        if new {
            self.wanted.push(caller.clone());
        }
        new
    }

    /// The callers to renew now; they count as under way until [`GrantCache::renewed`].
    pub fn take_wanted(&mut self) -> Vec<Caller> {
        let wanted = std::mem::take(&mut self.wanted);
        self.renewing.extend(wanted.iter().cloned());
        wanted
    }

    /// The renewal of `caller` is over (with a grant or not).
    pub fn renewed(&mut self, caller: &Caller) {
        self.renewing.remove(caller);
    }

    /// Drops `caller`'s grant (ext-authz refused it on renewal: the next request asks and gets
    /// the refusal).
    pub fn forget(&mut self, caller: &Caller) {
        self.entries.remove(caller);
    }

    /// Keeps `held` for `caller`, first dropping expired grants when there are many.
    pub fn insert(&mut self, caller: Caller, held: Held, now_ms: u64) {
        if self.entries.len() >= PRUNE_ABOVE {
            self.entries.retain(|_, h| now_ms < h.expires_ms);
        }
        self.entries.insert(caller, held);
    }

    /// How many grants the worker holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the worker holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A grant as kept in Envoy's shared data: when to renew it and its expiry (8 bytes each,
/// little-endian milliseconds) followed by the grant's JSON exactly as ext-authz sent it.
pub fn encode_record(held: &Held, grant_json: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16 + grant_json.len());
    bytes.extend_from_slice(&held.refresh_ms.to_le_bytes());
    bytes.extend_from_slice(&held.expires_ms.to_le_bytes());
    bytes.extend_from_slice(grant_json);
    bytes
}

/// The grant in a shared-data record, if it is well-formed and still usable at `now_ms` on
/// `date`.
pub fn decode_record(bytes: &[u8], now_ms: u64, date: &str) -> Option<Held> {
    let (refresh, rest) = bytes.split_first_chunk::<8>()?;
    let (expiry, json) = rest.split_first_chunk::<8>()?;
    let grant = serde_json::from_slice::<Grant>(json).ok()?.compile().ok()?;
    let held = Held {
        grant: Arc::new(grant),
        refresh_ms: u64::from_le_bytes(*refresh),
        expires_ms: u64::from_le_bytes(*expiry),
    };
    held.usable(now_ms, date).then_some(held)
}

/// What came back from ext-authz.
#[derive(Debug)]
pub enum Answer {
    /// A usable grant, and the JSON to share with the other workers.
    Granted {
        /// The grant, valid until `expires_ms`.
        held: Held,
        /// The grant's JSON, for [`encode_record`].
        json: Vec<u8>,
    },
    /// ext-authz refused the caller: the client's error.
    Refused(S3Error),
}

/// Reads ext-authz's answer (HTTP `status`, `body`) received at `now_ms`. Anything but a
/// well-formed answer is s3mesh's own failure, and the request fails closed with `503`.
pub fn read_answer(status: Option<&str>, body: &[u8], now_ms: u64) -> Result<Answer, S3Error> {
    let unavailable = |why: String| {
        S3Error::service_unavailable(format!(
            "s3mesh could not get a grant from ext-authz ({why}); retry, and if it persists check that ext-authz is running and reachable from Envoy"
        ))
    };
    if status != Some("200") {
        let detail = String::from_utf8_lossy(body);
        let detail: String = detail.chars().take(200).collect();
        return Err(unavailable(format!(
            "HTTP status {}: {detail}",
            status.unwrap_or("none")
        )));
    }
    let response: GrantResponse =
        serde_json::from_slice(body).map_err(|e| unavailable(format!("unreadable answer: {e}")))?;
    match response {
        GrantResponse::Refused(refusal) => Ok(Answer::Refused(refusal.to_error())),
        GrantResponse::Granted(grant) => {
            let compiled = grant
                .compile()
                .map_err(|e| unavailable(format!("unusable grant: {e}")))?;
            let json = serde_json::to_vec(&grant)
                .map_err(|e| unavailable(format!("cannot keep the grant: {e}")))?;
            Ok(Answer::Granted {
                held: Held::new(compiled, now_ms, grant.ttl_ms),
                json,
            })
        }
    }
}

#[cfg(test)]
mod tests;
