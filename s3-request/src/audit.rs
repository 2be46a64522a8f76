//! The audit record's attributes: what s3mesh knows about a request that Envoy does not, handed
//! to Envoy for its access log (one JSON record per request) and spans. The `pre` filter names
//! the request (operation, bucket, key); whoever decides names the caller and the decision: the
//! `post` filter in grant mode, ext-authz in the per-request mode (in ext_authz's dynamic
//! metadata, [`crate::chunk_signing::NAMESPACE`]); `post` names the endpoint it chose first.
//! Both sides use these names.
//!
//! Where they live in Envoy: filter state, `<NAMESPACE>.<name>` from the native shell,
//! `wasm.<NAMESPACE>.<name>` from the wasm shell (proxy-wasm's `set_property` prefixes
//! `wasm.`); ext-authz's are dynamic metadata. Nothing secret is ever one of them.

/// The prefix of the filter state keys of the attributes.
pub const NAMESPACE: &str = "s3mesh";

/// One attribute of the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// The S3 operation (`GetObject`, ...).
    Operation,
    /// The bucket, absent for `ListBuckets`.
    Bucket,
    /// The object key, decoded (invalid UTF-8 replaced).
    Key,
    /// `bucket/key` a copy reads from.
    CopySource,
    /// The caller's s3mesh identity.
    Identity,
    /// How the identity was established: `principal`, `kubernetes` or `local_file`.
    IdentitySource,
    /// [`ALLOW`], [`DENY`] or [`INVALID`].
    Decision,
    /// Why a request was refused, as the client is told.
    Reason,
    /// The S3 error code of a refusal (`AccessDenied`, ...).
    Error,
    /// The endpoint the `post` filter named first (`ip:port`).
    EndpointFirst,
    /// What the read cache did: [`CACHE_HIT`] or [`CACHE_MISS`]; absent where it had no part.
    Cache,
}

impl Attribute {
    /// Every attribute, in the audit record's order.
    pub const ALL: [Self; 11] = [
        Self::Operation,
        Self::Bucket,
        Self::Key,
        Self::CopySource,
        Self::Identity,
        Self::IdentitySource,
        Self::Decision,
        Self::Reason,
        Self::Error,
        Self::EndpointFirst,
        Self::Cache,
    ];

    /// Its key in metadata and filter state, and its field in the access log.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Operation => "operation",
            Self::Bucket => "bucket",
            Self::Key => "key",
            Self::CopySource => "copy_source",
            Self::Identity => "identity",
            Self::IdentitySource => "identity_source",
            Self::Decision => "decision",
            Self::Reason => "reason",
            Self::Error => "error",
            Self::EndpointFirst => "endpoint_first",
            Self::Cache => "cache",
        }
    }
}

/// Decision: the request went to the store, signed for its caller.
pub const ALLOW: &str = "allow";
/// Decision: s3mesh refused the request (no identity, no rule, no credentials).
pub const DENY: &str = "deny";
/// Decision: the request was malformed and refused before any decision.
pub const INVALID: &str = "invalid";

/// Cache: the read cache answered; the store never saw the request.
pub const CACHE_HIT: &str = "hit";
/// Cache: the read cache may answer it, had no fresh answer, and the store answered.
pub const CACHE_MISS: &str = "miss";
