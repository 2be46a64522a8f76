//! Which S3 operation a path-style request is, on which bucket and key, and its class.
//!
//! Policy is written in operation classes (read, write, list, delete, multipart, bucket admin,
//! sharing, retention); metrics are labelled with the operation name. A request s3mesh cannot
//! classify is [`Operation::Unknown`], which no policy class allows: so is a state-changing
//! request with a sub-resource s3mesh does not know, since it might change who can reach data.

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
    /// Creating and deleting buckets and changing bucket configuration, except what
    /// [`Self::Sharing`] and [`Self::Retention`] cover.
    BucketAdmin,
    /// Changing who else can read or write data, which no other class may do: ACLs and grant
    /// headers, bucket policies, public access blocks, object ownership, website hosting and
    /// redirects.
    Sharing,
    /// Keeping data from being deleted: object lock, retention periods, legal holds, and
    /// bypassing governance retention.
    Retention,
}

impl OperationClass {
    /// Every class, in the order policy documentation lists them.
    pub const ALL: [Self; 8] = [
        Self::Read,
        Self::Write,
        Self::List,
        Self::Delete,
        Self::Multipart,
        Self::BucketAdmin,
        Self::Sharing,
        Self::Retention,
    ];

    /// The class named `name` as policy writes it (`read`, `bucket-admin`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Lower-case name used in policy files and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::List => "list",
            Self::Delete => "delete",
            Self::Multipart => "multipart",
            Self::BucketAdmin => "bucket-admin",
            Self::Sharing => "sharing",
            Self::Retention => "retention",
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
    PutBucketSharing => Sharing,
    DeleteBucketSharing => Sharing,
    PutBucketObjectLock => Retention,
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
    PutObjectAcl => Sharing,
    PutObjectRetention => Retention,
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

/// Sub-resources whose change decides who else can reach data (class `sharing`).
const SHARING_SUBRESOURCES: [&str; 5] = [
    "acl",
    "ownershipControls",
    "policy",
    "publicAccessBlock",
    "website",
];

/// Sub-resources that keep data from deletion (class `retention`).
const RETENTION_SUBRESOURCES: [&str; 3] = ["legal-hold", "object-lock", "retention"];

/// Parameters a PUT or DELETE may carry besides sub-resources: the multipart and version ones,
/// the AWS SDKs' operation marker, and presigned-URL credentials (SigV2's here, SigV4's are
/// `X-Amz-*`; the `pre` filter removes them before anything decides, but they are known). Any
/// other name is taken as a sub-resource s3mesh does not know, and refused: it might change who
/// can reach data. (POST requests are matched by their sub-resource exactly.)
const ACTION_PARAMETERS: [&str; 6] = [
    "uploadId",
    "partNumber",
    "versionId",
    "x-id",
    "AWSAccessKeyId",
    "Signature",
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
    /// Classes the request's headers need besides the operation's (a canned ACL on a
    /// `PutObject` needs `sharing` too): see [`S3Request::with_header_classes`].
    pub header_classes: Vec<OperationClass>,
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
            header_classes: Vec::new(),
        }
    }

    /// Adds the classes the request's headers (lower-case names, values) need besides the
    /// operation's ([`header_class`]).
    pub fn with_header_classes<'a>(
        mut self,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        for class in headers
            .into_iter()
            .filter_map(|(name, value)| header_class(name, value))
        {
            if !self.header_classes.contains(&class) {
                self.header_classes.push(class);
            }
        }
        self
    }
}

/// The class a request header (lower-case name) needs on top of its operation's: a canned ACL,
/// grants, object ownership or a website redirect set with an upload, copy, multipart upload or
/// new bucket need `sharing`; object lock settings and bypassing governance retention need
/// `retention`. Matched by family prefix, so a grant or lock header S3 adds later needs the
/// class too. Two exceptions share nothing: the canned ACL `private` (the owner alone, what a
/// new object gets anyway; rclone sends it with every upload), and tagging (`x-amz-tagging`),
/// which stays `write` since s3mesh rules do not look at tags.
fn header_class(name: &str, value: &str) -> Option<OperationClass> {
    let sharing = (name == "x-amz-acl" && !value.trim().eq_ignore_ascii_case("private"))
        || name.starts_with("x-amz-grant-")
        || name == "x-amz-object-ownership"
        || name == "x-amz-website-redirect-location";
    let retention = name.starts_with("x-amz-object-lock-")
        || name.starts_with("x-amz-bucket-object-lock-")
        || name == "x-amz-bypass-governance-retention";
    match (sharing, retention) {
        (true, _) => Some(Sharing),
        (_, true) => Some(Retention),
        _ => None,
    }
}

