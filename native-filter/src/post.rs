//! Role `post` in Envoy: [`s3mesh_filter::post::PostFlow`] run with the dynamic-module ABI.
//!
//! Unlike the wasm shell, whose every worker has its own VM and so its own latency estimates,
//! one selector and one set of in-flight counts serve the whole process (all workers, behind
//! one lock held only for a choice, an observation or a count); so does one grant cache
//! ([`crate::granting`]).

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use foldhash::HashMap;
use s3mesh_filter::config::{CacheConfig, PostConfig, PreConfig};
use s3mesh_filter::endpoint::outcome::Outcome;
use s3mesh_filter::endpoint::{Hint, LatencyClass, Selector};
use s3mesh_filter::grants::{Caller, Found, Held};
use s3mesh_filter::post::{
    CacheEvent, Counter, EndpointCounter, FlowSettings, Host, PostFlow, Step,
};
use s3mesh_filter::pre::{self, Count};
use s3mesh_filter::read_cache::{Answer, Cache, Store};
use s3mesh_filter::usage::{IdentityLabels, Usage};
use s3mesh_s3_request::audit::Attribute;
use s3mesh_s3_request::{chunk_signing, Operation, S3Error};

use crate::abi::{attribute, log_level, ConfigEnvoyPtr};
use crate::granting::{self, Granting};
use crate::host::{log, Stream};
use crate::lock;
use crate::metrics::batch::Batch;
use crate::metrics::{Definer, PostMetrics, PreMetrics};
use crate::pre::{panic_test, Pre, OPERATION_STATE};

/// What every stream of one `post` configuration shares.
struct Shared {
    selector: Selector,
    /// Requests in flight per endpoint, process-wide.
    in_flight: HashMap<String, InFlight>,
    /// The identity label values of the per-identity metrics, process-wide.
    identity_labels: IdentityLabels,
}

/// One endpoint's requests in flight: the count, and what its gauge last showed.
#[derive(Default)]
struct InFlight {
    now: u64,
    shown: u64,
}

/// Role `post` of one configuration (role `both`: with `pre`).
pub struct Post {
    /// Role `both`: `pre`, run first in the same instance.
    pub pre: Option<Pre>,
    shared: Mutex<Shared>,
    /// Grant mode; `None` when ext_authz runs before `post` and signs.
    pub granting: Option<Granting>,
    pub metrics: PostMetrics,
    pub batch: Batch,
    /// What each stream's flow takes from the configuration.
    pub flow: FlowSettings,
    /// The read cache, process-wide, behind its own lock.
    cache: Option<(CacheConfig, Mutex<Store>)>,
}

impl Post {
    /// `pre`: role `both`'s.
    ///
    /// # Safety
    /// `config_envoy` is the configuration being created in `config_new`, `metrics` its definer.
    pub unsafe fn new(
        config: &PostConfig,
        pre: Option<PreConfig>,
        config_envoy: ConfigEnvoyPtr,
        metrics: &Definer,
        batch: Batch,
    ) -> Self {
        let seed = wall_clock_ms().to_bits() ^ u64::from(std::process::id()).rotate_left(32);
        let selector = Selector::new(config, seed);
        let pre = pre.map(|config| Pre {
            config,
            metrics: PreMetrics::define(metrics),
        });
        let addresses: Vec<&str> = selector.addresses().collect();
        let cached: Vec<&str> = config
            .cache
            .iter()
            .flat_map(|c| c.rules.iter().map(|rule| rule.bucket.as_str()))
            .collect();
        let metrics = PostMetrics::define(metrics, &addresses, &cached);
        let cache = config.cache.clone().map(|c| {
            let store = Mutex::new(Store::new(c.max_bytes));
            (c, store)
        });
        let granting = config.grants.clone().map(|grants| {
            // SAFETY: passed on from the caller.
            unsafe { Granting::new(grants, config_envoy) }
        });
        Self {
            pre,
            shared: Mutex::new(Shared {
                selector,
                in_flight: HashMap::default(),
                identity_labels: IdentityLabels::new(config.max_identity_labels),
            }),
            granting,
            metrics,
            batch,
            flow: FlowSettings::of(config),
            cache,
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// Main thread, with the batch's flush: sets each endpoint's in-flight gauge that changed
    /// since the last flush to its count. A request's `+1` and `-1` through the batch cost a
    /// worker two map updates for a net change that is usually none. A flush follows every
    /// change: a `+1` comes with the endpoint's `Selected` count, a `-1` with the request's
    /// usage counts, and either wakes the flusher.
    ///
    /// # Safety
    /// `config_envoy` is this configuration's, in one of its hooks on the main thread.
    pub unsafe fn show_in_flight(&self, config_envoy: ConfigEnvoyPtr) {
        let changed: Vec<(String, u64)> = self
            .shared()
            .in_flight
            .iter_mut()
            .filter(|(_, count)| count.now != count.shown)
            .map(|(address, count)| {
                count.shown = count.now;
                (address.clone(), count.now)
            })
            .collect();
        for (address, count) in changed {
            // SAFETY: per the contract above.
            unsafe { self.metrics.set_in_flight(config_envoy, &address, count) };
        }
    }
}

/// Wall-clock milliseconds (grants carry dates; latencies are differences).
pub fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// One stream of role `post` as the flow's [`Host`].
pub struct PostHost<'a> {
    pub stream: Stream,
    pub post: &'a Post,
}

impl PostHost<'_> {
    /// The request headers arrived: role `both` runs `pre` first.
    pub fn on_request_headers(&mut self, flow: &mut PostFlow) -> Step {
        let post = self.post;
        match &post.pre {
            Some(pre) => {
                panic_test::on_request(&self.stream);
                flow.on_request_headers_after_pre(self, &pre.config)
            }
            None => flow.on_request_headers(self),
        }
    }

