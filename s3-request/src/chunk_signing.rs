//! What ext-authz hands the `post` filter so it can re-sign a chunk-signed upload, in Envoy's
//! dynamic metadata under the ext_authz filter's namespace. Both sides use these names.
//!
//! The material is for one request: the new seed signature, the signing time and scope, and
//! the day-scoped signing key (never the secret). Dynamic metadata stays inside Envoy; it is
//! not sent upstream or to the client.

/// The metadata namespace Envoy files ext_authz's `dynamic_metadata` under.
pub const NAMESPACE: &str = "envoy.filters.http.ext_authz";
/// The header signature the chunk signatures chain from (64 hex digits).
pub const SEED_SIGNATURE: &str = "s3mesh_chunk_seed";
/// `x-amz-date` of the re-signed request (`YYYYMMDDTHHMMSSZ`).
pub const AMZ_DATE: &str = "s3mesh_chunk_amz_date";
/// The credential scope, `date/region/service/aws4_request`.
pub const SCOPE: &str = "s3mesh_chunk_scope";
/// The day-scoped signing key, hex.
pub const SIGNING_KEY: &str = "s3mesh_chunk_key";
