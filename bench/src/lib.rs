//! Parts of s3mesh's benchmarks (`make bench-lb`, `make bench-authz`), run on the benchmark machine only:
//! - `bench-backend`: several HTTP endpoints in one process whose service time is a sleep
//!   behind a fixed number of service slots (so queueing is real), with scripted phases (slow,
//!   stalling, failing fast) on a shared clock started by a control request;
//! - `bench-load`: an open-loop load generator at a fixed rate that measures every request from
//!   its intended send time, so a stalled backend cannot hide its own latency.
//!
//! Both speak just enough HTTP/1.1 (`http1`) for that: content-length and chunked bodies,
//! keep-alive, `Expect: 100-continue`.
//!
//! And for `make bench-authz`: `bench-authz-load`, a gRPC load generator for ext-authz's
//! `Authorization/Check`, open loop at fixed rates or closed loop to saturation; for
//! `make bench-chunked`: `bench-ext-proc`, an ext_proc server that echoes request bodies.

pub mod http1;
pub mod pacer;
pub mod scenario;

/// The `q` quantile of `sorted` (nearest rank); 0 when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
