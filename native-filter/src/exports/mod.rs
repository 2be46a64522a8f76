//! The event hooks Envoy looks up in the module (`envoy_dynamic_module_on_*`): here the
//! configuration's and the filter's lifecycles, in [`stream`] a request's and response's
//! callbacks, in [`grants`] the answers of grant calls.
//!
//! Every hook is a panic barrier: a panic unwinding into Envoy's C++ would abort the whole
//! proxy. A panic while a request is being decided answers that request with a 500
//! `InternalError` and stops it (fail closed: nothing reaches the store); a panic while a
//! configuration loads makes Envoy refuse the configuration.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use s3mesh_filter::config::FilterConfig;
use s3mesh_filter::post::PostFlow;
use s3mesh_filter::pre::{header, RequestHead};
use s3mesh_s3_request::S3Error;

use crate::abi::{self, log_level, ConfigEnvoyPtr, EnvoyBuffer, FilterEnvoyPtr};
use crate::host::{log, Stream};
use crate::metrics::batch::Batch;
use crate::metrics::{Definer, PreMetrics};
use crate::post::{wall_clock_ms, Post, PostHost};
use crate::pre::Pre;
use crate::scheduler::event;

mod grants;
mod stream;

/// One loaded filter configuration, shared by every stream (and worker) it serves.
enum Config {
    Pre(Pre, Batch),
    /// Role `post`, or `both` (with its `pre`).
    Post(Box<Post>),
}

impl Config {
    fn batch(&self) -> &Batch {
        match self {
            Config::Pre(_, batch) => batch,
            Config::Post(post) => &post.batch,
        }
    }
}

/// One stream's filter.
struct Filter {
    config: Arc<Config>,
    /// Role `post`'s state of this stream (unused in role `pre`).
    flow: PostFlow,
}

impl Filter {
    /// Runs `run` with this stream's `post` flow and host; `None` in role `pre`.
    fn post<T>(
        &mut self,
        filter_envoy: FilterEnvoyPtr,
        run: impl FnOnce(&mut PostFlow, &mut PostHost<'_>) -> T,
    ) -> Option<T> {
        let Config::Post(post) = self.config.as_ref() else {
            return None;
        };
        // SAFETY: called from a hook that received `filter_envoy` for this stream.
        let stream = unsafe { Stream::new(filter_envoy) };
        Some(run(&mut self.flow, &mut PostHost { stream, post }))
    }
}

/// Runs `hook`; a panic becomes `fallback()`.
fn barrier<T>(hook: impl FnOnce() -> T, fallback: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or_else(|_| {
        log(
            log_level::CRITICAL,
            "s3mesh: a panic in the filter was caught",
        );
        fallback()
    })
}

/// Refuses the request being decided after a caught panic (or without a filter to decide it).
fn refuse_internal(filter_envoy: FilterEnvoyPtr) {
    let error = S3Error::internal_error(
        "s3mesh failed while handling this request and refused it; nothing was sent to the \
         store. Retry, and report it if it persists",
    );
    // A panic while refusing leaves the stream to Envoy's own timeouts, never unwinds.
    let _ = catch_unwind(|| {
        // SAFETY: called from the hook that received `filter_envoy`.
        let stream = unsafe { Stream::new(filter_envoy) };
        let headers = stream.request_headers();
        let path = RequestHead::find(&headers).path;
        let request_id = header(&headers, "x-request-id").unwrap_or_default();
        stream.send_s3_error(&error, path, request_id);
    });
}

/// # Safety
/// `filter_module` is a pointer this module returned from `filter_new`, not yet destroyed, and
/// Envoy runs one hook of a stream at a time.
unsafe fn filter<'a>(filter_module: *mut c_void) -> Option<&'a mut Filter> {
    // SAFETY: per the contract above.
    unsafe { filter_module.cast::<Filter>().as_mut() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    abi::ABI_VERSION.as_ptr()
}

/// Parses and validates the configuration once; a refusal (logged with the field at fault)
/// makes Envoy reject the filter instead of running it half-configured.
///
/// # Safety
/// Envoy passes its configuration object and buffers valid for this call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    barrier(
        || {
            // SAFETY: Envoy's buffer is valid for this call.
            let bytes = unsafe { config.bytes() };
            // SAFETY: this is the config_new hook for `config_envoy`, and the definer does
            // not outlive it.
            let metrics = unsafe { Definer::new(config_envoy) };
            let loaded = FilterConfig::parse(bytes)
                .map_err(|error| error.to_string())
                .and_then(|config| {
                    // SAFETY: this is the config_new hook for `config_envoy`.
                    let batch = unsafe { Batch::start(config_envoy) }?;
                    let (post, pre) = match config {
                        FilterConfig::Pre(config) => {
                            let metrics = PreMetrics::define(&metrics);
                            return Ok(Config::Pre(Pre { config, metrics }, batch));
                        }
                        FilterConfig::Post(post) => (post, None),
                        FilterConfig::Both(both) => (both.post, Some(both.pre)),
                    };
                    // SAFETY: this is the config_new hook for `config_envoy`.
                    let post = unsafe { Post::new(&post, pre, config_envoy, &metrics, batch) };
                    Ok(Config::Post(Box::new(post)))
                });
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    log(log_level::ERROR, &format!("s3mesh: {error}"));
                    return std::ptr::null();
                }
            };
            log(log_level::INFO, "s3mesh: native filter configured");
            Arc::into_raw(Arc::new(loaded)).cast::<c_void>()
        },
        std::ptr::null,
    )
}

