//! Role `post`: which upstream endpoints a request should try, best first.
//!
//! Each endpoint carries a peak-sensitive latency estimate per [`LatencyClass`] (time to first
//! byte, measured from the end of the request, so a large upload or download does not make an
//! endpoint look slow) and a [`breaker::Breaker`] for failures. For each request:
//! 1. endpoints are tiered: healthy local, healthy remote, cooling-down local, cooling-down
//!    remote (remote pools serve only while local ones fail; an endpoint cools down from its
//!    first failure until a request sent after it succeeds);
//! 2. a cooling-down endpoint whose cooldown is over gets this request first as a probe (one
//!    at a time); otherwise, within the best tier, two endpoints are drawn at random and the
//!    one with the lower cost `latency × load_factor(in_flight)` goes first (power of two
//!    choices: no herding of every worker onto the same "best" endpoint). In-flight counts are
//!    weighed against the fleet's mean rather than as a queue length: an S3 endpoint serves
//!    many requests at once, so a few in flight do not make it slower, but clearly more than
//!    its peers (a stall, a saturated node) do. Only the excess over the mean counts: an
//!    endpoint is idle because it is avoided, and crediting idleness let a slow endpoint win
//!    whenever Envoy was short of CPU (its own queueing then inflates every healthy endpoint's
//!    latency and in-flight count alike; `make bench-lb`, cpu_limited). Between peers (latencies
//!    within [`PEER_RATIO`]) every request above the mean counts, as with least_request;
//!    against a rival of different speed only the excess beyond chance does, for the same
//!    reason;
//! 3. the rest follow by tier and cost (cooling-down ones by the end of their cooldown), so
//!    Envoy's retries move to the next best.
//!
//! A configured share of requests goes without a hint, so that the cluster's fallback policy
//! keeps sampling every endpoint and endpoints unknown to the configuration are discovered from
//! the addresses they answer from. Only while no endpoint cools down: the fallback policy
//! favours a failing endpoint (it fails fast, so it has the fewest requests in flight), and its
//! pick for the retry of a request that endpoint failed is the same endpoint often enough to
//! lose requests (`make bench-lb`, S3_retry).

pub mod breaker;
pub mod outcome;
pub mod peak_ewma;
pub mod route;

use s3mesh_s3_request::{Operation, OperationClass};

use crate::config::PostConfig;
use crate::random::SplitMix64;
use breaker::{Backoff, Breaker};
use outcome::Outcome;
use peak_ewma::PeakEwma;
pub use route::Route;

/// At most this many endpoints are tracked (configured plus discovered).
const MAX_ENDPOINTS: usize = 256;
/// Latency assumed for a class no endpoint has answered yet; only ratios matter.
const UNKNOWN_LATENCY_MS: f64 = 1.0;
/// Costs closer than this (relative) are a tie, left to the random draw: latencies are noisy,
/// and a recovered endpoint must be able to win again to prove it has healed.
const TIE_TOLERANCE: f64 = 0.1;
/// Endpoints whose latencies are within this ratio are peers: between them requests in flight
/// count in full (see [`Candidate::load_against`]).
const PEER_RATIO: f64 = 1.25;

/// Operations whose latencies are comparable with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyClass {
    /// GET/HEAD of objects: time to first byte.
    Read,
    /// Listings and `HeadBucket`.
    List,
    /// Uploads and multipart steps: time from the last request byte to the response.
    Write,
    /// Everything else (deletes, configuration).
    Other,
}

impl LatencyClass {
    /// Every class, in index order.
    pub const ALL: [Self; 4] = [Self::Read, Self::List, Self::Write, Self::Other];

    /// The class of an S3 operation.
    pub fn of(operation: Operation) -> Self {
        match operation.class() {
            Some(OperationClass::Read) => Self::Read,
            Some(OperationClass::List) => Self::List,
            Some(OperationClass::Write | OperationClass::Multipart) => Self::Write,
            _ => Self::Other,
        }
    }

    /// Name used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Write => "write",
            Self::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which pool an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// This datacenter: preferred.
    Local,
    /// Another datacenter: used while every local endpoint is cooling down.
    Remote,
}

#[derive(Debug, Clone)]
struct Endpoint {
    address: String,
    pool: Pool,
    latency: [PeakEwma; 4],
    breaker: Breaker,
}

impl Endpoint {
    fn new(address: String, pool: Pool) -> Self {
        Self {
            address,
            pool,
            latency: Default::default(),
            breaker: Breaker::default(),
        }
    }
}

