//! Role `post` in Envoy: names the endpoints for each request and learns from how it went.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use s3mesh_s3_request::headers::{ENDPOINT_HINT, INTERNAL_RESPONSE, OPERATION};
use s3mesh_s3_request::Operation;

use super::metrics::Metrics;
use super::now_ms;
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
        }
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

    fn on_http_request_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
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
