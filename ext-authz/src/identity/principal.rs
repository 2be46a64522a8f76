//! Identity from the mTLS peer certificate: Istio's SPIFFE ID
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, which Envoy passes to ext_authz
//! as `attributes.source.principal`. The strongest source: the mesh's CA vouches for it.

use super::{Identity, Source};

/// Parses a principal into an identity, if it is a SPIFFE ID of `trust_domain`.
pub fn resolve(principal: &str, trust_domain: &str) -> Option<Identity> {
    let rest = principal.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    if domain != trust_domain {
        return None;
    }
    let mut parts = path.split('/');
    let (Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if ns.is_empty() || sa.is_empty() {
        return None;
    }
    Some(Identity {
        name: format!("{ns}/{sa}"),
        source: Source::Principal,
        namespace: Some(ns.to_owned()),
        service_account: Some(sa.to_owned()),
        principal: Some(principal.to_owned()),
        ..Identity::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_spiffe_ids_of_the_trust_domain_only() {
        let id = resolve(
            "spiffe://cluster.local/ns/team-a/sa/uploader",
            "cluster.local",
        )
        .unwrap();
        assert_eq!(id.name, "team-a/uploader");
        assert_eq!(id.namespace.as_deref(), Some("team-a"));
        assert_eq!(id.service_account.as_deref(), Some("uploader"));
        for bad in [
            "spiffe://other.domain/ns/team-a/sa/uploader",
            "spiffe://cluster.local/ns/team-a",
            "spiffe://cluster.local/ns//sa/x",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "https://cluster.local/ns/a/sa/b",
            "",
        ] {
            assert_eq!(resolve(bad, "cluster.local"), None, "{bad}");
        }
    }
}
