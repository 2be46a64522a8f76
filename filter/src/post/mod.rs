//! Role `post`, one stream from start to end, whatever shell runs it: in grant mode decides and
//! signs each request with its caller's grant; names the endpoints for each request and learns
//! from how it went; re-signs the body of chunk-signed uploads as it streams through. Every
//! proxy call goes through [`Host`].

mod cache_flow;
mod host;

use s3mesh_access::grant::CompiledGrant;
use s3mesh_access::request::Request;
use s3mesh_s3_request::audit::{self, Attribute};
use s3mesh_s3_request::headers::{ENDPOINT_HINT, INTERNAL_RESPONSE};
use s3mesh_s3_request::{Operation, OperationClass, S3Error};
use s3mesh_sigv4::aws_chunked::Resigner;
use s3mesh_sigv4::AmzDate;

use crate::chunk_resign;
use crate::config::{PostConfig, PreConfig};
use crate::endpoint::outcome::{classify, ended_idle, Outcome};
use crate::endpoint::{LatencyClass, Route};
use crate::grants::{Answer, Caller};
use crate::pre::{self, Next};
use crate::signature_diagnosis::{self, Forwarded, Signed, StoreError};
use crate::usage::{error_label, Usage};
use cache_flow::{CacheFlow, Cached};
pub use host::{CacheEvent, Counter, EndpointCounter, Host};

/// What the shell tells Envoy after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Let the stream go on.
    Continue,
    /// Hold it: waiting for a grant, or answered already.
    Pause,
}

/// What each stream's flow takes from the `post` configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowSettings {
    /// [`PostConfig::stall_blame_bytes`].
    pub stall_blame_bytes: u64,
    /// [`PostConfig::audit_attributes`].
    pub audit_attributes: bool,
}

impl FlowSettings {
    /// The settings of `config`.
    pub fn of(config: &PostConfig) -> Self {
        Self {
            stall_blame_bytes: config.stall_blame_bytes,
            audit_attributes: config.audit_attributes,
        }
    }
}

/// One stream's state in role `post`.
#[derive(Debug)]
pub struct PostFlow {
    /// The caller whose grant this stream waits for.
    waiting_for: Option<Caller>,
    operation: Operation,
    /// The endpoint named first, whose in-flight count this stream holds, and why it was.
    first: Option<(String, Route)>,
    /// When the request was fully handed to the upstream side (headers, or the last body byte).
    sent_ms: f64,
    ttfb_ms: Option<f64>,
    retry_after: Option<String>,
    attempts: u32,
    /// For a chunk-signed upload: the body re-signer, and the `:path` and `x-request-id` an
    /// error names (request headers cannot be read once the body flows).
    resigner: Option<(Resigner, String, String)>,
    settings: FlowSettings,
    /// The request headers as forwarded, signed by s3mesh or ext_authz: what a refusal by the
    /// store is explained with ([`signature_diagnosis`]). Per request (ext_authz signed) only
    /// where the host cannot read them again later, or the read cache needs them.
    forwarded: Option<Forwarded>,
    /// The body of an error the store answered, gathered for its code (and, for a `403` to a
    /// request s3mesh signed, to say why).
    store_error: Option<Vec<u8>>,
    /// When the request headers reached this filter; 0 when they never did (refused before).
    started_ms: f64,
    /// Who the request was decided for, for the per-identity metrics.
    identity: Option<String>,
    /// The S3 error code of the request's failure: s3mesh's refusal or the store's error.
    error: Option<String>,
    /// The read cache's part.
    cache: CacheFlow,
}

impl Default for PostFlow {
    fn default() -> Self {
        Self::new(FlowSettings::default())
    }
}

impl PostFlow {
    /// A stream's flow, with its configuration's settings.
    pub fn new(settings: FlowSettings) -> Self {
        Self {
            waiting_for: None,
            operation: Operation::Unknown,
            first: None,
            sent_ms: 0.0,
            ttfb_ms: None,
            retry_after: None,
            attempts: 1,
            resigner: None,
            settings,
            forwarded: None,
            store_error: None,
            started_ms: 0.0,
            identity: None,
            error: None,
            cache: CacheFlow::default(),
        }
    }
}

