//! Grant mode's hooks: ext-authz's answer to a stream waiting for its grant, and to a renewal
//! asked on Envoy's main thread.

use std::ffi::c_void;

use s3mesh_filter::post::Step;

use super::{barrier, filter, refuse_internal, Config};
use crate::abi::{ConfigEnvoyPtr, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr};
use crate::granting::{self, Granting};
use crate::host::Stream;
use crate::post::{wall_clock_ms, Post};

/// The `post` configuration `config_module` and its grant mode, if it has one.
///
/// # Safety
/// `config_module` was returned by `config_new` and is not destroyed yet.
unsafe fn grant_mode<'a>(config_module: *const c_void) -> Option<(&'a Post, &'a Granting)> {
    // SAFETY: per the contract above.
    match unsafe { config_module.cast::<Config>().as_ref() }? {
        Config::Post(post) => Some((post, post.granting.as_ref()?)),
        Config::Pre(..) => None,
    }
}

/// ext-authz answered the grant call a stream waits for.
///
/// # Safety
/// Envoy passes the pointers of a live stream and the answer's, valid during this hook.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // Envoy's hook signature
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: FilterEnvoyPtr,
    filter_module: *mut c_void,
    _callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    body: *const EnvoyBuffer,
    body_len: usize,
) {
    barrier(
        || {
            let now = wall_clock_ms() as u64;
            // SAFETY: per this hook's contract.
            let answer =
                unsafe { granting::answer(result, headers, headers_len, body, body_len, now) };
            // SAFETY: per this hook's contract.
            let Some(filter) = (unsafe { filter(filter_module) }) else {
                return;
            };
            let step = filter.post(filter_envoy, |flow, host| {
                flow.on_grant_answer(host, answer)
            });
            if step == Some(Step::Continue) {
                // SAFETY: this hook received `filter_envoy`.
                unsafe { Stream::new(filter_envoy) }.continue_decoding();
            }
        },
        || refuse_internal(filter_envoy),
    );
}

/// Main thread: ext-authz answered a renewal.
///
/// # Safety
/// Envoy passes the configuration's pointers and the answer's, valid during this hook.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // Envoy's hook signature
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: ConfigEnvoyPtr,
    config_module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    body: *const EnvoyBuffer,
    body_len: usize,
) {
    barrier(
        || {
            // SAFETY: per this hook's contract, `config_module` came from `config_new`.
            let Some((post, granting)) = (unsafe { grant_mode(config_module) }) else {
                return;
            };
            let now = wall_clock_ms() as u64;
            // SAFETY: per this hook's contract.
            let answer =
                unsafe { granting::answer(result, headers, headers_len, body, body_len, now) };
            let failed = answer.is_err();
            let (m, batch) = (&post.metrics, &post.batch);
            if granting.renewed(callout_id, answer, now) {
                batch.count(m.grants_fetched, &[], 1);
                batch.count(m.grants_renewed, &[], 1);
            } else if failed {
                batch.count(m.grant_failures, &[], 1);
            }
        },
        || (),
    );
}
