//! Role `pre` in Envoy: [`s3mesh_filter::pre::on_request_headers`] with the dynamic-module ABI,
//! alone (role `pre`) or before `post` in one instance (role `both`, [`crate::post`]).

use s3mesh_filter::config::PreConfig;
use s3mesh_filter::pre::{self, Count, Next};
use s3mesh_s3_request::audit::Attribute;
use s3mesh_s3_request::{Operation, S3Error};

use crate::abi::headers_status;
use crate::host::Stream;
use crate::metrics::batch::Batch;
use crate::metrics::PreMetrics;

/// The filter state in which role `pre` hands the operation to `post` in another filter
/// instance: set once per stream and read-only in Envoy, where no client can write it, and
/// cheaper than the request header the wasm shell sets and removes (a header edit costs Envoy
/// about 2,400 instructions; measured with callgrind).
pub const OPERATION_STATE: &str = "s3mesh.pre_operation";

/// Role `pre` of one configuration.
pub struct Pre {
    pub config: PreConfig,
    pub metrics: PreMetrics,
}

impl Pre {
    /// Adds `count` to this role's metrics in `batch`.
    pub fn count(&self, batch: &Batch, count: Count) {
        let m = &self.metrics;
        match count {
            Count::Stripped(headers) => batch.count(m.stripped_headers, &[], headers),
            Count::Operation(operation) => {
                batch.count(m.operation_requests, &[operation.as_str()], 1);
            }
            Count::Rejected => batch.count(m.rejected, &[], 1),
        }
    }

    /// Role `pre` alone: the request headers arrived.
    pub fn on_request_headers(&self, stream: Stream, batch: &Batch) -> u32 {
        panic_test::on_request(&stream);
        let mut host = PreHost {
            stream,
            pre: self,
            batch,
        };
        match pre::on_request_headers(&self.config, &mut host, Next::Filter) {
            Some(_) => headers_status::CONTINUE,
            None => headers_status::STOP_ITERATION,
        }
    }
}

/// One stream of role `pre` as its [`pre::Host`].
struct PreHost<'a> {
    stream: Stream,
    pre: &'a Pre,
    batch: &'a Batch,
}

impl pre::Host for PreHost<'_> {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.stream.request_headers()
    }

    fn with_request_headers<T>(&self, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        self.stream.with_request_headers(look)
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.stream.set_request_header(name, value);
    }

    fn hand_on_operation(&mut self, operation: Operation) {
        self.stream
            .set_filter_state(OPERATION_STATE, operation.as_str());
    }

    fn publish(&mut self, attributes: &[(Attribute, &str)]) {
        self.stream.publish(attributes);
    }

    fn send_s3_error(&mut self, error: &S3Error, path: &str, request_id: &str) {
        self.stream.send_s3_error(error, path, request_id);
    }

    fn count_pre(&self, count: Count) {
        self.pre.count(self.batch, count);
    }
}

/// Debug builds only (the integration tests use them): a request carrying
/// `x-s3mesh-test-panic` panics inside the filter, so that the tests can prove the panic
/// barrier turns it into a fail-closed error instead of taking Envoy down.
pub mod panic_test {
    use crate::host::Stream;

    #[cfg(debug_assertions)]
    #[allow(clippy::panic)]
    pub fn on_request(stream: &Stream) {
        if stream.request_header("x-s3mesh-test-panic").is_some() {
            panic!("x-s3mesh-test-panic: a panic requested by a test");
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn on_request(_stream: &Stream) {}
}
