//! The only code that talks to Envoy: proxy-wasm contexts wrapping the plain logic.
//!
//! `on_configure` parses the plugin configuration once and hands each stream what it needs
//! behind an `Rc`; a refused configuration makes Envoy reject the filter instead of running it
//! half-configured. The SDK's `set_log_level` installs a panic hook that logs at critical level.

mod metrics;

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use s3mesh_s3_request::headers::ENDPOINT_HINT;

use crate::config::FilterConfig;
use crate::endpoint::EndpointRotation;
use crate::pre;
use metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// What a configured root hands to its streams.
enum Role {
    Pre,
    Post(Rc<RefCell<EndpointRotation>>),
}

#[derive(Default)]
struct Root {
    role: Option<Role>,
    metrics: Rc<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match FilterConfig::parse(&bytes) {
            Ok(FilterConfig::Pre(_)) => self.role = Some(Role::Pre),
            Ok(FilterConfig::Post(post)) => {
                self.role = Some(Role::Post(Rc::new(RefCell::new(EndpointRotation::new(
                    &post,
                )))))
            }
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        }
        self.metrics = Rc::new(Metrics::define());
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let metrics = Rc::clone(&self.metrics);
        match self.role.as_ref()? {
            Role::Pre => Some(Box::new(PreStream { metrics })),
            Role::Post(rotation) => Some(Box::new(PostStream {
                rotation: Rc::clone(rotation),
                metrics,
            })),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PreStream {
    metrics: Rc<Metrics>,
}

impl Context for PreStream {}

impl HttpContext for PreStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.metrics.pre_requests.inc(1);
        let headers = self.get_http_request_headers();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let method = get(":method").unwrap_or_default();
        let path = get(":path").unwrap_or_default();
        let names = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !n.starts_with(':'));
        match pre::inspect(method, path, names, get("x-amz-copy-source")) {
            Ok(changes) => {
                self.metrics
                    .pre_stripped_headers
                    .inc(changes.remove_headers.len() as i64);
                for name in &changes.remove_headers {
                    self.set_http_request_header(name, None);
                }
                if let Some(new_path) = &changes.new_path {
                    self.set_http_request_header(":path", Some(new_path));
                }
                Action::Continue
            }
            Err(error) => {
                self.metrics.pre_rejected.inc(1);
                let request_id = get("x-request-id").unwrap_or_default();
                let resource = path.split('?').next().unwrap_or_default();
                let body = error.to_xml(resource, request_id);
                self.send_http_response(
                    u32::from(error.status),
                    vec![
                        ("content-type", "application/xml"),
                        ("x-amz-request-id", request_id),
                    ],
                    Some(body.as_bytes()),
                );
                Action::Pause
            }
        }
    }
}

struct PostStream {
    rotation: Rc<RefCell<EndpointRotation>>,
    metrics: Rc<Metrics>,
}

impl Context for PostStream {}

impl HttpContext for PostStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let hint = self.rotation.borrow_mut().next_hint();
        match &hint {
            Some(_) => self.metrics.post_hinted.inc(1),
            None => self.metrics.post_unhinted.inc(1),
        }
        // Replaces (or removes) any copy that got this far: the hint is trusted routing input.
        self.set_http_request_header(ENDPOINT_HINT, hint.as_deref());
        Action::Continue
    }
}
