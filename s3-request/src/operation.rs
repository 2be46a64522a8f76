//! Which S3 operation a path-style request is, on which bucket and key, and its class.
//!
//! Policy is written in operation classes (read, write, list, delete, multipart, bucket admin);
//! metrics are labelled with the operation name. A request s3mesh cannot classify is
//! [`Operation::Unknown`], which no policy class allows.

use s3mesh_sigv4::uri_encoding;

use crate::request_target::RequestTarget;

/// The classes policy rules grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperationClass {
    /// Reading objects and their metadata.
    Read,
    /// Creating or replacing objects and their metadata.
    Write,
    /// Listing buckets, objects, versions and uploads; `HeadBucket`.
    List,
    /// Deleting objects.
    Delete,
    /// Creating, uploading to, completing, aborting and listing parts of multipart uploads.
    Multipart,
    /// Creating and deleting buckets and changing bucket configuration.
    BucketAdmin,
}

impl OperationClass {
    /// Lower-case name used in policy files and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::List => "list",
            Self::Delete => "delete",
            Self::Multipart => "multipart",
            Self::BucketAdmin => "bucket-admin",
        }
    }
}

macro_rules! operations {
    ($($op:ident => $class:expr),* $(,)?) => {
        /// S3 operations s3mesh tells apart.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Operation {
            $(#[allow(missing_docs)] $op,)*
            /// Not recognised: denied by every policy.
            Unknown,
        }

        impl Operation {
            /// The S3 API name, e.g. `GetObject`.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$op => stringify!($op),)*
                    Self::Unknown => "Unknown",
                }
            }

            /// The operation named `name` (as [`Operation::as_str`] writes it); anything else
            /// is [`Operation::Unknown`].
            pub fn from_name(name: &str) -> Self {
                match name {
                    $(stringify!($op) => Self::$op,)*
                    _ => Self::Unknown,
                }
            }

            /// The class a policy must grant; `None` for [`Operation::Unknown`].
            pub fn class(&self) -> Option<OperationClass> {
                match self {
                    $(Self::$op => Some($class),)*
                    Self::Unknown => None,
                }
            }
        }
    };
}

use OperationClass::*;
operations! {
    ListBuckets => List,
    ListObjects => List,
    ListObjectsV2 => List,
    ListObjectVersions => List,
    ListMultipartUploads => List,
    HeadBucket => List,
    GetBucketLocation => List,
    GetBucketConfig => BucketAdmin,
    PutBucketConfig => BucketAdmin,
    DeleteBucketConfig => BucketAdmin,
    CreateBucket => BucketAdmin,
    DeleteBucket => BucketAdmin,
    DeleteObjects => Delete,
    GetObject => Read,
    HeadObject => Read,
    GetObjectAttributes => Read,
    GetObjectConfig => Read,
    PutObject => Write,
    CopyObject => Write,
    PutObjectConfig => Write,
    DeleteObject => Delete,
    DeleteObjectConfig => Write,
    CreateMultipartUpload => Multipart,
    UploadPart => Multipart,
    UploadPartCopy => Multipart,
    CompleteMultipartUpload => Multipart,
    AbortMultipartUpload => Multipart,
    ListParts => Multipart,
}

/// Sub-resources that turn a bucket or object request into a configuration request.
const CONFIG_SUBRESOURCES: [&str; 22] = [
    "acl",
    "accelerate",
    "analytics",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "retention",
    "tagging",
    "website",
];

/// A request as s3mesh understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Request {
    /// The operation.
    pub operation: Operation,
    /// Bucket name, absent for `ListBuckets`.
    pub bucket: Option<String>,
    /// Object key, decoded (may contain `/`, `//`, `.` segments, any UTF-8 or raw bytes).
    pub key: Option<Vec<u8>>,
    /// For `CopyObject`/`UploadPartCopy`: the source bucket and key, which the caller must be
    /// allowed to read too.
    pub copy_source: Option<(String, Vec<u8>)>,
    /// For listings: the decoded `prefix` parameter (absent: the whole bucket).
    pub list_prefix: Option<Vec<u8>>,
}

impl S3Request {
    /// Classifies a path-style request. `copy_source` is the `x-amz-copy-source` header.
    pub fn classify(method: &str, target: &RequestTarget, copy_source: Option<&str>) -> Self {
        let path = target.path.strip_prefix('/').unwrap_or(&target.path);
        let (bucket, key) = match path.split_once('/') {
            Some((b, k)) => (b, Some(k)),
            None => (path, None),
        };
        let key = key
            .filter(|k| !k.is_empty())
            .and_then(|k| uri_encoding::decode(k).ok());
        let bucket = (!bucket.is_empty()).then(|| bucket.to_owned());
        let copy_source = copy_source.and_then(parse_copy_source);
        let operation = match (&bucket, &key) {
            (None, _) => match method {
                "GET" => Operation::ListBuckets,
                _ => Operation::Unknown,
            },
            (Some(_), None) => bucket_operation(method, target),
            (Some(_), Some(_)) => object_operation(method, target, copy_source.is_some()),
        };
        let list_prefix = match operation {
            Operation::ListObjects
            | Operation::ListObjectsV2
            | Operation::ListObjectVersions
            | Operation::ListMultipartUploads => target
                .param("prefix")
                .and_then(|p| uri_encoding::decode(p).ok()),
            _ => None,
        };
        Self {
            operation,
            bucket,
            key,
            copy_source,
            list_prefix,
        }
    }
}

fn config_subresource(target: &RequestTarget) -> bool {
    CONFIG_SUBRESOURCES.iter().any(|s| target.has_param(s))
}

