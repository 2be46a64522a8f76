//! Role `pre` in Envoy: applies [`s3mesh_filter::pre::inspect_headers`] to the request headers.

use s3mesh_filter::config::PreConfig;
use s3mesh_filter::pre::{self, RequestHead};

use crate::abi::headers_status;
use crate::host::Stream;
use crate::metrics::batch::Batch;
use crate::metrics::PreMetrics;

/// Role `pre` of one configuration.
pub struct Pre {
    pub config: PreConfig,
    pub metrics: PreMetrics,
    pub batch: Batch,
}

impl Pre {
    /// The request headers arrived: strip, canonicalize, classify, or refuse.
    pub fn on_request_headers(&self, stream: &Stream) -> u32 {
        let headers = stream.request_headers();
        panic_test::on_request(&headers);
        match pre::inspect_headers(&self.config, &headers) {
            Ok(changes) => {
                let stripped = changes.remove_headers.len() as u64;
                if stripped > 0 {
                    self.batch
                        .count(self.metrics.stripped_headers, &[], stripped);
                }
                for (name, value) in changes.header_edits() {
                    stream.set_request_header(name, value);
                }
                let operation = changes.operation.as_str();
                self.batch
                    .count(self.metrics.operation_requests, &[operation], 1);
                if self.config.audit_attributes {
                    stream.publish(&changes.audit());
                }
                headers_status::CONTINUE
            }
            Err(error) => {
                self.batch.count(self.metrics.rejected, &[], 1);
                if self.config.audit_attributes {
                    stream.publish(&pre::refused_audit(&error));
                }
                let path = RequestHead::find(&headers).path;
                let request_id = pre::header(&headers, "x-request-id").unwrap_or_default();
                stream.send_s3_error(&error, path, request_id);
                headers_status::STOP_ITERATION
            }
        }
    }
}

/// Debug builds only (the integration tests use them): a request carrying
/// `x-s3mesh-test-panic` panics inside the filter, so that the tests can prove the panic
/// barrier turns it into a fail-closed error instead of taking Envoy down.
mod panic_test {
    #[cfg(debug_assertions)]
    #[allow(clippy::panic)]
    pub fn on_request(headers: &[(String, String)]) {
        if s3mesh_filter::pre::header(headers, "x-s3mesh-test-panic").is_some() {
            panic!("x-s3mesh-test-panic: a panic requested by a test");
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn on_request(_headers: &[(String, String)]) {}
}
