//! What role `post` needs from the proxy for one stream: each shell implements [`Host`] with
//! its own host calls (proxy-wasm's, or Envoy's dynamic-module ABI) and its own storage for the
//! state streams share (the endpoint selector, grants, metrics).

use s3mesh_s3_request::headers::OPERATION;
use s3mesh_s3_request::{Operation, S3Error};

use crate::config::CacheConfig;
use crate::endpoint::outcome::Outcome;
use crate::endpoint::{Hint, LatencyClass, Route};
use crate::grants::{Caller, Found, Held};
use crate::pre;
use crate::read_cache::{Answer, Cache};
use crate::usage::Usage;

/// Counters of role `post` without labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A request left to the cluster's fallback policy.
    Unhinted,
    /// An endpoint answered that no configuration named.
    DiscoveredEndpoint,
    /// A grant arrived from ext-authz.
    GrantFetched,
    /// A grant decided against a request.
    GrantDenied,
    /// ext-authz could not be asked, or did not answer.
    GrantFailure,
    /// The store refused a request s3mesh signed for its signature, key or clock
    /// ([`crate::signature_diagnosis`]); the log says why.
    StoreRefusedSignature,
}

/// Per-endpoint counters of role `post`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointCounter {
    /// Named first by the filter.
    Selected,
    /// Failed a request (as [`Outcome::Failure`] judges).
    Error,
    /// Served a request, by how it reached the endpoint.
    Served(Route),
}

/// What happened in the read cache, for its per-bucket metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheEvent {
    /// A request answered from the cache, with this many body bytes.
    Hit {
        /// Body bytes served.
        bytes: u64,
    },
    /// A cacheable request the cache could not answer.
    Miss,
    /// An answer dropped to make room.
    Evicted,
}

/// One stream's view of the proxy, for role `post` (and, in role `both`, for `pre` before it:
/// hence [`pre::Host`]'s calls, which `post` uses too).
pub trait Host: pre::Host {
    /// Wall-clock milliseconds.
    fn now_ms(&self) -> f64;
    /// The first value of request header `name`.
    fn request_header(&self, name: &str) -> Option<String>;
    /// The operation `pre` in another filter instance handed on
    /// ([`pre::Host::hand_on_operation`]), taken off the request (the default: its header,
    /// removed before the request goes upstream).
    fn take_operation(&mut self) -> Option<String> {
        let operation = self.request_header(OPERATION);
        self.set_request_header(OPERATION, None);
        operation
    }
    /// Every response header, `:status` included.
    fn response_headers(&self) -> Vec<(String, String)>;
    /// Runs `look` on every response header as borrowed text (see
    /// [`pre::Host::with_request_headers`]; the default copies).
    fn with_response_headers<T>(&self, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        pre::lend_headers(&self.response_headers(), look)
    }
    /// Whether [`pre::Host::request_headers`] still answers once the response has begun (a
    /// dynamic module's do; proxy-wasm's host aborts the VM), so that the headers ext_authz
    /// signed need not be kept for every request in case the store refuses one.
    fn reads_request_headers_late(&self) -> bool {
        false
    }
    /// Removes a response header.
    fn remove_response_header(&mut self, name: &str);
    /// Sets a response header.
    fn set_response_header(&mut self, name: &str, value: &str);
    /// Hands the request body bytes this body callback delivers (`size` of them) to `read`, in
    /// the pieces the host holds them in (the native shell: Envoy's own slices, not copied).
    fn read_request_body(&self, size: usize, read: &mut dyn FnMut(&[u8]));
    /// Replaces the `size` bytes this body callback delivered with `bytes`.
    fn replace_request_body(&mut self, size: usize, bytes: &[u8]);
    /// Hands the response body bytes this body callback delivers (`size` of them) to `read`.
    fn read_response_body(&self, size: usize, read: &mut dyn FnMut(&[u8]));
    /// A string ext_authz left in the stream's dynamic metadata (chunk-signing material).
    fn authz_metadata(&self, name: &str) -> Option<String>;
    /// The caller as Envoy saw the connection (peer certificate, source address).
    fn caller(&self) -> Caller;
    /// `upstream.address` of the attempt that answered (empty without one).
    fn upstream_address(&self) -> String;
    /// `response.code` (0 without a response).
    fn response_code(&self) -> u64;
    /// `response.flags`.
    fn response_flags(&self) -> u64;
    /// `response.size`: response body bytes Envoy passed on towards the client.
    fn response_body_bytes(&self) -> u64;
    /// `request.size`: request body bytes (the client's `content-length` where it sent one).
    fn request_body_bytes(&self) -> u64;
    /// Logs at info level.
    fn log_info(&self, message: &str);
    /// Logs at warning level.
    fn log_warn(&self, message: &str);

    /// The endpoints for a request of `class` (the shared selector's choice).
    fn choose(&mut self, class: LatencyClass, now_ms: f64) -> Hint;
    /// Teaches the shared selector about a request sent at `sent_ms`; `true` when `address`
    /// was new.
    fn observe(
        &mut self,
        address: &str,
        class: LatencyClass,
        sent_ms: f64,
        now_ms: f64,
        outcome: Outcome,
    ) -> bool;

    /// Whether grant mode is configured (the filter decides and signs).
    fn grant_mode(&self) -> bool;
    /// The caller's usable grant at `now` (ms) for `date` (`YYYYMMDD`), from any worker.
    fn find_grant(&mut self, caller: &Caller, now: u64, date: &str) -> Option<Found>;
    /// Marks the caller's grant for renewal in the background.
    fn want_refresh(&mut self, caller: &Caller);
    /// Asks ext-authz for the caller's grant, in the trace of the request that needs it
    /// (`traceparent`, the W3C trace context it came with); the answer comes to
    /// [`super::PostFlow::on_grant_answer`].
    fn ask_grant(
        &mut self,
        caller: &Caller,
        date: String,
        traceparent: Option<&str>,
    ) -> Result<(), S3Error>;
    /// Keeps a grant from ext-authz (`json` as received) for every worker.
    fn keep_grant(&mut self, caller: Caller, held: Held, json: &[u8], now: u64);

    /// The read cache's configuration; `None` without a cache configured.
    fn cache_config(&self) -> Option<&CacheConfig>;
    /// Runs `run` with the read cache (the process's store under its lock natively, the
    /// workers' shared store in wasm); `None` without a cache configured.
    fn read_cache<T>(&mut self, run: impl FnOnce(&mut dyn Cache) -> T) -> Option<T>;
    /// Answers the client with `answer` from the read cache; the request goes no further.
    fn send_answer(&mut self, answer: &Answer, request_id: &str);
    /// Adds a read cache event to the bucket's metrics.
    fn count_cache(&self, bucket: &str, event: CacheEvent);

    /// Adds one to a counter.
    fn count(&self, counter: Counter);
    /// Adds one to a per-endpoint counter.
    fn count_endpoint(&self, address: &str, counter: EndpointCounter);
    /// Changes the process-wide number of requests in flight to `address`.
    fn add_in_flight(&self, address: &str, delta: i64);
    /// Records a time to first byte for the endpoint and the operation.
    fn record_ttfb(&self, address: &str, operation: Operation, ms: u64);
    /// Adds a finished request to the per-identity metrics, under the shell's bounded label
    /// for its identity ([`crate::usage::IdentityLabels`]).
    fn record_usage(&self, usage: &Usage<'_>);
}
