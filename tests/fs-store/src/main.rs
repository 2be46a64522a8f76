//! `fs-store --root DIR --endpoints N --access-key K --secret-key S --state FILE [--ttfb-ms MS]`:
//! the signature-verifying S3 store of the integration tests and benchmarks, one store behind
//! several endpoints, as s3mesh meets them in production. Started by `devstack`, never shipped.
//! With `--ttfb-ms`, every request waits that long before the store handles it: the time to
//! first byte of a store across a network (`make bench-analytics`).
//!
//! It is s3s-fs (objects as files under `DIR`; SigV4, chunk and trailer signatures checked
//! against the one key pair) served on `N` loopback ports by one process. Several s3s-fs
//! processes on one directory are not one store: each numbers its temporary files from 0 in
//! that directory, so concurrent uploads through different processes open the same file, mix
//! their bytes and fail or, worse, complete with the other's data.
//!
//! A `SignatureDoesNotMatch` error carries the store's canonical request and string to sign, as
//! AWS S3's does ([`signature_detail`]).
//!
//! When every port listens, writes `{"endpoints": ["127.0.0.1:port", …]}` to `FILE` (whole, by
//! rename). Logs s3s's own (errors, at `RUST_LOG`'s level) to stderr.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

mod signature_detail;

use signature_detail::Received;

/// The command line.
struct Options {
    root: PathBuf,
    endpoints: usize,
    access_key: String,
    secret_key: String,
    state: PathBuf,
    ttfb: Duration,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let (mut root, mut endpoints, mut access_key, mut secret_key, mut state) =
            (None, None, None, None, None);
        let mut ttfb = Duration::ZERO;
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--root" => root = Some(PathBuf::from(value)),
                "--endpoints" => {
                    endpoints =
                        Some(value.parse().map_err(|_| {
                            format!("--endpoints: {value:?} is not a number of ports")
                        })?)
                }
                "--access-key" => access_key = Some(value),
                "--secret-key" => secret_key = Some(value),
                "--state" => state = Some(PathBuf::from(value)),
                "--ttfb-ms" => {
                    let ms = value
                        .parse()
                        .map_err(|_| format!("--ttfb-ms: {value:?} is not a number of ms"))?;
                    ttfb = Duration::from_millis(ms);
                }
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        let missing = |name: &str| format!("{name} is required");
        Ok(Self {
            root: root.ok_or_else(|| missing("--root"))?,
            endpoints: endpoints.ok_or_else(|| missing("--endpoints"))?,
            access_key: access_key.ok_or_else(|| missing("--access-key"))?,
            secret_key: secret_key.ok_or_else(|| missing("--secret-key"))?,
            state: state.ok_or_else(|| missing("--state"))?,
            ttfb,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fs-store: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let options = Options::parse(std::env::args().skip(1))?;
    let store = FileSystem::new(&options.root)
        .map_err(|error| format!("{}: {error:?}", options.root.display()))?;
    let mut builder = S3ServiceBuilder::new(store);
    builder.set_auth(SimpleAuth::from_single(
        options.access_key.as_str(),
        options.secret_key.as_str(),
    ));
    let service = Delayed {
        service: builder.build(),
        ttfb: options.ttfb,
    };
    let mut servers = JoinSet::new();
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for _ in 0..options.endpoints {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addresses.push(listener.local_addr()?);
        servers.spawn(serve(listener, service.clone()));
    }
    let endpoints: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let partial = options.state.with_extension("partial");
    std::fs::write(
        &partial,
        serde_json::json!({ "endpoints": endpoints }).to_string(),
    )?;
    std::fs::rename(&partial, &options.state)?;
    while let Some(ended) = servers.join_next().await {
        ended??;
    }
    Ok(())
}

/// The store, answering each request after `ttfb`; a refused signature explained.
#[derive(Clone)]
struct Delayed {
    service: S3Service,
    ttfb: Duration,
}

type Answer = <S3Service as Service<Request<Incoming>>>::Response;
type Failure = <S3Service as Service<Request<Incoming>>>::Error;

impl Service<Request<Incoming>> for Delayed {
    type Response = Answer;
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Failure>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let (service, ttfb) = (self.service.clone(), self.ttfb);
        Box::pin(async move {
            if !ttfb.is_zero() {
                tokio::time::sleep(ttfb).await;
            }
            let received = Received::of(&request);
            let answer = <S3Service as Service<Request<Incoming>>>::call(&service, request).await?;
            Ok(match received {
                Some(received) => received.complete(answer),
                None => answer,
            })
        })
    }
}

/// Serves `service` on every connection `listener` accepts, until the process is killed.
async fn serve(listener: TcpListener, service: Delayed) -> std::io::Result<()> {
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            // A connection's failure is the client's or that connection's alone.
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
