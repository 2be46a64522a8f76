//! What role `pre` needs from the proxy for one stream: a `pre` stream of each shell implements
//! [`Host`], and so does a `post` stream ([`crate::post::Host`] builds on it), which runs `pre`
//! first in role `both`.

use s3mesh_s3_request::audit::Attribute;
use s3mesh_s3_request::headers::OPERATION;
use s3mesh_s3_request::{Operation, S3Error};

/// Counts of role `pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Client headers removed from one request.
    Stripped(u64),
    /// A request of this operation passed.
    Operation(Operation),
    /// A request was refused (bad target).
    Rejected,
}

/// One stream's view of the proxy, for role `pre`.
pub trait Host {
    /// Every request header, pseudo-headers included.
    fn request_headers(&self) -> Vec<(String, String)>;
    /// Runs `look` on every request header, pseudo-headers included, as borrowed text: a shell
    /// that can lend the proxy's own bytes saves a copy of each (the default copies).
    fn with_request_headers<T>(&self, look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        lend_headers(&self.request_headers(), look)
    }
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// Hands the request's `operation` to role `post` in another filter instance. By default
    /// in a request header, which `post` takes off again ([`crate::post::Host::take_operation`]);
    /// a shell with per-stream state of its own that no client can write uses that instead.
    fn hand_on_operation(&mut self, operation: Operation) {
        self.set_request_header(OPERATION, Some(operation.as_str()));
    }
    /// Hands audit record attributes to the proxy (for its access log and spans).
    fn publish(&mut self, attributes: &[(Attribute, &str)]);
    /// Answers the client with `error` as S3 XML; the request goes no further.
    fn send_s3_error(&mut self, error: &S3Error, path: &str, request_id: &str);
    /// Adds to role `pre`'s metrics.
    fn count_pre(&self, count: Count);
}

/// Runs `look` on copied headers as borrowed text: how a shell without the proxy's own bytes
/// serves the `with_*_headers` calls.
pub fn lend_headers<T>(headers: &[(String, String)], look: impl FnOnce(&[(&str, &str)]) -> T) -> T {
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    look(&borrowed)
}
