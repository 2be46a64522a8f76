//! The only code that talks to Envoy: proxy-wasm contexts wrapping the plain logic.
//!
//! `on_configure` parses the plugin configuration once and hands each stream what it needs
//! behind an `Rc`; a refused configuration makes Envoy reject the filter instead of running it
//! half-configured. The SDK's `set_log_level` installs a panic hook that logs at critical level.

mod granting;
mod metrics;
mod post;
mod pre;
mod read_cache;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use s3mesh_s3_request::audit::{self, Attribute};
use s3mesh_s3_request::S3Error;
use s3mesh_sigv4::AmzDate;

use granting::Granting;
use metrics::Metrics;
use s3mesh_filter::config::{FilterConfig, PostConfig, PreConfig};
use s3mesh_filter::endpoint::Selector;
use s3mesh_filter::grants::{Answer, Caller};
use s3mesh_filter::post::FlowSettings;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, role: None, metrics: None, renewals: HashMap::new() })
    });
}}

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

/// Hands the audit record's `attributes` to Envoy as filter state `wasm.s3mesh.<name>` (the
/// only per-request state a wasm filter can write that Envoy's access log reads).
fn publish(stream: &impl Context, attributes: &[(Attribute, &str)]) {
    for (attribute, value) in attributes {
        let key = format!("{}.{}", audit::NAMESPACE, attribute.name());
        stream.set_property(vec![&key], Some(value.as_bytes()));
    }
}

/// Wall-clock milliseconds from the host (the only clock a wasm filter has).
fn now_ms(context: &dyn Context) -> f64 {
    context
        .get_current_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// What a configured root hands to its streams.
enum Role {
    Pre(Rc<PreConfig>),
    /// Role `post`, or `both` (with its `pre`).
    Post(Post),
}

/// What a configured root of role `post` (or `both`) hands to its streams.
struct Post {
    pre: Option<Rc<PreConfig>>,
    cache: Option<Rc<read_cache::ReadCache>>,
    selector: Rc<RefCell<Selector>>,
    granting: Option<Rc<Granting>>,
    settings: FlowSettings,
    max_identity_labels: usize,
}

struct Root {
    context_id: u32,
    role: Option<Role>,
    metrics: Option<Rc<Metrics>>,
    /// Grant renewals under way, by call token.
    renewals: HashMap<u32, Caller>,
}

/// How often a worker renews the grants its requests asked it to renew.
const RENEWAL_TICK: Duration = Duration::from_millis(200);

impl Root {
    /// The role `post` (`pre`: role `both`'s) of this root.
    fn post(&self, config: &PostConfig, pre: Option<PreConfig>) -> Role {
        let seed = (now_ms(self) * 1000.0) as u64 ^ u64::from(self.context_id).rotate_left(32);
        Role::Post(Post {
            pre: pre.map(Rc::new),
            cache: config
                .cache
                .clone()
                .map(|c| Rc::new(read_cache::handle(c, self, self.context_id))),
            selector: Rc::new(RefCell::new(Selector::new(config, seed))),
            granting: config
                .grants
                .clone()
                .map(|grants| Rc::new(Granting::new(grants))),
            settings: FlowSettings::of(config),
            max_identity_labels: config.max_identity_labels,
        })
    }

    fn granting(&self) -> Option<Rc<Granting>> {
        match self.role.as_ref()? {
            Role::Post(post) => post.granting.clone(),
            Role::Pre(_) => None,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Some(caller), Some(granting), Some(metrics)) = (
            self.renewals.remove(&token),
            self.granting(),
            self.metrics.clone(),
        ) else {
            return;
        };
        let now = now_ms(self) as u64;
        match granting::answer(self, body_size, now) {
            Ok(Answer::Granted { held, json }) => {
                metrics.grants_fetched.add(1);
                metrics.grants_renewed.add(1);
                granting.keep(self, caller.clone(), held, &json, now);
            }
            // No longer allowed: the next request, on any worker, asks and gets the refusal.
            Ok(Answer::Refused(_)) => granting.revoke(self, &caller),
            // The grant in hand serves until it expires; requests ask again meanwhile.
            Err(error) => {
                metrics.grant_failures.add(1);
                log::warn!("{}", error.message);
            }
        }
        granting.cache.borrow_mut().renewed(&caller);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let role = match FilterConfig::parse(&bytes) {
            Ok(FilterConfig::Pre(pre)) => Role::Pre(Rc::new(pre)),
            Ok(FilterConfig::Post(post)) => self.post(&post, None),
            Ok(FilterConfig::Both(both)) => self.post(&both.post, Some(both.pre)),
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let max_identity_labels = match &role {
            Role::Post(post) => post.max_identity_labels,
            Role::Pre(_) => 0,
        };
        let metrics = Rc::new(Metrics::define(max_identity_labels));
        if let Role::Post(post) = &role {
            for address in post.selector.borrow().addresses() {
                metrics.endpoint(address);
            }
        }
        self.role = Some(role);
        self.metrics = Some(metrics);
        if self.granting().is_some() {
            self.set_tick_period(RENEWAL_TICK);
        }
        true
    }

    /// Renews the grants requests found in the last fifth of their lifetime, unless another
    /// worker already has.
    fn on_tick(&mut self) {
        let Some(granting) = self.granting() else {
            return;
        };
        let wanted = granting.cache.borrow_mut().take_wanted();
        if wanted.is_empty() {
            return;
        }
        let now = now_ms(self) as u64;
        let date = AmzDate::from_unix_seconds(now / 1000).date();
        for caller in wanted {
            match granting.shared(self, &caller, now, &date) {
                Some(held) if now < held.refresh_ms => {
                    let mut cache = granting.cache.borrow_mut();
                    cache.renewed(&caller);
                    cache.insert(caller, held, now);
                }
                _ => match granting.ask(self, &caller, date.clone(), None) {
                    Ok(token) => {
                        self.renewals.insert(token, caller);
                    }
                    Err(error) => {
                        log::warn!("{}", error.message);
                        granting.cache.borrow_mut().renewed(&caller);
                    }
                },
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let metrics = Rc::clone(self.metrics.as_ref()?);
        match self.role.as_ref()? {
            Role::Pre(config) => Some(Box::new(pre::PreStream::new(Rc::clone(config), metrics))),
            Role::Post(post) => Some(Box::new(post::PostStream::new(
                post.pre.clone(),
                post.cache.clone(),
                Rc::clone(&post.selector),
                post.granting.clone(),
                metrics,
                post.settings,
            ))),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
