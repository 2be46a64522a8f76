//! Role `pre`: what happens to a request before ext_authz sees it.
//!
//! Everything that changes what gets signed (the request target) happens here and nowhere
//! later; headers that only s3mesh may set are removed so that no client can steer routing or
//! smuggle credentials. [`on_request_headers`] runs it on a stream through the shell's [`Host`].

mod host;

use s3mesh_s3_request::audit::{self, Attribute};
use s3mesh_s3_request::headers::is_stripped_from_client;
use s3mesh_s3_request::{Operation, RequestTarget, S3Error, S3Request};

use crate::config::PreConfig;
pub use host::{lend_headers, Count, Host};

/// Where role `pre` hands the request on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// To another filter (ext_authz, or the `post` instance): the operation is handed on
    /// ([`Host::hand_on_operation`]).
    Filter,
    /// To `post` in the same instance (role `both`), which takes the operation directly.
    SameFilter,
}

/// A request role `pre` let through, as `post` in the same instance takes it on.
#[derive(Debug)]
pub struct Passed {
    /// The S3 operation.
    pub operation: Operation,
    /// The request headers as `pre` left them (what Envoy now holds); empty when passed to
    /// another filter ([`Next::Filter`]), which reads them itself.
    pub headers: Vec<(String, String)>,
}

/// Role `pre` on a stream's request headers: strips, canonicalizes, classifies, counts and
/// publishes, or refuses the request with an S3 error (`None`: the client has its answer).
/// Only role `both` ([`Next::SameFilter`]) takes a copy of the headers, for `post`.
pub fn on_request_headers(config: &PreConfig, host: &mut impl Host, next: Next) -> Option<Passed> {
    let inspected = host.with_request_headers(|headers| match inspect_headers(config, headers) {
        Ok(changes) => {
            let copy = (next == Next::SameFilter).then(|| {
                let owned = headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()));
                owned.collect()
            });
            Ok((changes, copy))
        }
        Err(error) => {
            let path = RequestHead::find(headers).path.to_owned();
            let request_id = header(headers, "x-request-id").unwrap_or_default();
            Err((error, path, request_id.to_owned()))
        }
    });
    match inspected {
        Ok((changes, mut copy)) => {
            let stripped = changes.remove_headers.len() as u64;
            if stripped > 0 {
                host.count_pre(Count::Stripped(stripped));
            }
            for (name, value) in changes.header_edits() {
                host.set_request_header(name, value);
                if let Some(headers) = copy.as_mut() {
                    edit(headers, name, value);
                }
            }
            if next == Next::Filter {
                host.hand_on_operation(changes.operation);
            }
            host.count_pre(Count::Operation(changes.operation));
            if config.audit_attributes {
                host.publish(&changes.audit());
            }
            Some(Passed {
                operation: changes.operation,
                headers: copy.unwrap_or_default(),
            })
        }
        Err((error, path, request_id)) => {
            host.count_pre(Count::Rejected);
            if config.audit_attributes {
                host.publish(&refused_audit(&error));
            }
            host.send_s3_error(&error, &path, &request_id);
            None
        }
    }
}

/// Makes in a header list the edit a shell makes in Envoy's: a value replaces every value of
/// `name` (in the first one's place, or at the end), `None` removes them all.
fn edit(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    let first = headers.iter().position(|(n, _)| n == name);
    let mut index = 0;
    headers.retain(|(n, _)| {
        index += 1;
        n != name || (value.is_some() && Some(index - 1) == first)
    });
    match (value, first) {
        (Some(value), Some(first)) => headers[first].1 = value.to_owned(),
        (Some(value), None) => headers.push((name.to_owned(), value.to_owned())),
        (None, _) => {}
    }
}

/// What to do to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreChanges {
    /// Client headers to remove (names as sent).
    pub remove_headers: Vec<String>,
    /// The canonical `:path`, when it differs from what the client sent.
    pub new_path: Option<String>,
    /// The bare domain, when a virtual-hosted-style `:authority` was turned into path style.
    pub new_authority: Option<String>,
    /// The S3 operation, for metrics.
    pub operation: Operation,
    /// The request's bucket, key and copy source, as text for the audit record.
    pub names: RequestNames,
}

/// What a request names, as a person reads it (keys decoded, invalid UTF-8 replaced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestNames {
    /// Absent for `ListBuckets`.
    pub bucket: Option<String>,
    /// Absent for bucket operations.
    pub key: Option<String>,
    /// `bucket/key` of a copy's source.
    pub copy_source: Option<String>,
}

