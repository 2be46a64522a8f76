//! Which proxy is asking, and for whom it may ask.
//!
//! ext-authz answers a check with signatures and a grant with day keys, for the caller the
//! asking proxy names (its peer principal or source address). Whoever reaches ext-authz's port
//! could name somebody else, so the asking proxy is checked too, never from what it sends:
//! - `verify: mesh_identity` (Istio): each workload's own sidecar asks over mesh mTLS, and
//!   ext-authz's own sidecar appends that client's SPIFFE ID to `x-forwarded-client-cert`
//!   (Istio's default for sidecar inbound, `APPEND_FORWARD`; a sidecar's outbound side strips
//!   whatever the application set). The last element of the header is therefore the asking
//!   proxy. A sidecar may ask only for its own workload (same namespace and service account);
//!   the proxies listed in `gateways` ask for anybody. Sound only with STRICT mTLS on
//!   ext-authz, so that no plaintext request brings its own header.
//! - `verify: any`: not checked; for ext-authz reachable only by trusted proxies (the local
//!   stack on loopback, a plain Envoy behind a NetworkPolicy).

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use serde::Deserialize;
use thiserror::Error;

use crate::identity::{principal, Identity};

/// The header ext-authz's sidecar sets on each call it passes on.
pub const XFCC: &str = "x-forwarded-client-cert";

/// How the asking proxy is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Any caller of the port may ask for anybody.
    Any,
    /// The last `x-forwarded-client-cert` element names the proxy (Istio sidecar on ext-authz).
    MeshIdentity,
}

/// Why a proxy may not ask for a caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refused {
    /// No usable `x-forwarded-client-cert`: ext-authz is not behind its sidecar, or the call
    /// did not come over mesh mTLS. s3mesh's deployment is at fault: answered `503`.
    #[error("ext-authz cannot tell which proxy asked: the call carries no x-forwarded-client-cert with one URI from ext-authz's own sidecar (ext-authz must run with an Istio sidecar and STRICT mTLS when callers.verify is mesh_identity)")]
    Unverified,
    /// The proxy is not a workload of the trust domain.
    #[error("the asking proxy {0:?} is not a workload identity of this trust domain")]
    ForeignProxy(String),
    /// A sidecar asked for a workload other than its own.
    #[error("the proxy of {proxy} may ask only for its own workload, not for {caller}")]
    NotItsOwn {
        /// `namespace/service-account` of the asking proxy.
        proxy: String,
        /// The identity it asked for.
        caller: String,
    },
}

/// The configured rule for asking proxies.
#[derive(Debug, Clone)]
pub struct Callers {
    verify: Verify,
    gateways: BTreeSet<String>,
    trust_domain: String,
}

impl Callers {
    /// `gateways` are SPIFFE IDs of proxies that ask for anybody.
    pub fn new(verify: Verify, gateways: &[String], trust_domain: &str) -> Self {
        Self {
            verify,
            gateways: gateways.iter().cloned().collect(),
            trust_domain: trust_domain.to_owned(),
        }
    }

    /// Whether the proxy that sent `xfcc` (the call's `x-forwarded-client-cert`, if any) may
    /// ask for `caller`.
    pub fn admit(&self, xfcc: Option<&str>, caller: &Identity) -> Result<(), Refused> {
        if self.verify == Verify::Any {
            return Ok(());
        }
        let uri = xfcc.and_then(last_element_uri).ok_or(Refused::Unverified)?;
        if self.gateways.contains(uri) {
            return Ok(());
        }
        let proxy = principal::resolve(uri, &self.trust_domain)
            .ok_or_else(|| Refused::ForeignProxy(uri.to_owned()))?;
        let same = proxy.namespace.is_some()
            && proxy.namespace == caller.namespace
            && proxy.service_account == caller.service_account;
        match same {
            true => Ok(()),
            false => Err(Refused::NotItsOwn {
                proxy: proxy.name,
                caller: caller.name.clone(),
            }),
        }
    }
}

/// The one `x-forwarded-client-cert` value among a call's headers (gRPC metadata or the grant
/// route's): `None` when absent, repeated or not text. A sidecar that sets it leaves exactly one.
pub fn asking_proxy(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(XFCC).iter();
    let first = values.next()?.to_str().ok()?;
    values.next().is_none().then_some(first)
}

/// The one `URI=` of the last element of an `x-forwarded-client-cert` value: elements are
/// separated by `,`, their `key=value` pairs by `;`, and quoted values may hold either (with
/// `\"` for a quote). `None` when the element has no URI or more than one.
pub fn last_element_uri(xfcc: &str) -> Option<&str> {
    let element = split_unquoted(xfcc, ',').last()?;
    let mut uris = split_unquoted(element, ';').filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("uri")
            .then(|| unquote(value.trim()))
    });
    let uri = uris.next()?;
    (uris.next().is_none() && !uri.is_empty()).then_some(uri)
}

