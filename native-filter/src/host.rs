//! Safe calls into Envoy for one stream: the only place that dereferences what Envoy hands out.

use std::borrow::Cow;

use s3mesh_filter::read_cache::{Answer, CACHE_HEADER};
use s3mesh_s3_request::audit::{self, Attribute};
use s3mesh_s3_request::S3Error;

use crate::abi::{self, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr, ModuleBuffer, ModuleHeader};
use crate::granting::GrantCall;
use crate::metrics::{Metric, SeriesHistogram};

/// Envoy's side of one stream, valid for the duration of the hook that received it.
pub struct Stream(FilterEnvoyPtr);

impl Stream {
    /// # Safety
    /// `ptr` is the `filter_envoy_ptr` of the hook being run.
    pub unsafe fn new(ptr: FilterEnvoyPtr) -> Self {
        Self(ptr)
    }

    /// Every request header, pseudo-headers included, in Envoy's order.
    pub fn request_headers(&self) -> Vec<(String, String)> {
        self.headers(abi::header_type::REQUEST)
    }

    /// Runs `look` on every request header, borrowed from Envoy's header map (only a header
    /// that is not UTF-8 is copied, made valid). The map cannot change meanwhile: every
    /// change goes through this stream, which `look` cannot reach.
    pub fn with_request_headers<T>(&self, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        self.with_headers(abi::header_type::REQUEST, look)
    }

    /// As [`Self::with_request_headers`], for the response headers.
    pub fn with_response_headers<T>(&self, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        self.with_headers(abi::header_type::RESPONSE, look)
    }

    fn with_headers<T>(&self, kind: u32, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        let raw = self.raw_headers(kind);
        // SAFETY: Envoy's buffers stay valid until the map changes or this hook ends, and
        // neither happens before `look` returns.
        let texts: Vec<(Cow<'_, str>, Cow<'_, str>)> = unsafe {
            raw.iter()
                .map(|h| (lend(h.key.bytes()), lend(h.value.bytes())))
                .collect()
        };
        let views: Vec<(&str, &str)> = texts.iter().map(|(n, v)| (&**n, &**v)).collect();
        look(&views)
    }

    /// Every response header, `:status` included, in Envoy's order.
    pub fn response_headers(&self) -> Vec<(String, String)> {
        self.headers(abi::header_type::RESPONSE)
    }

    fn headers(&self, kind: u32) -> Vec<(String, String)> {
        let raw = self.raw_headers(kind);
        // SAFETY: the bytes are copied before this hook ends.
        unsafe {
            raw.iter()
                .map(|h| (text(h.key.bytes()), text(h.value.bytes())))
                .collect()
        }
    }

