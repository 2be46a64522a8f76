//! Role `pre`: what happens to a request before ext_authz sees it.
//!
//! Everything that changes what gets signed (the request target) happens here and nowhere
//! later; headers that only s3mesh may set are removed so that no client can steer routing or
//! smuggle credentials.

use s3mesh_s3_request::headers::is_stripped_from_client;
use s3mesh_s3_request::{Operation, RequestTarget, S3Error, S3Request};

/// What to do to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreChanges {
    /// Client headers to remove (names as sent).
    pub remove_headers: Vec<String>,
    /// The canonical `:path`, when it differs from what the client sent.
    pub new_path: Option<String>,
    /// The S3 operation, for metrics.
    pub operation: Operation,
}

/// Inspects a request's method, `:path` and header names (and `x-amz-copy-source`, which
/// names a second bucket).
pub fn inspect<'a>(
    method: &str,
    path: &str,
    header_names: impl IntoIterator<Item = &'a str>,
    copy_source: Option<&str>,
) -> Result<PreChanges, S3Error> {
    let target = RequestTarget::canonicalize(path)?;
    let canonical = target.to_string();
    let remove_headers = header_names
        .into_iter()
        .filter(|n| is_stripped_from_client(n))
        .map(str::to_owned)
        .collect();
    Ok(PreChanges {
        remove_headers,
        new_path: (canonical != path).then_some(canonical),
        operation: S3Request::classify(method, &target, copy_source).operation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_client_credentials_and_routing_headers() {
        let names = [
            "host",
            "authorization",
            "x-gateway-destination-endpoint",
            "x-amz-date",
            "x-amz-meta-k",
        ];
        let c = inspect("GET", "/b/k", names, None).unwrap();
        assert_eq!(
            c.remove_headers,
            [
                "authorization",
                "x-gateway-destination-endpoint",
                "x-amz-date"
            ]
        );
        assert_eq!(c.new_path, None);
        assert_eq!(c.operation, Operation::GetObject);
    }

    #[test]
    fn canonicalizes_the_target_and_drops_presigned_parameters() {
        let c = inspect("GET", "/b/a b?X-Amz-Signature=x&versionId=1", [], None).unwrap();
        assert_eq!(c.new_path.as_deref(), Some("/b/a%20b?versionId=1"));
    }

    #[test]
    fn refuses_undecodable_targets() {
        let err = inspect("GET", "/b/%G1", [], None).unwrap_err();
        assert_eq!((err.status, err.code), (400, "InvalidURI"));
    }
}
