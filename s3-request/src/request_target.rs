//! The request target (`:path`) in its one canonical encoding.
//!
//! Envoy forwards the path and query byte for byte. A signature verifier either takes them as
//! sent (moto, some gateways) or decodes and re-encodes them (AWS S3). Both agree only when the
//! target already is in SigV4's canonical encoding, so s3mesh rewrites it to that form before
//! anything is signed: every key byte stays the same, only its percent-encoding is unified.
//! Dot segments and repeated slashes are part of S3 object keys and are left alone.

use s3mesh_sigv4::uri_encoding::{self, Slash};

use crate::error::S3Error;

/// Query parameters that carry a client's own (presigned) credentials. s3mesh drops them and
/// signs the request itself.
const CLIENT_CREDENTIAL_PARAMS: [&str; 10] = [
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
    // SigV2 query authentication.
    "awsaccesskeyid",
    "signature",
    "expires",
];

/// Path and query of a request, canonically encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    /// Starts with `/`; `/` separators kept, every other reserved byte percent-encoded.
    pub path: String,
    /// Without the `?`; parameters in the order the client sent them, each encoded canonically.
    pub query: String,
    /// How many client credential parameters were dropped from the query.
    pub dropped_credentials: usize,
}

impl RequestTarget {
    /// Parses `raw` (an origin-form `:path`) and re-encodes it canonically.
    pub fn canonicalize(raw: &str) -> Result<Self, S3Error> {
        let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
        if !path.starts_with('/') {
            return Err(S3Error::invalid_uri(
                "the request target must be a path starting with '/'",
            ));
        }
        let path = uri_encoding::canonicalize(path, Slash::Keep).map_err(|e| {
            S3Error::invalid_uri(format!("the request path has an {e}; encode '%' as %25"))
        })?;
        let mut params = Vec::new();
        let mut dropped_credentials = 0;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (param, None),
            };
            let bad_query = |e: uri_encoding::DecodeError| {
                S3Error::invalid_uri(format!("the query parameter {name:?} has an {e}"))
            };
            let name = uri_encoding::canonicalize(name, Slash::Encode).map_err(bad_query)?;
            if CLIENT_CREDENTIAL_PARAMS.contains(&name.to_ascii_lowercase().as_str()) {
                dropped_credentials += 1;
                continue;
            }
            match value {
                Some(v) => {
                    let v = uri_encoding::canonicalize(v, Slash::Encode).map_err(bad_query)?;
                    params.push(format!("{name}={v}"));
                }
                None => params.push(name),
            }
        }
        Ok(Self {
            path,
            query: params.join("&"),
            dropped_credentials,
        })
    }

    /// Whether the query holds a parameter named `name` (names are canonical already).
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// The (still encoded) names of the query's parameters, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
    }

    /// The (still encoded) value of the first parameter named `name`; `Some("")` when it has
    /// no value.
    pub fn param(&self, name: &str) -> Option<&str> {
        // Most requests carry no query, and classification asks for some 30 names.
        if self.query.is_empty() {
            return None;
        }
        self.query.split('&').find_map(|p| match p.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if p == name => Some(""),
            _ => None,
        })
    }
}

impl std::fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.query.is_empty() {
            f.write_str(&self.path)
        } else {
            write!(f, "{}?{}", self.path, self.query)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        RequestTarget::canonicalize(raw).unwrap().to_string()
    }

    #[test]
    fn unifies_percent_encoding_but_keeps_key_bytes() {
        assert_eq!(canon("/b/a b+c"), "/b/a%20b%2Bc");
        assert_eq!(canon("/b/%e2%82%ac"), "/b/%E2%82%AC");
        assert_eq!(canon("/b/a%2Fb"), "/b/a/b");
        assert_eq!(canon("/b//./../k"), "/b//./../k");
        assert_eq!(
            canon("/b?list-type=2&prefix=a/b"),
            "/b?list-type=2&prefix=a%2Fb"
        );
        assert_eq!(canon("/b/k?uploads"), "/b/k?uploads");
    }

    #[test]
    fn drops_presigned_credentials() {
        let t = RequestTarget::canonicalize(
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F1&versionId=3\
             &X-Amz-Signature=ab&X-Amz-Date=1&X-Amz-Expires=60&X-Amz-SignedHeaders=host",
        )
        .unwrap();
        assert_eq!(t.to_string(), "/b/k?versionId=3");
        assert_eq!(t.dropped_credentials, 6);
    }

    #[test]
    fn refuses_bad_escapes_and_non_paths() {
        assert_eq!(
            RequestTarget::canonicalize("/b/%zz").unwrap_err().code,
            "InvalidURI"
        );
        assert_eq!(
            RequestTarget::canonicalize("/b?x=%4").unwrap_err().code,
            "InvalidURI"
        );
        assert_eq!(
            RequestTarget::canonicalize("*").unwrap_err().code,
            "InvalidURI"
        );
    }

    #[test]
    fn finds_params() {
        let t = RequestTarget::canonicalize("/b/k?uploadId=7&partNumber=2&uploads").unwrap();
        assert_eq!(t.param("uploadId"), Some("7"));
        assert_eq!(t.param("uploads"), Some(""));
        assert!(!t.has_param("acl"));
    }
}