/// `:path` and `x-request-id`, which an error names.
fn path_and_request_id(host: &impl Host) -> (String, String) {
    (
        host.request_header(":path").unwrap_or_default(),
        host.request_header("x-request-id").unwrap_or_default(),
    )
}

/// Logs and counts why the store refused a request s3mesh signed with error `store`.
fn diagnose(host: &impl Host, forwarded: &Forwarded, store: &StoreError) {
    host.count(Counter::StoreRefusedSignature);
    host.log_warn(&format!(
        "request {} to {}: {}",
        forwarded.header("x-request-id").unwrap_or("-"),
        host.upstream_address(),
        signature_diagnosis::report(Signed::rebuild(forwarded).as_ref(), store)
    ));
}

impl PostFlow {
    /// Answers the client with `error` now.
    fn refuse(&mut self, host: &mut impl Host, error: &S3Error) {
        let (path, request_id) = path_and_request_id(host);
        self.error = Some(error.code.to_owned());
        host.send_s3_error(error, &path, &request_id);
    }

    /// Refuses the request in grant mode before any grant decided on it (no identity, or
    /// ext-authz could not be asked): the audit record says why.
    fn refuse_ungranted(&mut self, host: &mut impl Host, error: &S3Error) {
        self.publish(
            host,
            &[
                (Attribute::Decision, audit::DENY),
                (Attribute::Reason, &error.message),
                (Attribute::Error, error.code),
            ],
        );
        self.refuse(host, error);
    }

    /// Hands audit record attributes to the proxy, when the configuration asks for them.
    fn publish(&self, host: &mut impl Host, attributes: &[(Attribute, &str)]) {
        if self.settings.audit_attributes {
            host.publish(attributes);
        }
    }

    /// The request headers arrived from `pre` in another filter instance (and, in the
    /// per-request mode, through ext_authz), with the operation it handed on.
    pub fn on_request_headers(&mut self, host: &mut impl Host) -> Step {
        let operation = host.take_operation();
        let operation = Operation::from_name(operation.as_deref().unwrap_or_default());
        self.on_request(host, operation, None)
    }

    /// Role `both`: the request headers arrived; `pre` (configured with `pre`) runs first, in
    /// this instance, and hands the request on directly.
    pub fn on_request_headers_after_pre(&mut self, host: &mut impl Host, pre: &PreConfig) -> Step {
        match pre::on_request_headers(pre, host, Next::SameFilter) {
            Some(passed) => self.on_request(host, passed.operation, Some(passed.headers)),
            None => Step::Pause,
        }
    }

    /// The request of `operation` is here (`headers`: as the shell holds them, when it does).
    fn on_request(
        &mut self,
        host: &mut impl Host,
        operation: Operation,
        headers: Option<Vec<(String, String)>>,
    ) -> Step {
        self.started_ms = host.now_ms();
        self.operation = operation;
        if host.grant_mode() {
            let caller = host.caller();
            let now = self.started_ms as u64;
            let time = AmzDate::from_unix_seconds(now / 1000);
            let date = time.date();
            match host.find_grant(&caller, now, &date) {
                Some(found) => {
                    if found.refresh {
                        host.want_refresh(&caller);
                    }
                    let headers = headers.unwrap_or_else(|| host.request_headers());
                    if !self.sign_with(host, headers, &found.grant, time) {
                        return Step::Pause;
                    }
                }
                None => return self.ask_for_grant(host, caller, date),
            }
        }
        self.route(host)
    }

    /// ext-authz answered the grant call this stream waits for. `Continue`: resume the request.
    pub fn on_grant_answer(
        &mut self,
        host: &mut impl Host,
        answer: Result<Answer, S3Error>,
    ) -> Step {
        let Some(caller) = self.waiting_for.take() else {
            return Step::Pause;
        };
        let now = host.now_ms() as u64;
        match answer {
            Ok(Answer::Granted { held, json }) => {
                host.count(Counter::GrantFetched);
                let grant = held.grant.clone();
                host.keep_grant(caller, held, &json, now);
                let time = AmzDate::from_unix_seconds(now / 1000);
                if self.sign_with(host, host.request_headers(), &grant, time) {
                    return self.route(host);
                }
            }
            Ok(Answer::Refused(error)) => {
                host.count(Counter::GrantDenied);
                self.refuse_ungranted(host, &error);
            }
            Err(error) => {
                host.count(Counter::GrantFailure);
                host.log_warn(&error.message);
                self.refuse_ungranted(host, &error);
            }
        }
        Step::Pause
    }

