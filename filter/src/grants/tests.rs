use super::*;
use s3mesh_access::request::Request;
use s3mesh_sigv4::AmzDate;

const MAY_24_2013_MS: u64 = 1_369_353_600_000;
const DATE: &str = "20130524";

/// A grant as ext-authz sends it: team-a may read bucket `data` with profile `p`.
fn granted_json(date: &str, ttl_ms: u64) -> String {
    let key = "11".repeat(32);
    format!(
        r#"{{"granted":{{"identity":"team-a","ttl_ms":{ttl_ms},"rules":[{{"buckets":["data"],"operations":["read"],"profile":"p"}}],"profiles":{{"p":{{"access_key_id":"AKID","region":"us-east-1","service":"s3","date":"{date}","key":"{key}"}}}}}}}}"#
    )
}

fn caller(ip: &str) -> Caller {
    Caller::new(None, Some(ip))
}

#[test]
fn callers_come_from_envoys_address_and_principal() {
    let c = Caller::new(None, Some("10.1.2.3:45678"));
    assert_eq!(c.source, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(c.shared_key(), "s3mesh.grant.v1/10.1.2.3|");
    let v6 = Caller::new(Some("spiffe://td/ns/a/sa/b".into()), Some("[::1]:80"));
    assert_eq!(v6.shared_key(), "s3mesh.grant.v1/::1|spiffe://td/ns/a/sa/b");
    assert_eq!(Caller::new(None, Some("not an address")).source, None);
    let body = String::from_utf8(c.grant_request(DATE.into())).unwrap();
    assert_eq!(body, r#"{"source":"10.1.2.3","date":"20130524"}"#);
}

#[test]
fn a_grant_is_used_until_it_expires_or_the_day_changes() {
    let now = MAY_24_2013_MS;
    let Answer::Granted { held, json } =
        read_answer(Some("200"), granted_json(DATE, 5_000).as_bytes(), now).unwrap()
    else {
        panic!("granted expected")
    };
    assert_eq!(
        (held.refresh_ms, held.expires_ms),
        (now + 4_000, now + 5_000)
    );
    let mut cache = GrantCache::default();
    cache.insert(caller("10.0.0.1:1"), held.clone(), now);
    let who = caller("10.0.0.1:2");
    assert!(!cache.get(&who, now + 3_999, DATE).unwrap().refresh);
    assert!(cache.get(&who, now + 4_999, DATE).unwrap().refresh);
    assert!(cache.get(&who, now + 5_000, DATE).is_none());
    assert!(cache.get(&who, now, "20130525").is_none());
    assert!(cache.get(&caller("10.0.0.2:1"), now, DATE).is_none());
    let mut revoked = GrantCache::default();
    revoked.insert(who.clone(), held.clone(), now);
    revoked.forget(&who);
    assert!(revoked.get(&who, now, DATE).is_none());
    // Shared with the other workers: the same grant, the same times.
    let record = encode_record(&held, &json);
    let shared = decode_record(&record, now + 1, DATE).unwrap();
    assert_eq!(
        (shared.refresh_ms, shared.expires_ms),
        (held.refresh_ms, held.expires_ms)
    );
    assert!(decode_record(&record, now + 5_000, DATE).is_none());
    assert!(decode_record(&record[..15], now, DATE).is_none());
    assert!(decode_record(&[0; 16], 0, DATE).is_none());
    // And it decides.
    let request = Request {
        method: "GET",
        host: "s3.local",
        path: "/data/k",
        headers: &[],
    };
    let time = AmzDate::from_unix_seconds(now / 1000);
    assert!(shared.grant.decide(&request, time).is_ok());
}

#[test]
fn a_caller_is_renewed_once_at_a_time() {
    let mut cache = GrantCache::default();
    let (a, b) = (caller("10.0.0.1:1"), caller("10.0.0.2:1"));
    cache.want_refresh(&a);
    cache.want_refresh(&a);
    cache.want_refresh(&b);
    assert_eq!(cache.take_wanted(), [a.clone(), b.clone()]);
    // Under way: asking again changes nothing until it is over.
    cache.want_refresh(&a);
    assert!(cache.take_wanted().is_empty());
    cache.renewed(&a);
    cache.want_refresh(&a);
    assert_eq!(cache.take_wanted(), [a]);
}

#[test]
fn a_worker_drops_expired_grants_when_it_holds_many() {
    let now = MAY_24_2013_MS;
    let Answer::Granted { held, .. } =
        read_answer(Some("200"), granted_json(DATE, 10).as_bytes(), now).unwrap()
    else {
        panic!("granted expected")
    };
    let mut cache = GrantCache::default();
    for i in 0..PRUNE_ABOVE {
        cache.insert(
            caller(&format!("10.0.{}.{}:1", i / 256, i % 256)),
            held.clone(),
            now,
        );
    }
    assert_eq!(cache.len(), PRUNE_ABOVE);
    cache.insert(caller("10.9.9.9:1"), held, now + 10);
    assert_eq!(cache.len(), 1);
}

#[test]
fn refusals_reach_the_client_and_failures_fail_closed() {
    let refused =
        br#"{"refused":{"status":403,"message":"no identity for source address 10.0.0.9"}}"#;
    let Answer::Refused(error) = read_answer(Some("200"), refused, 0).unwrap() else {
        panic!("refused expected")
    };
    assert_eq!((error.status, error.code), (403, "AccessDenied"));
    assert!(error.message.contains("10.0.0.9"));
    for (status, body) in [
        (Some("503"), &b"upstream connect error"[..]),
        (None, b""),
        (Some("200"), b"{\"granted\":{}}"),
        (Some("200"), b"<html>"),
    ] {
        let error = read_answer(status, body, 0).unwrap_err();
        assert_eq!(error.status, 503, "{status:?}");
        assert!(
            error.message.contains("could not get a grant"),
            "{}",
            error.message
        );
    }
    let bad_rule = granted_json(DATE, 5).replace("\"read\"", "\"everything\"");
    let error = read_answer(Some("200"), bad_rule.as_bytes(), 0).unwrap_err();
    assert!(
        error.message.contains("unusable grant: rule 0"),
        "{}",
        error.message
    );
}