/// The hint for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// `ip:port,ip:port,…` for `x-gateway-destination-endpoint`, or `None` to let the fallback
    /// policy choose.
    pub value: Option<String>,
    /// The endpoint tried first, and why it was chosen.
    pub first: Option<(String, Route)>,
}

impl Hint {
    /// The address of the endpoint tried first.
    pub fn first_address(&self) -> Option<&str> {
        self.first.as_ref().map(|(address, _)| address.as_str())
    }
}

/// Endpoint state of one worker and the choice made from it.
#[derive(Debug, Clone)]
pub struct Selector {
    endpoints: Vec<Endpoint>,
    tuning: PostConfig,
    rng: SplitMix64,
    /// The last choice's working lists, kept for the next one: a choice per request then
    /// allocates only the hint it returns.
    scratch: Scratch,
}

/// [`Selector::choose`]'s per-endpoint lists, emptied before each use.
#[derive(Debug, Clone, Default)]
struct Scratch {
    in_flight: Vec<f64>,
    ranked: Vec<Candidate>,
}

impl Selector {
    /// Starts with the configured endpoints, all unknown and healthy.
    pub fn new(config: &PostConfig, seed: u64) -> Self {
        let local = config
            .endpoints
            .iter()
            .map(|a| Endpoint::new(a.clone(), Pool::Local));
        let remote = config
            .remote_endpoints
            .iter()
            .map(|a| Endpoint::new(a.clone(), Pool::Remote));
        Self {
            endpoints: local.chain(remote).collect(),
            tuning: config.clone(),
            rng: SplitMix64::new(seed),
            scratch: Scratch::default(),
        }
    }