    /// Envoy's buffers of every header of `kind` (empty when there are none), valid until the
    /// map changes or this hook ends.
    fn raw_headers(&self, kind: u32) -> Vec<EnvoyHeader> {
        // SAFETY: `self.0` is live for this hook; Envoy fills at most `size` entries.
        unsafe {
            let size = abi::envoy_dynamic_module_callback_http_get_headers_size(self.0, kind);
            let mut raw = vec![
                EnvoyHeader {
                    key: EnvoyBuffer::EMPTY,
                    value: EnvoyBuffer::EMPTY,
                };
                size
            ];
            if size == 0
                || !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.0,
                    kind,
                    raw.as_mut_ptr(),
                )
            {
                raw.clear();
            }
            raw
        }
    }

    /// Sets (`Some`) or removes (`None`) a request header.
    pub fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.set_header(abi::header_type::REQUEST, name, value);
    }

    /// Removes a response header.
    pub fn remove_response_header(&self, name: &str) {
        self.set_header(abi::header_type::RESPONSE, name, None);
    }

    /// Sets a response header.
    pub fn set_response_header(&self, name: &str, value: &str) {
        self.set_header(abi::header_type::RESPONSE, name, Some(value));
    }

    fn set_header(&self, kind: u32, name: &str, value: Option<&str>) {
        let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::from);
        // SAFETY: the buffers outlive the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(self.0, kind, name.into(), value);
        }
    }

    /// The first value of request header `name`.
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.header(abi::header_type::REQUEST, name)
    }

    fn header(&self, kind: u32, name: &str) -> Option<String> {
        let mut value = EnvoyBuffer::EMPTY;
        let mut count = 0usize;
        // SAFETY: `value` and `count` are written before the call returns; the bytes are copied
        // before this hook ends.
        unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.0,
                kind,
                name.into(),
                &mut value,
                0,
                &mut count,
            )
            .then(|| text(value.bytes()))
        }
    }

    /// Hands the bytes the current request body callback delivered to `read`, one of Envoy's
    /// slices at a time, without copying them.
    pub fn read_received_body(&self, read: &mut dyn FnMut(&[u8])) {
        self.read_body(abi::RECEIVED_REQUEST_BODY, read);
    }

    /// As [`Self::read_received_body`], for the current response body callback.
    pub fn read_received_response_body(&self, read: &mut dyn FnMut(&[u8])) {
        self.read_body(abi::RECEIVED_RESPONSE_BODY, read);
    }

    fn read_body(&self, kind: u32, read: &mut dyn FnMut(&[u8])) {
        // SAFETY: Envoy fills at most `n` slices, readable during this hook, which `read` does
        // not outlive.
        unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, kind);
            let mut slices = vec![EnvoyBuffer::EMPTY; n];
            if n == 0
                || !abi::envoy_dynamic_module_callback_http_get_body_chunks(
                    self.0,
                    kind,
                    slices.as_mut_ptr(),
                )
            {
                return;
            }
            for slice in &slices {
                read(slice.bytes());
            }
        }
    }

    /// Size of what the current request body callback delivered.
    pub fn received_body_size(&self) -> usize {
        // SAFETY: a plain query on the live stream.
        unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_size(
                self.0,
                abi::RECEIVED_REQUEST_BODY,
            )
        }
    }

    /// Replaces the first `size` bytes the current body callback delivered with `bytes`.
    pub fn replace_received_body(&self, size: usize, bytes: &[u8]) {
        let kind = abi::RECEIVED_REQUEST_BODY;
        // SAFETY: `bytes` outlives the call; Envoy copies it.
        unsafe {
            abi::envoy_dynamic_module_callback_http_drain_body(self.0, kind, size);
            abi::envoy_dynamic_module_callback_http_append_body(self.0, kind, bytes.into());
        }
    }

    /// A string in the stream's dynamic metadata.
    pub fn dynamic_metadata(&self, namespace: &str, key: &str) -> Option<String> {
        // SAFETY: Envoy fills the buffer or reports false.
        unsafe {
            envoy_text(|value, length| {
                abi::envoy_dynamic_module_callback_http_get_metadata_string(
                    self.0,
                    abi::DYNAMIC_METADATA,
                    namespace.into(),
                    key.into(),
                    value,
                    length,
                )
            })
        }
    }

    /// Hands the audit record's `attributes` to Envoy as filter state `s3mesh.<name>`, for the
    /// access log and spans (a string object each: cheaper to set and to read than dynamic
    /// metadata, whose every update merges a protobuf struct). A refused update is ignored.
    pub fn publish(&self, attributes: &[(Attribute, &str)]) {
        let mut key = String::with_capacity(32);
        for (attribute, value) in attributes {
            key.clear();
            key.push_str(audit::NAMESPACE);
            key.push('.');
            key.push_str(attribute.name());
            self.set_filter_state(&key, value);
        }
    }

    /// Sets filter state `key` to the string `value`, once per stream: Envoy keeps it
    /// read-only, so a second set of the same key is refused (and logged by Envoy as a bug).
    pub fn set_filter_state(&self, key: &str, value: &str) {
        // SAFETY: the buffers outlive the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                key.into(),
                value.into(),
            );
        }
    }

    /// Filter state `key`, if set as a string.
    pub fn filter_state(&self, key: &str) -> Option<String> {
        // SAFETY: Envoy fills the buffer or reports false.
        unsafe {
            envoy_text(|value, length| {
                abi::envoy_dynamic_module_callback_http_get_filter_state_bytes(
                    self.0,
                    key.into(),
                    value,
                    length,
                )
            })
        }
    }

    /// A string attribute; absent or empty is `None`.
    pub fn attribute_text(&self, id: u32) -> Option<String> {
        // SAFETY: Envoy fills the buffer or reports false.
        let found = unsafe {
            envoy_text(|value, length| {
                abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                    self.0, id, value, length,
                )
            })
        };
        found.filter(|s| !s.is_empty())
    }

    /// A boolean attribute; absent is `false`.
    pub fn attribute_bool(&self, id: u32) -> bool {
        let mut value = false;
        // SAFETY: `value` is written before the call returns.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_bool(
                self.0, id, &mut value,
            )
        };
        found && value
    }

    /// Sends `call` to `cluster` for this stream; the callout's id, or Envoy's init result.
    pub fn callout(
        &self,
        cluster: &str,
        call: &GrantCall<'_>,
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut id = 0u64;
        let headers = call.headers();
        // SAFETY: every buffer outlives the call; Envoy copies them.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                cluster.into(),
                headers.as_ptr(),
                headers.len(),
                call.body.as_slice().into(),
                timeout_ms,
            )
        };
        match result {
            abi::CALLOUT_SUCCESS => Ok(id),
            failed => Err(failed),
        }
    }

    /// Resumes the request a hook stopped.
    pub fn continue_decoding(&self) {
        // SAFETY: a plain call on the live stream.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// An integer attribute; absent is 0.
    pub fn attribute_u64(&self, id: u32) -> u64 {
        let mut value = 0u64;
        // SAFETY: `value` is written before the call returns.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(self.0, id, &mut value)
        };
        if found {
            value
        } else {
            0
        }
    }

    /// Answers the client with `error` as S3 XML; the request goes no further.
    pub fn send_s3_error(&self, error: &S3Error, path: &str, request_id: &str) {
        let resource = path.split('?').next().unwrap_or_default();
        let body = error.to_xml(resource, request_id);
        let headers = [
            ModuleHeader {
                key: "content-type".into(),
                value: "application/xml".into(),
            },
            ModuleHeader {
                key: "x-amz-request-id".into(),
                value: request_id.into(),
            },
        ];
        // SAFETY: every buffer outlives the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(error.status),
                headers.as_ptr(),
                headers.len(),
                body.as_bytes().into(),
                "s3mesh_refused".into(),
            );
        }
    }

    /// Answers the client with the read cache's `answer`; the request goes no further. Sent as
    /// a response of the filter's own, not a local reply, whose empty body would lose a
    /// `HeadObject` answer's `content-length`.
    pub fn send_answer(&self, answer: &Answer, request_id: &str) {
        let status = answer.status.to_string();
        let headers: Vec<ModuleHeader> = [(":status", status.as_str())]
            .into_iter()
            .chain(answer.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .chain([(CACHE_HEADER, "hit"), ("x-amz-request-id", request_id)])
            .map(|(key, value)| ModuleHeader {
                key: key.into(),
                value: value.into(),
            })
            .collect();
        let bodyless = answer.body.is_empty();
        // SAFETY: every buffer outlives the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response_headers(
                self.0,
                headers.as_ptr(),
                headers.len(),
                bodyless,
            );
            if !bodyless {
                abi::envoy_dynamic_module_callback_http_send_response_data(
                    self.0,
                    answer.body.as_slice().into(),
                    true,
                );
            }
        }
    }

    /// Records `value` in `histogram`'s series for label value `label`.
    pub fn record_series(&self, histogram: &SeriesHistogram, label: &str, value: u64) {
        match histogram.series(label) {
            Some((id, false)) => self.record(Some(id), &[], value),
            Some((id, true)) => self.record(Some(id), &[label], value),
            None => {}
        }
    }

    /// Records `value` in histogram `id` with `labels`.
    pub fn record(&self, id: Metric, labels: &[&str], value: u64) {
        let Some(id) = id else {
            return;
        };
        let labels = ModuleBuffer::all(labels);
        // SAFETY: the label buffers outlive the call. A refused update is ignored: stats must
        // never fail a request.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.0,
                id,
                labels.as_ptr(),
                labels.len(),
                value,
            );
        }
    }
}

