//! Role `post` in Envoy: in grant mode decides and signs each request with its caller's grant;
//! names the endpoints for each request and learns from how it went; re-signs the body of
//! chunk-signed uploads as it streams through.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use s3mesh_access::grant::CompiledGrant;
use s3mesh_access::request::Request;
use s3mesh_s3_request::headers::{ENDPOINT_HINT, INTERNAL_RESPONSE, OPERATION};
use s3mesh_s3_request::{chunk_signing, Operation, OperationClass, S3Error};
use s3mesh_sigv4::aws_chunked::Resigner;
use s3mesh_sigv4::AmzDate;

use super::granting::{self, Granting};
use super::metrics::Metrics;
use super::{now_ms, send_s3_error};
use s3mesh_filter::chunk_resign;
use s3mesh_filter::endpoint::outcome::{classify, Outcome};
use s3mesh_filter::endpoint::{LatencyClass, Route, Selector};
use s3mesh_filter::grants::{Answer, Caller};

pub(super) struct PostStream {
    selector: Rc<RefCell<Selector>>,
    granting: Option<Rc<Granting>>,
    /// The caller whose grant this stream waits for.
    waiting_for: Option<Caller>,
    metrics: Rc<Metrics>,
    operation: Operation,
    /// The endpoint named first, whose in-flight gauge this stream holds, and why it was.
    first: Option<(String, Route)>,
    /// When the request was fully handed to the upstream side (headers, or the last body byte).
    sent_ms: f64,
    ttfb_ms: Option<f64>,
    retry_after: Option<String>,
    attempts: u32,
    /// For a chunk-signed upload: the body re-signer, and the `:path` and `x-request-id` an
    /// error names (request headers cannot be read once the body flows).
    resigner: Option<(Resigner, String, String)>,
}

impl PostStream {
    pub(super) fn new(
        selector: Rc<RefCell<Selector>>,
        granting: Option<Rc<Granting>>,
        metrics: Rc<Metrics>,
    ) -> Self {
        Self {
            selector,
            granting,
            waiting_for: None,
            metrics,
            operation: Operation::Unknown,
            first: None,
            sent_ms: 0.0,
            ttfb_ms: None,
            retry_after: None,
            attempts: 1,
            resigner: None,
        }
    }

    /// A string from ext_authz's dynamic metadata.
    fn authz_metadata(&self, name: &str) -> Option<String> {
        self.get_property(vec![
            "metadata",
            "filter_metadata",
            chunk_signing::NAMESPACE,
            name,
        ])
        .and_then(|b| String::from_utf8(b).ok())
    }

    /// `:path` and `x-request-id`, which an error names.
    fn path_and_request_id(&self) -> (String, String) {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let request_id = self
            .get_http_request_header("x-request-id")
            .unwrap_or_default();
        (path, request_id)
    }

    fn property_u64(&self, path: [&str; 2]) -> u64 {
        self.get_property(path.to_vec())
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes)
    }
}

impl PostStream {
    /// A property as text; absent or empty is `None`.
    fn property_text(&self, path: &[&str]) -> Option<String> {
        self.get_property(path.to_vec())
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
    }

    /// The caller as Envoy saw the connection: the peer certificate's principal the way
    /// ext_authz names it (URI SAN, else DNS SAN, else subject), and the source address.
    fn caller(&self) -> Caller {
        let mtls = self
            .get_property(vec!["connection", "mtls"])
            .is_some_and(|b| b.first() == Some(&1));
        let principal = mtls
            .then(|| {
                self.property_text(&["connection", "uri_san_peer_certificate"])
                    .or_else(|| self.property_text(&["connection", "dns_san_peer_certificate"]))
                    .or_else(|| self.property_text(&["connection", "subject_peer_certificate"]))
            })
            .flatten();
        Caller::new(
            principal,
            self.property_text(&["source", "address"]).as_deref(),
        )
    }

