//! `bench-authz-load --target HOST:PORT --out FILE (--rate R | --saturate C) [--duration-s D]
//! [--warmup-s W] [--connections N]`: load on ext-authz's `Authorization/Check`.
//!
//! The checks are what Envoy sends for an allowed `GET` from a caller the local identity file
//! knows, so each one resolves the identity, evaluates the policy and signs (SigV4).
//! - `--rate R`: open loop. Check `i` is due at `start + i/R` and sent then (paced by a sleeping
//!   OS thread, not by tokio's 1 ms timer), whatever happened to earlier ones; its latency runs
//!   from that intended time to the answer.
//! - `--saturate C`: closed loop with `C` checks in flight, for the maximum rate.
//!
//! Checks go over `N` HTTP/2 connections (Envoy keeps a few to an ext_authz cluster). Writes the
//! measured window's count, rate, errors and latency percentiles (µs) as JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use s3mesh_bench::percentile;
use serde::Serialize;
use tokio::sync::Mutex;
use tonic::transport::Channel;

struct Args {
    target: String,
    out: String,
    rate: Option<f64>,
    saturate: Option<usize>,
    duration_s: f64,
    warmup_s: f64,
    connections: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        target: String::new(),
        out: "authz-load.json".into(),
        rate: None,
        saturate: None,
        duration_s: 10.0,
        warmup_s: 2.0,
        connections: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--target" => a.target = v,
            "--out" => a.out = v,
            "--rate" => a.rate = Some(num(&v)?),
            "--saturate" => a.saturate = Some(num(&v)? as usize),
            "--duration-s" => a.duration_s = num(&v)?,
            "--warmup-s" => a.warmup_s = num(&v)?,
            "--connections" => a.connections = (num(&v)? as usize).max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.target.is_empty() || a.rate.is_some() == a.saturate.is_some() {
        return Err("--target and exactly one of --rate and --saturate are required".into());
    }
    Ok(a)
}

/// The check Envoy sends for `GET /team-a/bench-object` from 127.0.0.2.
fn check_request(n: u64) -> CheckRequest {
    let headers: HashMap<String, String> = [
        (":authority", "127.0.0.1:8480"),
        (":method", "GET"),
        (":path", "/team-a/bench-object"),
        (":scheme", "http"),
        ("user-agent", "aws-cli/1.46 botocore/1.44"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("x-forwarded-proto", "http"),
        ("accept-encoding", "identity"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("x-request-id".to_owned(), format!("bench-{n}"))])
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: "127.0.0.2".into(),
                        port_specifier: Some(PortSpecifier::PortValue(40000)),
                        ..SocketAddress::default()
                    })),
                }),
                ..Peer::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: n.to_string(),
                    method: "GET".into(),
                    path: "/team-a/bench-object".into(),
                    host: "127.0.0.1:8480".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

/// One answered check: when it finished and how long it took (µs); `ok` when it was allowed.
struct Sample {
    done: Instant,
    latency_us: f64,
    ok: bool,
}

async fn ask(client: &mut AuthorizationClient<Channel>, n: u64) -> bool {
    match client.check(check_request(n)).await {
        Ok(r) => r.into_inner().status.is_some_and(|s| s.code == 0),
        Err(_) => false,
    }
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    rate: Option<f64>,
    in_flight: Option<usize>,
    checks: usize,
    errors: usize,
    checks_per_s: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
}

fn report(args: &Args, samples: &[Sample], from: Instant, to: Instant) -> Report {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.done >= from && s.done < to)
        .collect();
    let mut lat: Vec<f64> = window.iter().map(|s| s.latency_us).collect();
    lat.sort_by(f64::total_cmp);
    let seconds = (to - from).as_secs_f64();
    Report {
        mode: if args.rate.is_some() {
            "rate"
        } else {
            "saturate"
        },
        rate: args.rate,
        in_flight: args.saturate,
        checks: window.len(),
        errors: window.iter().filter(|s| !s.ok).count(),
        checks_per_s: window.len() as f64 / seconds,
        p50_us: percentile(&lat, 0.50),
        p90_us: percentile(&lat, 0.90),
        p99_us: percentile(&lat, 0.99),
        max_us: lat.last().copied().unwrap_or(0.0),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let channel = Channel::from_shared(format!("http://{}", args.target))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", args.target))?;
        clients.push(AuthorizationClient::new(channel));
    }
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let start = Instant::now();
    let from = start + Duration::from_secs_f64(args.warmup_s);
    let to = from + Duration::from_secs_f64(args.duration_s);
    match (args.rate, args.saturate) {
        (Some(rate), _) => {
            let mut rx = s3mesh_bench::pacer::spawn(start, rate, to);
            let mut tasks = Vec::new();
            while let Some((n, due)) = rx.recv().await {
                let mut client = clients[n as usize % clients.len()].clone();
                let samples = Arc::clone(&samples);
                tasks.push(tokio::spawn(async move {
                    let ok = ask(&mut client, n).await;
                    let done = Instant::now();
                    let latency_us = (done - due).as_secs_f64() * 1e6;
                    samples.lock().await.push(Sample {
                        done,
                        latency_us,
                        ok,
                    });
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        (None, Some(in_flight)) => {
            let mut workers = Vec::new();
            for w in 0..in_flight {
                let mut client = clients[w % clients.len()].clone();
                let samples = Arc::clone(&samples);
                workers.push(tokio::spawn(async move {
                    let mut n = w as u64;
                    let mut mine = Vec::new();
                    while Instant::now() < to {
                        let sent = Instant::now();
                        let ok = ask(&mut client, n).await;
                        let done = Instant::now();
                        mine.push(Sample {
                            done,
                            latency_us: (done - sent).as_secs_f64() * 1e6,
                            ok,
                        });
                        n += in_flight as u64;
                    }
                    samples.lock().await.extend(mine);
                }));
            }
            for w in workers {
                let _ = w.await;
            }
        }
        (None, None) => return Err("nothing to do".into()),
    }
    let samples = samples.lock().await;
    let report = report(&args, &samples, from, to);
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, json).map_err(|e| format!("cannot write {}: {e}", args.out))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-authz-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
