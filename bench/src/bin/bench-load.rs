//! `bench-load --target HOST:PORT --path /b/k --rate R --duration-s D --warmup-s W --out FILE
//! [--control HOST:PORT] [--timeout-ms T] [--connections N] [--closed N] [--raw]`: open-loop GET load
//! at a fixed rate, or with `--closed N` a closed loop over N connections for the maximum rate.
//!
//! Request `i` is due at `start + i/rate` and is sent then (paced by [`s3mesh_bench::pacer`]),
//! on an idle keep-alive connection or a new one, whatever happened to earlier requests; its
//! latency runs from that intended time to the last byte of the response (so queueing anywhere
//! is counted, coordinated omission is not possible). At most `--connections` (default 64) are
//! open at once: when all are busy, a due request waits its turn (first come, first served)
//! and the wait counts in its latency, instead of the generator opening ever more connections
//! as the target slows (which costs the generator, and the target, more than the requests). Writes percentiles over the measured window (after the warm-up) and
//! per-second counts by serving endpoint (`x-bench-endpoint`) as JSON; with `--raw` also every
//! request as `[intended send s, latency ms, status, endpoint]`, for merging several
//! generators' results (`make bench-fleet`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3mesh_bench::http1::{read_head, skip_body};
use s3mesh_bench::percentile;
use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    target: String,
    path: String,
    rate: f64,
    duration_s: f64,
    warmup_s: f64,
    out: String,
    control: Option<String>,
    timeout_ms: u64,
    /// Open loop: at most this many connections.
    connections: usize,
    /// Closed loop instead: this many connections, each sending its next request when the last
    /// is answered (for the maximum rate; its latencies are not open-loop figures).
    closed: Option<usize>,
    /// Every request in the report too.
    raw: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        target: String::new(),
        path: "/bench/object".into(),
        rate: 100.0,
        duration_s: 10.0,
        warmup_s: 0.0,
        out: "load.json".into(),
        control: None,
        timeout_ms: 10_000,
        connections: 64,
        closed: None,
        raw: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--raw" {
            a.raw = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--target" => a.target = v,
            "--path" => a.path = v,
            "--rate" => a.rate = num(&v)?,
            "--duration-s" => a.duration_s = num(&v)?,
            "--warmup-s" => a.warmup_s = num(&v)?,
            "--out" => a.out = v,
            "--control" => a.control = Some(v),
            "--timeout-ms" => a.timeout_ms = num(&v)? as u64,
            "--connections" => a.connections = (num(&v)? as usize).max(1),
            "--closed" => a.closed = Some(num(&v)? as usize),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.target.is_empty() || a.rate <= 0.0 {
        return Err("--target and a positive --rate are required".into());
    }
    Ok(a)
}

type Conn = BufReader<TcpStream>;

#[derive(Clone, Copy)]
struct Record {
    intended_s: f64,
    latency_ms: f64,
    status: u16,
    endpoint: i32,
}

async fn exchange(conn: &mut Conn, request: &[u8]) -> std::io::Result<(u16, i32, bool)> {
    conn.get_mut().write_all(request).await?;
    let head = read_head(conn)
        .await?
        .ok_or(std::io::ErrorKind::UnexpectedEof)?;
    skip_body(conn, head.content_length()).await?;
    let endpoint = head
        .header("x-bench-endpoint")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    Ok((head.status(), endpoint, head.closes()))
}

async fn one(
    pool: Arc<Mutex<Vec<Conn>>>,
    target: Arc<str>,
    request: Arc<[u8]>,
    timeout: Duration,
) -> (u16, i32) {
    let reused = pool.lock().ok().and_then(|mut p| p.pop());
    let mut conn = match reused {
        Some(c) => c,
        None => match tokio::time::timeout(timeout, TcpStream::connect(&*target)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                BufReader::new(s)
            }
            _ => return (0, -1),
        },
    };
    match tokio::time::timeout(timeout, exchange(&mut conn, &request)).await {
        Ok(Ok((status, endpoint, closes))) => {
            if !closes {
                if let Ok(mut p) = pool.lock() {
                    p.push(conn);
                }
            }
            (status, endpoint)
        }
        _ => (0, -1),
    }
}

/// One second of intended send times, while aggregating.
#[derive(Default)]
struct Bucket {
    latencies: Vec<f64>,
    errors: usize,
    by_endpoint: BTreeMap<i32, usize>,
}

#[derive(Serialize)]
struct Second {
    t: u64,
    n: usize,
    errors: usize,
    p99_ms: f64,
    by_endpoint: BTreeMap<i32, usize>,
}

#[derive(Serialize)]
struct Report {
    rate: f64,
    duration_s: f64,
    warmup_s: f64,
    sent: usize,
    measured: usize,
    errors: usize,
    error_rate: f64,
    ok_per_s: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    seconds: Vec<Second>,
    /// With `--raw`: `[intended send s, latency ms, status, endpoint]` per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<Vec<(f64, f64, u16, i32)>>,
}

fn is_error(status: u16) -> bool {
    !(200..400).contains(&status)
}

