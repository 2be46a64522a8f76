//! What one finished request says about the endpoint that served it.
//!
//! Failures are not fast successes: a quick `503 SlowDown` must make an endpoint look worse,
//! not better (it opens the endpoint's breaker; it is no latency sample). Whose fault a failure
//! is decides whether it counts: an upstream reset, timeout, refused connection, 5xx or 429 is
//! the endpoint's; a client that went away is not.
//!
//! A stream Envoy ends for idleness is either's: an endpoint that stalls after its headers, or a
//! client that stops reading (Envoy then stops reading the endpoint, and nothing moves). Flow
//! control tells them apart: Envoy pauses the endpoint only once the client's connection
//! buffer (`per_connection_buffer_limit_bytes`, 1 MiB by default) is full on top of the TCP
//! buffers, so a response that went idle before that many body bytes passed was stalled by
//! its endpoint.

/// Envoy's `response.flags` bits (`StreamInfo` legacy response flags) that blame the upstream.
mod flags {
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    pub const UPSTREAM_OVERFLOW: u64 = 0x80;
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x8000;
    /// A response Envoy could not parse, or a body cut short of its `Content-Length` (reset or
    /// closed mid-body: `upstream_reset_after_response_started{protocol_error}`).
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000;
    pub const UPSTREAM_FAULTS: u64 = UPSTREAM_REQUEST_TIMEOUT
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_OVERFLOW
        | UPSTREAM_RETRY_LIMIT_EXCEEDED
        | UPSTREAM_PROTOCOL_ERROR;
    /// Envoy's stream idle timeout (the route's `idle_timeout` or the connection manager's).
    pub const STREAM_IDLE_TIMEOUT: u64 = 0x1_0000;
}

/// Envoy's status for a stream it timed out before the client finished its request.
const REQUEST_TIMEOUT: u64 = 408;

/// Whether Envoy ended the stream for idleness (`response.flags`): only then does
/// [`classify`] need to know how far the response got.
pub fn ended_idle(response_flags: u64) -> bool {
    response_flags & flags::STREAM_IDLE_TIMEOUT != 0
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Served; `latency_ms` is the time to first byte after the request was sent.
    Success {
        /// Time to first response byte.
        latency_ms: f64,
    },
    /// The endpoint failed or asked to back off.
    Failure {
        /// The endpoint's `Retry-After`, in milliseconds.
        retry_after_ms: Option<f64>,
    },
    /// Says nothing about the endpoint (no upstream, or the client went away).
    NotAttributable,
}

/// Classifies a finished request from `response.code` (0 when there was no response),
/// `response.flags`, the measured latency and the `Retry-After` header. `stalled_early`: the
/// stream [`ended_idle`] before the client's connection buffer could have filled (see the
/// module), so the endpoint stalled.
pub fn classify(
    status: u64,
    response_flags: u64,
    latency_ms: f64,
    retry_after: Option<&str>,
    stalled_early: bool,
) -> Outcome {
    let idle = ended_idle(response_flags);
    if idle && status == REQUEST_TIMEOUT {
        // The client stopped sending its request; its wait says nothing about the endpoint.
        return Outcome::NotAttributable;
    }
    let upstream_fault = response_flags & flags::UPSTREAM_FAULTS != 0 || (idle && stalled_early);
    let failed_status = status == 429 || (500..=599).contains(&status);
    if upstream_fault || failed_status {
        Outcome::Failure {
            retry_after_ms: retry_after.and_then(parse_retry_after),
        }
    } else if status == 0 {
        Outcome::NotAttributable
    } else {
        Outcome::Success { latency_ms }
    }
}

/// `Retry-After` in delta-seconds (the form S3-compatible stores send). HTTP dates are
/// ignored: the filter's clock is not to be trusted against the store's.
fn parse_retry_after(value: &str) -> Option<f64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_failures_and_blameless_ends() {
        assert_eq!(
            classify(200, 0, 5.0, None, false),
            Outcome::Success { latency_ms: 5.0 }
        );
        assert_eq!(
            classify(404, 0, 5.0, None, false),
            Outcome::Success { latency_ms: 5.0 }
        );
        assert_eq!(
            classify(503, 0, 1.0, Some("2"), false),
            Outcome::Failure {
                retry_after_ms: Some(2000.0)
            }
        );
        assert!(matches!(
            classify(429, 0, 1.0, Some("soon"), false),
            Outcome::Failure {
                retry_after_ms: None
            }
        ));
        assert!(matches!(
            classify(0, 0x20, 1.0, None, false),
            Outcome::Failure { .. }
        ));
        assert!(matches!(
            classify(200, 0x10, 1.0, None, false),
            Outcome::Failure { .. }
        ));
        // A 200 whose body the endpoint cut short (Envoy's UPE): its fault, not a success.
        assert!(matches!(
            classify(200, 0x80_0000, 1.0, None, false),
            Outcome::Failure { .. }
        ));
        // Idle after the client's buffer could have filled: maybe the client's, not held
        // against the endpoint; before: the endpoint stalled.
        assert!(matches!(
            classify(200, 0x1_0000, 1.0, None, false),
            Outcome::Success { .. }
        ));
        assert!(matches!(
            classify(200, 0x1_0000, 1.0, None, true),
            Outcome::Failure { .. }
        ));
        // Idle before the request was complete: Envoy's 408, the client's doing.
        assert_eq!(
            classify(408, 0x1_0000, 60_000.0, None, true),
            Outcome::NotAttributable
        );
        // Idle waiting for the endpoint's headers: Envoy's 504, the endpoint's.
        assert!(matches!(
            classify(504, 0x1_0000, 60_000.0, None, false),
            Outcome::Failure { .. }
        ));
        // Downstream connection termination (0x4000) without a response says nothing.
        assert_eq!(
            classify(0, 0x4000, 1.0, None, false),
            Outcome::NotAttributable
        );
        assert_eq!(classify(0, 0, 1.0, None, false), Outcome::NotAttributable);
    }
}
