//! A stream's hooks: the request and response as they pass, and its end.

use std::ffi::c_void;

use s3mesh_filter::post::Step;

use super::{barrier, filter, refuse_internal, Config};
use crate::abi::{self, FilterEnvoyPtr};
use crate::host::Stream;

/// # Safety
/// Envoy passes the pointers of a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: *mut c_void,
    _end_of_stream: bool,
) -> u32 {
    barrier(
        || {
            // SAFETY: per this hook's contract.
            let Some(filter) = (unsafe { filter(filter_module) }) else {
                // `filter_new` failed: no request passes unchecked.
                refuse_internal(filter_envoy);
                return abi::headers_status::STOP_ITERATION;
            };
            if let Config::Pre(pre, batch) = filter.config.as_ref() {
                // SAFETY: this hook received `filter_envoy`.
                return pre.on_request_headers(unsafe { Stream::new(filter_envoy) }, batch);
            }
            match filter.post(filter_envoy, |flow, host| host.on_request_headers(flow)) {
                // Waiting for a grant: the body must wait too, or Envoy would pass it on with
                // the unsigned headers when it arrives.
                Some(Step::Pause) => abi::headers_status::STOP_ALL_ITERATION_AND_WATERMARK,
                _ => abi::headers_status::CONTINUE,
            }
        },
        || {
            refuse_internal(filter_envoy);
            abi::headers_status::STOP_ITERATION
        },
    )
}

/// # Safety
/// Envoy passes the pointers of a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: FilterEnvoyPtr,
    filter_module: *mut c_void,
    end_of_stream: bool,
) -> u32 {
    barrier(
        || {
            // SAFETY: per this hook's contract.
            let step = unsafe { filter(filter_module) }.and_then(|filter| {
                filter.post(filter_envoy, |flow, host| {
                    let size = host.stream.received_body_size();
                    flow.on_request_body(host, size, end_of_stream)
                })
            });
            match step {
                Some(Step::Pause) => abi::body_status::STOP_ITERATION_NO_BUFFER,
                _ => abi::body_status::CONTINUE,
            }
        },
        || {
            refuse_internal(filter_envoy);
            abi::body_status::STOP_ITERATION_NO_BUFFER
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: *mut c_void,
) -> u32 {
    abi::trailers_status::CONTINUE
}

/// The response goes on whatever happens here: it is the store's, and only metrics and
/// learning are at stake.
///
/// # Safety
/// Envoy passes the pointers of a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: *mut c_void,
    _end_of_stream: bool,
) -> u32 {
    barrier(
        || {
            // SAFETY: per this hook's contract.
            if let Some(filter) = unsafe { filter(filter_module) } {
                filter.post(filter_envoy, |flow, host| flow.on_response_headers(host));
            }
        },
        || (),
    );
    abi::headers_status::CONTINUE
}

/// The body goes on unchanged; a refusal by the store is read to say why.
///
/// # Safety
/// Envoy passes the pointers of a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: FilterEnvoyPtr,
    filter_module: *mut c_void,
    end_of_stream: bool,
) -> u32 {
    barrier(
        || {
            // SAFETY: per this hook's contract.
            if let Some(filter) = unsafe { filter(filter_module) } {
                filter.post(filter_envoy, |flow, host| {
                    flow.on_response_body(host, 0, end_of_stream);
                });
            }
        },
        || (),
    );
    abi::body_status::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: *mut c_void,
) -> u32 {
    abi::trailers_status::CONTINUE
}

/// # Safety
/// Envoy passes the pointers of a live stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: FilterEnvoyPtr,
    filter_module: *mut c_void,
) {
    barrier(
        || {
            // SAFETY: per this hook's contract.
            if let Some(filter) = unsafe { filter(filter_module) } {
                filter.post(filter_envoy, |flow, host| flow.on_complete(host));
            }
        },
        || (),
    );
}