/// # Safety
/// `config_module` was returned by `config_new` and is destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config_module: *const c_void,
) {
    barrier(
        || {
            if !config_module.is_null() {
                // SAFETY: the pointer came from `Arc::into_raw` in `config_new`.
                drop(unsafe { Arc::from_raw(config_module.cast::<Config>()) });
            }
        },
        || (),
    );
}

/// Main thread: a configuration woken through its scheduler ([`crate::scheduler`]) flushes
/// its metrics or renews the grants queued for renewal.
///
/// # Safety
/// Envoy passes the configuration's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: ConfigEnvoyPtr,
    config_module: *const c_void,
    event_id: u64,
) {
    barrier(
        || {
            // SAFETY: per this hook's contract, `config_module` came from `config_new`.
            let Some(config) = (unsafe { config_module.cast::<Config>().as_ref() }) else {
                return;
            };
            match (event_id, config) {
                // SAFETY: the configuration's pointer, on the main thread.
                (event::FLUSH_METRICS, config) => unsafe {
                    config.batch().flush(config_envoy);
                    if let Config::Post(post) = config {
                        post.show_in_flight(config_envoy);
                    }
                },
                (event::RENEW_GRANTS, Config::Post(post)) => {
                    if let Some(granting) = &post.granting {
                        // SAFETY: the configuration's pointer, on the main thread.
                        unsafe { granting.renew(config_envoy, wall_clock_ms() as u64) };
                    }
                }
                _ => {}
            }
        },
        || (),
    );
}

/// # Safety
/// `config_module` was returned by `config_new` and outlives every filter made from it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_module: *const c_void,
    _filter_envoy: FilterEnvoyPtr,
) -> *mut c_void {
    barrier(
        || {
            if config_module.is_null() {
                return std::ptr::null_mut();
            }
            let config = config_module.cast::<Config>();
            // SAFETY: a live `Arc` holds the configuration; this adds a reference for the
            // filter, released when the filter is destroyed.
            let config = unsafe {
                Arc::increment_strong_count(config);
                Arc::from_raw(config)
            };
            let flow = match config.as_ref() {
                Config::Post(post) => PostFlow::new(post.flow),
                Config::Pre(..) => PostFlow::default(),
            };
            Box::into_raw(Box::new(Filter { config, flow })).cast::<c_void>()
        },
        std::ptr::null_mut,
    )
}

/// # Safety
/// `filter_module` was returned by `filter_new` and is destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: *mut c_void) {
    barrier(
        || {
            if !filter_module.is_null() {
                // SAFETY: the pointer came from `Box::into_raw` in `filter_new`.
                drop(unsafe { Box::from_raw(filter_module.cast::<Filter>()) });
            }
        },
        || (),
    );
}

// Envoy requires the hooks below from every HTTP filter module. This shell starts no HTTP
// streams, schedules nothing per stream and does not watch watermarks, so Envoy never calls
// them.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark()
{
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark()
{
}
