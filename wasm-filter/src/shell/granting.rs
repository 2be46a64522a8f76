//! Grant mode's state in one worker, shared by its streams (which use grants and ask for the
//! first) and its root context (which renews grants in use): the grant cache, Envoy's shared
//! data, and the calls to ext-authz. The logic is [`s3mesh_filter::grants`]; this is its host side.

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::traits::Context;
use s3mesh_access::grant::ISSUE_PATH;
use s3mesh_s3_request::S3Error;

use s3mesh_filter::config::GrantsConfig;
use s3mesh_filter::grants::{
    decode_record, encode_record, read_answer, Answer, Caller, Found, GrantCache, Held,
};

/// Grant mode of one worker: where grants come from and the ones it holds; shared by the
/// worker's streams and its root context, which renews grants in use.
pub(super) struct Granting {
    config: GrantsConfig,
    pub(super) cache: RefCell<GrantCache>,
}

impl Granting {
    pub(super) fn new(config: GrantsConfig) -> Self {
        Self {
            config,
            cache: RefCell::default(),
        }
    }

    /// The caller's usable grant: this worker's, else one another worker shared.
    pub(super) fn find(
        &self,
        ctx: &dyn Context,
        caller: &Caller,
        now: u64,
        date: &str,
    ) -> Option<Found> {
        if let Some(found) = self.cache.borrow().get(caller, now, date) {
            return Some(found);
        }
        let held = self.shared(ctx, caller, now, date)?;
        let mut cache = self.cache.borrow_mut();
        cache.insert(caller.clone(), held, now);
        cache.get(caller, now, date)
    }

    /// The caller's grant in shared data, if usable; a stale one is emptied so that shared
    /// memory does not keep it.
    pub(super) fn shared(
        &self,
        ctx: &dyn Context,
        caller: &Caller,
        now: u64,
        date: &str,
    ) -> Option<Held> {
        let key = caller.shared_key();
        let (bytes, cas) = ctx.get_shared_data(&key);
        let bytes = bytes.filter(|b| !b.is_empty())?;
        let held = decode_record(&bytes, now, date);
        if held.is_none() {
            let _ = ctx.set_shared_data(&key, Some(&[]), cas);
        }
        held
    }

    /// Asks ext-authz for `caller`'s grant for `date`; the call's token.
    pub(super) fn ask(
        &self,
        ctx: &dyn Context,
        caller: &Caller,
        date: String,
        traceparent: Option<&str>,
    ) -> Result<u32, S3Error> {
        let body = caller.grant_request(date);
        let config = &self.config;
        let mut headers = vec![
            (":method", "POST"),
            (":path", ISSUE_PATH),
            (":authority", config.authority.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend(traceparent.map(|value| ("traceparent", value)));
        let timeout = Duration::from_millis(config.timeout_ms);
        ctx.dispatch_http_call(&config.cluster, headers, Some(&body), vec![], timeout)
            .map_err(|status| {
                S3Error::service_unavailable(format!(
                    "s3mesh could not ask ext-authz for a grant (cluster {:?}: {status:?}); check the filter's grants.cluster",
                    config.cluster
                ))
            })
    }

    /// Drops `caller`'s grant here and in shared data (ext-authz refused to renew it).
    pub(super) fn revoke(&self, ctx: &dyn Context, caller: &Caller) {
        let _ = ctx.set_shared_data(&caller.shared_key(), Some(&[]), None);
        self.cache.borrow_mut().forget(caller);
    }

    /// Keeps a grant from ext-authz for this worker and, through shared data, the others.
    pub(super) fn keep(
        &self,
        ctx: &dyn Context,
        caller: Caller,
        held: Held,
        json: &[u8],
        now: u64,
    ) {
        let record = encode_record(&held, json);
        let _ = ctx.set_shared_data(&caller.shared_key(), Some(&record), None);
        self.cache.borrow_mut().insert(caller, held, now);
    }
}

/// ext-authz's answer to a grant call, from the call's response received at `now`.
pub(super) fn answer(ctx: &dyn Context, body_size: usize, now: u64) -> Result<Answer, S3Error> {
    let status = ctx.get_http_call_response_header(":status");
    let body = ctx
        .get_http_call_response_body(0, body_size)
        .unwrap_or_default();
    read_answer(status.as_deref(), &body, now)
}
