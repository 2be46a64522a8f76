//! How a request reached the endpoint that served it.
//!
//! Every request that lands on an endpoint the selector has penalised got there by one of a
//! few paths: the fallback policy chose it (unhinted), Envoy retried onto it, or the filter
//! named it first, for a reason the draw can tell. Counted per endpoint
//! (`s3mesh_endpoint_requests_total{s3_endpoint, s3_route}`), these say why a slow endpoint
//! still gets traffic, instead of leaving it to guesses.

/// The path by which a request reached the endpoint that served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Named first: its latency estimate was lower than its rival's in the draw.
    Faster,
    /// Named first: its latency estimate was higher, but its rival had more requests in flight.
    LessLoaded,
    /// Named first: the two costs were within the tie tolerance; the draw's order decided.
    Tie,
    /// Named first: it won only because its penalty had faded while it got no samples (with
    /// its last estimate undecayed it would have lost).
    Faded,
    /// Named first to see whether it has healed: its breaker's cooldown after failures was over,
    /// or it had no sample for long enough that its estimate was reset to the baseline.
    Probe,
    /// Named first: the only endpoint in the best tier (every other one cooling down or in a
    /// worse pool).
    Alone,
    /// No hint: the cluster's fallback policy chose it.
    Unhinted,
    /// Not the endpoint named first: Envoy retried onto it.
    Retry,
}

impl Route {
    /// Every route, in metric order.
    pub const ALL: [Self; 8] = [
        Self::Faster,
        Self::LessLoaded,
        Self::Tie,
        Self::Faded,
        Self::Probe,
        Self::Alone,
        Self::Unhinted,
        Self::Retry,
    ];

    /// The route of a finished request: the reason its first choice was made when that
    /// endpoint served it, else how it got elsewhere.
    pub fn of_served(first: Option<(&str, Route)>, served_by: &str) -> Self {
        match first {
            Some((address, reason)) if address == served_by => reason,
            Some(_) => Self::Retry,
            None => Self::Unhinted,
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Label value in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Faster => "faster",
            Self::LessLoaded => "less_loaded",
            Self::Tie => "tie",
            Self::Faded => "faded",
            Self::Probe => "probe",
            Self::Alone => "alone",
            Self::Unhinted => "unhinted",
            Self::Retry => "retry",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_served_elsewhere_than_named_is_a_retry() {
        let first = Some(("10.0.0.1:80", Route::Faster));
        assert_eq!(Route::of_served(first, "10.0.0.1:80"), Route::Faster);
        assert_eq!(Route::of_served(first, "10.0.0.2:80"), Route::Retry);
        assert_eq!(Route::of_served(None, "10.0.0.2:80"), Route::Unhinted);
        let labels: std::collections::HashSet<_> = Route::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Route::ALL.len());
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(route.index(), i);
        }
    }
}
