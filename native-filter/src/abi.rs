//! The part of Envoy's dynamic-module C ABI (`source/extensions/dynamic_modules/abi.h`) that
//! this shell uses, declared here by hand: Envoy's Rust SDK is not published as a crate.
//!
//! Written against Envoy 1.40 (ABI `v0.2.0`): every callback named below is exported by that
//! binary (`nm -D envoy`), and the integration tests, which run every end-to-end test on this
//! shell too, exercise each one through a real Envoy. Where an older release took a result as
//! a pointer and a length pointer instead of one buffer, the declaration passes both.
//! Types are `#[repr(C)]` mirrors of the header's; enums are passed as their `u32` values so
//! that a value this file does not know can never be undefined behaviour.

use std::ffi::c_void;

/// The ABI version this shell was written for; Envoy logs a warning on a mismatch and loads
/// the module anyway (its rule: a module built for vN loads in vN and vN+1).
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// Envoy's side of a filter configuration (`DynamicModuleHttpFilterConfig*`).
pub type ConfigEnvoyPtr = *mut c_void;
/// Envoy's side of one stream's filter (`DynamicModuleHttpFilter*`).
pub type FilterEnvoyPtr = *mut c_void;

/// Bytes owned by Envoy, valid for the duration of the callback that produced them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes of several buffers (a body's slices), copied into one.
    ///
    /// # Safety
    /// As [`Self::bytes`], for every buffer.
    pub unsafe fn concat(buffers: &[Self]) -> Vec<u8> {
        let mut all = Vec::with_capacity(buffers.iter().map(|b| b.length).sum());
        for buffer in buffers {
            // SAFETY: per the contract above.
            all.extend_from_slice(unsafe { buffer.bytes() });
        }
        all
    }

    /// The bytes.
    ///
    /// # Safety
    /// Envoy must have filled this buffer in the current callback.
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: Envoy hands out a pointer to `length` readable bytes.
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// Bytes owned by the module, lent to Envoy for one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// A null buffer: "no value" (for `set_header`, remove the header).
    pub const NULL: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// Buffers lending `strs` (metric names and label values) for one call.
    pub fn all(strs: &[&str]) -> Vec<Self> {
        strs.iter().map(|s| (*s).into()).collect()
    }
}

impl From<&str> for ModuleBuffer {
    fn from(s: &str) -> Self {
        Self {
            ptr: s.as_ptr(),
            length: s.len(),
        }
    }
}

impl From<&[u8]> for ModuleBuffer {
    fn from(b: &[u8]) -> Self {
        Self {
            ptr: b.as_ptr(),
            length: b.len(),
        }
    }
}

/// A header owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHeader {
    pub key: EnvoyBuffer,
    pub value: EnvoyBuffer,
}

/// A header owned by the module.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleHeader {
    pub key: ModuleBuffer,
    pub value: ModuleBuffer,
}

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    pub const REQUEST: u32 = 0;
    pub const RESPONSE: u32 = 2;
}

/// `envoy_dynamic_module_type_http_body_type`: the bytes delivered by the current body callback.
pub const RECEIVED_REQUEST_BODY: u32 = 0;
/// The same for the response.
pub const RECEIVED_RESPONSE_BODY: u32 = 2;

/// `envoy_dynamic_module_type_metadata_source`: the stream's dynamic metadata.
pub const DYNAMIC_METADATA: u32 = 0;