    /// Every endpoint known, configured or discovered.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|e| e.address.as_str())
    }

    /// Chooses the endpoints for a request of `class` at `now_ms`, given the process-wide
    /// number of requests in flight to each endpoint.
    pub fn choose(
        &mut self,
        class: LatencyClass,
        now_ms: f64,
        in_flight: impl Fn(&str) -> u64,
    ) -> Hint {
        let all_healthy = self.endpoints.iter().all(|e| e.breaker.is_closed());
        if self.endpoints.is_empty()
            || (all_healthy && self.rng.unit() < self.tuning.unhinted_share)
        {
            return Hint {
                value: None,
                first: None,
            };
        }
        let baselines = self.baselines();
        let Scratch {
            in_flight: mut counts,
            mut ranked,
        } = std::mem::take(&mut self.scratch);
        counts.clear();
        counts.extend(self.endpoints.iter().map(|e| in_flight(&e.address) as f64));
        let mean_in_flight = counts.iter().sum::<f64>() / counts.len() as f64;
        let margin = chance(mean_in_flight);
        ranked.clear();
        ranked.extend(self.endpoints.iter().enumerate().map(|(i, e)| {
            let cooling = usize::from(!e.breaker.is_closed());
            let remote = usize::from(e.pool == Pool::Remote);
            Candidate {
                index: i,
                tier: cooling * 2 + remote,
                cooling_until_ms: e.breaker.until_ms(),
                latency: self.latency(e, class, now_ms, &baselines),
                load: load_factor(counts[i], mean_in_flight, margin),
                peer_load: load_factor(counts[i], mean_in_flight, 0.0),
            }
        }));
        ranked.sort_by(|a, b| {
            a.tier
                .cmp(&b.tier)
                .then(a.cooling_until_ms.total_cmp(&b.cooling_until_ms))
                .then(a.cost().total_cmp(&b.cost()))
        });
        let best_tier = ranked
            .iter()
            .take_while(|r| r.tier == ranked[0].tier)
            .count();
        let route = if let Some(probe) = self.take_probe(&ranked, now_ms) {
            let chosen = ranked.remove(probe);
            ranked.insert(0, chosen);
            Route::Probe
        } else if best_tier >= 2 {
            let a = self.rng.below(best_tier);
            let b = (a + 1 + self.rng.below(best_tier - 1)) % best_tier;
            let (winner, loser) = if ranked[b].cost_against(&ranked[a]) * (1.0 + TIE_TOLERANCE)
                < ranked[a].cost_against(&ranked[b])
            {
                (b, a)
            } else {
                (a, b)
            };
            let route = self.route(&ranked[winner], &ranked[loser], class, now_ms, &baselines);
            let chosen = ranked.remove(winner);
            ranked.insert(0, chosen);
            route
        } else {
            Route::Alone
        };
        let addresses = ranked
            .iter()
            .map(|r| self.endpoints[r.index].address.as_str());
        let mut value = String::with_capacity(addresses.clone().map(|a| a.len() + 1).sum());
        for address in addresses {
            if !value.is_empty() {
                value.push(',');
            }
            value.push_str(address);
        }
        let first = ranked
            .first()
            .map(|r| (self.endpoints[r.index].address.clone(), route));
        self.scratch = Scratch {
            in_flight: counts,
            ranked,
        };
        Hint {
            first,
            value: Some(value),
        }
    }

    /// The position in `ranked` of a cooling-down endpoint due for a probe, if any (marked as
    /// probed). Remote endpoints are probed only while no local one is healthy: until then no
    /// request would go to them anyway.
    fn take_probe(&mut self, ranked: &[Candidate], now_ms: f64) -> Option<usize> {
        let local_healthy = ranked.first().is_some_and(|r| r.tier == 0);
        let backoff = self.backoff();
        ranked.iter().position(|r| {
            let e = &mut self.endpoints[r.index];
            (e.pool == Pool::Local || !local_healthy) && e.breaker.take_probe(now_ms, backoff)
        })
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            cooldown_ms: self.tuning.cooldown_ms,
            max_cooldown_ms: self.tuning.max_cooldown_ms,
        }
    }

    /// Learns from a finished request served by `address`, sent (its last byte handed
    /// upstream) at `sent_ms`. Returns `true` when the address was new (discovered through the
    /// fallback policy).
    pub fn observe(
        &mut self,
        address: &str,
        class: LatencyClass,
        sent_ms: f64,
        now_ms: f64,
        outcome: Outcome,
    ) -> bool {
        if outcome == Outcome::NotAttributable || address.is_empty() {
            return false;
        }
        let (index, discovered) = match self.endpoints.iter().position(|e| e.address == address) {
            Some(i) => (i, false),
            None if self.endpoints.len() < MAX_ENDPOINTS => {
                self.endpoints
                    .push(Endpoint::new(address.to_owned(), Pool::Local));
                (self.endpoints.len() - 1, true)
            }
            None => return false,
        };
        let backoff = self.backoff();
        let decay_ms = self.tuning.decay_ms;
        let e = &mut self.endpoints[index];
        match outcome {
            Outcome::Success { latency_ms } => {
                e.latency[class.index()].observe(now_ms, latency_ms, decay_ms);
                e.breaker.succeeded(sent_ms);
            }
            // A failure is no latency sample (a fast `503` is not a fast answer): the breaker
            // keeps the endpoint out of the healthy tier until a success.
            Outcome::Failure { retry_after_ms, .. } => {
                e.breaker.failed(now_ms, sent_ms, retry_after_ms, backoff);
            }
            Outcome::NotAttributable => {}
        }
        discovered
    }

    /// Per class, the best raw estimate of any endpoint: what a healthy endpoint achieves.
    fn baselines(&self) -> [Option<f64>; 4] {
        let mut out = [None; 4];
        for class in LatencyClass::ALL {
            out[class.index()] = self
                .endpoints
                .iter()
                .filter_map(|e| e.latency[class.index()].value())
                .min_by(f64::total_cmp);
        }
        out
    }

    /// The latency to expect from `e` for `class`: its own estimate, or (without samples of
    /// that class) the baseline scaled by how `e` compares to baseline in the other classes.
    fn latency(
        &self,
        e: &Endpoint,
        class: LatencyClass,
        now_ms: f64,
        baselines: &[Option<f64>; 4],
    ) -> f64 {
        let recovery = self.tuning.recovery_ms;
        Self::expected(class, baselines, |c, base| {
            e.latency[c.index()].estimate(now_ms, base, recovery)
        })
    }

    /// Why `winner` won the draw against `rival` (only the winner's route is ever needed, so
    /// its undecayed estimate is computed here rather than for every candidate).
    fn route(
        &self,
        winner: &Candidate,
        rival: &Candidate,
        class: LatencyClass,
        now_ms: f64,
        baselines: &[Option<f64>; 4],
    ) -> Route {
        let e = &self.endpoints[winner.index];
        let unfaded = Self::expected(class, baselines, |c, _| e.latency[c.index()].value());
        let probing = e.latency[class.index()].probing(now_ms, self.tuning.recovery_ms);
        if probing && unfaded > winner.latency {
            Route::Probe
        } else if unfaded * winner.load_against(rival)
            > rival.cost_against(winner) * (1.0 + TIE_TOLERANCE)
        {
            Route::Faded
        } else if winner.cost_against(rival) * (1.0 + TIE_TOLERANCE) >= rival.cost_against(winner) {
            Route::Tie
        } else if winner.latency > rival.latency {
            Route::LessLoaded
        } else {
            Route::Faster
        }
    }

    /// The latency for `class` from per-class estimates `estimate(class, baseline)`.
    fn expected(
        class: LatencyClass,
        baselines: &[Option<f64>; 4],
        estimate: impl Fn(LatencyClass, f64) -> Option<f64>,
    ) -> f64 {
        let with_base = |c: LatencyClass| {
            let base = baselines[c.index()].unwrap_or(UNKNOWN_LATENCY_MS);
            estimate(c, base).map(|v| (v, base))
        };
        let latency = match with_base(class) {
            Some((v, _)) => v,
            None => {
                let ratios: Vec<f64> = LatencyClass::ALL
                    .iter()
                    .filter_map(|c| with_base(*c))
                    .map(|(v, b)| v / b.max(1e-3))
                    .collect();
                let ratio = if ratios.is_empty() {
                    1.0
                } else {
                    ratios.iter().sum::<f64>() / ratios.len() as f64
                };
                baselines[class.index()].unwrap_or(UNKNOWN_LATENCY_MS) * ratio
            }
        };
        latency.max(1e-3)
    }
}

