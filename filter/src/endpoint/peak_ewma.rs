//! A peak-sensitive, time-decayed latency estimate (the "peak EWMA" of Finagle and linkerd).
//!
//! A sample above the estimate replaces it at once, so an endpoint that turns slow is avoided
//! from its first slow answer; a sample below pulls it down with weight `1 - exp(-Δt/τ)`, so
//! recovery is gradual and independent of the request rate. While an endpoint gets no samples
//! (because it is avoided), its excess over the fleet's baseline decays with its own time
//! constant, and after [`PROBE_AFTER`] time constants it is taken at the baseline, so the
//! endpoint is tried again: nothing stays penalized forever, and one request tells whether it
//! has healed.

/// Recovery time constants without a sample after which an estimate is reset to the baseline.
pub const PROBE_AFTER: f64 = 3.0;

/// Estimate for one endpoint and one latency class, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct PeakEwma {
    value: f64,
    updated_ms: f64,
    samples: u64,
}

impl PeakEwma {
    /// Adds a sample taken at `now_ms`; `tau_ms` is the decay time constant.
    pub fn observe(&mut self, now_ms: f64, sample_ms: f64, tau_ms: f64) {
        let sample = sample_ms.max(0.0);
        if self.samples == 0 || sample > self.value {
            self.value = sample;
        } else {
            let elapsed = (now_ms - self.updated_ms).max(0.0);
            let w = (-elapsed / tau_ms).exp();
            self.value = self.value * w + sample * (1.0 - w);
        }
        self.updated_ms = now_ms;
        self.samples = self.samples.saturating_add(1);
    }

    /// Whether any sample was ever taken.
    pub fn has_samples(&self) -> bool {
        self.samples > 0
    }

    /// The raw estimate (no idle decay), `None` without samples.
    pub fn value(&self) -> Option<f64> {
        self.has_samples().then_some(self.value)
    }

    /// Whether, at `now_ms`, the estimate has gone without samples long enough to be taken at
    /// the baseline (see [`Self::estimate`]).
    pub fn probing(&self, now_ms: f64, recovery_tau_ms: f64) -> bool {
        self.has_samples() && now_ms - self.updated_ms >= PROBE_AFTER * recovery_tau_ms
    }

    /// The estimate at `now_ms`: the part above `baseline_ms` shrinks with idle time.
    pub fn estimate(&self, now_ms: f64, baseline_ms: f64, recovery_tau_ms: f64) -> Option<f64> {
        let value = self.value()?;
        if value <= baseline_ms {
            return Some(value);
        }
        let idle = (now_ms - self.updated_ms).max(0.0);
        if idle >= PROBE_AFTER * recovery_tau_ms {
            return Some(baseline_ms);
        }
        Some(baseline_ms + (value - baseline_ms) * (-idle / recovery_tau_ms).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_to_peaks_and_decays_slowly_after() {
        let mut e = PeakEwma::default();
        e.observe(0.0, 10.0, 1000.0);
        e.observe(10.0, 100.0, 1000.0);
        assert_eq!(e.value(), Some(100.0));
        // One fast sample right after a peak barely moves it...
        e.observe(20.0, 10.0, 1000.0);
        assert!(e.value().unwrap() > 99.0);
        // ...a sample after several time constants almost replaces it.
        e.observe(5020.0, 10.0, 1000.0);
        assert!(e.value().unwrap() < 11.0);
    }

    #[test]
    fn idle_penalty_decays_towards_the_baseline() {
        let mut e = PeakEwma::default();
        e.observe(0.0, 500.0, 1000.0);
        assert_eq!(e.estimate(0.0, 10.0, 2000.0), Some(500.0));
        let later = e.estimate(4_000.0, 10.0, 2000.0).unwrap();
        assert!(later > 70.0 && later < 80.0, "{later}");
        assert_eq!(
            e.estimate(6_000.0, 10.0, 2000.0),
            Some(10.0),
            "probed again"
        );
        assert_eq!(PeakEwma::default().estimate(0.0, 10.0, 1.0), None);
    }
}
