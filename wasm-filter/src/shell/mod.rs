//! The only code that talks to Envoy: proxy-wasm contexts wrapping the plain logic.
//!
//! `on_configure` parses the plugin configuration once and hands each stream what it needs
//! behind an `Rc`; a refused configuration makes Envoy reject the filter instead of running it
//! half-configured. The SDK's `set_log_level` installs a panic hook that logs at critical level.

mod metrics;
mod post;
mod pre;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use s3mesh_s3_request::S3Error;

use crate::config::{FilterConfig, PreConfig};
use crate::endpoint::Selector;
use metrics::Metrics;
use post::Granting;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, role: None, metrics: None })
    });
}}

/// Wall-clock milliseconds from the host (the only clock a wasm filter has).
/// Answers the client with `error` as S3 XML; the request goes no further.
fn send_s3_error(stream: &impl HttpContext, error: &S3Error, path: &str, request_id: &str) {
    let resource = path.split('?').next().unwrap_or_default();
    let body = error.to_xml(resource, request_id);
    stream.send_http_response(
        u32::from(error.status),
        vec![
            ("content-type", "application/xml"),
            ("x-amz-request-id", request_id),
        ],
        Some(body.as_bytes()),
    );
}

fn now_ms(context: &dyn Context) -> f64 {
    context
        .get_current_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// What a configured root hands to its streams.
enum Role {
    Pre(Rc<PreConfig>),
    Post(Rc<RefCell<Selector>>, Option<Rc<Granting>>),
}

struct Root {
    context_id: u32,
    role: Option<Role>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let role = match FilterConfig::parse(&bytes) {
            Ok(FilterConfig::Pre(pre)) => Role::Pre(Rc::new(pre)),
            Ok(FilterConfig::Post(post)) => {
                let seed =
                    (now_ms(self) * 1000.0) as u64 ^ u64::from(self.context_id).rotate_left(32);
                let granting = post
                    .grants
                    .clone()
                    .map(|config| Rc::new(Granting::new(config)));
                Role::Post(Rc::new(RefCell::new(Selector::new(&post, seed))), granting)
            }
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let metrics = Rc::new(Metrics::define());
        if let Role::Post(selector, _) = &role {
            for address in selector.borrow().addresses() {
                metrics.endpoint(address);
            }
        }
        self.role = Some(role);
        self.metrics = Some(metrics);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let metrics = Rc::clone(self.metrics.as_ref()?);
        match self.role.as_ref()? {
            Role::Pre(config) => Some(Box::new(pre::PreStream::new(Rc::clone(config), metrics))),
            Role::Post(selector, granting) => Some(Box::new(post::PostStream::new(
                Rc::clone(selector),
                granting.clone(),
                metrics,
            ))),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
