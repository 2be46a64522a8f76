//! Role `pre` in Envoy: applies [`s3mesh_filter::pre::inspect`] to the request headers.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use s3mesh_s3_request::headers::OPERATION;

use super::metrics::Metrics;
use super::send_s3_error;
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
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let path = get(":path").unwrap_or_default();
        let head = RequestHead {
            method: get(":method").unwrap_or_default(),
            authority: get(":authority").unwrap_or_default(),
            path,
            copy_source: get("x-amz-copy-source"),
        };
        let names = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !n.starts_with(':'));
        match pre::inspect(&self.config, &head, names) {
            Ok(changes) => {
                if !changes.remove_headers.is_empty() {
                    self.metrics
                        .pre_stripped_headers
                        .add(changes.remove_headers.len() as i64);
                }
                for name in &changes.remove_headers {
                    self.set_http_request_header(name, None);
                }
                if let Some(new_path) = &changes.new_path {
                    self.set_http_request_header(":path", Some(new_path));
                }
                if let Some(authority) = &changes.new_authority {
                    self.set_http_request_header(":authority", Some(authority));
                }
                let operation = changes.operation.as_str();
                self.metrics.operation(operation).requests.add(1);
                self.set_http_request_header(OPERATION, Some(operation));
                Action::Continue
            }
            Err(error) => {
                self.metrics.pre_rejected.add(1);
                let request_id = get("x-request-id").unwrap_or_default();
                send_s3_error(self, &error, path, request_id);
                Action::Pause
            }
        }
    }
}
