//! What a policy rule permits once it has selected a caller: buckets × key prefixes ×
//! operation classes → the credential profile that signs. Deny by default: a request no rule
//! permits is refused with a reason a person can act on.

use serde::{Deserialize, Serialize};

use s3mesh_s3_request::{Operation, OperationClass, S3Request};

/// A rule's permission as written (in policy, and in a grant on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// Bucket names; a trailing `*` matches any suffix, `*` alone any bucket (and `ListBuckets`).
    pub buckets: Vec<String>,
    /// Key prefixes the rule is limited to; empty: the whole bucket.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Operation classes: read, write, list, delete, multipart, bucket-admin, sharing,
    /// retention.
    pub operations: Vec<String>,
    /// The profile whose key signs what this rule allows.
    pub profile: String,
}

#[derive(Debug, Clone)]
enum BucketPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl BucketPattern {
    fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some("") => Self::Any,
            Some(prefix) => Self::Prefix(prefix.to_owned()),
            None => Self::Exact(s.to_owned()),
        }
    }

    /// `None` is "no bucket" (`ListBuckets`), which only `*` covers.
    fn matches(&self, bucket: Option<&str>) -> bool {
        match (self, bucket) {
            (Self::Any, _) => true,
            (Self::Prefix(p), Some(b)) => b.starts_with(p.as_str()),
            (Self::Exact(e), Some(b)) => e == b,
            (_, None) => false,
        }
    }
}

/// A compiled [`Permission`].
#[derive(Debug, Clone)]
pub struct Rule {
    buckets: Vec<BucketPattern>,
    prefixes: Vec<Vec<u8>>,
    classes: Vec<OperationClass>,
    profile: String,
}

/// Why a permission cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An operation class s3mesh does not know.
    #[error(
        "operations: unknown class {0:?}; use read, write, list, delete, multipart, bucket-admin, sharing or retention"
    )]
    UnknownClass(String),
    /// A rule that names no bucket permits nothing.
    #[error("buckets: must name at least one bucket")]
    NoBucket,
}

impl Rule {
    /// Compiles a permission, refusing unknown classes and empty bucket lists.
    pub fn compile(permission: &Permission) -> Result<Self, RuleError> {
        if permission.buckets.is_empty() {
            return Err(RuleError::NoBucket);
        }
        let classes = permission
            .operations
            .iter()
            .map(|o| OperationClass::from_name(o).ok_or_else(|| RuleError::UnknownClass(o.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            buckets: permission
                .buckets
                .iter()
                .map(|b| BucketPattern::parse(b))
                .collect(),
            prefixes: permission
                .prefixes
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            classes,
            profile: permission.profile.clone(),
        })
    }

    /// The profile that signs what this rule permits.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    fn permits(&self, bucket: Option<&str>, class: OperationClass, scope: Scope<'_>) -> bool {
        self.classes.contains(&class)
            && self.buckets.iter().any(|b| b.matches(bucket))
            && self.within_prefixes(scope)
    }

    fn within_prefixes(&self, scope: Scope<'_>) -> bool {
        if self.prefixes.is_empty() {
            return true;
        }
        let covered = |key: &[u8]| self.prefixes.iter().any(|p| key.starts_with(p));
        match scope {
            Scope::Key(key) => covered(key),
            Scope::Listing(prefix) => prefix.is_some_and(covered),
            Scope::Unknown => false,
            Scope::Bucket => true,
        }
    }
}

/// What within a bucket a request touches, for prefix-limited rules.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    /// One object.
    Key(&'a [u8]),
    /// A listing limited to a prefix (`None`: the whole bucket).
    Listing(Option<&'a [u8]>),
    /// Keys s3mesh cannot see before the body (`DeleteObjects`).
    Unknown,
    /// The bucket itself, no object data (`HeadBucket`, bucket configuration, `ListBuckets`).
    Bucket,
}

fn scope_of(request: &S3Request) -> Scope<'_> {
    match (request.operation, &request.key) {
        (_, Some(key)) => Scope::Key(key),
        (
            Operation::ListObjects
            | Operation::ListObjectsV2
            | Operation::ListObjectVersions
            | Operation::ListMultipartUploads,
            None,
        ) => Scope::Listing(request.list_prefix.as_deref()),
        (Operation::DeleteObjects, None) => Scope::Unknown,
        _ => Scope::Bucket,
    }
}