impl RequestNames {
    fn of(request: &S3Request) -> Self {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        Self {
            bucket: request.bucket.clone(),
            key: request.key.as_deref().map(text),
            copy_source: request
                .copy_source
                .as_ref()
                .map(|(bucket, key)| format!("{bucket}/{}", text(key))),
        }
    }
}

/// The request line and headers `pre` looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority` (the Host header).
    pub authority: &'a str,
    /// `:path` with the query.
    pub path: &'a str,
    /// `x-amz-copy-source`, which names a second bucket.
    pub copy_source: Option<&'a str>,
}

/// Splits `bucket.domain[:port]` for a configured domain into the bucket and `domain[:port]`.
fn virtual_host<'a>(authority: &'a str, domains: &[String]) -> Option<(&'a str, &'a str)> {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    domains.iter().find_map(|domain| {
        let prefix = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
        let bucket_len = prefix.len();
        (bucket_len > 0).then(|| (&authority[..bucket_len], &authority[bucket_len + 1..]))
    })
}

/// Inspects a request's head and header names.
pub fn inspect<'a>(
    config: &PreConfig,
    head: &RequestHead<'_>,
    header_names: impl IntoIterator<Item = &'a str>,
) -> Result<PreChanges, S3Error> {
    let (path, new_authority) = match virtual_host(head.authority, &config.virtual_host_domains) {
        Some((bucket, domain)) => {
            if !head.path.starts_with('/') {
                return Err(S3Error::invalid_uri(
                    "the request target must be a path starting with '/'",
                ));
            }
            (format!("/{bucket}{}", head.path), Some(domain.to_owned()))
        }
        None => (head.path.to_owned(), None),
    };
    let path = path.as_str();
    let target = RequestTarget::canonicalize(path)?;
    let canonical = target.to_string();
    let remove_headers = header_names
        .into_iter()
        .filter(|n| is_stripped_from_client(n))
        .map(str::to_owned)
        .collect();
    let request = S3Request::classify(head.method, &target, head.copy_source);
    Ok(PreChanges {
        remove_headers,
        new_path: (canonical != head.path).then_some(canonical),
        new_authority,
        operation: request.operation,
        names: RequestNames::of(&request),
    })
}

/// The first value of header `name` (lower-case) in a header list, owned or borrowed.
pub fn header<'a, N: AsRef<str>, V: AsRef<str>>(
    headers: &'a [(N, V)],
    name: &str,
) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

impl<'a> RequestHead<'a> {
    /// The head as found in a request's headers (pseudo-headers included, names lower-case,
    /// as Envoy hands them to a filter).
    pub fn find<N: AsRef<str>, V: AsRef<str>>(headers: &'a [(N, V)]) -> Self {
        let get = |name: &str| header(headers, name);
        Self {
            method: get(":method").unwrap_or_default(),
            authority: get(":authority").unwrap_or_default(),
            path: get(":path").unwrap_or_default(),
            copy_source: get("x-amz-copy-source"),
        }
    }
}

impl PreChanges {
    /// The request header edits, in the order a shell makes them (`None` removes): the client
    /// headers removed and the canonical target.
    pub fn header_edits(&self) -> Vec<(&str, Option<&str>)> {
        let removals = self.remove_headers.iter().map(|n| (n.as_str(), None));
        let target = [
            self.new_path.as_deref().map(|p| (":path", Some(p))),
            self.new_authority
                .as_deref()
                .map(|a| (":authority", Some(a))),
        ];
        removals.chain(target.into_iter().flatten()).collect()
    }

    /// The audit record's attributes of the request.
    pub fn audit(&self) -> Vec<(Attribute, &str)> {
        let names = &self.names;
        [
            (Attribute::Operation, Some(self.operation.as_str())),
            (Attribute::Bucket, names.bucket.as_deref()),
            (Attribute::Key, names.key.as_deref()),
            (Attribute::CopySource, names.copy_source.as_deref()),
        ]
        .into_iter()
        .filter_map(|(attribute, value)| Some((attribute, value?)))
        .collect()
    }
}

/// The audit record's attributes of a request `pre` refused.
pub fn refused_audit(error: &S3Error) -> [(Attribute, &str); 3] {
    [
        (Attribute::Decision, audit::INVALID),
        (Attribute::Reason, error.message.as_str()),
        (Attribute::Error, error.code),
    ]
}

