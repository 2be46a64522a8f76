//! The s3mesh filter as an Envoy dynamic module: `libs3mesh_native.so`, loaded by Envoy's
//! `envoy.filters.http.dynamic_modules` filter into the Envoy process itself (no sandbox, no
//! copies across a VM boundary). The second thin shell around [`s3mesh_filter`], beside the
//! proxy-wasm one in `wasm-filter/`.
//!
//! - [`abi`]: the part of Envoy's dynamic-module C ABI this shell uses, declared by hand;
//! - [`exports`]: the event hooks Envoy calls, each one a panic barrier (a panic must never
//!   unwind into Envoy: it becomes a fail-closed S3 error for that request);
//! - [`host`]: safe calls back into Envoy for one stream;
//! - [`metrics`]: the filter's stats, with labels, counted in the module and flushed to Envoy
//!   on its main thread;
//! - [`scheduler`]: wakes a configuration on Envoy's main thread from any thread;
//! - [`pre`] and [`post`]: the two roles, each running the shared logic;
//! - [`granting`]: grant mode's process-wide cache, calls to ext-authz and renewal.

mod abi;
mod exports;
mod granting;
mod host;
mod metrics;
mod post;
mod pre;
mod scheduler;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks state shared by all workers. A panic while it was held (caught by the hook's barrier)
/// leaves estimates and grants that are still usable: carry on with them rather than fail
/// every later request.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
