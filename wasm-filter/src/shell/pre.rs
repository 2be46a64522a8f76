//! Role `pre` in Envoy: applies [`s3mesh_filter::pre::inspect_headers`] to the request headers.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::metrics::Metrics;
use super::{publish, send_s3_error};
use s3mesh_filter::config::PreConfig;
use s3mesh_filter::pre::{self, RequestHead};

pub(super) struct PreStream {
    config: Rc<PreConfig>,
    metrics: Rc<Metrics>,
}

impl PreStream {
    pub(super) fn new(config: Rc<PreConfig>, metrics: Rc<Metrics>) -> Self {
        Self { config, metrics }
    }
}

impl Context for PreStream {}

impl HttpContext for PreStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers();
        match pre::inspect_headers(&self.config, &headers) {
            Ok(changes) => {
                if !changes.remove_headers.is_empty() {
                    self.metrics
                        .pre_stripped_headers
                        .add(changes.remove_headers.len() as i64);
                }
                for (name, value) in changes.header_edits() {
                    self.set_http_request_header(name, value);
                }
                self.metrics
                    .operation(changes.operation.as_str())
                    .requests
                    .add(1);
                if self.config.audit_attributes {
                    publish(self, &changes.audit());
                }
                Action::Continue
            }
            Err(error) => {
                self.metrics.pre_rejected.add(1);
                if self.config.audit_attributes {
                    publish(self, &pre::refused_audit(&error));
                }
                let path = RequestHead::find(&headers).path;
                let request_id = pre::header(&headers, "x-request-id").unwrap_or_default();
                send_s3_error(self, &error, path, request_id);
                Action::Pause
            }
        }
    }
}