/// `text` split at each `separator` outside double quotes.
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TEAM_A: &str = "spiffe://cluster.local/ns/team-a/sa/uploader";
    const GATEWAY: &str = "spiffe://cluster.local/ns/s3mesh-system/sa/s3mesh-gateway";

    fn caller(principal_uri: &str) -> Identity {
        principal::resolve(principal_uri, "cluster.local").unwrap()
    }

    fn xfcc(uri: &str) -> String {
        format!(
            "By=spiffe://cluster.local/ns/s3mesh-system/sa/s3mesh-ext-authz;Hash={};Subject=\"\";URI={uri}",
            "ab".repeat(32)
        )
    }

    fn mesh() -> Callers {
        Callers::new(Verify::MeshIdentity, &[GATEWAY.to_owned()], "cluster.local")
    }

    #[test]
    fn the_last_element_names_the_proxy_whatever_quoted_values_hold() {
        assert_eq!(last_element_uri(&xfcc(TEAM_A)), Some(TEAM_A));
        let forged = format!("URI=spiffe://cluster.local/ns/team-b/sa/x,{}", xfcc(TEAM_A));
        assert_eq!(last_element_uri(&forged), Some(TEAM_A));
        let tricky =
            format!("Subject=\"CN=a,O=b;URI=spiffe://evil\\\",x\";URI={TEAM_A};DNS=a.example");
        assert_eq!(last_element_uri(&tricky), Some(TEAM_A));
        assert_eq!(last_element_uri(&format!("uri=\"{TEAM_A}\"")), Some(TEAM_A));
    }

    #[test]
    fn an_element_without_exactly_one_uri_names_nobody() {
        assert_eq!(last_element_uri("By=x;Hash=00;Subject=\"\""), None);
        assert_eq!(
            last_element_uri(&format!("URI={TEAM_A};URI={GATEWAY}")),
            None
        );
        assert_eq!(last_element_uri(&format!("URI={TEAM_A},Hash=00")), None);
        assert_eq!(last_element_uri("URI="), None);
        assert_eq!(last_element_uri(""), None);
    }

    #[test]
    fn a_repeated_or_unreadable_header_names_nobody() {
        let headers = |values: &[HeaderValue]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(XFCC, value.clone());
            }
            map
        };
        let (a, b) = (
            HeaderValue::from_static("URI=a"),
            HeaderValue::from_static("URI=b"),
        );
        assert_eq!(
            asking_proxy(&headers(std::slice::from_ref(&a))),
            Some("URI=a")
        );
        assert_eq!(asking_proxy(&headers(&[a, b])), None);
        let unreadable = HeaderValue::from_bytes(b"URI=\xff").unwrap();
        assert_eq!(asking_proxy(&headers(&[unreadable])), None);
        assert_eq!(asking_proxy(&headers(&[])), None);
    }

    #[test]
    fn a_sidecar_asks_only_for_its_own_workload() {
        let callers = mesh();
        assert_eq!(callers.admit(Some(&xfcc(TEAM_A)), &caller(TEAM_A)), Ok(()));
        let other = caller("spiffe://cluster.local/ns/team-b/sa/uploader");
        assert_eq!(
            callers.admit(Some(&xfcc(TEAM_A)), &other),
            Err(Refused::NotItsOwn {
                proxy: "team-a/uploader".into(),
                caller: "team-b/uploader".into()
            })
        );
        let same_namespace = caller("spiffe://cluster.local/ns/team-a/sa/reader");
        assert!(callers.admit(Some(&xfcc(TEAM_A)), &same_namespace).is_err());
        let by_address = Identity {
            name: "team-a".into(),
            ..Identity::default()
        };
        assert!(callers.admit(Some(&xfcc(TEAM_A)), &by_address).is_err());
    }

    #[test]
    fn a_listed_gateway_asks_for_anybody() {
        let anybody = caller("spiffe://cluster.local/ns/team-b/sa/uploader");
        assert_eq!(mesh().admit(Some(&xfcc(GATEWAY)), &anybody), Ok(()));
    }

    #[test]
    fn without_a_verifiable_proxy_nobody_is_admitted() {
        let callers = mesh();
        let a = caller(TEAM_A);
        assert_eq!(callers.admit(None, &a), Err(Refused::Unverified));
        assert_eq!(callers.admit(Some("Hash=00"), &a), Err(Refused::Unverified));
        let foreign = "spiffe://other.domain/ns/team-a/sa/uploader";
        assert_eq!(
            callers.admit(Some(&xfcc(foreign)), &a),
            Err(Refused::ForeignProxy(foreign.into()))
        );
    }

    #[test]
    fn verify_any_admits_every_proxy() {
        let callers = Callers::new(Verify::Any, &[], "cluster.local");
        assert_eq!(callers.admit(None, &caller(TEAM_A)), Ok(()));
    }
}
