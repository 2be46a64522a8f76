//! Role `post` in Envoy: names the endpoints for each request and learns from how it went, and
//! re-signs the body of chunk-signed uploads as it streams through.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use s3mesh_s3_request::headers::{ENDPOINT_HINT, INTERNAL_RESPONSE, OPERATION};
use s3mesh_s3_request::{chunk_signing, Operation, OperationClass};
use s3mesh_sigv4::aws_chunked::Resigner;

use super::metrics::Metrics;
use super::{now_ms, send_s3_error};
use crate::chunk_resign;
use crate::endpoint::outcome::{classify, Outcome};
use crate::endpoint::{LatencyClass, Selector};

pub(super) struct PostStream {
    selector: Rc<RefCell<Selector>>,
    metrics: Rc<Metrics>,
    operation: Operation,
    /// The endpoint named first, whose in-flight gauge this stream holds.
    first: Option<String>,
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
    pub(super) fn new(selector: Rc<RefCell<Selector>>, metrics: Rc<Metrics>) -> Self {
        Self {
            selector,
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

impl Context for PostStream {}

impl HttpContext for PostStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let operation = self.get_http_request_header(OPERATION);
        self.set_http_request_header(OPERATION, None);
        self.operation = Operation::from_name(operation.as_deref().unwrap_or_default());
        // Reads and listings carry no body: no chunk signatures to re-sign.
        let bodiless = matches!(
            self.operation.class(),
            Some(OperationClass::Read | OperationClass::List)
        );
        if !bodiless {
            let mode = self.get_http_request_header("x-amz-content-sha256");
            match chunk_resign::resigner(mode.as_deref(), |name| self.authz_metadata(name)) {
                Ok(resigner) => {
                    self.resigner = resigner.map(|r| {
                        let (path, request_id) = self.path_and_request_id();
                        (r, path, request_id)
                    });
                }
                Err(error) => {
                    let (path, request_id) = self.path_and_request_id();
                    send_s3_error(self, &error, &path, &request_id);
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
        match &hint.first {
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
        if let Some(first) = &self.first {
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
        if let Some(first) = self
            .first
            .as_deref()
            .filter(|f| self.attempts > 1 && *f != upstream)
        {
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
