//! The request as Envoy will forward it: what a decision looks at and a signature covers.

/// A request after the `pre` filter, before signing.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`, sent upstream as `Host`.
    pub host: &'a str,
    /// `:path` with the query, as the `pre` filter left it.
    pub path: &'a str,
    /// Request headers, lower-case names; a repeated name may appear once per value.
    pub headers: &'a [(&'a str, &'a str)],
}

impl Request<'_> {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}