    /// `size` bytes of request body arrived; `end_of_stream` when they are the last.
    pub fn on_request_body(
        &mut self,
        host: &mut impl Host,
        size: usize,
        end_of_stream: bool,
    ) -> Step {
        if let Some((mut resigner, path, request_id)) = self.resigner.take() {
            // Each callback sees the bytes that arrived since the last; they are replaced by
            // whatever chunks are now complete and re-signed, the rest held until they are.
            let mut output = Vec::with_capacity(size + resigner.held());
            let mut framed = Ok(());
            host.read_request_body(size, &mut |piece| {
                if framed.is_ok() {
                    framed = resigner.push(piece, &mut output);
                }
            });
            let framed = framed.and_then(|()| match end_of_stream {
                true => resigner.finish(),
                false => Ok(()),
            });
            if let Err(error) = framed {
                // Answering now resets the upstream request: the store never completes an
                // object from a half-rewritten body.
                let error = chunk_resign::framing_error(&error);
                self.error = Some(error.code.to_owned());
                host.send_s3_error(&error, &path, &request_id);
                return Step::Pause;
            }
            host.replace_request_body(size, &output);
            self.resigner = Some((resigner, path, request_id));
        }
        if end_of_stream {
            self.sent_ms = host.now_ms();
        }
        Step::Continue
    }

    /// The response headers arrived: time to first byte, the store's `Retry-After`, Envoy's
    /// attempt count; headers meant for the filter only are removed; a `403` from the store
    /// to a request s3mesh signed has its body gathered, to say why.
    pub fn on_response_headers(&mut self, host: &mut impl Host) {
        self.ttfb_ms = Some(host.now_ms() - self.sent_ms);
        // One read of the headers; only those present are removed.
        let (internal, failed) = host.with_response_headers(|headers| {
            let get = |name: &str| crate::pre::header(headers, name);
            self.retry_after = get("retry-after").map(str::to_owned);
            self.attempts = get("x-envoy-attempt-count")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let failed = get(":status")
                .and_then(|s| s.parse::<u16>().ok())
                .is_some_and(|status| status >= 400);
            (INTERNAL_RESPONSE.map(|name| get(name).is_some()), failed)
        });
        for (name, present) in INTERNAL_RESPONSE.into_iter().zip(internal) {
            if present {
                host.remove_response_header(name);
            }
        }
        if failed && !host.upstream_address().is_empty() {
            self.store_error = Some(Vec::new());
        }
        self.cache.on_response_headers(host);
    }

    /// `size` bytes of response body arrived: gathered only for an error of the store, for its
    /// code and, when it refused a signature, to say why; the client gets it unchanged.
    pub fn on_response_body(&mut self, host: &mut impl Host, size: usize, end_of_stream: bool) {
        self.cache.on_response_body(host, size);
        let Some(body) = self.store_error.as_mut() else {
            return;
        };
        host.read_response_body(size, &mut |piece| {
            let room = signature_diagnosis::MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(&piece[..piece.len().min(room)]);
        });
        if !end_of_stream {
            return;
        }
        let body = self.store_error.take().unwrap_or_default();
        let Some(store) = StoreError::parse(&body) else {
            return;
        };
        self.error = Some(error_label(&store.code).to_owned());
        if !store.is_diagnosed() {
            return;
        }
        match &self.forwarded {
            Some(forwarded) => diagnose(host, forwarded, &store),
            None if !host.grant_mode() && host.reads_request_headers_late() => {
                diagnose(
                    host,
                    &Forwarded::as_received(host.request_headers()),
                    &store,
                );
            }
            None => {}
        }
    }