/// [`inspect`] on a request's full header list (see [`RequestHead::find`]).
pub fn inspect_headers<N: AsRef<str>, V: AsRef<str>>(
    config: &PreConfig,
    headers: &[(N, V)],
) -> Result<PreChanges, S3Error> {
    let names = headers
        .iter()
        .map(|(n, _)| n.as_ref())
        .filter(|n| !n.starts_with(':'));
    inspect(config, &RequestHead::find(headers), names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3mesh_s3_request::headers;

    #[test]
    fn a_header_list_gives_the_edits_in_order() {
        let headers: Vec<(String, String)> = [
            (":method", "PUT"),
            (":authority", "b.s3.local"),
            (":path", "/a b"),
            ("authorization", "AWS4-HMAC-SHA256 x"),
            ("x-amz-copy-source", "/src/k"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let config = PreConfig {
            virtual_host_domains: vec!["s3.local".into()],
            ..PreConfig::default()
        };
        let c = inspect_headers(&config, &headers).unwrap();
        assert_eq!(
            c.header_edits(),
            [
                ("authorization", None),
                (":path", Some("/b/a%20b")),
                (":authority", Some("s3.local")),
            ]
        );
        assert_eq!(
            c.audit(),
            [
                (Attribute::Operation, "CopyObject"),
                (Attribute::Bucket, "b"),
                (Attribute::Key, "a b"),
                (Attribute::CopySource, "src/k"),
            ]
        );
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_edit_replaces_every_value_in_the_first_place_or_removes_them() {
        let mut headers = owned(&[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]);
        edit(&mut headers, "a", Some("x"));
        assert_eq!(headers, owned(&[("a", "x"), ("b", "2"), ("c", "4")]));
        edit(&mut headers, "d", Some("y"));
        edit(&mut headers, "b", None);
        assert_eq!(headers, owned(&[("a", "x"), ("c", "4"), ("d", "y")]));
    }

    /// A stream's request headers and what `pre` did to them.
    #[derive(Default)]
    struct Stream {
        headers: Vec<(String, String)>,
        edits: Vec<(String, Option<String>)>,
        published: Vec<(Attribute, String)>,
        answered: Option<(u16, String, String)>,
        counts: std::cell::RefCell<Vec<Count>>,
    }

    impl Host for Stream {
        fn request_headers(&self) -> Vec<(String, String)> {
            self.headers.clone()
        }
        fn set_request_header(&mut self, name: &str, value: Option<&str>) {
            self.edits.push((name.to_owned(), value.map(str::to_owned)));
        }
        fn publish(&mut self, attributes: &[(Attribute, &str)]) {
            let owned = attributes.iter().map(|(a, v)| (*a, (*v).to_owned()));
            self.published.extend(owned);
        }
        fn send_s3_error(&mut self, error: &S3Error, path: &str, request_id: &str) {
            self.answered = Some((error.status, path.to_owned(), request_id.to_owned()));
        }
        fn count_pre(&self, count: Count) {
            self.counts.borrow_mut().push(count);
        }
    }

    fn stream(path: &str) -> Stream {
        Stream {
            headers: owned(&[
                (":method", "GET"),
                (":authority", "s3.local"),
                (":path", path),
                ("authorization", "AWS4-HMAC-SHA256 x"),
                ("x-request-id", "r1"),
            ]),
            ..Stream::default()
        }
    }

    #[test]
    fn a_request_passed_to_another_filter_carries_its_operation_in_a_header() {
        let mut host = stream("/b/a b");
        let passed = on_request_headers(&PreConfig::default(), &mut host, Next::Filter).unwrap();
        assert_eq!(passed.operation, Operation::GetObject);
        let edits: Vec<_> = host.edits.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(edits, ["authorization", ":path", headers::OPERATION]);
        assert_eq!(
            *host.counts.borrow(),
            [Count::Stripped(1), Count::Operation(Operation::GetObject)]
        );
        assert_eq!(
            host.published[0],
            (Attribute::Operation, "GetObject".into())
        );
    }

    #[test]
    fn a_request_passed_in_the_same_filter_comes_with_its_headers_as_edited() {
        let mut host = stream("/b/a b");
        let config = PreConfig {
            audit_attributes: false,
            ..PreConfig::default()
        };
        let passed = on_request_headers(&config, &mut host, Next::SameFilter).unwrap();
        let edits: Vec<_> = host.edits.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(edits, ["authorization", ":path"]);
        assert_eq!(
            passed.headers,
            owned(&[
                (":method", "GET"),
                (":authority", "s3.local"),
                (":path", "/b/a%20b"),
                ("x-request-id", "r1"),
            ])
        );
        assert!(host.published.is_empty());
    }

    #[test]
    fn a_refused_request_is_answered_counted_and_published() {
        let mut host = stream("/b/%zz");
        assert!(on_request_headers(&PreConfig::default(), &mut host, Next::SameFilter).is_none());
        assert_eq!(host.answered, Some((400, "/b/%zz".into(), "r1".into())));
        assert!(host.edits.is_empty());
        assert_eq!(*host.counts.borrow(), [Count::Rejected]);
        assert_eq!(host.published[0], (Attribute::Decision, "invalid".into()));
    }

    #[test]
    fn the_audit_names_keys_decoded_and_leaves_out_what_a_request_has_not() {
        let c = inspect_path("/b/caf%C3%A9/%FF", []).unwrap();
        let audit = c.audit();
        assert_eq!(audit[2], (Attribute::Key, "café/\u{fffd}"));
        assert_eq!(audit.len(), 3);
        let list = inspect_path("/", []).unwrap();
        assert_eq!(list.audit(), [(Attribute::Operation, "ListBuckets")]);
        let error = inspect_path("/b/%zz", []).unwrap_err();
        assert_eq!(
            refused_audit(&error),
            [
                (Attribute::Decision, "invalid"),
                (Attribute::Reason, error.message.as_str()),
                (Attribute::Error, "InvalidURI"),
            ]
        );
    }

    fn head<'a>(method: &'a str, authority: &'a str, path: &'a str) -> RequestHead<'a> {
        RequestHead {
            method,
            authority,
            path,
            copy_source: None,
        }
    }

    fn inspect_path<'a>(
        path: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<PreChanges, S3Error> {
        inspect(&PreConfig::default(), &head("GET", "s3.local", path), names)
    }

    #[test]
    fn strips_client_credentials_and_routing_headers() {
        let names = [
            "host",
            "authorization",
            "x-gateway-destination-endpoint",
            "x-amz-date",
            "x-amz-meta-k",
        ];
        let c = inspect_path("/b/k", names).unwrap();
        assert_eq!(
            c.remove_headers,
            [
                "authorization",
                "x-gateway-destination-endpoint",
                "x-amz-date"
            ]
        );
        assert_eq!((c.new_path, c.new_authority), (None, None));
        assert_eq!(c.operation, Operation::GetObject);
    }

    #[test]
    fn canonicalizes_the_target_and_drops_presigned_parameters() {
        let c = inspect_path("/b/a b?X-Amz-Signature=x&versionId=1", []).unwrap();
        assert_eq!(c.new_path.as_deref(), Some("/b/a%20b?versionId=1"));
    }

    #[test]
    fn refuses_undecodable_targets() {
        let err = inspect_path("/b/%G1", []).unwrap_err();
        assert_eq!((err.status, err.code), (400, "InvalidURI"));
    }

    #[test]
    fn virtual_hosted_requests_become_path_style_for_configured_domains_only() {
        let config = PreConfig {
            virtual_host_domains: vec!["s3.local".into(), "localhost".into()],
            ..PreConfig::default()
        };
        let run = |authority, path| inspect(&config, &head("GET", authority, path), []).unwrap();
        let c = run("demo.s3.local:8480", "/dir/a b?versionId=1");
        assert_eq!(c.new_authority.as_deref(), Some("s3.local:8480"));
        assert_eq!(c.new_path.as_deref(), Some("/demo/dir/a%20b?versionId=1"));
        assert_eq!(c.operation, Operation::GetObject);
        let c = run("my.dotted.bucket.localhost", "/");
        assert_eq!(c.new_authority.as_deref(), Some("localhost"));
        assert_eq!(c.new_path.as_deref(), Some("/my.dotted.bucket/"));
        assert_eq!(c.operation, Operation::ListObjects);
        // The bare domain, and names outside the configured domains, are path style.
        for authority in [
            "s3.local",
            "s3.local:80",
            "demo.evil.example",
            "demos3.local",
        ] {
            let c = run(authority, "/demo/k");
            assert_eq!((c.new_authority, c.new_path), (None, None), "{authority}");
        }
    }
}
