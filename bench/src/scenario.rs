//! How each backend endpoint behaves over time, relative to the shared start of a trial.

use serde::Deserialize;

/// One endpoint's script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Normal service time.
    pub service_ms: f64,
    /// Requests served at once; the rest queue.
    pub slots: usize,
    /// Windows with another service time (e.g. 5x slower).
    #[serde(default)]
    pub slow: Vec<Window>,
    /// Periodic stalls: every `every_ms`, nothing completes for `for_ms`.
    #[serde(default)]
    pub stall: Option<Stall>,
    /// Windows in which every request is answered at once with `status`.
    #[serde(default)]
    pub fail: Vec<Window>,
    /// Windows in which the endpoint is down, as while its process restarts: connections are
    /// refused, and the open ones are closed, requests in service unanswered.
    #[serde(default)]
    pub down: Vec<Window>,
}

/// A time window and what applies in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start, seconds after the trial started.
    pub from_s: f64,
    /// End (exclusive).
    pub to_s: f64,
    /// Service time in the window (`slow`).
    #[serde(default)]
    pub service_ms: f64,
    /// Status answered in the window (`fail`).
    #[serde(default)]
    pub status: u16,
}

/// Periodic stall.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stall {
    /// Period.
    pub every_ms: f64,
    /// Length of each stall.
    pub for_ms: f64,
}

impl Window {
    fn contains(&self, t_s: f64) -> bool {
        (self.from_s..self.to_s).contains(&t_s)
    }
}

impl EndpointSpec {
    /// Service time for a request starting service at `t_ms`.
    pub fn service_ms_at(&self, t_ms: f64) -> f64 {
        let t_s = t_ms / 1000.0;
        self.slow
            .iter()
            .find(|w| w.contains(t_s))
            .map_or(self.service_ms, |w| w.service_ms)
    }

    /// The failure status in force at `t_ms`, if any.
    pub fn failure_at(&self, t_ms: f64) -> Option<u16> {
        let t_s = t_ms / 1000.0;
        self.fail.iter().find(|w| w.contains(t_s)).map(|w| w.status)
    }

    /// Whether the endpoint is down at `t_ms`.
    pub fn down_at(&self, t_ms: f64) -> bool {
        self.down.iter().any(|w| w.contains(t_ms / 1000.0))
    }

    /// How long a request finishing service at `t_ms` is held by a stall.
    pub fn stall_remaining_ms(&self, t_ms: f64) -> f64 {
        match &self.stall {
            Some(s) if t_ms >= 0.0 => {
                let phase = t_ms % s.every_ms;
                if phase < s.for_ms {
                    s.for_ms - phase
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_stalls() {
        let spec: EndpointSpec = serde_json::from_str(
            r#"{"service_ms":10,"slots":4,"slow":[{"from_s":20,"to_s":40,"service_ms":50}],
                "stall":{"every_ms":2000,"for_ms":200},"fail":[{"from_s":5,"to_s":6,"status":503}],
                "down":[{"from_s":7,"to_s":9}]}"#,
        )
        .unwrap();
        assert_eq!(spec.service_ms_at(19_999.0), 10.0);
        assert_eq!(spec.service_ms_at(20_000.0), 50.0);
        assert_eq!(spec.failure_at(5_500.0), Some(503));
        assert_eq!(spec.failure_at(6_000.0), None);
        assert_eq!(spec.stall_remaining_ms(4_050.0), 150.0);
        assert_eq!(spec.stall_remaining_ms(4_300.0), 0.0);
        assert!(!spec.down_at(6_999.0) && spec.down_at(7_000.0) && !spec.down_at(9_000.0));
    }
}
