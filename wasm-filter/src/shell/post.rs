//! Role `post` in Envoy: [`s3mesh_filter::post::PostFlow`] run with proxy-wasm's host calls.
//! The worker's selector, grants and metrics live in its root context and are shared by its
//! streams through `Rc`; grants reach the other workers through Envoy's shared data.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use s3mesh_s3_request::audit::Attribute;
use s3mesh_s3_request::{chunk_signing, Operation, S3Error};

use super::granting::{self, Granting};
use super::metrics::Metrics;
use super::read_cache::ReadCache;
use super::{now_ms, publish, send_s3_error};
use s3mesh_filter::config::{CacheConfig, PreConfig};
use s3mesh_filter::endpoint::outcome::Outcome;
use s3mesh_filter::endpoint::{Hint, LatencyClass, Selector};
use s3mesh_filter::grants::{Caller, Found, Held};
use s3mesh_filter::post::{
    CacheEvent, Counter, EndpointCounter, FlowSettings, Host, PostFlow, Step,
};
use s3mesh_filter::pre::{self, Count};
use s3mesh_filter::read_cache::{Answer, Cache, CACHE_HEADER};
use s3mesh_filter::usage::Usage;

pub(super) struct PostStream {
    /// Role `both`: `pre`, run first in the same stream.
    pre: Option<Rc<PreConfig>>,
    /// The read cache all workers share.
    cache: Option<Rc<ReadCache>>,
    selector: Rc<RefCell<Selector>>,
    granting: Option<Rc<Granting>>,
    metrics: Rc<Metrics>,
    flow: PostFlow,
}

impl PostStream {
    pub(super) fn new(
        pre: Option<Rc<PreConfig>>,
        cache: Option<Rc<ReadCache>>,
        selector: Rc<RefCell<Selector>>,
        granting: Option<Rc<Granting>>,
        metrics: Rc<Metrics>,
        settings: FlowSettings,
    ) -> Self {
        let flow = PostFlow::new(settings);
        Self {
            pre,
            cache,
            selector,
            granting,
            metrics,
            flow,
        }
    }

    /// Runs one step of the flow with this stream as its host.
    fn step<T>(&mut self, run: impl FnOnce(&mut PostFlow, &mut Self) -> T) -> T {
        let mut flow = std::mem::take(&mut self.flow);
        let out = run(&mut flow, self);
        self.flow = flow;
        out
    }

    fn property_u64(&self, path: [&str; 2]) -> u64 {
        self.get_property(path.to_vec())
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes)
    }

    /// A property as text; absent or empty is `None`.
    fn property_text(&self, path: &[&str]) -> Option<String> {
        self.get_property(path.to_vec())
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
    }
}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

impl pre::Host for PostStream {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.get_http_request_headers()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.set_http_request_header(name, value);
    }

    fn publish(&mut self, attributes: &[(Attribute, &str)]) {
        publish(self, attributes);
    }

    fn send_s3_error(&mut self, error: &S3Error, path: &str, request_id: &str) {
        send_s3_error(self, error, path, request_id);
    }

    fn count_pre(&self, count: Count) {
        self.metrics.count_pre(count);
    }
}

impl Host for PostStream {
    fn now_ms(&self) -> f64 {
        now_ms(self)
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.get_http_request_header(name)
    }

    fn response_headers(&self) -> Vec<(String, String)> {
        self.get_http_response_headers()
    }

    fn remove_response_header(&mut self, name: &str) {
        self.set_http_response_header(name, None);
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        self.set_http_response_header(name, Some(value));
    }

    fn read_request_body(&self, size: usize, read: &mut dyn FnMut(&[u8])) {
        read(&self.get_http_request_body(0, size).unwrap_or_default());
    }

    fn replace_request_body(&mut self, size: usize, bytes: &[u8]) {
        self.set_http_request_body(0, size, bytes);
    }

    fn read_response_body(&self, size: usize, read: &mut dyn FnMut(&[u8])) {
        read(&self.get_http_response_body(0, size).unwrap_or_default());
    }

    fn authz_metadata(&self, name: &str) -> Option<String> {
        self.get_property(vec![
            "metadata",
            "filter_metadata",
            chunk_signing::NAMESPACE,
            name,
        ])
        .and_then(|b| String::from_utf8(b).ok())
    }

    /// The peer certificate's principal the way ext_authz names it (URI SAN, else DNS SAN,
    /// else subject), and the source address.
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

