//! Per-identity usage: what each caller did, by operation class, for the `s3mesh_identity_*`
//! metrics (requests, errors by S3 error code, bytes in and out, duration).
//!
//! Identities can be many, and every label value is a series in every scrape, so the values are
//! bounded: the first `max_identity_labels` identities a proxy sees keep their own label, every
//! later one is counted under [`OTHER`] (the audit log still names it). The native shell keeps
//! one bound for the process; each wasm worker keeps its own (a VM cannot share a set cheaply),
//! so there the bound is per worker.

use std::collections::HashSet;

/// The label value of identities beyond the bound. Identities are `namespace/service-account`
/// or names from the configuration file; one configured as `_other` or `_none` would share the
/// label, so do not name one so.
pub const OTHER: &str = "_other";
/// The label value of requests no identity was established for.
pub const NONE: &str = "_none";

/// The identity label values one proxy (or one wasm worker) hands out.
#[derive(Debug, Clone)]
pub struct IdentityLabels {
    admitted: HashSet<String>,
    max: usize,
}

impl IdentityLabels {
    /// At most `max` identities keep their own label; 0 counts everyone under [`OTHER`].
    pub fn new(max: usize) -> Self {
        Self {
            admitted: HashSet::new(),
            max,
        }
    }

    /// The label of `identity` (`None`: nobody was identified).
    pub fn label<'a>(&mut self, identity: Option<&'a str>) -> &'a str {
        let Some(identity) = identity else {
            return NONE;
        };
        if self.admitted.contains(identity) {
            return identity;
        }
        if self.admitted.len() < self.max {
            self.admitted.insert(identity.to_owned());
            return identity;
        }
        OTHER
    }
}

/// One finished request, as the per-identity metrics count it.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage<'a> {
    /// The caller's identity (`None`: nobody was identified); the shell turns it into a
    /// bounded label with its [`IdentityLabels`].
    pub identity: Option<&'a str>,
    /// The operation class (`read`, `write`, ...; `unknown` when unclassified).
    pub class: &'static str,
    /// The S3 error code of a failed request (s3mesh's refusal, or the store's error body; the
    /// status when the body named none) as [`error_label`] made it; `None` when it succeeded.
    pub error: Option<&'a str>,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// From the request's headers to its end, in milliseconds.
    pub duration_ms: u64,
}

/// An S3 error code as a label value: codes are short CamelCase words; anything else (a store
/// that answers oddly) is counted as `Unrecognized`, so that a store cannot grow the label set.
pub fn error_label(code: &str) -> &str {
    let sane =
        !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric());
    if sane {
        code
    } else {
        "Unrecognized"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_beyond_the_bound_share_one_label() {
        let mut labels = IdentityLabels::new(2);
        assert_eq!(labels.label(Some("a")), "a");
        assert_eq!(labels.label(Some("b")), "b");
        assert_eq!(labels.label(Some("c")), OTHER);
        assert_eq!(labels.label(Some("a")), "a", "admitted ones keep theirs");
        assert_eq!(labels.label(None), NONE);
        assert_eq!(IdentityLabels::new(0).label(Some("a")), OTHER);
    }

    #[test]
    fn only_plain_error_codes_become_labels() {
        assert_eq!(error_label("NoSuchKey"), "NoSuchKey");
        assert_eq!(error_label("404"), "404");
        assert_eq!(error_label(""), "Unrecognized");
        assert_eq!(error_label("a b\"c"), "Unrecognized");
        assert_eq!(error_label(&"A".repeat(65)), "Unrecognized");
    }
}
