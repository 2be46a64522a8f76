//! Why the store refused a request s3mesh signed: the canonical request and string to sign
//! s3mesh used, beside the store's own when its error carries them (AWS S3 and several
//! S3-compatible stores put `CanonicalRequest` and `StringToSign` in `SignatureDoesNotMatch`),
//! with the first line that differs marked; and the clock skew when the store states its time
//! (`RequestTimeTooSkewed`). Without this an operator needs a packet capture to see why.
//!
//! s3mesh's side is rebuilt from the request as it was forwarded (the signed headers the
//! `Authorization` header names, the payload hash), so nothing is kept per request on the
//! success path. Neither side needs or shows a secret: values of headers that carry one (the
//! session token, SSE-C keys) are replaced by `<redacted>` after comparing.

use s3mesh_sigv4::signature::{string_to_sign, ALGORITHM};
use s3mesh_sigv4::CanonicalRequest;

/// The store's error codes worth a diagnosis: the signature, the key, or the clock.
pub const DIAGNOSED: [&str; 4] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "RequestTimeTooSkewed",
];

/// The most of an error body read: S3 errors are well under 4 KiB, with the canonical request.
pub const MAX_BODY: usize = 16 * 1024;

/// Signed headers whose values are secrets of their own.
const SECRET_HEADERS: [&str; 3] = [
    "x-amz-security-token",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key",
];

/// What the store's error said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreError {
    /// `Code`.
    pub code: String,
    /// `Message`.
    pub message: String,
    /// `CanonicalRequest`, where the store returns it.
    pub canonical_request: Option<String>,
    /// `StringToSign`, where the store returns it.
    pub string_to_sign: Option<String>,
    /// `RequestTime` and `ServerTime` of `RequestTimeTooSkewed`.
    pub request_time: Option<String>,
    /// See `request_time`.
    pub server_time: Option<String>,
}

impl StoreError {
    /// Reads an S3 error document; `None` when `body` is not one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let code = element(text, "Code")?;
        Some(Self {
            code,
            message: element(text, "Message").unwrap_or_default(),
            canonical_request: element(text, "CanonicalRequest"),
            string_to_sign: element(text, "StringToSign"),
            request_time: element(text, "RequestTime"),
            server_time: element(text, "ServerTime"),
        })
    }

    /// Whether the code is one [`DIAGNOSED`].
    pub fn is_diagnosed(&self) -> bool {
        DIAGNOSED.contains(&self.code.as_str())
    }
}

