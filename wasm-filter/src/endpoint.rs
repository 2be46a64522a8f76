//! Role `post`: which upstream endpoints a request should try, best first.
//!
//! This first version rotates through the configured endpoints so that every worker spreads
//! its requests evenly regardless of DNS, and leaves a configured share of requests without a
//! hint so that the cluster's fallback policy (`least_request`) keeps seeing every endpoint.
//! Latency-aware scoring replaces the rotation order without changing this interface.

use crate::config::PostConfig;

/// Produces the value of `x-gateway-destination-endpoint` for successive requests.
#[derive(Debug, Clone)]
pub struct EndpointRotation {
    endpoints: Vec<String>,
    /// Every `unhinted_period`-th request goes without a hint (0: never).
    unhinted_period: u64,
    count: u64,
}

impl EndpointRotation {
    /// Starts a rotation over the configured endpoints.
    pub fn new(config: &PostConfig) -> Self {
        let unhinted_period = if config.unhinted_share > 0.0 {
            (1.0 / config.unhinted_share).round().max(1.0) as u64
        } else {
            0
        };
        Self {
            endpoints: config.endpoints.clone(),
            unhinted_period,
            count: 0,
        }
    }

    /// The hint for the next request (`ip:port,ip:port,…`: the first is tried first, the rest
    /// by Envoy's retries), or `None` to let the fallback policy choose.
    pub fn next_hint(&mut self) -> Option<String> {
        let n = self.count;
        self.count = self.count.wrapping_add(1);
        if self.unhinted_period > 0 && n % self.unhinted_period == self.unhinted_period - 1 {
            return None;
        }
        let len = self.endpoints.len();
        if len == 0 {
            return None;
        }
        let start = (n % len as u64) as usize;
        let ordered: Vec<&str> = (0..len)
            .map(|i| self.endpoints[(start + i) % len].as_str())
            .collect();
        Some(ordered.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(share: f64) -> EndpointRotation {
        EndpointRotation::new(&PostConfig {
            endpoints: vec![
                "10.0.0.1:80".into(),
                "10.0.0.2:80".into(),
                "10.0.0.3:80".into(),
            ],
            unhinted_share: share,
        })
    }

    #[test]
    fn rotates_and_lists_every_endpoint_for_retries() {
        let mut r = rotation(0.0);
        assert_eq!(
            r.next_hint().as_deref(),
            Some("10.0.0.1:80,10.0.0.2:80,10.0.0.3:80")
        );
        assert_eq!(
            r.next_hint().as_deref(),
            Some("10.0.0.2:80,10.0.0.3:80,10.0.0.1:80")
        );
        assert_eq!(
            r.next_hint().as_deref(),
            Some("10.0.0.3:80,10.0.0.1:80,10.0.0.2:80")
        );
    }

    #[test]
    fn leaves_the_configured_share_unhinted() {
        let mut r = rotation(0.1);
        let unhinted = (0..1000).filter(|_| r.next_hint().is_none()).count();
        assert_eq!(unhinted, 100);
        let mut all = rotation(1.0);
        assert!((0..10).all(|_| all.next_hint().is_none()));
    }
}