/// `envoy_dynamic_module_type_http_callout_init_result` and `…_http_callout_result`: 0 is
/// success.
pub const CALLOUT_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_attribute_id` (Envoy's attribute names in the comments).
pub mod attribute {
    /// `source.address`
    pub const SOURCE_ADDRESS: u32 = 24;
    /// `connection.mtls`
    pub const CONNECTION_MTLS: u32 = 29;
    /// `connection.subject_peer_certificate`
    pub const SUBJECT_PEER_CERTIFICATE: u32 = 33;
    /// `connection.dns_san_peer_certificate`
    pub const DNS_SAN_PEER_CERTIFICATE: u32 = 35;
    /// `connection.uri_san_peer_certificate`
    pub const URI_SAN_PEER_CERTIFICATE: u32 = 37;
    /// `request.size`
    pub const REQUEST_SIZE: u32 = 13;
    /// `response.code`
    pub const RESPONSE_CODE: u32 = 15;
    /// `response.flags`
    pub const RESPONSE_FLAGS: u32 = 17;
    /// `response.size`
    pub const RESPONSE_SIZE: u32 = 21;
    /// `upstream.address`
    pub const UPSTREAM_ADDRESS: u32 = 41;
}

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and the response one),
/// which Envoy casts to its `FilterHeadersStatus`.
pub mod headers_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION: u32 = 1;
    /// Holds the body too (buffered, with flow control) until the filter continues.
    pub const STOP_ALL_ITERATION_AND_WATERMARK: u32 = 4;
}

/// `envoy_dynamic_module_type_on_http_filter_request_body_status` (`FilterDataStatus`).
pub mod body_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION_NO_BUFFER: u32 = 3;
}

/// `envoy_dynamic_module_type_on_http_filter_request_trailers_status` (`FilterTrailersStatus`).
pub mod trailers_status {
    pub const CONTINUE: u32 = 0;
}

/// `envoy_dynamic_module_type_log_level`.
pub mod log_level {
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

/// `envoy_dynamic_module_type_metrics_result`: 0 is success.
pub const METRICS_SUCCESS: u32 = 0;

/// The signature Envoy's configuration-level metric updates share (`ConfigEnvoyPtr`, metric
/// id, label values, value).
pub type MetricUpdate =
    unsafe extern "C" fn(*mut c_void, usize, *const ModuleBuffer, usize, u64) -> u32;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;

    /// Fills `result` (room for `get_headers_size` entries).
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result: *mut EnvoyHeader,
    ) -> bool;

    /// Replaces every value of `key`; a null `value` removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Answers the client locally; `details` becomes `%RESPONSE_CODE_DETAILS%`.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status: u32,
        headers: *const ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// Starts a response of the filter's own straight through the encoder filters (not a
    /// local reply: Envoy keeps the `content-length` given, as a `HEAD` answer needs);
    /// `headers` include `:status`.
    pub fn envoy_dynamic_module_callback_http_send_response_headers(
        filter: FilterEnvoyPtr,
        headers: *const ModuleHeader,
        headers_len: usize,
        end_stream: bool,
    );

    /// Body bytes of the response `send_response_headers` started.
    pub fn envoy_dynamic_module_callback_http_send_response_data(
        filter: FilterEnvoyPtr,
        data: ModuleBuffer,
        end_stream: bool,
    );

    /// The first (`index` 0) value of header `key`; `count` receives how many values it has.
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        count: *mut usize,
    ) -> bool;

    /// Size in bytes of a body (`body_type`).
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;

    /// How many slices the body is made of.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;

    /// Fills `result` (room for `get_body_chunks_size` slices) with the body's slices, without
    /// copying them.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// Removes the first `length` bytes of a body.
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        length: usize,
    ) -> bool;

    /// Appends bytes to a body.
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        data: ModuleBuffer,
    ) -> bool;

    /// A string in metadata `source` under namespace `ns`, key `key`. Releases before 1.39
    /// took the result as a pointer and a length pointer: callers pass both, aimed at the two
    /// fields of one [`EnvoyBuffer`], so either form fills it.
    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: FilterEnvoyPtr,
        source: u32,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        result_length: *mut usize,
    ) -> bool;

    /// Sets filter state `key` of the stream to the bytes `value` (a string object, which
    /// access-log formatters, span tags and CEL read). Releases before 1.39 took each buffer as
    /// a pointer and a length: the same registers.
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Filter state `key` of the stream as bytes, if it is a string object. Releases before
    /// 1.40 took the key as a pointer and a length (the same registers) and the result as for
    /// metadata: callers pass both result pointers here too.
    pub fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        result_length: *mut usize,
    ) -> bool;

    /// A string attribute (see [`attribute`]), with the result passed as for metadata.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        id: u32,
        result: *mut EnvoyBuffer,
        result_length: *mut usize,
    ) -> bool;

    /// An integer attribute (see [`attribute`]).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: FilterEnvoyPtr,
        id: u32,
        result: *mut u64,
    ) -> bool;

    /// A boolean attribute (see [`attribute`]).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter: FilterEnvoyPtr,
        id: u32,
        result: *mut bool,
    ) -> bool;

    /// Sends an HTTP request to `cluster` for this stream; the answer comes to the
    /// `http_callout_done` hook under the id written to `callout_id`.
    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *const ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;

    /// Resumes a request a hook stopped.
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    /// A handle through which any thread can run `config_scheduled` on the main thread.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> *mut c_void;

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: *mut c_void,
    );

    /// As `http_callout`, owned by the configuration (main thread only); the answer comes to
    /// the `config_http_callout_done` hook.
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *const ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;

    /// Defines a gauge, as `define_counter`.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;

    /// Defines a histogram, as `define_counter`.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;

    /// Defines a counter (only while the configuration is being created) with label names;
    /// `id` receives its handle.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;

    /// As `increment_counter`, in a configuration's hook: during `config_new` (series that
    /// must exist before traffic) and on the main thread (batched counts).
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;

    /// Sets a gauge with label values to `value`, in a configuration's hook.
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
}
