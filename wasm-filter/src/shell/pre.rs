//! Role `pre` in Envoy: [`s3mesh_filter::pre::on_request_headers`] with proxy-wasm's host calls.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use s3mesh_s3_request::audit::Attribute;
use s3mesh_s3_request::S3Error;

use super::metrics::Metrics;
use super::{publish, send_s3_error};
use s3mesh_filter::config::PreConfig;
use s3mesh_filter::pre::{self, Count, Next};

pub(super) struct PreStream {
    config: Rc<PreConfig>,
    metrics: Rc<Metrics>,
}

impl PreStream {
    pub(super) fn new(config: Rc<PreConfig>, metrics: Rc<Metrics>) -> Self {
        Self { config, metrics }
    }
}

impl pre::Host for PreStream {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.get_http_request_headers()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.set_http_request_header(name, value);
    }

    fn publish(&mut self, attributes: &[(Attribute, &str)]) {
        publish(self, attributes);
    }

    fn send_s3_error(&mut self, error: &S3Error, path: &str, request_id: &str) {
        send_s3_error(self, error, path, request_id);
    }

    fn count_pre(&self, count: Count) {
        self.metrics.count_pre(count);
    }
}

impl Context for PreStream {}

impl HttpContext for PreStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let config = Rc::clone(&self.config);
        match pre::on_request_headers(&config, self, Next::Filter) {
            Some(_) => Action::Continue,
            None => Action::Pause,
        }
    }
}
