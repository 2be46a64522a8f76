//! Which answers of the store the read cache keeps, and what of them it repeats.

use super::store::Answer;
use crate::pre::header;

/// Response headers that belong to one exchange, not to the object: never repeated.
const EXCHANGE_HEADERS: [&str; 11] = [
    "date",
    "server",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "x-amz-request-id",
    "x-amz-id-2",
    "x-request-id",
    "set-cookie",
    "x-envoy-upstream-service-time",
    "x-envoy-attempt-count",
];

/// Whether response header `name` (lower-case) is part of the object's answer.
pub fn kept_header(name: &str) -> bool {
    !name.starts_with(':') && !EXCHANGE_HEADERS.contains(&name)
}

/// The header every answer from the cache carries, for operators and tests: `hit`.
pub const CACHE_HEADER: &str = "x-s3mesh-cache";

/// Whether the store's answer (`status`, `headers` as received) to a request asking for
/// `range` (or the whole object), `head` or not, may be kept, bodies up to `max_body` bytes.
pub fn keepable(
    status: u64,
    headers: &[(String, String)],
    head: bool,
    range: bool,
    max_body: u64,
) -> bool {
    let expected = match (head, range) {
        (false, true) => 206,
        _ => 200,
    };
    // An object's own Cache-Control (its metadata) can forbid a shared cache to keep it.
    let forbidden = header(headers, "cache-control").is_some_and(|value| {
        value
            .split(',')
            .map(|d| d.trim().to_ascii_lowercase())
            .any(|d| d == "no-store" || d == "no-cache" || d == "private")
    });
    let length = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let fits = head || length.is_some_and(|n| n <= max_body);
    status == expected && !forbidden && fits
}

/// An answer from the store, gathered as it streams through.
#[derive(Debug)]
pub struct Filling {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `content-length`: the body is complete when it has this many bytes.
    length: usize,
}

impl Filling {
    /// Starts gathering a [`keepable`] answer.
    pub fn start(status: u64, headers: &[(String, String)], head: bool) -> Self {
        let length = match head {
            true => 0,
            false => header(headers, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        };
        Self {
            status: u16::try_from(status).unwrap_or(200),
            headers: headers
                .iter()
                .filter(|(n, _)| kept_header(n))
                .cloned()
                .collect(),
            body: Vec::with_capacity(length),
            length,
        }
    }

    /// Adds body bytes; `false` once more arrived than announced (the answer is dropped).
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if self.body.len() + bytes.len() > self.length {
            return false;
        }
        self.body.extend_from_slice(bytes);
        true
    }

    /// The answer, when its body is complete.
    pub fn finish(self) -> Option<Answer> {
        (self.body.len() == self.length).then_some(Answer {
            status: self.status,
            headers: self.headers,
            body: self.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_status_must_be_the_one_the_request_expects_and_the_body_must_fit() {
        let small = headers(&[("content-length", "10")]);
        assert!(keepable(200, &small, false, false, 10));
        assert!(keepable(206, &small, false, true, 10));
        assert!(
            !keepable(200, &small, false, true, 10),
            "a range answered whole"
        );
        assert!(!keepable(304, &small, false, false, 10));
        assert!(!keepable(200, &small, false, false, 9));
        assert!(!keepable(200, &headers(&[]), false, false, 10), "no length");
        let big = headers(&[("content-length", "1000000000")]);
        assert!(keepable(200, &big, true, false, 10), "a HEAD keeps no body");
    }

    #[test]
    fn an_objects_cache_control_can_forbid_keeping_it() {
        for value in ["no-store", "private, max-age=5", "No-Cache"] {
            let h = headers(&[("content-length", "1"), ("cache-control", value)]);
            assert!(!keepable(200, &h, false, false, 10), "{value}");
        }
        let h = headers(&[("content-length", "1"), ("cache-control", "max-age=60")]);
        assert!(keepable(200, &h, false, false, 10));
    }

    #[test]
    fn a_filled_answer_keeps_the_objects_headers_and_a_complete_body() {
        let received = headers(&[
            (":status", "200"),
            ("content-length", "4"),
            ("etag", "\"e\""),
            ("x-amz-request-id", "r"),
            ("date", "d"),
        ]);
        let mut filling = Filling::start(200, &received, false);
        assert!(filling.push(b"ab"));
        assert!(filling.push(b"cd"));
        let answer = filling.finish().unwrap();
        assert_eq!(
            answer.headers,
            headers(&[("content-length", "4"), ("etag", "\"e\"")])
        );
        assert_eq!(answer.body, b"abcd");
        let mut short = Filling::start(200, &received, false);
        short.push(b"ab");
        assert_eq!(short.finish(), None);
        let mut long = Filling::start(200, &received, false);
        assert!(!long.push(b"abcde"));
    }
}
