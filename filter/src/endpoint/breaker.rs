//! Whether an endpoint that failed may be sent requests again: a circuit breaker per endpoint.
//!
//! - **closed**: no failure since the last success; the endpoint competes on latency and load.
//! - **open**: it failed; it gets no requests of its own (it is listed last, for retries)
//!   until its cooldown ends. The cooldown doubles with each failed probe, up to a cap;
//!   `Retry-After` wins.
//! - **half-open**: the cooldown is over; one request at a time is sent to it first, as a
//!   probe. A success of any request sent after the breaker opened closes it at once, so an
//!   endpoint back from a restart serves again within one probe, instead of being avoided
//!   until a penalty fades (`make bench-fleet`, rolling restart: with the penalty, every
//!   sidecar piled onto the endpoints still up while the restarted one was ready).
//!
//! Failures of requests sent before the breaker's current cooldown ended (the other requests
//! in flight when a connection was cut, stragglers) do not lengthen it: only a probe that
//! fails, or the first failure, says something new.

/// One endpoint's breaker; times in milliseconds on the selector's clock.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    /// Failed probes since the breaker opened, the first failure included: the backoff's
    /// exponent. 0: closed.
    streak: u32,
    /// When the breaker opened: a success of a request sent at or after it closes it.
    opened_ms: f64,
    /// End of the current cooldown.
    until_ms: f64,
    /// No new probe before this: one probe at a time, and another if one goes unanswered.
    next_probe_ms: f64,
}

/// The backoff of the breaker, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Cooldown after a first failure, and the longest a probe goes unanswered.
    pub cooldown_ms: f64,
    /// Longest cooldown, whatever `Retry-After` says.
    pub max_cooldown_ms: f64,
}

impl Breaker {
    /// Whether the endpoint serves normally.
    pub fn is_closed(&self) -> bool {
        self.streak == 0
    }

    /// A request sent at `sent_ms` failed, seen at `now_ms`; `retry_after_ms` is the endpoint's
    /// own `Retry-After`.
    pub fn failed(
        &mut self,
        now_ms: f64,
        sent_ms: f64,
        retry_after_ms: Option<f64>,
        backoff: Backoff,
    ) {
        if self.is_closed() {
            self.opened_ms = now_ms;
        } else if sent_ms < self.until_ms {
            // Sent while the breaker was open or before it opened: nothing new, unless the
            // endpoint asks for a longer pause itself.
            if let Some(pause) = retry_after_ms {
                let until = now_ms + pause.min(backoff.max_cooldown_ms);
                self.until_ms = self.until_ms.max(until);
            }
            return;
        }
        self.streak = self.streak.saturating_add(1);
        let doubled = backoff.cooldown_ms * 2f64.powi(self.streak.min(16) as i32 - 1);
        let cooldown = retry_after_ms
            .unwrap_or(doubled)
            .min(backoff.max_cooldown_ms);
        self.until_ms = now_ms + cooldown;
        self.next_probe_ms = self.until_ms;
    }

    /// A request sent at `sent_ms` succeeded: closes the breaker if it was sent after the
    /// breaker opened.
    pub fn succeeded(&mut self, sent_ms: f64) {
        if !self.is_closed() && sent_ms >= self.opened_ms {
            *self = Self::default();
        }
    }

    /// Whether a request at `now_ms` should probe the endpoint; if so, the probe is counted as
    /// sent, and the next one waits for its answer or for `cooldown_ms`.
    pub fn take_probe(&mut self, now_ms: f64, backoff: Backoff) -> bool {
        if self.is_closed() || now_ms < self.until_ms || now_ms < self.next_probe_ms {
            return false;
        }
        self.next_probe_ms = now_ms + backoff.cooldown_ms;
        true
    }

    /// When the current cooldown ends (0 when closed): among open endpoints, the one whose
    /// cooldown ends first is listed first.
    pub fn until_ms(&self) -> f64 {
        if self.is_closed() {
            0.0
        } else {
            self.until_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        cooldown_ms: 1_000.0,
        max_cooldown_ms: 30_000.0,
    };

    #[test]
    fn failed_probes_double_the_cooldown_and_stragglers_do_not() {
        let mut b = Breaker::default();
        b.failed(100.0, 99.0, None, BACKOFF);
        assert_eq!(b.until_ms(), 1_100.0);
        // Three more requests that were in flight on the same connection.
        for k in 0..3 {
            b.failed(101.0 + k as f64, 50.0, None, BACKOFF);
        }
        assert_eq!(b.until_ms(), 1_100.0);
        assert!(!b.take_probe(1_000.0, BACKOFF));
        assert!(b.take_probe(1_100.0, BACKOFF));
        b.failed(1_101.0, 1_100.0, None, BACKOFF);
        assert_eq!(b.until_ms(), 3_101.0);
        assert!(b.take_probe(3_101.0, BACKOFF));
        b.failed(3_102.0, 3_101.0, None, BACKOFF);
        assert_eq!(b.until_ms(), 7_102.0);
    }

    #[test]
    fn one_probe_at_a_time_and_another_if_it_goes_unanswered() {
        let mut b = Breaker::default();
        b.failed(0.0, 0.0, None, BACKOFF);
        assert!(b.take_probe(1_000.0, BACKOFF));
        assert!(!b.take_probe(1_500.0, BACKOFF));
        assert!(b.take_probe(2_000.0, BACKOFF));
    }

    #[test]
    fn a_success_sent_after_the_failure_closes_it_an_older_one_does_not() {
        let mut b = Breaker::default();
        b.failed(1_000.0, 999.0, None, BACKOFF);
        b.succeeded(900.0);
        assert!(!b.is_closed(), "a straggler sent before the failure");
        assert!(b.take_probe(2_000.0, BACKOFF));
        b.succeeded(2_000.0);
        assert!(b.is_closed());
        assert_eq!(b.until_ms(), 0.0);
        assert!(!b.take_probe(5_000.0, BACKOFF), "closed: no probe");
    }

    #[test]
    fn retry_after_sets_the_cooldown_within_the_cap() {
        let mut b = Breaker::default();
        b.failed(0.0, 0.0, Some(10_000.0), BACKOFF);
        assert_eq!(b.until_ms(), 10_000.0);
        b.failed(5.0, 0.0, Some(1e9), BACKOFF);
        assert_eq!(b.until_ms(), 30_005.0, "capped at max_cooldown_ms");
    }
}