fn describe(bucket: Option<&str>, scope: Scope<'_>) -> String {
    let Some(bucket) = bucket else {
        return "the bucket list".to_owned();
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match scope {
        Scope::Key(key) => format!("bucket {bucket:?}, key {:?}", text(key)),
        Scope::Listing(Some(prefix)) => format!("bucket {bucket:?}, prefix {:?}", text(prefix)),
        Scope::Listing(None) => format!("bucket {bucket:?} (listing without a prefix)"),
        Scope::Unknown | Scope::Bucket => format!("bucket {bucket:?}"),
    }
}

/// Why a request was refused: said to the client, so it names what to change and nothing
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// s3mesh does not know this operation, so no rule can grant it.
    #[error("s3mesh does not recognise this S3 operation ({0}), so no policy grants it")]
    UnknownOperation(String),
    /// No rule grants the class on the target.
    #[error("identity {identity:?} is not granted {class} on {target}; ask for a policy rule that grants it")]
    NotGranted {
        /// Caller.
        identity: String,
        /// Class that was needed.
        class: &'static str,
        /// `bucket "x"`, with the key or listing prefix when a prefix rule could apply.
        target: String,
    },
}

/// The profile that signs `request` for `identity` under `rules` (the rules that select this
/// caller, in policy order: the first that permits wins), or why it is refused. A copy also
/// needs `read` on its source, and headers that share or lock data their class on the target
/// ([`S3Request::header_classes`]), each through the same profile, since one key signs the
/// request.
pub fn authorize<'r, I>(identity: &str, rules: I, request: &S3Request) -> Result<&'r str, Denial>
where
    I: Iterator<Item = &'r Rule> + Clone,
{
    let op = request.operation;
    let class = op
        .class()
        .ok_or_else(|| Denial::UnknownOperation(op.as_str().to_owned()))?;
    let bucket = request.bucket.as_deref();
    let scope = scope_of(request);
    let not_granted = |class: OperationClass, bucket: Option<&str>, scope| Denial::NotGranted {
        identity: identity.to_owned(),
        class: class.as_str(),
        target: describe(bucket, scope),
    };
    let rule = rules
        .clone()
        .find(|r| r.permits(bucket, class, scope))
        .ok_or_else(|| not_granted(class, bucket, scope))?;
    let also_permitted = |class, bucket, scope| {
        let permitted = rules
            .clone()
            .any(|r| r.profile == rule.profile && r.permits(bucket, class, scope));
        match permitted {
            true => Ok(()),
            false => Err(not_granted(class, bucket, scope)),
        }
    };
    for class in &request.header_classes {
        also_permitted(*class, bucket, scope)?;
    }
    if let Some((source_bucket, source_key)) = &request.copy_source {
        also_permitted(
            OperationClass::Read,
            Some(source_bucket.as_str()),
            Scope::Key(source_key),
        )?;
    }
    Ok(&rule.profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3mesh_s3_request::RequestTarget;

    fn rule(buckets: &[&str], prefixes: &[&str], ops: &[&str], profile: &str) -> Rule {
        let text = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule::compile(&Permission {
            buckets: text(buckets),
            prefixes: text(prefixes),
            operations: text(ops),
            profile: profile.into(),
        })
        .unwrap()
    }

    fn req(method: &str, path: &str, copy: Option<&str>) -> S3Request {
        S3Request::classify(method, &RequestTarget::canonicalize(path).unwrap(), copy)
    }

    #[test]
    fn first_permitting_rule_names_the_profile() {
        let rules = [
            rule(&["a"], &["in/"], &["read"], "narrow"),
            rule(&["a*"], &[], &["read", "write"], "wide"),
        ];
        let run = |m, p| authorize("me", rules.iter(), &req(m, p, None));
        assert_eq!(run("GET", "/a/in/k"), Ok("narrow"));
        assert_eq!(run("GET", "/a/out/k"), Ok("wide"));
        assert_eq!(run("PUT", "/ab/k"), Ok("wide"));
        let denied = run("DELETE", "/a/k").unwrap_err().to_string();
        assert!(
            denied.contains("\"me\" is not granted delete on bucket \"a\", key \"k\""),
            "{denied}"
        );
    }

    #[test]
    fn copies_need_read_on_the_source_through_the_same_profile() {
        let rules = [
            rule(&["dst"], &[], &["write"], "p"),
            rule(&["src"], &[], &["read"], "other"),
        ];
        let copy = req("PUT", "/dst/k", Some("/src/k"));
        let err = authorize("me", rules.iter(), &copy).unwrap_err();
        assert!(err.to_string().contains("read on bucket \"src\""), "{err}");
        let rules = [
            rule(&["dst"], &[], &["write"], "p"),
            rule(&["src"], &[], &["read"], "p"),
        ];
        assert_eq!(authorize("me", rules.iter(), &copy), Ok("p"));
    }

    #[test]
    fn write_does_not_share_or_lock_what_it_writes() {
        fn acl<'r>(rules: &'r [Rule], path: &str) -> Result<&'r str, Denial> {
            let request =
                req("PUT", path, None).with_header_classes([("x-amz-acl", "public-read")]);
            authorize("me", rules.iter(), &request)
        }
        let writer = [rule(&["b"], &[], &["write", "bucket-admin"], "p")];
        let err = acl(&writer, "/b/k").unwrap_err().to_string();
        assert!(
            err.contains("not granted sharing on bucket \"b\", key \"k\""),
            "{err}"
        );
        let err = authorize("me", writer.iter(), &req("PUT", "/b/k?acl", None)).unwrap_err();
        assert!(err.to_string().contains("not granted sharing"), "{err}");
        let err = authorize("me", writer.iter(), &req("PUT", "/b?policy", None)).unwrap_err();
        assert!(err.to_string().contains("not granted sharing"), "{err}");
        let err = authorize("me", writer.iter(), &req("PUT", "/b/k?retention", None)).unwrap_err();
        assert!(err.to_string().contains("not granted retention"), "{err}");
        let lock = req("PUT", "/b/k", None)
            .with_header_classes([("x-amz-object-lock-mode", "GOVERNANCE")]);
        let err = authorize("me", writer.iter(), &lock).unwrap_err();
        assert!(err.to_string().contains("not granted retention"), "{err}");
        // Granted, through the same profile: allowed. Through another profile: not, since the
        // one key that signs must be allowed both.
        let sharer = [
            rule(&["b"], &[], &["write"], "p"),
            rule(&["b"], &["k"], &["sharing"], "p"),
        ];
        assert_eq!(acl(&sharer, "/b/k"), Ok("p"));
        assert!(
            acl(&sharer, "/b/other").is_err(),
            "sharing is limited to its prefix"
        );
        let elsewhere = [
            rule(&["b"], &[], &["write"], "p"),
            rule(&["b"], &[], &["sharing"], "other"),
        ];
        assert!(acl(&elsewhere, "/b/k").is_err());
    }

    #[test]
    fn permissions_with_unknown_classes_or_no_bucket_do_not_compile() {
        let p = |buckets: &[&str], ops: &[&str]| Permission {
            buckets: buckets.iter().map(|s| s.to_string()).collect(),
            prefixes: vec![],
            operations: ops.iter().map(|s| s.to_string()).collect(),
            profile: "p".into(),
        };
        assert_eq!(
            Rule::compile(&p(&["a"], &["admin"])).unwrap_err(),
            RuleError::UnknownClass("admin".into())
        );
        assert_eq!(
            Rule::compile(&p(&[], &["read"])).unwrap_err(),
            RuleError::NoBucket
        );
    }
}
