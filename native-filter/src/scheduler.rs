//! Envoy's configuration scheduler: any thread wakes a configuration on Envoy's main thread,
//! where its `config_scheduled` hook runs with the event id it was woken for.

use std::ffi::c_void;

use crate::abi::{self, ConfigEnvoyPtr};

/// What a configuration is woken for.
pub mod event {
    /// Grants queued for renewal ([`crate::granting`]).
    pub const RENEW_GRANTS: u64 = 0;
    /// Counts gathered on the workers wait to be written to Envoy's stats
    /// ([`crate::metrics::batch`]).
    pub const FLUSH_METRICS: u64 = 1;
}

/// A config scheduler handle: Envoy's object, safe to commit to from any thread.
pub struct Scheduler(*mut c_void);

// SAFETY: Envoy's config scheduler exists to be committed to from any thread; it is deleted
// once, when its owner is dropped.
unsafe impl Send for Scheduler {}
// SAFETY: as above; commits do not need exclusive access.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    /// # Safety
    /// `config_envoy` is the configuration being created in `config_new`.
    pub unsafe fn new(config_envoy: ConfigEnvoyPtr) -> Self {
        // SAFETY: per the contract above.
        Self(unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy)
        })
    }

    /// Runs the configuration's `config_scheduled` hook for `event` on the main thread, soon.
    pub fn wake(&self, event: u64) {
        if !self.0.is_null() {
            // SAFETY: a live scheduler; commits are thread-safe.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                    self.0, event,
                );
            }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by `config_scheduler_new`, deleted only here.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0)
            }
        }
    }
}
