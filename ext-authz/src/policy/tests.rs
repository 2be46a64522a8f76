use super::*;
use crate::identity::Source;
use s3mesh_access::rules::{authorize, Denial};
use s3mesh_s3_request::{RequestTarget, S3Request};

/// The policy asked directly: the profile that signs `request` for `identity`, or why not (the
/// service asks through `s3mesh_access::decision::decide` with the same rules).
trait Authorize {
    fn authorize(&self, identity: &Identity, request: &S3Request) -> Result<&str, Denial>;
}

impl Authorize for Policy {
    fn authorize(&self, identity: &Identity, request: &S3Request) -> Result<&str, Denial> {
        authorize(&identity.name, self.rules_for(identity), request)
    }
}

fn rule(
    selector: SelectorSpec,
    buckets: &[&str],
    prefixes: &[&str],
    ops: &[&str],
    profile: &str,
) -> RuleSpec {
    RuleSpec {
        selector,
        buckets: buckets.iter().map(|s| s.to_string()).collect(),
        prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        operations: ops.iter().map(|s| s.to_string()).collect(),
        profile: profile.into(),
    }
}

fn named(name: &str) -> SelectorSpec {
    SelectorSpec {
        identities: vec![name.into()],
        ..SelectorSpec::default()
    }
}

fn req(method: &str, path: &str, copy: Option<&str>) -> S3Request {
    S3Request::classify(method, &RequestTarget::canonicalize(path).unwrap(), copy)
}

fn who(name: &str) -> Identity {
    Identity {
        name: name.into(),
        ..Identity::default()
    }
}

fn pod(ns: &str, sa: &str, labels: &[(&str, &str)]) -> Identity {
    Identity {
        name: format!("{ns}/{sa}"),
        source: Source::PodIp,
        namespace: Some(ns.into()),
        service_account: Some(sa.into()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Identity::default()
    }
}

#[test]
fn grants_only_what_rules_say() {
    let p = Policy::new(&[
        rule(named("a"), &["a"], &[], &["read", "write", "list"], "pa"),
        rule(named("a"), &["logs-*"], &[], &["read"], "pa"),
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
        "identity \"a\" is not granted delete on bucket \"a\", key \"k\"; ask for a policy rule that grants it"
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
fn selectors_match_namespace_service_account_principal_and_labels() {
    let by_ns = SelectorSpec {
        namespaces: vec!["team-a".into()],
        ..SelectorSpec::default()
    };
    let by_sa = SelectorSpec {
        service_accounts: vec!["team-b/uploader".into()],
        ..SelectorSpec::default()
    };
    let by_labels = SelectorSpec {
        namespaces: vec!["team-c".into()],
        labels: [("app".to_string(), "ingest".to_string())].into(),
        ..SelectorSpec::default()
    };
    let by_principal = SelectorSpec {
        principals: vec!["spiffe://cluster.local/ns/gw/sa/s3".into()],
        ..SelectorSpec::default()
    };
    let p = Policy::new(&[
        rule(by_ns, &["a"], &[], &["read"], "pa"),
        rule(by_sa, &["b"], &[], &["read"], "pb"),
        rule(by_labels, &["c"], &[], &["read"], "pc"),
        rule(by_principal, &["d"], &[], &["read"], "pd"),
    ]);
    let get = |bucket: &str| req("GET", &format!("/{bucket}/k"), None);
    assert_eq!(p.authorize(&pod("team-a", "any", &[]), &get("a")), Ok("pa"));
    assert!(p.authorize(&pod("team-x", "any", &[]), &get("a")).is_err());
    assert_eq!(
        p.authorize(&pod("team-b", "uploader", &[]), &get("b")),
        Ok("pb")
    );
    assert!(p
        .authorize(&pod("team-b", "reader", &[]), &get("b"))
        .is_err());
    assert_eq!(
        p.authorize(
            &pod("team-c", "x", &[("app", "ingest"), ("v", "2")]),
            &get("c")
        ),
        Ok("pc")
    );
    assert!(p
        .authorize(&pod("team-c", "x", &[("app", "other")]), &get("c"))
        .is_err());
    let mut gateway = pod("gw", "s3", &[]);
    gateway.principal = Some("spiffe://cluster.local/ns/gw/sa/s3".into());
    assert_eq!(p.authorize(&gateway, &get("d")), Ok("pd"));
    assert!(
        p.authorize(&pod("gw", "s3", &[]), &get("d")).is_err(),
        "same name, no principal"
    );
}

#[test]
fn prefixes_limit_objects_and_listings() {
    let p = Policy::new(&[rule(
        named("a"),
        &["shared"],
        &["team-a/", "tmp/a-"],
        &["read", "write", "list", "delete"],
        "pa",
    )]);
    let ok = |method, path: &str| p.authorize(&who("a"), &req(method, path, None)).is_ok();
    assert!(ok("GET", "/shared/team-a/x"));
    assert!(ok("PUT", "/shared/tmp/a-1"));
    assert!(!ok("GET", "/shared/team-b/x"));
    assert!(!ok("GET", "/shared/team-a"), "the prefix is not the key");
    assert!(ok("GET", "/shared?list-type=2&prefix=team-a/2026/"));
    assert!(
        !ok("GET", "/shared?list-type=2&prefix=team"),
        "would list other teams' keys"
    );
    assert!(
        !ok("GET", "/shared?list-type=2"),
        "a listing without a prefix covers every key"
    );
    assert!(
        !ok("POST", "/shared?delete"),
        "DeleteObjects names its keys in the body"
    );
    assert!(ok("HEAD", "/shared"));
    let denied = p
        .authorize(
            &who("a"),
            &req("GET", "/shared?list-type=2&prefix=team", None),
        )
        .unwrap_err();
    assert!(denied.to_string().contains("prefix \"team\""), "{denied}");
}

#[test]
fn copies_need_read_on_the_source_with_the_same_profile() {
    let p = Policy::new(&[
        rule(named("a"), &["a"], &[], &["read", "write"], "pa"),
        rule(named("a"), &["b"], &[], &["read"], "pb"),
        rule(named("a"), &["c"], &["public/"], &["read"], "pa"),
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
    assert_eq!(
        p.authorize(&who("a"), &req("PUT", "/a/k", Some("c/public/x"))),
        Ok("pa")
    );
    assert!(p
        .authorize(&who("a"), &req("PUT", "/a/k", Some("c/private/x")))
        .is_err());
}

#[test]
fn only_a_wildcard_grants_the_bucket_list() {
    let p = Policy::new(&[rule(named("a"), &["*"], &[], &["list"], "pa")]);
    assert_eq!(p.authorize(&who("a"), &req("GET", "/", None)), Ok("pa"));
}