    /// Asks ext-authz for `caller`'s grant; the request waits.
    fn ask_for_grant(&mut self, granting: &Granting, caller: Caller, date: String) -> Action {
        match granting.ask(self, &caller, date) {
            Ok(_) => self.waiting_for = Some(caller),
            Err(error) => {
                self.metrics.grant_failures.add(1);
                log::warn!("{}", error.message);
                self.refuse(&error);
            }
        }
        Action::Pause
    }

    /// Decides on the request with `grant` and, when allowed, signs it at `time`. `false`:
    /// refused, and the client has its answer.
    fn sign_with(&mut self, grant: &CompiledGrant, time: AmzDate) -> bool {
        let headers = self.get_http_request_headers();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = Request {
            method: get(":method"),
            host: get(":authority"),
            path: get(":path"),
            headers: &pairs,
        };
        match grant.decide(&request, time) {
            Ok(allowed) => {
                let signed = allowed.signed;
                for (name, value) in &signed.changes.set {
                    self.set_http_request_header(name, Some(value));
                }
                for name in &signed.changes.remove {
                    self.set_http_request_header(name, None);
                }
                if let Some(signing) = &signed.chunk_signing {
                    let mode = request.header("x-amz-content-sha256");
                    self.resigner = chunk_resign::own_resigner(mode, signing)
                        .map(|r| (r, get(":path").to_owned(), get("x-request-id").to_owned()));
                }
                true
            }
            Err(refused) => {
                self.metrics.grant_denied.add(1);
                log::info!(
                    "denied: request {} identity {} operation {}: {}",
                    get("x-request-id"),
                    grant.identity(),
                    refused.operation.unwrap_or("-"),
                    refused.error.message
                );
                send_s3_error(self, &refused.error, get(":path"), get("x-request-id"));
                false
            }
        }
    }

    /// Answers the client with `error` now.
    fn refuse(&self, error: &S3Error) {
        let (path, request_id) = self.path_and_request_id();
        send_s3_error(self, error, &path, &request_id);
    }

    /// After authorization: the chunk re-signer when ext_authz signed, then the endpoint hint.
    fn route(&mut self) -> Action {
        // Reads and listings carry no body: no chunk signatures to re-sign.
        let bodiless = matches!(
            self.operation.class(),
            Some(OperationClass::Read | OperationClass::List)
        );
        if self.granting.is_none() && !bodiless {
            let mode = self.get_http_request_header("x-amz-content-sha256");
            match chunk_resign::resigner(mode.as_deref(), |name| self.authz_metadata(name)) {
                Ok(resigner) => {
                    self.resigner = resigner.map(|r| {
                        let (path, request_id) = self.path_and_request_id();
                        (r, path, request_id)
                    });
                }
                Err(error) => {
                    self.refuse(&error);
                    return Action::Pause;
                }
            }
        }
        let now = now_ms(self);
        let metrics = &self.metrics;
        let hint = self
            .selector
            .borrow_mut()
            .choose(LatencyClass::of(self.operation), now, |a| {
                metrics.endpoint(a).in_flight.get()
            });
        match hint.first_address() {
            Some(first) => {
                let m = self.metrics.endpoint(first);
                m.selected.add(1);
                m.in_flight.add(1);
            }
            None => self.metrics.post_unhinted.add(1),
        }
        self.first = hint.first;
        self.sent_ms = now;
        // Replaces (or removes) any copy that got this far: the hint is trusted routing input.
        self.set_http_request_header(ENDPOINT_HINT, hint.value.as_deref());
        Action::Continue
    }
}

impl Context for PostStream {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Some(caller), Some(granting)) = (self.waiting_for.take(), self.granting.clone())
        else {
            return;
        };
        let now = now_ms(self) as u64;
        match granting::answer(self, body_size, now) {
            Ok(Answer::Granted { held, json }) => {
                self.metrics.grants_fetched.add(1);
                let grant = Rc::clone(&held.grant);
                granting.keep(self, caller, held, &json, now);
                let time = AmzDate::from_unix_seconds(now / 1000);
                if self.sign_with(&grant, time) && self.route() == Action::Continue {
                    self.resume_http_request();
                }
            }
            Ok(Answer::Refused(error)) => {
                self.metrics.grant_denied.add(1);
                self.refuse(&error);
            }
            Err(error) => {
                self.metrics.grant_failures.add(1);
                log::warn!("{}", error.message);
                self.refuse(&error);
            }
        }
    }
}

