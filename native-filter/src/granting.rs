//! Grant mode's state for the whole process: one grant cache that every worker reads (no
//! copies through shared data, as the wasm shell needs), the calls to ext-authz, and renewal in
//! the background on Envoy's main thread. The logic is [`s3mesh_filter::grants`].
//!
//! A stream without a usable grant asks ext-authz itself and waits (`http_callout`); a stream
//! that finds its grant in the last fifth of its life queues the caller and wakes the main
//! thread (`config_scheduler_commit`), which asks ext-authz for the successor
//! (`config_http_callout`) while requests go on with the grant in hand.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard};

use s3mesh_access::grant::ISSUE_PATH;
use s3mesh_filter::config::GrantsConfig;
use s3mesh_filter::grants::{read_answer, Answer, Caller, GrantCache};
use s3mesh_s3_request::S3Error;
use s3mesh_sigv4::AmzDate;

use crate::abi::{self, log_level, ConfigEnvoyPtr, EnvoyBuffer, EnvoyHeader, ModuleHeader};
use crate::host::log;
use crate::lock;
use crate::scheduler::{event, Scheduler};

/// Grant mode of one `post` configuration.
pub struct Granting {
    pub config: GrantsConfig,
    cache: Mutex<GrantCache>,
    /// Renewal calls in flight (main thread), by callout id.
    renewals: Mutex<HashMap<u64, Caller>>,
    scheduler: Scheduler,
}

/// The request that asks ext-authz for a grant; its headers borrow from the [`Granting`] that
/// made it and the trace context it carries.
pub struct GrantCall<'a> {
    headers: Vec<ModuleHeader>,
    pub body: Vec<u8>,
    granting: PhantomData<&'a Granting>,
}

impl GrantCall<'_> {
    pub fn headers(&self) -> &[ModuleHeader] {
        &self.headers
    }
}

impl Granting {
    /// # Safety
    /// `config_envoy` is the configuration being created in `config_new`.
    pub unsafe fn new(config: GrantsConfig, config_envoy: ConfigEnvoyPtr) -> Self {
        Self {
            config,
            cache: Mutex::default(),
            renewals: Mutex::default(),
            // SAFETY: per the contract above.
            scheduler: unsafe { Scheduler::new(config_envoy) },
        }
    }

    pub fn cache(&self) -> MutexGuard<'_, GrantCache> {
        lock(&self.cache)
    }

    /// The call asking for `caller`'s grant for `date`, in the trace of the request that needs
    /// it (`traceparent`) if any.
    pub fn call<'a>(
        &'a self,
        caller: &Caller,
        date: String,
        traceparent: Option<&'a str>,
    ) -> GrantCall<'a> {
        let header = |key: &'static str, value: &str| ModuleHeader {
            key: key.into(),
            value: value.into(),
        };
        let mut headers = vec![
            header(":method", "POST"),
            header(":path", ISSUE_PATH),
            header(":authority", &self.config.authority),
            header("content-type", "application/json"),
        ];
        headers.extend(traceparent.map(|value| header("traceparent", value)));
        GrantCall {
            headers,
            body: caller.grant_request(date),
            granting: PhantomData,
        }
    }

    /// Queues `caller`'s grant for renewal and wakes the main thread for it.
    pub fn want_refresh(&self, caller: &Caller) {
        if self.cache().want_refresh(caller) {
            self.scheduler.wake(event::RENEW_GRANTS);
        }
    }

    /// Main thread: asks ext-authz for the successors of the grants queued for renewal.
    ///
    /// # Safety
    /// `config_envoy` is this configuration's, in a hook run on the main thread.
    pub unsafe fn renew(&self, config_envoy: ConfigEnvoyPtr, now_ms: u64) {
        let wanted = self.cache().take_wanted();
        let date = AmzDate::from_unix_seconds(now_ms / 1000).date();
        for caller in wanted {
            let call = self.call(&caller, date.clone(), None);
            let mut id = 0u64;
            // SAFETY: per the contract above; every buffer outlives the call.
            let started = unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                    config_envoy,
                    &mut id,
                    self.config.cluster.as_str().into(),
                    call.headers().as_ptr(),
                    call.headers().len(),
                    call.body.as_slice().into(),
                    self.config.timeout_ms,
                )
            };
            if started == abi::CALLOUT_SUCCESS {
                lock(&self.renewals).insert(id, caller);
            } else {
                log(log_level::WARN, &cannot_ask(&self.config, started).message);
                self.cache().renewed(&caller);
            }
        }
    }

    /// Main thread: ext-authz answered renewal call `id`. Returns whether a grant came.
    pub fn renewed(&self, id: u64, answer: Result<Answer, S3Error>, now_ms: u64) -> bool {
        let Some(caller) = lock(&self.renewals).remove(&id) else {
            return false;
        };
        let mut cache = self.cache();
        cache.renewed(&caller);
        match answer {
            Ok(Answer::Granted { held, .. }) => {
                cache.insert(caller, held, now_ms);
                true
            }
            // No longer allowed: the next request asks and gets the refusal.
            Ok(Answer::Refused(_)) => {
                cache.forget(&caller);
                false
            }
            // The grant in hand serves until it expires; requests ask again meanwhile.
            Err(error) => {
                log(log_level::WARN, &error.message);
                false
            }
        }
    }
}

/// Why ext-authz could not be asked (`result`: Envoy's callout init result).
pub fn cannot_ask(config: &GrantsConfig, result: u32) -> S3Error {
    S3Error::service_unavailable(format!(
        "s3mesh could not ask ext-authz for a grant (cluster {:?}: callout result {result}); check the filter's grants.cluster",
        config.cluster
    ))
}

/// ext-authz's answer to a grant call, from a callout's result, headers and body slices.
///
/// # Safety
/// The pointers are what Envoy passed to the `*_callout_done` hook being run.
pub unsafe fn answer(
    result: u32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    body: *const EnvoyBuffer,
    body_len: usize,
    now_ms: u64,
) -> Result<Answer, S3Error> {
    // SAFETY: per the contract above, for every slice and buffer read here.
    unsafe {
        let headers = slice(headers, headers_len);
        let status = headers
            .iter()
            .find(|h| h.key.bytes() == b":status")
            .map(|h| String::from_utf8_lossy(h.value.bytes()).into_owned());
        let body = EnvoyBuffer::concat(slice(body, body_len));
        let status = status.filter(|_| result == abi::CALLOUT_SUCCESS);
        read_answer(status.as_deref(), &body, now_ms)
    }
}

/// # Safety
/// `ptr` is null or points to `len` values valid for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: per the contract above.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}
