//! Open-loop send times. Request `i` is due at `start + i/rate`; an OS thread sleeps to each due
//! time and hands `(i, due)` over. Thread sleeps are precise to tens of microseconds, where
//! tokio's timer wheel has a 1 ms granularity that would add up to a millisecond to every
//! latency measured from the due time.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Due times at `rate` per second from `start` until `end`.
pub fn spawn(start: Instant, rate: f64, end: Instant) -> UnboundedReceiver<(u64, Instant)> {
    let (tx, rx) = unbounded_channel();
    std::thread::spawn(move || {
        for n in 0u64.. {
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            if due >= end {
                return;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send((n, due)).is_err() {
                return;
            }
        }
    });
    rx
}
