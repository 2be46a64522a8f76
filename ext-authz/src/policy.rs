//! Deny-by-default policy: identity × bucket × operation class → credential profile.

use s3mesh_s3_request::{OperationClass, S3Request};

use crate::config::RuleSpec;
use crate::identity::Identity;

/// Parses a class name as written in policy (`read`, `bucket-admin`, …).
pub fn parse_class(name: &str) -> Option<OperationClass> {
    use OperationClass::*;
    [Read, Write, List, Delete, Multipart, BucketAdmin]
        .into_iter()
        .find(|c| c.as_str() == name)
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

#[derive(Debug, Clone)]
struct Rule {
    identities: Vec<String>,
    buckets: Vec<BucketPattern>,
    classes: Vec<OperationClass>,
    profile: String,
}

impl Rule {
    fn grants(&self, identity: &str, bucket: Option<&str>, class: OperationClass) -> bool {
        self.identities.iter().any(|i| i == identity)
            && self.classes.contains(&class)
            && self.buckets.iter().any(|b| b.matches(bucket))
    }
}

/// Why a request was refused: said to the client, so it names what to change and nothing
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// s3mesh does not know this operation, so no rule can grant it.
    #[error("s3mesh does not recognise this S3 operation ({0}), so no policy grants it")]
    UnknownOperation(String),
    /// No rule grants the class on the bucket.
    #[error("identity {identity:?} is not granted {class} on {target}; ask for a policy rule that grants it")]
    NotGranted {
        /// Caller.
        identity: String,
        /// Class that was needed.
        class: &'static str,
        /// `bucket "x"` or `the bucket list`.
        target: String,
    },
}

/// The compiled rules, in file order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Compiles validated rules.
    pub fn new(specs: &[RuleSpec]) -> Self {
        let rules = specs
            .iter()
            .map(|s| Rule {
                identities: s.identities.clone(),
                buckets: s.buckets.iter().map(|b| BucketPattern::parse(b)).collect(),
                classes: s.operations.iter().filter_map(|o| parse_class(o)).collect(),
                profile: s.profile.clone(),
            })
            .collect();
        Self { rules }
    }

    /// The profile that signs `request` for `identity`, or why it is refused. A copy also needs
    /// `read` on its source bucket through the same profile, since one key signs the request.
    pub fn authorize(&self, identity: &Identity, request: &S3Request) -> Result<&str, Denial> {
        let op = request.operation;
        let class = op
            .class()
            .ok_or_else(|| Denial::UnknownOperation(op.as_str().to_owned()))?;
        let bucket = request.bucket.as_deref();
        let not_granted = |class: OperationClass, bucket: Option<&str>| Denial::NotGranted {
            identity: identity.name.clone(),
            class: class.as_str(),
            target: bucket.map_or("the bucket list".to_owned(), |b| format!("bucket {b:?}")),
        };
        let rule = self
            .rules
            .iter()
            .find(|r| r.grants(&identity.name, bucket, class))
            .ok_or_else(|| not_granted(class, bucket))?;
        if let Some(source) = request.copy_source_bucket.as_deref() {
            let readable = self.rules.iter().any(|r| {
                r.profile == rule.profile
                    && r.grants(&identity.name, Some(source), OperationClass::Read)
            });
            if !readable {
                return Err(not_granted(OperationClass::Read, Some(source)));
            }
        }
        Ok(&rule.profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3mesh_s3_request::RequestTarget;

    fn rule(identity: &str, buckets: &[&str], ops: &[&str], profile: &str) -> RuleSpec {
        RuleSpec {
            identities: vec![identity.into()],
            buckets: buckets.iter().map(|s| s.to_string()).collect(),
            operations: ops.iter().map(|s| s.to_string()).collect(),
            profile: profile.into(),
        }
    }

    fn req(method: &str, path: &str, copy: Option<&str>) -> S3Request {
        S3Request::classify(method, &RequestTarget::canonicalize(path).unwrap(), copy)
    }

    fn who(name: &str) -> Identity {
        Identity { name: name.into() }
    }

    #[test]
    fn grants_only_what_rules_say() {
        let p = Policy::new(&[
            rule("a", &["a"], &["read", "write", "list"], "pa"),
            rule("a", &["logs-*"], &["read"], "pa"),
        ]);
        assert_eq!(p.authorize(&who("a"), &req("GET", "/a/k", None)), Ok("pa"));
        assert_eq!(
            p.authorize(&who("a"), &req("GET", "/logs-1/k", None)),
            Ok("pa")
        );
        let denied = p
            .authorize(&who("a"), &req("DELETE", "/a/k", None))
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "identity \"a\" is not granted delete on bucket \"a\"; ask for a policy rule that grants it"
        );
        assert!(p.authorize(&who("a"), &req("GET", "/b/k", None)).is_err());
        assert!(p.authorize(&who("b"), &req("GET", "/a/k", None)).is_err());
        assert!(p.authorize(&who("a"), &req("GET", "/", None)).is_err());
        assert!(matches!(
            p.authorize(&who("a"), &req("PATCH", "/a/k", None)),
            Err(Denial::UnknownOperation(_))
        ));
    }

    #[test]
    fn copies_need_read_on_the_source_with_the_same_profile() {
        let p = Policy::new(&[
            rule("a", &["a"], &["read", "write"], "pa"),
            rule("a", &["b"], &["read"], "pb"),
        ]);
        assert_eq!(
            p.authorize(&who("a"), &req("PUT", "/a/k", Some("a/src"))),
            Ok("pa")
        );
        let denied = p
            .authorize(&who("a"), &req("PUT", "/a/k", Some("b/src")))
            .unwrap_err();
        assert!(
            denied.to_string().contains("read on bucket \"b\""),
            "{denied}"
        );
    }

    #[test]
    fn only_a_wildcard_grants_the_bucket_list() {
        let p = Policy::new(&[rule("a", &["*"], &["list"], "pa")]);
        assert_eq!(p.authorize(&who("a"), &req("GET", "/", None)), Ok("pa"));
    }
}