/// Whether the target has any of `names`. Most requests carry no query, and the sub-resource
/// lists are long: answered without a lookup per name then.
fn any_param(target: &RequestTarget, names: &[&str]) -> bool {
    !target.query.is_empty() && names.iter().any(|s| target.has_param(s))
}

fn config_subresource(target: &RequestTarget) -> bool {
    any_param(target, &CONFIG_SUBRESOURCES)
}

/// A parameter that is neither a known sub-resource nor an [`ACTION_PARAMETERS`] name (nor a
/// presigned URL's `X-Amz-*`, `Expires`).
fn unknown_subresource(target: &RequestTarget) -> bool {
    target.param_names().any(|name| {
        let amz = name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"));
        !(amz
            || name == "Expires"
            || ACTION_PARAMETERS.contains(&name)
            || CONFIG_SUBRESOURCES.contains(&name))
    })
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
        "PUT" if any_param(t, &SHARING_SUBRESOURCES) => PutBucketSharing,
        "PUT" if any_param(t, &RETENTION_SUBRESOURCES) => PutBucketObjectLock,
        "PUT" if config_subresource(t) || t.has_param("versioning") => PutBucketConfig,
        "PUT" if unknown_subresource(t) => Unknown,
        "PUT" => CreateBucket,
        "DELETE" if any_param(t, &SHARING_SUBRESOURCES) => DeleteBucketSharing,
        "DELETE" if any_param(t, &RETENTION_SUBRESOURCES) => Unknown,
        "DELETE" if config_subresource(t) => DeleteBucketConfig,
        "DELETE" if unknown_subresource(t) => Unknown,
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
        "PUT" if any_param(t, &SHARING_SUBRESOURCES) => PutObjectAcl,
        "PUT" if any_param(t, &RETENTION_SUBRESOURCES) => PutObjectRetention,
        "PUT" if config_subresource(t) => PutObjectConfig,
        "PUT" if unknown_subresource(t) => Unknown,
        "PUT" if copy => CopyObject,
        "PUT" => PutObject,
        "DELETE" if upload => AbortMultipartUpload,
        "DELETE" if any_param(t, &SHARING_SUBRESOURCES) => Unknown,
        "DELETE" if any_param(t, &RETENTION_SUBRESOURCES) => Unknown,
        "DELETE" if config_subresource(t) => DeleteObjectConfig,
        "DELETE" if unknown_subresource(t) => Unknown,
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
            ("PUT", "/b?policy", Operation::PutBucketSharing),
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
    fn requests_that_share_or_lock_data_have_their_own_classes() {
        let cases = [
            ("PUT", "/b/k?acl", Operation::PutObjectAcl, Sharing),
            ("PUT", "/b?acl", Operation::PutBucketSharing, Sharing),
            ("PUT", "/b?policy", Operation::PutBucketSharing, Sharing),
            (
                "DELETE",
                "/b?policy",
                Operation::DeleteBucketSharing,
                Sharing,
            ),
            (
                "PUT",
                "/b?publicAccessBlock",
                Operation::PutBucketSharing,
                Sharing,
            ),
            (
                "DELETE",
                "/b?publicAccessBlock",
                Operation::DeleteBucketSharing,
                Sharing,
            ),
            (
                "PUT",
                "/b?ownershipControls",
                Operation::PutBucketSharing,
                Sharing,
            ),
            ("PUT", "/b?website", Operation::PutBucketSharing, Sharing),
            (
                "DELETE",
                "/b?website",
                Operation::DeleteBucketSharing,
                Sharing,
            ),
            (
                "PUT",
                "/b?object-lock",
                Operation::PutBucketObjectLock,
                Retention,
            ),
            (
                "PUT",
                "/b/k?retention",
                Operation::PutObjectRetention,
                Retention,
            ),
            (
                "PUT",
                "/b/k?legal-hold",
                Operation::PutObjectRetention,
                Retention,
            ),
            (
                "PUT",
                "/b/k?versionId=3&retention",
                Operation::PutObjectRetention,
                Retention,
            ),
            // Reading them reveals nothing new to anyone else: classes as before.
            ("GET", "/b/k?acl", Operation::GetObjectConfig, Read),
            ("GET", "/b?policy", Operation::GetBucketConfig, BucketAdmin),
            ("PUT", "/b?cors", Operation::PutBucketConfig, BucketAdmin),
            ("PUT", "/b/k?tagging", Operation::PutObjectConfig, Write),
        ];
        for (method, raw, op, class) in cases {
            let classified = classify(method, raw).operation;
            assert_eq!(classified, op, "{method} {raw}");
            assert_eq!(classified.class(), Some(class), "{method} {raw}");
        }
    }

    #[test]
    fn state_changing_requests_with_unknown_sub_resources_are_unknown() {
        for (method, raw) in [
            ("PUT", "/b/k?future-sharing-thing"),
            ("PUT", "/b/k?x-id=PutObject&grants"),
            ("PUT", "/b?future-bucket-setting"),
            ("DELETE", "/b/k?acl"),
            ("DELETE", "/b/k?something"),
            ("DELETE", "/b?object-lock"),
            ("DELETE", "/b?something"),
            ("PUT", "/b/k?uploads"),
            ("PUT", "/b/k?versioning"),
        ] {
            assert_eq!(
                classify(method, raw).operation,
                Operation::Unknown,
                "{method} {raw}"
            );
        }
        // What clients really send on uploads, copies, parts and deletes.
        for (method, raw, op) in [
            ("PUT", "/b/k?x-id=PutObject", Operation::PutObject),
            (
                "PUT",
                "/b/k?partNumber=2&uploadId=u&x-id=UploadPart",
                Operation::UploadPart,
            ),
            ("DELETE", "/b/k?versionId=v", Operation::DeleteObject),
            (
                "PUT",
                "/b/k?X-Amz-Algorithm=A&X-Amz-Signature=s",
                Operation::PutObject,
            ),
            (
                "PUT",
                "/b/k?AWSAccessKeyId=a&Expires=1&Signature=s",
                Operation::PutObject,
            ),
            ("PUT", "/b?versioning", Operation::PutBucketConfig),
            ("GET", "/b/k?anything-else", Operation::GetObject),
        ] {
            assert_eq!(classify(method, raw).operation, op, "{method} {raw}");
        }
    }

    #[test]
    fn sharing_and_locking_headers_need_their_class_too() {
        let needs = |name, value| {
            let r = classify("PUT", "/b/k").with_header_classes([(name, value)]);
            assert_eq!(r.operation, Operation::PutObject);
            r.header_classes
        };
        for (name, value) in [
            ("x-amz-acl", "public-read"),
            ("x-amz-acl", "bucket-owner-full-control"),
            ("x-amz-grant-read", "uri=x"),
            ("x-amz-grant-full-control", "id=x"),
            ("x-amz-grant-something-new", "x"),
            ("x-amz-object-ownership", "ObjectWriter"),
            ("x-amz-website-redirect-location", "/x"),
        ] {
            assert_eq!(needs(name, value), [Sharing], "{name}: {value}");
        }
        for name in [
            "x-amz-object-lock-mode",
            "x-amz-object-lock-retain-until-date",
            "x-amz-object-lock-legal-hold",
            "x-amz-bucket-object-lock-enabled",
            "x-amz-bypass-governance-retention",
        ] {
            assert_eq!(needs(name, "x"), [Retention], "{name}");
        }
        for (name, value) in [
            ("x-amz-acl", "private"),
            ("x-amz-tagging", "a=b"),
            ("x-amz-meta-a", "b"),
            ("content-type", "text/plain"),
        ] {
            assert!(needs(name, value).is_empty(), "{name}: {value}");
        }
        let both = classify("PUT", "/b/k").with_header_classes([
            ("x-amz-acl", "public-read"),
            ("x-amz-object-lock-mode", "x"),
        ]);
        assert_eq!(both.header_classes, [Sharing, Retention]);
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
