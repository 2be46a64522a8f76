//! Deny-by-default policy: identity selector × bucket × key prefix × operation class →
//! credential profile.

use s3mesh_s3_request::{Operation, OperationClass, S3Request};

use crate::config::{RuleSpec, SelectorSpec};
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

/// Whether `spec` selects `id`: every field given must match (lists: any entry).
fn selects(spec: &SelectorSpec, id: &Identity) -> bool {
    let any = |list: &[String], value: Option<&str>| {
        list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l == v))
    };
    let service_account = match (&id.namespace, &id.service_account) {
        (Some(ns), Some(sa)) => Some(format!("{ns}/{sa}")),
        _ => None,
    };
    any(&spec.identities, Some(&id.name))
        && any(&spec.namespaces, id.namespace.as_deref())
        && any(&spec.service_accounts, service_account.as_deref())
        && any(&spec.principals, id.principal.as_deref())
        && spec.labels.iter().all(|(k, v)| id.labels.get(k) == Some(v))
}

#[derive(Debug, Clone)]
struct Rule {
    selector: SelectorSpec,
    buckets: Vec<BucketPattern>,
    prefixes: Vec<Vec<u8>>,
    classes: Vec<OperationClass>,
    profile: String,
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

impl Rule {
    fn grants(
        &self,
        identity: &Identity,
        bucket: Option<&str>,
        class: OperationClass,
        scope: Scope<'_>,
    ) -> bool {
        self.classes.contains(&class)
            && self.buckets.iter().any(|b| b.matches(bucket))
            && selects(&self.selector, identity)
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

/// The compiled rules, in file order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
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

impl Policy {
    /// Compiles validated rules.
    pub fn new(specs: &[RuleSpec]) -> Self {
        let rules = specs
            .iter()
            .map(|s| Rule {
                selector: s.selector.clone(),
                buckets: s.buckets.iter().map(|b| BucketPattern::parse(b)).collect(),
                prefixes: s.prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
                classes: s.operations.iter().filter_map(|o| parse_class(o)).collect(),
                profile: s.profile.clone(),
            })
            .collect();
        Self { rules }
    }

    /// The profile that signs `request` for `identity`, or why it is refused. A copy also needs
    /// `read` on its source through the same profile, since one key signs the request.
    pub fn authorize(&self, identity: &Identity, request: &S3Request) -> Result<&str, Denial> {
        let op = request.operation;
        let class = op
            .class()
            .ok_or_else(|| Denial::UnknownOperation(op.as_str().to_owned()))?;
        let bucket = request.bucket.as_deref();
        let scope = scope_of(request);
        let not_granted = |class: OperationClass, bucket: Option<&str>, scope| Denial::NotGranted {
            identity: identity.name.clone(),
            class: class.as_str(),
            target: describe(bucket, scope),
        };
        let rule = self
            .rules
            .iter()
            .find(|r| r.grants(identity, bucket, class, scope))
            .ok_or_else(|| not_granted(class, bucket, scope))?;
        if let Some((source_bucket, source_key)) = &request.copy_source {
            let source = Scope::Key(source_key);
            let readable = self.rules.iter().any(|r| {
                r.profile == rule.profile
                    && r.grants(identity, Some(source_bucket), OperationClass::Read, source)
            });
            if !readable {
                return Err(not_granted(
                    OperationClass::Read,
                    Some(source_bucket),
                    source,
                ));
            }
        }
        Ok(&rule.profile)
    }
}

#[cfg(test)]
mod tests;
