//! Which requests the read cache may answer, and under what key.
//!
//! Only what the store would answer the same way every time within the freshness bound:
//! `GetObject` (whole, or one byte range) and `HeadObject`, optionally of one `versionId`, of a
//! bucket and prefix a rule opts in. Anything that makes the answer depend on more than the
//! object (conditional requests, SSE-C keys, `partNumber`, `response-*` overrides, several
//! ranges, checksum mode, requester pays, bucket-owner checks) passes through to the store.

use s3mesh_s3_request::{Operation, RequestTarget, S3Request};

use crate::config::CacheConfig;
use crate::signature_diagnosis::authorization_field;

/// Request headers that make an answer depend on more than the object: such requests pass.
const PASSING_HEADERS: [&str; 9] = [
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-checksum-mode",
    "x-amz-request-payer",
    "x-amz-expected-bucket-owner",
];

/// One object of one bucket (any version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// The bucket.
    pub bucket: String,
    /// The key, decoded.
    pub key: Vec<u8>,
}

/// One answer about an object: to whose key, which request, of which version, which bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The access key the request was signed with. An answer is served only to requests the
    /// same key signs: the store may refuse one key what it gave another (a bucket policy, a
    /// session policy), and a hit must not widen who sees the object beyond what the store
    /// would allow. Callers that share a profile share its answers.
    pub key_id: String,
    /// `HeadObject` (headers only) rather than `GetObject`.
    pub head: bool,
    /// `versionId`; absent: the current version.
    pub version: Option<String>,
    /// The one byte range asked for (`bytes=0-99`, `bytes=100-`, `bytes=-8`), as sent.
    pub range: Option<String>,
}

/// A request the cache may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cacheable {
    /// The object.
    pub object: ObjectId,
    /// Which answer about it.
    pub variant: Variant,
    /// How long an answer may be served after the store gave it (the matching rule's).
    pub ttl_ms: u64,
}

/// Whether `config` lets the cache answer a request (`method`, canonical `path`, `header`
/// looking up a request header by lower-case name) of `operation`.
pub fn cacheable<'h>(
    config: &CacheConfig,
    operation: Operation,
    method: &str,
    path: &str,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Option<Cacheable> {
    let head = match (operation, method) {
        (Operation::GetObject, "GET") => false,
        (Operation::HeadObject, "HEAD") => true,
        _ => return None,
    };
    if PASSING_HEADERS.iter().any(|name| header(name).is_some()) {
        return None;
    }
    let target = RequestTarget::canonicalize(path).ok()?;
    if target.param_names().any(|name| name != "versionId") {
        return None;
    }
    let range = match header("range") {
        Some(range) => Some(one_byte_range(range)?.to_owned()),
        None => None,
    };
    let key_id = header("authorization").and_then(signing_key_id);
    let request = S3Request::classify(method, &target, None);
    let (bucket, key) = (request.bucket?, request.key?);
    let rule = config
        .rules
        .iter()
        .find(|rule| rule.bucket == bucket && key.starts_with(rule.prefix.as_bytes()))?;
    Some(Cacheable {
        object: ObjectId { bucket, key },
        variant: Variant {
            key_id: key_id.unwrap_or_default().to_owned(),
            head,
            version: target.param("versionId").map(str::to_owned),
            range,
        },
        ttl_ms: rule.ttl_ms,
    })
}

/// The access key id of a SigV4 `Authorization` header (`Credential=AKID/date/...`).
fn signing_key_id(authorization: &str) -> Option<&str> {
    let credential = authorization_field(authorization, "Credential=")?;
    credential.split_once('/').map(|(key_id, _)| key_id)
}

/// `range` when it asks for one byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`), else `None`.
fn one_byte_range(range: &str) -> Option<&str> {
    let spec = range.strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let valid = match (first.is_empty(), last.is_empty()) {
        (false, false) => digits(first) && digits(last),
        (false, true) => digits(first),
        (true, false) => digits(last),
        (true, true) => false,
    };
    valid.then_some(range)
}

/// What a write through this Envoy makes stale: the object it names, or (no key: a
/// multi-object delete, a bucket's deletion or configuration) the whole bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// One object, every version and range.
    Object(ObjectId),
    /// Every object of the bucket.
    Bucket(String),
}