fn report(args: &Args, records: &[Record]) -> Report {
    let measured: Vec<&Record> = records
        .iter()
        .filter(|r| r.intended_s >= args.warmup_s)
        .collect();
    let mut lat: Vec<f64> = measured.iter().map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let errors = measured.iter().filter(|r| is_error(r.status)).count();
    let window = (args.duration_s - args.warmup_s).max(1e-9);
    let mut seconds: BTreeMap<u64, Bucket> = BTreeMap::new();
    for r in records {
        let s = seconds.entry(r.intended_s as u64).or_default();
        s.latencies.push(r.latency_ms);
        s.errors += usize::from(is_error(r.status));
        *s.by_endpoint.entry(r.endpoint).or_default() += 1;
    }
    Report {
        rate: args.rate,
        duration_s: args.duration_s,
        warmup_s: args.warmup_s,
        sent: records.len(),
        measured: measured.len(),
        errors,
        error_rate: if measured.is_empty() {
            0.0
        } else {
            errors as f64 / measured.len() as f64
        },
        ok_per_s: (measured.len() - errors) as f64 / window,
        p50_ms: percentile(&lat, 0.50),
        p90_ms: percentile(&lat, 0.90),
        p99_ms: percentile(&lat, 0.99),
        p999_ms: percentile(&lat, 0.999),
        max_ms: lat.last().copied().unwrap_or(0.0),
        seconds: seconds
            .into_iter()
            .map(|(t, mut b)| {
                b.latencies.sort_by(f64::total_cmp);
                Second {
                    t,
                    n: b.latencies.len(),
                    errors: b.errors,
                    p99_ms: percentile(&b.latencies, 0.99),
                    by_endpoint: b.by_endpoint,
                }
            })
            .collect(),
        requests: args.raw.then(|| {
            records
                .iter()
                .map(|r| (r.intended_s, r.latency_ms, r.status, r.endpoint))
                .collect()
        }),
    }
}

async fn start_clock(control: &str) -> std::io::Result<()> {
    let mut conn = BufReader::new(TcpStream::connect(control).await?);
    let request = b"POST /__bench/start HTTP/1.1\r\nhost: bench\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    exchange(&mut conn, request).await.map(|_| ())
}

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// What every request shares: where it goes, what it says, and where its record goes.
#[derive(Clone)]
struct Sender {
    target: Arc<str>,
    request: Arc<[u8]>,
    timeout: Duration,
    start: Instant,
    records: Shared<Record>,
}

impl Sender {
    /// Sends one request over `pool` and records it, its latency counted from `from` (its due
    /// time in the open loop, its send time in the closed loop).
    async fn send(&self, pool: Shared<Conn>, from: Instant) {
        let (status, endpoint) = one(
            pool,
            Arc::clone(&self.target),
            Arc::clone(&self.request),
            self.timeout,
        )
        .await;
        let record = Record {
            intended_s: (from - self.start).as_secs_f64(),
            latency_ms: from.elapsed().as_secs_f64() * 1000.0,
            status,
            endpoint,
        };
        if let Ok(mut r) = self.records.lock() {
            r.push(record);
        }
    }
}

/// Open loop: each request at its due time, whatever happened to earlier ones, on at most
/// `connections` connections.
async fn open_loop(sender: &Sender, rate: f64, connections: usize, end: Instant) {
    let pool: Shared<Conn> = Arc::new(Mutex::new(Vec::new()));
    let slots = Arc::new(tokio::sync::Semaphore::new(connections));
    let mut due_times = s3mesh_bench::pacer::spawn(sender.start, rate, end);
    let mut tasks = tokio::task::JoinSet::new();
    while let Some((_, due)) = due_times.recv().await {
        let (sender, pool, slots) = (sender.clone(), Arc::clone(&pool), Arc::clone(&slots));
        tasks.spawn(async move {
            // The semaphore is fair: requests get a connection in the order they were due.
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            sender.send(pool, due).await
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Closed loop: `connections` senders, each sending its next request when the last is answered.
async fn closed_loop(sender: &Sender, connections: usize, end: Instant) {
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..connections {
        // A pool of its own, so each sender keeps one connection.
        let pool: Shared<Conn> = Arc::new(Mutex::new(Vec::new()));
        let sender = sender.clone();
        loops.spawn(async move {
            while Instant::now() < end {
                sender.send(Arc::clone(&pool), Instant::now()).await;
            }
        });
    }
    while loops.join_next().await.is_some() {}
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let request: Arc<[u8]> = format!("GET {} HTTP/1.1\r\nhost: bench.local\r\n\r\n", args.path)
        .into_bytes()
        .into();
    let records = Arc::new(Mutex::new(Vec::new()));
    if let Some(control) = &args.control {
        start_clock(control).await?;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration_s);
    let sender = Sender {
        target: args.target.clone().into(),
        request,
        timeout: Duration::from_millis(args.timeout_ms),
        start,
        records: Arc::clone(&records),
    };
    match args.closed {
        Some(connections) => closed_loop(&sender, connections, end).await,
        None => open_loop(&sender, args.rate, args.connections, end).await,
    }
    let records = records.lock().map(|r| r.clone()).unwrap_or_default();
    let report = report(&args, &records);
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    println!(
        "sent {} ok/s {:.0} p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms errors {:.4}%",
        report.sent,
        report.ok_per_s,
        report.p50_ms,
        report.p99_ms,
        report.p999_ms,
        report.error_rate * 100.0
    );
    Ok(())
}