    fn upstream_address(&self) -> String {
        self.get_property(vec!["upstream", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    }

    fn response_code(&self) -> u64 {
        self.property_u64(["response", "code"])
    }

    fn response_flags(&self) -> u64 {
        self.property_u64(["response", "flags"])
    }

    fn response_body_bytes(&self) -> u64 {
        self.property_u64(["response", "size"])
    }

    fn request_body_bytes(&self) -> u64 {
        self.property_u64(["request", "size"])
    }

    fn log_info(&self, message: &str) {
        log::info!("{message}");
    }

    fn log_warn(&self, message: &str) {
        log::warn!("{message}");
    }

    fn choose(&mut self, class: LatencyClass, now_ms: f64) -> Hint {
        let metrics = &self.metrics;
        self.selector
            .borrow_mut()
            .choose(class, now_ms, |a| metrics.endpoint(a).in_flight.get())
    }

    fn observe(
        &mut self,
        address: &str,
        class: LatencyClass,
        sent_ms: f64,
        now_ms: f64,
        outcome: Outcome,
    ) -> bool {
        self.selector
            .borrow_mut()
            .observe(address, class, sent_ms, now_ms, outcome)
    }

    fn grant_mode(&self) -> bool {
        self.granting.is_some()
    }

    fn find_grant(&mut self, caller: &Caller, now: u64, date: &str) -> Option<Found> {
        self.granting.clone()?.find(self, caller, now, date)
    }

    fn want_refresh(&mut self, caller: &Caller) {
        if let Some(granting) = &self.granting {
            granting.cache.borrow_mut().want_refresh(caller);
        }
    }

    fn ask_grant(
        &mut self,
        caller: &Caller,
        date: String,
        traceparent: Option<&str>,
    ) -> Result<(), S3Error> {
        let granting = self.granting.clone().ok_or_else(|| {
            S3Error::internal_error("s3mesh asked for a grant without grant mode configured")
        })?;
        granting
            .ask(self, caller, date, traceparent)
            .map(|_token| ())
    }

    fn keep_grant(&mut self, caller: Caller, held: Held, json: &[u8], now: u64) {
        if let Some(granting) = self.granting.clone() {
            granting.keep(self, caller, held, json, now);
        }
    }

    fn cache_config(&self) -> Option<&CacheConfig> {
        self.cache.as_ref().map(|cache| &cache.0)
    }

    fn read_cache<T>(&mut self, run: impl FnOnce(&mut dyn Cache) -> T) -> Option<T> {
        let cache = self.cache.as_ref()?;
        let mut store = cache.1.borrow_mut();
        Some(run(&mut *store))
    }

    fn send_answer(&mut self, answer: &Answer, request_id: &str) {
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain([(CACHE_HEADER, "hit"), ("x-amz-request-id", request_id)])
            .collect();
        self.send_http_response(u32::from(answer.status), headers, Some(&answer.body));
    }

    fn count_cache(&self, bucket: &str, event: CacheEvent) {
        self.metrics.count_cache(bucket, event);
    }

    fn count(&self, counter: Counter) {
        let m = &self.metrics;
        match counter {
            Counter::Unhinted => &m.post_unhinted,
            Counter::DiscoveredEndpoint => &m.discovered_endpoints,
            Counter::GrantFetched => &m.grants_fetched,
            Counter::GrantDenied => &m.grant_denied,
            Counter::GrantFailure => &m.grant_failures,
            Counter::StoreRefusedSignature => &m.store_refused_signature,
        }
        .add(1);
    }

    fn count_endpoint(&self, address: &str, counter: EndpointCounter) {
        let m = self.metrics.endpoint(address);
        match counter {
            EndpointCounter::Selected => &m.selected,
            EndpointCounter::Error => &m.errors,
            EndpointCounter::Served(route) => m.routes.get(route),
        }
        .add(1);
    }

    fn add_in_flight(&self, address: &str, delta: i64) {
        self.metrics.endpoint(address).in_flight.add(delta);
    }

    fn record_ttfb(&self, address: &str, operation: Operation, ms: u64) {
        self.metrics.endpoint(address).ttfb_ms.record(ms);
        self.metrics
            .operation(operation.as_str())
            .ttfb_ms
            .record(ms);
    }

    fn record_usage(&self, usage: &Usage<'_>) {
        self.metrics.record_usage(usage);
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
        let now = now_ms(self) as u64;
        let answer = granting::answer(self, body_size, now);
        if self.step(|flow, host| flow.on_grant_answer(host, answer)) == Step::Continue {
            self.resume_http_request();
        }
    }
}

impl HttpContext for PostStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.step(|flow, host| match host.pre.clone() {
            Some(pre) => flow.on_request_headers_after_pre(host, &pre),
            None => flow.on_request_headers(host),
        }))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.step(|flow, host| flow.on_request_body(host, body_size, end_of_stream)))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.step(|flow, host| flow.on_response_headers(host));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.step(|flow, host| flow.on_response_body(host, body_size, end_of_stream));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.step(|flow, host| flow.on_complete(host));
    }
}