/// Requests arriving at random leave equally good endpoints with in-flight counts that differ
/// by about `√mean` (Poisson): an excess within that is chance, not a pile-up.
fn chance(mean: f64) -> f64 {
    (mean + 1.0).sqrt()
}

/// How much `in_flight` requests to an endpoint raise its cost when the fleet's endpoints have
/// `mean` in flight, counting only the excess beyond `margin`:
/// `1 + max(0, in_flight - mean - margin) / (mean + 1)`.
fn load_factor(in_flight: f64, mean: f64, margin: f64) -> f64 {
    1.0 + (in_flight - mean - margin).max(0.0) / (mean + 1.0)
}

/// One endpoint as the draw weighs it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    index: usize,
    /// 0 healthy local, 1 healthy remote, 2 cooling local, 3 cooling remote.
    tier: usize,
    /// End of a cooling-down endpoint's cooldown (0 when healthy).
    cooling_until_ms: f64,
    /// Expected latency now (penalties faded with idle time).
    latency: f64,
    /// [`load_factor`] of its requests in flight beyond [`chance`]: against a rival of
    /// different speed.
    load: f64,
    /// [`load_factor`] of every request in flight above the mean: against a peer.
    peer_load: f64,
}

impl Candidate {
    /// Cost for ranking: latency and the load beyond chance.
    fn cost(&self) -> f64 {
        self.latency * self.load
    }

    /// Whether two endpoints answer alike: their latencies within [`PEER_RATIO`].
    fn is_peer(&self, rival: &Self) -> bool {
        self.latency.max(rival.latency) <= self.latency.min(rival.latency) * PEER_RATIO
    }

    /// The load factor that counts in a draw against `rival`. Between peers every request in
    /// flight above the mean counts, as with least_request: the fewer already waiting, the sooner
    /// this one is served (`make bench-fleet`: each sidecar has well under one request in flight
    /// per endpoint, so a margin of chance switched the load factor off there and cost the
    /// fleet's p99 1.1-1.4x). Against a rival of different speed only the excess beyond chance
    /// counts: under a CPU limit Envoy's own queueing holds responses and shrinks the latency
    /// ratio (a 50 ms endpoint looked only 1.75x slower than the 10 ms ones), and chance counts
    /// like 6 against 2, 2 and 0 weighed in full (factor 2.0) let the idle slow endpoint tie
    /// with a healthy one (`make bench-lb`, S1 under the CPU limit). A stalled endpoint piles up
    /// far beyond chance and is avoided either way.
    fn load_against(&self, rival: &Self) -> f64 {
        if self.is_peer(rival) {
            self.peer_load
        } else {
            self.load
        }
    }

    /// Cost in a draw against `rival`.
    fn cost_against(&self, rival: &Self) -> f64 {
        self.latency * self.load_against(rival)
    }
}

#[cfg(test)]
mod tests;