/// The text of the first `<name>` element of a flat XML document, entities decoded.
fn element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(unescape(&text[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#xA;", "\n")
        .replace("&#10;", "\n")
        .replace("&amp;", "&")
}

/// A request's headers as forwarded (pseudo-headers included), kept from when s3mesh signed
/// it (grant mode) or saw ext_authz's signature. The signature's changes are kept apart and
/// applied only when a refusal is explained: nothing is copied on the success path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    received: Vec<(String, String)>,
    set: Vec<(&'static str, String)>,
    removed: Vec<&'static str>,
}

impl Forwarded {
    /// Headers forwarded as they are.
    pub fn as_received(headers: Vec<(String, String)>) -> Self {
        Self {
            received: headers,
            ..Self::default()
        }
    }

    /// `headers` as read before signing, and the signature's changes to them.
    pub fn signed(
        headers: Vec<(String, String)>,
        set: Vec<(&'static str, String)>,
        removed: Vec<&'static str>,
    ) -> Self {
        Self {
            received: headers,
            set,
            removed,
        }
    }

    /// Every header as forwarded.
    fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let replaced = |n: &str| {
            self.removed.iter().any(|r| n.eq_ignore_ascii_case(r))
                || self.set.iter().any(|(s, _)| n.eq_ignore_ascii_case(s))
        };
        self.received
            .iter()
            .filter(move |(n, _)| !replaced(n))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(self.set.iter().map(|(n, v)| (*n, v.as_str())))
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// The canonical request and string to sign of a forwarded request, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The canonical request, as s3mesh signed it.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// `x-amz-date`.
    pub amz_date: String,
}

impl Signed {
    /// Rebuilds what was signed from the request as forwarded; `None` when it carries no SigV4
    /// `Authorization` header.
    pub fn rebuild(forwarded: &Forwarded) -> Option<Self> {
        let get = |name: &str| forwarded.header(name);
        let authorization = get("authorization")?;
        let field = |key: &str| authorization_field(authorization, key);
        let scope = field("Credential=")?.split_once('/')?.1;
        // Envoy holds `host` as `:authority`.
        let mut signed: Vec<(&str, &str)> = Vec::new();
        for name in field("SignedHeaders=")?.split(';') {
            let found = forwarded
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name));
            let before = signed.len();
            signed.extend(found.map(|(_, v)| (name, v)));
            if signed.len() == before && name == "host" {
                signed.extend(get(":authority").map(|v| ("host", v)));
            }
        }
        let target = get(":path")?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let payload = get("x-amz-content-sha256").unwrap_or("UNSIGNED-PAYLOAD");
        let request = CanonicalRequest::new(get(":method")?, path, query, &signed, payload).ok()?;
        let amz_date = get("x-amz-date")?.to_owned();
        Some(Self {
            string_to_sign: string_to_sign(&amz_date, scope, &request.hash()),
            canonical_request: request.to_string(),
            amz_date,
        })
    }
}

/// The value of `key` (`Credential=`, `SignedHeaders=`, `Signature=`) in a SigV4
/// `Authorization` header; `None` when the header is not SigV4 or lacks the field.
pub fn authorization_field<'a>(authorization: &'a str, key: &str) -> Option<&'a str> {
    authorization
        .strip_prefix(ALGORITHM)?
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix(key))
}

/// The log message for `store`'s refusal of a request s3mesh signed as `ours` (`None` when
/// the request could not be rebuilt), one line, newlines shown as `\n`.
pub fn report(ours: Option<&Signed>, store: &StoreError) -> String {
    let mut out = format!("the store refused a request s3mesh signed: {}", store.code);
    if !store.message.is_empty() {
        out.push_str(&format!(" ({})", store.message));
    }
    if let Some(skew) = skew(store) {
        out.push_str(&format!("; clock skew: the store's clock is {skew:+} s from the request's (x-amz-date); check NTP on the Envoy host"));
    }
    let Some(ours) = ours else {
        out.push_str("; the request carried no SigV4 Authorization header to compare");
        return out;
    };
    for (what, mine, theirs) in [
        (
            "canonical request",
            &ours.canonical_request,
            &store.canonical_request,
        ),
        (
            "string to sign",
            &ours.string_to_sign,
            &store.string_to_sign,
        ),
    ] {
        out.push_str(&format!("; {what} (s3mesh): {}", shown(mine)));
        match theirs {
            Some(theirs) => {
                out.push_str(&format!("; {what} (store): {}", shown(theirs)));
                out.push_str(&format!("; {}", first_difference(mine, theirs)));
            }
            None => out.push_str(&format!("; the store did not return its {what}")),
        }
    }
    out
}

/// Where two texts first differ, by line, naming the line's part of a canonical request.
fn first_difference(mine: &str, theirs: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (mine.lines().collect(), theirs.lines().collect());
    let Some(line) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) else {
        return "identical: the store computed the same text, so the key differs (a rotated or wrong secret, another region or service in the scope)".to_owned();
    };
    let show =
        |l: Option<&&str>| l.map_or("<none>".to_owned(), |l| format!("{:?}", redact_line(l)));
    format!(
        "first difference at line {} >>> s3mesh {} | store {}",
        line + 1,
        show(a.get(line)),
        show(b.get(line))
    )
}

/// `text` with secret header values redacted and newlines shown as `\n`.
fn shown(text: &str) -> String {
    text.lines()
        .map(redact_line)
        .collect::<Vec<_>>()
        .join("\\n")
}

fn redact_line(line: &str) -> String {
    match line.split_once(':') {
        Some((name, _)) if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) => {
            format!("{name}:<redacted>")
        }
        _ => line.to_owned(),
    }
}