impl HttpContext for PostStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let operation = self.get_http_request_header(OPERATION);
        self.set_http_request_header(OPERATION, None);
        self.operation = Operation::from_name(operation.as_deref().unwrap_or_default());
        if let Some(granting) = self.granting.clone() {
            let caller = self.caller();
            let now = now_ms(self) as u64;
            let time = AmzDate::from_unix_seconds(now / 1000);
            let date = time.date();
            match granting.find(self, &caller, now, &date) {
                Some(found) => {
                    if found.refresh {
                        granting.cache.borrow_mut().want_refresh(&caller);
                    }
                    if !self.sign_with(&found.grant, time) {
                        return Action::Pause;
                    }
                }
                None => return self.ask_for_grant(&granting, caller, date),
            }
        }
        self.route()
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some((mut resigner, path, request_id)) = self.resigner.take() {
            // Each callback sees the bytes that arrived since the last; they are replaced by
            // whatever chunks are now complete and re-signed, the rest held until they are.
            let input = self.get_http_request_body(0, body_size).unwrap_or_default();
            let mut output = Vec::with_capacity(input.len() + resigner.held());
            let framed = resigner
                .push(&input, &mut output)
                .and_then(|()| match end_of_stream {
                    true => resigner.finish(),
                    false => Ok(()),
                });
            if let Err(error) = framed {
                // Answering now resets the upstream request: the store never completes an
                // object from a half-rewritten body.
                let error = chunk_resign::framing_error(&error);
                send_s3_error(self, &error, &path, &request_id);
                return Action::Pause;
            }
            self.set_http_request_body(0, body_size, &output);
            self.resigner = Some((resigner, path, request_id));
        }
        if end_of_stream {
            self.sent_ms = now_ms(self);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.ttfb_ms = Some(now_ms(self) - self.sent_ms);
        self.retry_after = self.get_http_response_header("retry-after");
        self.attempts = self
            .get_http_response_header("x-envoy-attempt-count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        for name in INTERNAL_RESPONSE {
            self.set_http_response_header(name, None);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let first = self.first.as_ref().map(|(a, route)| (a.as_str(), *route));
        if let Some((first, _)) = first {
            self.metrics.endpoint(first).in_flight.add(-1);
        }
        let upstream = self
            .get_property(vec!["upstream", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let now = now_ms(self);
        let latency = self.ttfb_ms.unwrap_or(now - self.sent_ms);
        let status = self.property_u64(["response", "code"]);
        let flags = self.property_u64(["response", "flags"]);
        let outcome = classify(status, flags, latency, self.retry_after.as_deref());
        let class = LatencyClass::of(self.operation);
        let mut selector = self.selector.borrow_mut();
        if let Some((first, _)) = first.filter(|(f, _)| self.attempts > 1 && *f != upstream) {
            // The first choice failed and Envoy retried elsewhere.
            selector.observe(
                first,
                class,
                now,
                Outcome::Failure {
                    latency_ms: latency,
                    retry_after_ms: None,
                },
            );
            self.metrics.endpoint(first).errors.add(1);
        }
        if selector.observe(&upstream, class, now, outcome) {
            self.metrics.discovered_endpoints.add(1);
        }
        if upstream.is_empty() {
            return;
        }
        let m = self.metrics.endpoint(&upstream);
        m.routes.get(Route::of_served(first, &upstream)).add(1);
        match outcome {
            Outcome::Failure { .. } => m.errors.add(1),
            Outcome::Success { latency_ms } => {
                let ms = latency_ms.max(0.0) as u64;
                m.ttfb_ms.record(ms);
                self.metrics
                    .operation(self.operation.as_str())
                    .ttfb_ms
                    .record(ms);
            }
            Outcome::NotAttributable => {}
        }
    }
}
