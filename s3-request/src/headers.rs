//! Which request headers s3mesh owns, so that no client can supply them.

/// The endpoint hint read by Envoy's `override_host` load balancer: trusted input to routing.
pub const ENDPOINT_HINT: &str = "x-gateway-destination-endpoint";

/// Prefix of every header s3mesh itself adds between its filters.
pub const INTERNAL_PREFIX: &str = "x-s3mesh-";

/// The operation the `pre` filter classified, handed to the `post` filter by the wasm shell (and
/// visible to ext_authz); removed before the request goes upstream. The native shell hands it
/// on in Envoy filter state instead, which costs Envoy less than a header edit.
pub const OPERATION: &str = "x-s3mesh-operation";

/// Response headers Envoy adds that are for s3mesh, not for clients.
pub const INTERNAL_RESPONSE: [&str; 2] = ["x-envoy-attempt-count", "x-envoy-upstream-service-time"];

/// Client credentials that s3mesh replaces with its own signature. A client that signed with
/// keys of its own is treated like an unsigned one.
pub const CLIENT_CREDENTIALS: [&str; 3] = ["authorization", "x-amz-security-token", "x-amz-date"];

/// Hop-by-hop headers (RFC 9110 §7.6.1) that must not travel past this proxy.
pub const HOP_BY_HOP: [&str; 6] = [
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
];

/// Whether a client-sent header must be removed before anything else sees the request.
///
/// `connection`, `upgrade` and `transfer-encoding` are handled by Envoy's codec itself and are
/// not visible to filters.
pub fn is_stripped_from_client(name: &str) -> bool {
    let is = |owned: &str| name.eq_ignore_ascii_case(owned);
    let prefix = INTERNAL_PREFIX.as_bytes();
    is(ENDPOINT_HINT)
        || name
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        || CLIENT_CREDENTIALS.into_iter().any(is)
        || HOP_BY_HOP.into_iter().any(is)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_internal_credential_and_hop_by_hop_headers() {
        for h in [
            "X-Gateway-Destination-Endpoint",
            "x-s3mesh-identity",
            "X-S3Mesh-Operation",
            "Authorization",
            "x-amz-security-token",
            "X-Amz-Date",
            "proxy-authorization",
            "TE",
        ] {
            assert!(is_stripped_from_client(h), "{h}");
        }
        for h in [
            "host",
            "x-s3mesh",
            "x-amz-content-sha256",
            "content-type",
            "x-amz-meta-a",
            "range",
        ] {
            assert!(!is_stripped_from_client(h), "{h}");
        }
    }
}