    /// The stream ended: releases its in-flight count, counts the caller's usage and teaches
    /// the selector.
    pub fn on_complete(&mut self, host: &mut impl Host) {
        let now = host.now_ms();
        let status = host.response_code();
        let body_bytes = host.response_body_bytes();
        self.count_usage(host, status, body_bytes, now);
        self.cache.on_complete(host, now);
        let first = self.first.as_ref().map(|(a, route)| (a.as_str(), *route));
        if let Some((first, _)) = first {
            host.add_in_flight(first, -1);
        }
        let upstream = host.upstream_address();
        let latency = self.ttfb_ms.unwrap_or(now - self.sent_ms);
        let flags = host.response_flags();
        let stalled_early = ended_idle(flags) && body_bytes < self.settings.stall_blame_bytes;
        let outcome = classify(
            status,
            flags,
            latency,
            self.retry_after.as_deref(),
            stalled_early,
        );
        let class = LatencyClass::of(self.operation);
        if let Some((first, _)) = first.filter(|(f, _)| self.attempts > 1 && *f != upstream) {
            // The first choice failed and Envoy retried elsewhere.
            let failed = Outcome::Failure {
                retry_after_ms: None,
            };
            host.observe(first, class, self.sent_ms, now, failed);
            host.count_endpoint(first, EndpointCounter::Error);
        }
        if host.observe(&upstream, class, self.sent_ms, now, outcome) {
            host.count(Counter::DiscoveredEndpoint);
        }
        if upstream.is_empty() {
            return;
        }
        let route = Route::of_served(first, &upstream);
        host.count_endpoint(&upstream, EndpointCounter::Served(route));
        match outcome {
            Outcome::Failure { .. } => host.count_endpoint(&upstream, EndpointCounter::Error),
            Outcome::Success { latency_ms } => {
                host.record_ttfb(&upstream, self.operation, latency_ms.max(0.0) as u64);
            }
            Outcome::NotAttributable => {}
        }
    }

    /// Adds the finished request to its caller's usage. A request refused before this filter
    /// saw it was refused by `pre` (counted there, nobody identified) or, in the per-request
    /// mode, decided by ext-authz, whose dynamic metadata says for whom and why.
    fn count_usage(&mut self, host: &mut impl Host, status: u64, body_bytes: u64, now: f64) {
        let metadata = |attribute: Attribute| host.authz_metadata(attribute.name());
        let (operation, identity, error, started) = if self.started_ms > 0.0 {
            let started = self.started_ms;
            (
                self.operation,
                self.identity.take(),
                self.error.take(),
                started,
            )
        } else if !host.grant_mode() && metadata(Attribute::Decision).is_some() {
            let operation = metadata(Attribute::Operation).unwrap_or_default();
            let error = metadata(Attribute::Error).map(|code| error_label(&code).to_owned());
            // Decided before this filter: no time of its own to measure from.
            let identity = metadata(Attribute::Identity);
            (Operation::from_name(&operation), identity, error, now)
        } else {
            return;
        };
        let error = (status >= 400).then(|| error.unwrap_or_else(|| status.to_string()));
        host.record_usage(&Usage {
            identity: identity.as_deref(),
            class: operation.class().map_or("unknown", |c| c.as_str()),
            error: error.as_deref(),
            bytes_in: host.request_body_bytes(),
            bytes_out: body_bytes,
            duration_ms: (now - started).max(0.0) as u64,
        });
    }

    /// Asks ext-authz for `caller`'s grant; the request waits.
    fn ask_for_grant(&mut self, host: &mut impl Host, caller: Caller, date: String) -> Step {
        let traceparent = host.request_header("traceparent");
        match host.ask_grant(&caller, date, traceparent.as_deref()) {
            Ok(()) => self.waiting_for = Some(caller),
            Err(error) => {
                host.count(Counter::GrantFailure);
                host.log_warn(&error.message);
                self.refuse_ungranted(host, &error);
            }
        }
        Step::Pause
    }