/// The store's clock minus the request's, in seconds, when the store states both.
fn skew(store: &StoreError) -> Option<i64> {
    let request = unix_seconds(store.request_time.as_deref()?)?;
    let server = unix_seconds(store.server_time.as_deref()?)?;
    Some(server - request)
}

/// Seconds since 1970 of `20261130T220000Z` or `2026-11-30T22:00:00(.sss)Z`.
fn unix_seconds(text: &str) -> Option<i64> {
    let digits: String = text
        .split('.')
        .next()?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if digits.len() != 14 {
        return None;
    }
    let n = |range: std::ops::Range<usize>| digits.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(8..10)?, n(10..12)?, n(12..14)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3_600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: bool) -> Forwarded {
        let mut h = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), "/test.txt".to_owned()),
            (":authority".to_owned(), "examplebucket.s3.amazonaws.com".to_owned()),
            ("range".to_owned(), "bytes=0-9".to_owned()),
            ("x-amz-content-sha256".to_owned(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned()),
            ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
            ("authorization".to_owned(), "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41".to_owned()),
        ];
        if token {
            h.push((
                "x-amz-security-token".to_owned(),
                "SESSION-TOKEN-SECRET".to_owned(),
            ));
            h[6].1 = h[6]
                .1
                .replace("x-amz-date,", "x-amz-date;x-amz-security-token,");
        }
        Forwarded::as_received(h)
    }

    /// AWS's documented GET example ("Signature Calculations for the Authorization Header"):
    /// the rebuilt canonical request and string to sign are the documented ones.
    #[test]
    fn rebuilds_what_aws_documents_for_its_get_example() {
        let signed = Signed::rebuild(&headers(false)).unwrap();
        assert_eq!(
            signed.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let unsigned = Forwarded::as_received(vec![("authorization".into(), "AWS x:y".into())]);
        assert!(Signed::rebuild(&unsigned).is_none());
        let signed = Forwarded::signed(
            vec![
                ("X-Amz-Date".into(), "old".into()),
                ("keep".into(), "1".into()),
                ("authorization".into(), "client".into()),
            ],
            vec![("x-amz-date", "new".into())],
            vec!["authorization"],
        );
        let forwarded: Vec<(&str, &str)> = signed.headers().collect();
        assert_eq!(forwarded, [("keep", "1"), ("x-amz-date", "new")]);
    }

    #[test]
    fn marks_the_first_line_that_differs_and_redacts_secrets() {
        let ours = Signed::rebuild(&headers(true)).unwrap();
        let theirs = ours
            .canonical_request
            .replace("range:bytes=0-9", "range:bytes=0-99");
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><StringToSign>{}</StringToSign><CanonicalRequest>{}</CanonicalRequest></Error>",
            ours.string_to_sign,
            theirs.replace('&', "&amp;")
        );
        let store = StoreError::parse(body.as_bytes()).unwrap();
        assert!(store.is_diagnosed());
        let text = report(Some(&ours), &store);
        assert!(text.contains("first difference at line 5 >>> s3mesh \"range:bytes=0-9\" | store \"range:bytes=0-99\""), "{text}");
        assert!(text.contains("x-amz-security-token:<redacted>"), "{text}");
        assert!(!text.contains("SESSION-TOKEN-SECRET"), "{text}");
        assert!(!text.contains('\n'), "one line");
    }

    #[test]
    fn says_when_the_store_returns_nothing_to_compare_and_names_the_skew() {
        let store = StoreError::parse(b"<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message><RequestTime>20261130T220000Z</RequestTime><ServerTime>2026-11-30T22:20:00Z</ServerTime></Error>").unwrap();
        let ours = Signed::rebuild(&headers(false)).unwrap();
        let text = report(Some(&ours), &store);
        assert!(
            text.contains("clock skew: the store's clock is +1200 s"),
            "{text}"
        );
        assert!(
            text.contains("the store did not return its canonical request"),
            "{text}"
        );
        assert_eq!(StoreError::parse(b"not xml"), None);
        let same = first_difference("a\nb", "a\nb");
        assert!(same.starts_with("identical"), "{same}");
    }
}