    /// A string attribute of the connection, absent or empty as `None`.
    fn text(&self, id: u32) -> Option<String> {
        self.stream.attribute_text(id)
    }
}

impl pre::Host for PostHost<'_> {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.stream.request_headers()
    }

    fn with_request_headers<T>(&self, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        self.stream.with_request_headers(look)
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.stream.set_request_header(name, value);
    }

    fn publish(&mut self, attributes: &[(Attribute, &str)]) {
        self.stream.publish(attributes);
    }

    fn send_s3_error(&mut self, error: &S3Error, path: &str, request_id: &str) {
        self.stream.send_s3_error(error, path, request_id);
    }

    /// Counted only in role `both`, whose `pre` runs in this instance.
    fn count_pre(&self, count: Count) {
        if let Some(pre) = &self.post.pre {
            pre.count(&self.post.batch, count);
        }
    }
}

impl Host for PostHost<'_> {
    fn now_ms(&self) -> f64 {
        wall_clock_ms()
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.stream.request_header(name)
    }

    /// From role `pre`'s filter state ([`OPERATION_STATE`]): no header to take off.
    fn take_operation(&mut self) -> Option<String> {
        self.stream.filter_state(OPERATION_STATE)
    }

    fn response_headers(&self) -> Vec<(String, String)> {
        self.stream.response_headers()
    }

    fn with_response_headers<T>(&self, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        self.stream.with_response_headers(look)
    }

    fn reads_request_headers_late(&self) -> bool {
        true
    }

    fn remove_response_header(&mut self, name: &str) {
        self.stream.remove_response_header(name);
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        self.stream.set_response_header(name, value);
    }

    fn read_request_body(&self, _size: usize, read: &mut dyn FnMut(&[u8])) {
        self.stream.read_received_body(read);
    }

    fn replace_request_body(&mut self, size: usize, bytes: &[u8]) {
        self.stream.replace_received_body(size, bytes);
    }

    fn read_response_body(&self, _size: usize, read: &mut dyn FnMut(&[u8])) {
        self.stream.read_received_response_body(read);
    }

    fn authz_metadata(&self, name: &str) -> Option<String> {
        self.stream.dynamic_metadata(chunk_signing::NAMESPACE, name)
    }

    /// The peer certificate's principal the way ext_authz names it (URI SAN, else DNS SAN,
    /// else subject), and the source address.
    fn caller(&self) -> Caller {
        let principal = self
            .stream
            .attribute_bool(attribute::CONNECTION_MTLS)
            .then(|| {
                self.text(attribute::URI_SAN_PEER_CERTIFICATE)
                    .or_else(|| self.text(attribute::DNS_SAN_PEER_CERTIFICATE))
                    .or_else(|| self.text(attribute::SUBJECT_PEER_CERTIFICATE))
            })
            .flatten();
        Caller::new(principal, self.text(attribute::SOURCE_ADDRESS).as_deref())
    }

    fn upstream_address(&self) -> String {
        self.stream
            .attribute_text(attribute::UPSTREAM_ADDRESS)
            .unwrap_or_default()
    }

    fn response_code(&self) -> u64 {
        self.stream.attribute_u64(attribute::RESPONSE_CODE)
    }

    fn response_flags(&self) -> u64 {
        self.stream.attribute_u64(attribute::RESPONSE_FLAGS)
    }

    fn response_body_bytes(&self) -> u64 {
        self.stream.attribute_u64(attribute::RESPONSE_SIZE)
    }

    fn request_body_bytes(&self) -> u64 {
        self.stream.attribute_u64(attribute::REQUEST_SIZE)
    }

    fn log_info(&self, message: &str) {
        log(log_level::INFO, message);
    }

    fn log_warn(&self, message: &str) {
        log(log_level::WARN, message);
    }

    fn choose(&mut self, class: LatencyClass, now_ms: f64) -> Hint {
        let shared = &mut *self.post.shared();
        let in_flight = &shared.in_flight;
        shared
            .selector
            .choose(class, now_ms, |a| in_flight.get(a).map_or(0, |c| c.now))
    }

    fn observe(
        &mut self,
        address: &str,
        class: LatencyClass,
        sent_ms: f64,
        now_ms: f64,
        outcome: Outcome,
    ) -> bool {
        self.post
            .shared()
            .selector
            .observe(address, class, sent_ms, now_ms, outcome)
    }

    fn grant_mode(&self) -> bool {
        self.post.granting.is_some()
    }

    fn find_grant(&mut self, caller: &Caller, now: u64, date: &str) -> Option<Found> {
        self.post.granting.as_ref()?.cache().get(caller, now, date)
    }

    fn want_refresh(&mut self, caller: &Caller) {
        if let Some(granting) = &self.post.granting {
            granting.want_refresh(caller);
        }
    }

    fn ask_grant(
        &mut self,
        caller: &Caller,
        date: String,
        traceparent: Option<&str>,
    ) -> Result<(), S3Error> {
        let granting = self.post.granting.as_ref().ok_or_else(|| {
            S3Error::internal_error("s3mesh asked for a grant without grant mode configured")
        })?;
        let call = granting.call(caller, date, traceparent);
        let config = &granting.config;
        self.stream
            .callout(&config.cluster, &call, config.timeout_ms)
            .map(|_id| ())
            .map_err(|result| granting::cannot_ask(config, result))
    }

    fn keep_grant(&mut self, caller: Caller, held: Held, _json: &[u8], now: u64) {
        if let Some(granting) = &self.post.granting {
            granting.cache().insert(caller, held, now);
        }
    }

    fn cache_config(&self) -> Option<&CacheConfig> {
        self.post.cache.as_ref().map(|(config, _)| config)
    }

    fn read_cache<T>(&mut self, run: impl FnOnce(&mut dyn Cache) -> T) -> Option<T> {
        let (_, store) = self.post.cache.as_ref()?;
        Some(run(&mut *lock(store)))
    }

    fn send_answer(&mut self, answer: &Answer, request_id: &str) {
        self.stream.send_answer(answer, request_id);
    }

    fn count_cache(&self, bucket: &str, event: CacheEvent) {
        let (m, batch) = (&self.post.metrics, &self.post.batch);
        match event {
            CacheEvent::Hit { bytes } => {
                batch.count(m.cache_hits, &[bucket], 1);
                batch.count(m.cache_hit_bytes, &[bucket], bytes);
            }
            CacheEvent::Miss => batch.count(m.cache_misses, &[bucket], 1),
            CacheEvent::Evicted => batch.count(m.cache_evictions, &[bucket], 1),
        }
    }

    fn count(&self, counter: Counter) {
        let m = &self.post.metrics;
        let metric = match counter {
            Counter::Unhinted => m.unhinted,
            Counter::DiscoveredEndpoint => m.discovered_endpoints,
            Counter::GrantFetched => m.grants_fetched,
            Counter::GrantDenied => m.grant_denied,
            Counter::GrantFailure => m.grant_failures,
            Counter::StoreRefusedSignature => m.store_refused_signature,
        };
        self.post.batch.count(metric, &[], 1);
    }

    fn count_endpoint(&self, address: &str, counter: EndpointCounter) {
        let m = &self.post.metrics;
        match counter {
            EndpointCounter::Selected => self.post.batch.count(m.endpoint_selected, &[address], 1),
            EndpointCounter::Error => self.post.batch.count(m.endpoint_errors, &[address], 1),
            EndpointCounter::Served(route) => {
                self.post
                    .batch
                    .count(m.endpoint_requests, &[address, route.as_str()], 1);
            }
        }
    }

    /// The gauge follows at the next flush ([`Post::show_in_flight`]).
    fn add_in_flight(&self, address: &str, delta: i64) {
        let in_flight = &mut self.post.shared().in_flight;
        let count = match in_flight.get_mut(address) {
            Some(count) => count,
            None => in_flight.entry(address.to_owned()).or_default(),
        };
        count.now = count.now.saturating_add_signed(delta);
    }

    fn record_ttfb(&self, address: &str, operation: Operation, ms: u64) {
        let m = &self.post.metrics;
        self.stream.record_series(&m.endpoint_ttfb_ms, address, ms);
        self.stream
            .record_series(&m.operation_ttfb_ms, operation.as_str(), ms);
    }

    fn record_usage(&self, usage: &Usage<'_>) {
        let label = self
            .post
            .shared()
            .identity_labels
            .label(usage.identity)
            .to_owned();
        let (m, batch) = (&self.post.metrics, &self.post.batch);
        let labels = [label.as_str(), usage.class];
        batch.count(m.identity_requests, &labels, 1);
        batch.count(m.identity_bytes_received, &labels, usage.bytes_in);
        batch.count(m.identity_bytes_sent, &labels, usage.bytes_out);
        if let Some(code) = usage.error {
            batch.count(m.identity_errors, &[&label, usage.class, code], 1);
        }
        self.stream
            .record(m.identity_duration_ms, &labels, usage.duration_ms);
    }
}