/// Logs through Envoy's `dynamic_modules` logger.
pub fn log(level: u32, message: &str) {
    // SAFETY: the buffer outlives the call.
    unsafe { abi::envoy_dynamic_module_callback_log(level, message.into()) }
}

/// Header bytes as text, borrowed when they are UTF-8; invalid UTF-8 (which Envoy passes on)
/// replaced, as a client would see it. Some 26 headers of a plain GET pass here per request,
/// nearly all ASCII: `from_utf8` costs about 100 instructions each (callgrind), the lossy scan
/// 250, the ASCII check (word at a time) a fraction of the first.
fn lend(bytes: &[u8]) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Runs `fill`, a getter that writes a string into an Envoy buffer and reports whether it
/// found one, and copies the string. Getters take the result as the buffer's address and its
/// length's (Envoy 1.40 writes the first, releases before it the pointer and the length through
/// both): both aim into the one buffer.
///
/// # Safety
/// `fill` writes a buffer readable until the current hook ends, or returns false.
unsafe fn envoy_text(fill: impl FnOnce(*mut EnvoyBuffer, *mut usize) -> bool) -> Option<String> {
    let mut value = EnvoyBuffer::EMPTY;
    let length = std::ptr::addr_of_mut!(value.length);
    let found = fill(std::ptr::addr_of_mut!(value), length);
    // SAFETY: per the contract above; the bytes are copied before the hook ends.
    found.then(|| text(unsafe { value.bytes() }))
}

/// As [`lend`], owned.
fn text(bytes: &[u8]) -> String {
    lend(bytes).into_owned()
}