fn bucket_operation(method: &str, t: &RequestTarget) -> Operation {
    use Operation::*;
    match method {
        "GET" if t.param("list-type") == Some("2") => ListObjectsV2,
        "GET" if t.has_param("versions") => ListObjectVersions,
        "GET" if t.has_param("uploads") => ListMultipartUploads,
        "GET" if t.has_param("location") => GetBucketLocation,
        "GET" if config_subresource(t) || t.has_param("versioning") => GetBucketConfig,
        "GET" => ListObjects,
        "HEAD" => HeadBucket,
        "PUT" if config_subresource(t) || t.has_param("versioning") => PutBucketConfig,
        "PUT" => CreateBucket,
        "DELETE" if config_subresource(t) => DeleteBucketConfig,
        "DELETE" => DeleteBucket,
        "POST" if t.has_param("delete") => DeleteObjects,
        _ => Unknown,
    }
}

fn object_operation(method: &str, t: &RequestTarget, copy: bool) -> Operation {
    use Operation::*;
    let upload = t.has_param("uploadId");
    match method {
        "GET" if upload => ListParts,
        "GET" if t.has_param("attributes") => GetObjectAttributes,
        "GET" if config_subresource(t) => GetObjectConfig,
        "GET" => GetObject,
        "HEAD" => HeadObject,
        "PUT" if upload && copy => UploadPartCopy,
        "PUT" if upload => UploadPart,
        "PUT" if config_subresource(t) => PutObjectConfig,
        "PUT" if copy => CopyObject,
        "PUT" => PutObject,
        "DELETE" if upload => AbortMultipartUpload,
        "DELETE" if config_subresource(t) => DeleteObjectConfig,
        "DELETE" => DeleteObject,
        "POST" if t.has_param("uploads") => CreateMultipartUpload,
        "POST" if upload => CompleteMultipartUpload,
        _ => Unknown,
    }
}

/// `x-amz-copy-source` is `bucket/key[?versionId=…]`, optionally with a leading `/`, and
/// percent-encoded.
fn parse_copy_source(value: &str) -> Option<(String, Vec<u8>)> {
    let value = value.split('?').next().unwrap_or(value);
    let decoded = uri_encoding::decode(value.trim_start_matches('/')).ok()?;
    let slash = decoded.iter().position(|b| *b == b'/')?;
    let bucket = String::from_utf8(decoded[..slash].to_vec()).ok()?;
    let key = decoded[slash + 1..].to_vec();
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(method: &str, raw: &str) -> S3Request {
        S3Request::classify(method, &RequestTarget::canonicalize(raw).unwrap(), None)
    }

    #[test]
    fn classifies_the_common_operations() {
        let cases = [
            ("GET", "/", Operation::ListBuckets),
            ("GET", "/b?list-type=2&prefix=x", Operation::ListObjectsV2),
            ("GET", "/b/", Operation::ListObjects),
            ("HEAD", "/b", Operation::HeadBucket),
            ("PUT", "/b", Operation::CreateBucket),
            ("PUT", "/b?policy", Operation::PutBucketConfig),
            ("POST", "/b?delete", Operation::DeleteObjects),
            ("GET", "/b/k", Operation::GetObject),
            ("HEAD", "/b/k", Operation::HeadObject),
            ("PUT", "/b/k", Operation::PutObject),
            ("PUT", "/b/k?tagging", Operation::PutObjectConfig),
            ("DELETE", "/b/k", Operation::DeleteObject),
            ("POST", "/b/k?uploads", Operation::CreateMultipartUpload),
            ("PUT", "/b/k?partNumber=1&uploadId=u", Operation::UploadPart),
            (
                "POST",
                "/b/k?uploadId=u",
                Operation::CompleteMultipartUpload,
            ),
            ("DELETE", "/b/k?uploadId=u", Operation::AbortMultipartUpload),
            ("GET", "/b/k?uploadId=u", Operation::ListParts),
            ("PATCH", "/b/k", Operation::Unknown),
            ("DELETE", "/", Operation::Unknown),
        ];
        for (method, raw, op) in cases {
            assert_eq!(classify(method, raw).operation, op, "{method} {raw}");
        }
    }

    #[test]
    fn listings_carry_their_decoded_prefix() {
        let r = classify("GET", "/b?list-type=2&prefix=logs%2F2026");
        assert_eq!(r.list_prefix.as_deref(), Some(&b"logs/2026"[..]));
        assert_eq!(classify("GET", "/b?list-type=2").list_prefix, None);
        assert_eq!(classify("GET", "/b/k?prefix=x").list_prefix, None);
    }

    #[test]
    fn keys_are_decoded_exactly() {
        let r = classify("GET", "/b//a/./b%2Bc%20d%E2%82%AC");
        assert_eq!(r.bucket.as_deref(), Some("b"));
        assert_eq!(r.key.as_deref(), Some("/a/./b+c d€".as_bytes()));
    }

    #[test]
    fn copies_name_their_source_bucket() {
        let t = RequestTarget::canonicalize("/a/k").unwrap();
        let r = S3Request::classify("PUT", &t, Some("/b/src%20key?versionId=1"));
        assert_eq!(r.operation, Operation::CopyObject);
        assert_eq!(r.copy_source, Some(("b".to_owned(), b"src key".to_vec())));
        assert_eq!(
            Operation::UploadPartCopy.class(),
            Some(OperationClass::Multipart)
        );
        assert_eq!(Operation::Unknown.class(), None);
        assert_eq!(
            Operation::from_name("UploadPartCopy"),
            Operation::UploadPartCopy
        );
        assert_eq!(Operation::from_name("Nope"), Operation::Unknown);
    }
}
