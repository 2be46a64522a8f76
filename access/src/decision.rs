//! One request, one answer: classify it, find the rule that permits it among the caller's
//! rules, and sign it with that rule's profile key. ext-authz runs this per request; the filter
//! runs it with a grant.

use std::borrow::Borrow;

use s3mesh_s3_request::{RequestTarget, S3Error, S3Request};
use s3mesh_sigv4::AmzDate;

use crate::request::Request;
use crate::rules::{authorize, Rule};
use crate::signing::{sign_request, ProfileKey, Signed};

/// An allowed request: what Envoy changes before forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The S3 operation, for logs and metrics.
    pub operation: &'static str,
    /// The signing headers and, for chunk-signed uploads, the re-signing material.
    pub signed: Signed,
}

/// A refused request: the error the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The S3 operation, if the request got that far.
    pub operation: Option<&'static str>,
    /// What the client receives.
    pub error: S3Error,
}

impl From<S3Error> for Refused {
    fn from(error: S3Error) -> Self {
        Self {
            operation: None,
            error,
        }
    }
}

/// Why the key of a profile a rule names is missing: a request that rule allows answers `503`
/// saying so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No credentials are loaded for it (a missing Secret or file, refused at reload).
    #[error("is not loaded")]
    NotLoaded,
    /// Its credentials could not be obtained (the store's STS refused or did not answer).
    #[error("has no credentials: {0}")]
    NoCredentials(String),
}

/// The canonical target of `path`; a target that is not already canonical is refused, since
/// the `pre` filter canonicalizes before anything signs and a signature must cover exactly
/// what Envoy forwards.
pub fn canonical_target(path: &str) -> Result<RequestTarget, S3Error> {
    let target = RequestTarget::canonicalize(path)?;
    if target.to_string() != path {
        return Err(S3Error::invalid_uri(
            "the request target is not canonically encoded; the s3mesh \"pre\" filter must run before the one that signs",
        ));
    }
    Ok(target)
}

/// Decides on `request` from `identity` at `time`: `rules` are the rules that select this
/// caller, in policy order; `key_of` gives the key of a profile for `time`'s day, or why there
/// is none.
pub fn decide<'r, I, K>(
    identity: &str,
    rules: I,
    key_of: impl FnOnce(&str) -> Result<K, Unavailable>,
    request: &Request<'_>,
    target: &RequestTarget,
    time: AmzDate,
) -> Result<Allowed, Refused>
where
    I: Iterator<Item = &'r Rule> + Clone,
    K: Borrow<ProfileKey>,
{
    let copy_source = request.header("x-amz-copy-source");
    let classified = S3Request::classify(request.method, target, copy_source)
        .with_header_classes(request.headers.iter().copied());
    let operation = classified.operation.as_str();
    let refuse = |error| Refused {
        operation: Some(operation),
        error,
    };
    let profile = authorize(identity, rules, &classified)
        .map_err(|denial| refuse(S3Error::access_denied(denial.to_string())))?;
    let key = key_of(profile).map_err(|unavailable| {
        refuse(S3Error::service_unavailable(format!(
            "credential profile {profile:?} {unavailable}"
        )))
    })?;
    let signed = sign_request(request, target, key.borrow(), time).map_err(refuse)?;
    Ok(Allowed { operation, signed })
}