    /// Decides on the request (`headers`: as Envoy holds them) with `grant` and, when allowed,
    /// signs it at `time`. `false`: refused, and the client has its answer.
    fn sign_with(
        &mut self,
        host: &mut impl Host,
        headers: Vec<(String, String)>,
        grant: &CompiledGrant,
        time: AmzDate,
    ) -> bool {
        let get = |name: &str| crate::pre::header(&headers, name).unwrap_or_default();
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
        let who = [
            (Attribute::Identity, grant.identity()),
            (Attribute::IdentitySource, grant.identity_source()),
        ];
        let changes = match grant.decide(&request, time) {
            Ok(allowed) => {
                self.publish(host, &[who[0], who[1], (Attribute::Decision, audit::ALLOW)]);
                self.identity = Some(grant.identity().to_owned());
                let signed = allowed.signed;
                for (name, value) in &signed.changes.set {
                    host.set_request_header(name, Some(value));
                }
                // Only what the request has (`pre` stripped client credentials already): each
                // call is a search of Envoy's header map.
                let present = |name: &&&str| crate::pre::header(&headers, name).is_some();
                for name in signed.changes.remove.iter().filter(present) {
                    host.set_request_header(name, None);
                }
                if let Some(signing) = &signed.chunk_signing {
                    let mode = request.header("x-amz-content-sha256");
                    self.resigner = chunk_resign::own_resigner(mode, signing)
                        .map(|r| (r, get(":path").to_owned(), get("x-request-id").to_owned()));
                }
                signed.changes
            }
            Err(refused) => {
                host.count(Counter::GrantDenied);
                let why = [
                    (Attribute::Decision, audit::DENY),
                    (Attribute::Reason, refused.error.message.as_str()),
                    (Attribute::Error, refused.error.code),
                ];
                self.publish(host, &[who[0], who[1], why[0], why[1], why[2]]);
                self.identity = Some(grant.identity().to_owned());
                self.error = Some(refused.error.code.to_owned());
                host.log_info(&format!(
                    "denied: request {} identity {} operation {}: {}",
                    get("x-request-id"),
                    grant.identity(),
                    refused.operation.unwrap_or("-"),
                    refused.error.message
                ));
                host.send_s3_error(&refused.error, get(":path"), get("x-request-id"));
                return false;
            }
        };
        self.forwarded = Some(Forwarded::signed(headers, changes.set, changes.remove));
        true
    }

    /// After authorization: the chunk re-signer when ext_authz signed, then the endpoint hint.
    fn route(&mut self, host: &mut impl Host) -> Step {
        // Reads and listings carry no body: no chunk signatures to re-sign.
        let bodiless = matches!(
            self.operation.class(),
            Some(OperationClass::Read | OperationClass::List)
        );
        if !host.grant_mode() {
            // As ext_authz signed it, for the read cache and to explain a refusal by the store
            // (read again then where the host allows).
            if !host.reads_request_headers_late() || host.cache_config().is_some() {
                self.forwarded = Some(Forwarded::as_received(host.request_headers()));
            }
            self.identity = host.authz_metadata(Attribute::Identity.name());
        }
        if !host.grant_mode() && !bodiless {
            let mode = host.request_header("x-amz-content-sha256");
            match chunk_resign::resigner(mode.as_deref(), |name| host.authz_metadata(name)) {
                Ok(resigner) => {
                    self.resigner = resigner.map(|r| {
                        let (path, request_id) = path_and_request_id(host);
                        (r, path, request_id)
                    });
                }
                Err(error) => {
                    self.refuse(host, &error);
                    return Step::Pause;
                }
            }
        }
        let now = host.now_ms();
        if let Some(forwarded) = &self.forwarded {
            match self
                .cache
                .on_authorized(host, self.operation, forwarded, now)
            {
                Cached::Passing => {}
                Cached::Missed => self.publish(host, &[(Attribute::Cache, audit::CACHE_MISS)]),
                Cached::Hit(answer) => {
                    self.publish(host, &[(Attribute::Cache, audit::CACHE_HIT)]);
                    let request_id = forwarded.header("x-request-id").unwrap_or_default();
                    host.send_answer(&answer, request_id);
                    return Step::Pause;
                }
            }
        }
        let hint = host.choose(LatencyClass::of(self.operation), now);
        match hint.first_address() {
            Some(first) => {
                host.count_endpoint(first, EndpointCounter::Selected);
                host.add_in_flight(first, 1);
                self.publish(host, &[(Attribute::EndpointFirst, first)]);
            }
            None => host.count(Counter::Unhinted),
        }
        self.first = hint.first;
        self.sent_ms = now;
        // Replaces (or removes) any copy that got this far: the hint is trusted routing input.
        host.set_request_header(ENDPOINT_HINT, hint.value.as_deref());
        Step::Continue
    }
}