/// What a request that may change objects (anything but reads and listings) makes stale, in a
/// bucket `config` caches; `None` for reads, listings and other buckets.
pub fn made_stale(
    config: &CacheConfig,
    operation: Operation,
    method: &str,
    path: &str,
) -> Option<Stale> {
    use s3mesh_s3_request::OperationClass::{List, Read};
    if matches!(operation.class(), Some(Read | List)) {
        return None;
    }
    let target = RequestTarget::canonicalize(path).ok()?;
    let request = S3Request::classify(method, &target, None);
    let bucket = request.bucket?;
    if !config.rules.iter().any(|rule| rule.bucket == bucket) {
        return None;
    }
    Some(match request.key {
        Some(key) => Stale::Object(ObjectId { bucket, key }),
        None => Stale::Bucket(bucket),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheRule;

    fn config() -> CacheConfig {
        CacheConfig {
            rules: vec![
                CacheRule {
                    bucket: "data".into(),
                    prefix: "parquet/".into(),
                    ttl_ms: 2_000,
                },
                CacheRule {
                    bucket: "all".into(),
                    prefix: String::new(),
                    ttl_ms: 5_000,
                },
            ],
            ..CacheConfig::default()
        }
    }

    fn ask(
        operation: Operation,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<Cacheable> {
        let signed = [("authorization", SIGNED)];
        let header = |name: &str| {
            let mut all = headers.iter().chain(&signed);
            all.find(|(n, _)| *n == name).map(|(_, v)| *v)
        };
        cacheable(&config(), operation, method, path, header)
    }

    const SIGNED: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDTEAM/20261201/us-east-1/s3/aws4_request, \
                          SignedHeaders=host, Signature=0";

    #[test]
    fn reads_of_opted_in_prefixes_are_cached_by_object_version_and_range() {
        let got = ask(
            Operation::GetObject,
            "GET",
            "/data/parquet/a%20b",
            &[("range", "bytes=-8")],
        )
        .unwrap();
        assert_eq!(
            got.object,
            ObjectId {
                bucket: "data".into(),
                key: b"parquet/a b".to_vec()
            }
        );
        assert_eq!(
            got.variant,
            Variant {
                key_id: "AKIDTEAM".into(),
                head: false,
                version: None,
                range: Some("bytes=-8".into())
            }
        );
        assert_eq!(got.ttl_ms, 2_000);
        let head = ask(Operation::HeadObject, "HEAD", "/all/k?versionId=v1", &[]).unwrap();
        assert_eq!(
            head.variant,
            Variant {
                key_id: "AKIDTEAM".into(),
                head: true,
                version: Some("v1".into()),
                range: None
            }
        );
        assert_eq!(head.ttl_ms, 5_000);
        for range in ["bytes=0-99", "bytes=100-"] {
            assert!(
                ask(Operation::GetObject, "GET", "/all/k", &[("range", range)]).is_some(),
                "{range}"
            );
        }
    }

    #[test]
    fn what_the_store_would_answer_differently_passes() {
        let passing = [
            ask(Operation::GetObject, "GET", "/data/other/k", &[]),
            ask(Operation::GetObject, "GET", "/elsewhere/parquet/k", &[]),
            ask(Operation::GetObject, "GET", "/all/k?partNumber=1", &[]),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k?response-content-type=x",
                &[],
            ),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k",
                &[("range", "bytes=0-1,5-6")],
            ),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k",
                &[("range", "bytes=-")],
            ),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k",
                &[("range", "items=0-1")],
            ),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k",
                &[("if-none-match", "\"e\"")],
            ),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k",
                &[("if-modified-since", "x")],
            ),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k",
                &[("x-amz-server-side-encryption-customer-key", "x")],
            ),
            ask(
                Operation::GetObject,
                "GET",
                "/all/k",
                &[("x-amz-checksum-mode", "ENABLED")],
            ),
            ask(Operation::GetObjectConfig, "GET", "/all/k?tagging", &[]),
            ask(Operation::ListObjectsV2, "GET", "/all?list-type=2", &[]),
        ];
        for (i, passed) in passing.iter().enumerate() {
            assert_eq!(passed, &None, "case {i}");
        }
    }

    #[test]
    fn writes_make_their_object_or_their_bucket_stale() {
        let object = |key: &str| {
            Stale::Object(ObjectId {
                bucket: "all".into(),
                key: key.as_bytes().to_vec(),
            })
        };
        let c = config();
        assert_eq!(
            made_stale(&c, Operation::PutObject, "PUT", "/all/k"),
            Some(object("k"))
        );
        assert_eq!(
            made_stale(
                &c,
                Operation::CompleteMultipartUpload,
                "POST",
                "/all/k?uploadId=1"
            ),
            Some(object("k"))
        );
        assert_eq!(
            made_stale(&c, Operation::DeleteObjects, "POST", "/all?delete"),
            Some(Stale::Bucket("all".into()))
        );
        assert_eq!(made_stale(&c, Operation::GetObject, "GET", "/all/k"), None);
        assert_eq!(
            made_stale(&c, Operation::PutObject, "PUT", "/uncached/k"),
            None
        );
    }
}
