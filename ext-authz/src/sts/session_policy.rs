//! A session policy from the rules that name a profile: the same buckets, prefixes and
//! operation classes, as IAM statements, so the store itself refuses what s3mesh would.
//!
//! Session policies can only narrow the role's own policy, never widen it. Object actions are
//! scoped to `bucket/prefix*`; listings to the bucket, with an `s3:prefix` condition when the
//! rule has prefixes. Literal `*`, `?` and `$` in names are escaped (`${*}`), so a prefix never
//! becomes a wildcard. AWS limits a packed session policy to about 2 KiB: many rules on one
//! profile can exceed it, and STS then refuses the call with `PackedPolicyTooLarge` (the `503`
//! names it).

use serde_json::{json, Value};

use s3mesh_access::rules::Permission;

/// The IAM actions of an operation class: on objects, and on the bucket.
fn actions(class: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match class {
        "read" => (
            &[
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:GetObjectAttributes",
                "s3:GetObjectVersionAttributes",
                "s3:GetObjectTagging",
                "s3:GetObjectVersionTagging",
            ],
            &[],
        ),
        "write" => (
            &[
                "s3:PutObject",
                "s3:PutObjectTagging",
                "s3:PutObjectVersionTagging",
                "s3:DeleteObjectTagging",
                "s3:DeleteObjectVersionTagging",
            ],
            &[],
        ),
        "list" => (
            &[],
            &[
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:ListBucketMultipartUploads",
                "s3:GetBucketLocation",
            ],
        ),
        "delete" => (&["s3:DeleteObject", "s3:DeleteObjectVersion"], &[]),
        "multipart" => (
            &[
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            &["s3:ListBucketMultipartUploads"],
        ),
        "bucket-admin" => (
            &[],
            &[
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:GetBucketVersioning",
                "s3:PutBucketVersioning",
                "s3:GetBucketTagging",
                "s3:PutBucketTagging",
                "s3:GetLifecycleConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:GetBucketCORS",
                "s3:PutBucketCORS",
                "s3:GetEncryptionConfiguration",
                "s3:PutEncryptionConfiguration",
                "s3:GetBucketNotification",
                "s3:PutBucketNotification",
                "s3:GetBucketLogging",
                "s3:PutBucketLogging",
                "s3:GetReplicationConfiguration",
                "s3:PutReplicationConfiguration",
            ],
        ),
        "sharing" => (
            &[
                "s3:GetObjectAcl",
                "s3:PutObjectAcl",
                "s3:GetObjectVersionAcl",
                "s3:PutObjectVersionAcl",
            ],
            &[
                "s3:GetBucketPolicy",
                "s3:PutBucketPolicy",
                "s3:DeleteBucketPolicy",
                "s3:GetBucketAcl",
                "s3:PutBucketAcl",
                "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketPublicAccessBlock",
                "s3:GetBucketOwnershipControls",
                "s3:PutBucketOwnershipControls",
                "s3:GetBucketWebsite",
                "s3:PutBucketWebsite",
                "s3:DeleteBucketWebsite",
            ],
        ),
        "retention" => (
            &[
                "s3:GetObjectRetention",
                "s3:PutObjectRetention",
                "s3:GetObjectLegalHold",
                "s3:PutObjectLegalHold",
                "s3:BypassGovernanceRetention",
            ],
            &[
                "s3:GetBucketObjectLockConfiguration",
                "s3:PutBucketObjectLockConfiguration",
            ],
        ),
        _ => (&[], &[]),
    }
}

/// `text` with IAM's wildcard characters made literal.
fn literal(text: &str) -> String {
    text.replace('$', "${$}")
        .replace('*', "${*}")
        .replace('?', "${?}")
}

/// A bucket pattern of a rule (`team-*`, `*`) as the bucket part of an ARN: its trailing `*` is
/// the rule's own wildcard and stays one.
fn bucket_arn(bucket: &str) -> String {
    match bucket.strip_suffix('*') {
        Some(stem) => format!("arn:aws:s3:::{}*", literal(stem)),
        None => format!("arn:aws:s3:::{}", literal(bucket)),
    }
}

/// The session policy of `rules` (those of one caller that name one profile), JSON.
pub fn for_rules<'a>(rules: impl IntoIterator<Item = &'a Permission>) -> String {
    let mut statements: Vec<Value> = Vec::new();
    for rule in rules {
        let (mut on_objects, mut on_buckets): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for class in &rule.operations {
            let (objects, buckets) = actions(class);
            on_objects.extend(
                objects
                    .iter()
                    .filter(|a| !on_objects.contains(a))
                    .collect::<Vec<_>>(),
            );
            on_buckets.extend(
                buckets
                    .iter()
                    .filter(|a| !on_buckets.contains(a))
                    .collect::<Vec<_>>(),
            );
        }
        let buckets: Vec<String> = rule.buckets.iter().map(|b| bucket_arn(b)).collect();
        if !on_objects.is_empty() {
            let prefixes: Vec<String> = if rule.prefixes.is_empty() {
                vec!["*".to_owned()]
            } else {
                rule.prefixes
                    .iter()
                    .map(|p| format!("{}*", literal(p)))
                    .collect()
            };
            let resources: Vec<String> = buckets
                .iter()
                .flat_map(|b| prefixes.iter().map(move |p| format!("{b}/{p}")))
                .collect();
            statements
                .push(json!({"Effect": "Allow", "Action": on_objects, "Resource": resources}));
        }
        if on_buckets.is_empty() {
            continue;
        }
        let (listing, others): (Vec<&str>, Vec<&str>) = on_buckets
            .iter()
            .partition(|a| **a == "s3:ListBucket" || **a == "s3:ListBucketVersions");
        if !others.is_empty() {
            statements.push(json!({"Effect": "Allow", "Action": others, "Resource": buckets}));
        }
        if !listing.is_empty() {
            let mut statement = json!({"Effect": "Allow", "Action": listing, "Resource": buckets});
            if !rule.prefixes.is_empty() {
                let within: Vec<String> = rule
                    .prefixes
                    .iter()
                    .map(|p| format!("{}*", literal(p)))
                    .collect();
                statement["Condition"] = json!({"StringLike": {"s3:prefix": within}});
            }
            statements.push(statement);
        }
        if rule.buckets.iter().any(|b| b == "*") && rule.operations.iter().any(|o| o == "list") {
            statements.push(
                json!({"Effect": "Allow", "Action": ["s3:ListAllMyBuckets"], "Resource": "*"}),
            );
        }
    }
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(buckets: &[&str], prefixes: &[&str], operations: &[&str]) -> Permission {
        Permission {
            buckets: buckets.iter().map(|s| (*s).to_owned()).collect(),
            prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
            operations: operations.iter().map(|s| (*s).to_owned()).collect(),
            profile: "p".to_owned(),
        }
    }

    #[test]
    fn objects_within_prefixes_and_listings_under_a_condition() {
        let policy: Value = serde_json::from_str(&for_rules(&[rule(
            &["team-a"],
            &["reports/"],
            &["read", "list"],
        )]))
        .unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(
            statements[0]["Resource"],
            json!(["arn:aws:s3:::team-a/reports/*"])
        );
        assert!(statements[0]["Action"]
            .as_array()
            .unwrap()
            .contains(&json!("s3:GetObject")));
        assert!(!statements.iter().any(|s| s["Action"]
            .as_array()
            .unwrap()
            .contains(&json!("s3:PutObject"))));
        let listing = statements
            .iter()
            .find(|s| s["Action"][0] == "s3:ListBucket")
            .unwrap();
        assert_eq!(listing["Resource"], json!(["arn:aws:s3:::team-a"]));
        assert_eq!(
            listing["Condition"]["StringLike"]["s3:prefix"],
            json!(["reports/*"])
        );
    }

    #[test]
    fn wildcards_only_where_the_rule_has_them() {
        let text = for_rules(&[rule(&["team-*", "*"], &["a*b?"], &["write", "list"])]);
        assert!(text.contains("arn:aws:s3:::team-*/a${*}b${?}*"), "{text}");
        assert!(text.contains("s3:ListAllMyBuckets"), "{text}");
        let plain = for_rules(&[rule(&["data"], &[], &["delete"])]);
        assert!(
            plain.contains("arn:aws:s3:::data/*") && !plain.contains("ListAllMyBuckets"),
            "{plain}"
        );
    }
}
