//! Counters of one configuration, added up in the module and written to Envoy's stats by the
//! main thread at most every [`FLUSH_INTERVAL`] (the endpoints' in-flight gauges are set at the
//! same flush from the counts themselves, [`crate::post::Post::show_in_flight`]).
//!
//! Envoy resolves a labelled update's label values into a stat name on every call (a symbol
//! table insert and a scope lookup, both under locks shared by all workers): about 1 µs each,
//! five of them per request before this batch (a benchmark with metrics off measured 8 µs per
//! request for all labelled updates). Here a worker only adds to an entry of a map; a small
//! thread wakes every [`FLUSH_INTERVAL`] and, if anything is pending, wakes the configuration
//! on the main thread, which writes one update per series that changed. Scrapes therefore see
//! counts up to [`FLUSH_INTERVAL`] late (Prometheus scrapes every few seconds at the most).
//! Histograms stay per request: a value cannot be added up. A series stays in the batch once
//! counted (at 0 after a flush: no more series than Envoy's stats keep anyway, which never
//! drop one), so that a worker's count finds it in place instead of allocating its key and
//! growing the maps again after every flush.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use foldhash::HashMap;

use super::{update_in_config, Metric};
use crate::abi::{self, ConfigEnvoyPtr};
use crate::lock;
use crate::scheduler::{event, Scheduler};

/// The longest a count waits in the module before Envoy's stats show it.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Starts each label value in a series key (so that no labels and one empty label differ).
const LABEL: char = '\u{1f}';

/// What the workers counted since the last flush.
#[derive(Default)]
struct Pending {
    /// Whether any count changed since the last flush.
    changed: bool,
    /// Count per series: by counter id, then by the label values, each after a [`LABEL`]
    /// (looked up by `&str`, so that a series counted before costs no allocation).
    counts: HashMap<usize, HashMap<String, u64>>,
}

thread_local! {
    /// The series key being looked up, reused by every update on this thread.
    static SERIES: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Tells the flusher thread to end.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// The pending changes of one configuration and the thread that has them flushed.
pub struct Batch {
    pending: Arc<Mutex<Pending>>,
    stop: Arc<Stop>,
    flusher: Option<JoinHandle<()>>,
    /// Dropped after the flusher has ended (field order), on the thread that drops the batch.
    _scheduler: Arc<Scheduler>,
}

impl Batch {
    /// Starts the flusher of a configuration; an error when no thread can be started (the
    /// configuration is then refused rather than run without stats).
    ///
    /// # Safety
    /// `config_envoy` is the configuration being created in `config_new`.
    pub unsafe fn start(config_envoy: ConfigEnvoyPtr) -> Result<Self, String> {
        // SAFETY: per the contract above.
        let scheduler = Arc::new(unsafe { Scheduler::new(config_envoy) });
        let pending = Arc::new(Mutex::new(Pending::default()));
        let stop = Arc::new(Stop::default());
        let flusher = {
            let (pending, stop, scheduler) = (pending.clone(), stop.clone(), scheduler.clone());
            std::thread::Builder::new()
                .name("s3mesh-metrics".into())
                .spawn(move || wake_while_pending(&pending, &stop, &scheduler))
                .map_err(|e| format!("cannot start the metrics thread: {e}"))?
        };
        Ok(Self {
            pending,
            stop,
            flusher: Some(flusher),
            _scheduler: scheduler,
        })
    }

    /// Adds `by` to counter `id` with `labels` (their count must match the definition).
    pub fn count(&self, id: Metric, labels: &[&str], by: u64) {
        // Nothing to write (a bodiless request's bytes): the flush would skip it anyway.
        let (Some(id), false) = (id, by == 0) else {
            return;
        };
        SERIES.with_borrow_mut(|series| {
            series.clear();
            for label in labels {
                series.push(LABEL);
                series.push_str(label);
            }
            let mut pending = lock(&self.pending);
            pending.changed = true;
            let by_series = pending.counts.entry(id).or_default();
            match by_series.get_mut(series.as_str()) {
                Some(count) => *count = count.saturating_add(by),
                None => {
                    by_series.insert(series.clone(), by);
                }
            }
        });
    }

    /// Main thread: writes every pending change to Envoy's stats.
    ///
    /// # Safety
    /// `config_envoy` is this batch's configuration, in one of its hooks on the main thread.
    pub unsafe fn flush(&self, config_envoy: ConfigEnvoyPtr) {
        // Copied out, so that no worker waits for Envoy's updates.
        let changes: Vec<(usize, String, u64)> = {
            let mut pending = lock(&self.pending);
            pending.changed = false;
            let series = pending.counts.iter_mut().flat_map(|(id, by_series)| {
                by_series
                    .iter_mut()
                    .filter(|(_, count)| **count > 0)
                    .map(|(series, count)| (*id, series.clone(), std::mem::take(count)))
            });
            series.collect()
        };
        let increment = abi::envoy_dynamic_module_callback_http_filter_config_increment_counter;
        for (id, series, count) in changes {
            let labels: Vec<&str> = series.split(LABEL).skip(1).collect();
            // SAFETY: per the contract above.
            unsafe { update_in_config(config_envoy, increment, id, &labels, count) };
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        *lock(&self.stop.stopped) = true;
        self.stop.wake.notify_all();
        if let Some(flusher) = self.flusher.take() {
            // The thread only waits, locks and commits: it ends within one wake-up.
            let _ = flusher.join();
        }
    }
}

/// The flusher thread: every [`FLUSH_INTERVAL`] until stopped, wakes the configuration on the
/// main thread if changes are pending.
fn wake_while_pending(pending: &Mutex<Pending>, stop: &Stop, scheduler: &Scheduler) {
    let mut stopped = lock(&stop.stopped);
    while !*stopped {
        stopped = stop
            .wake
            .wait_timeout(stopped, FLUSH_INTERVAL)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if !*stopped && lock(pending).changed {
            scheduler.wake(event::FLUSH_METRICS);
        }
    }
}
