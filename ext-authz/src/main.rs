//! `s3mesh-ext-authz --config FILE [--listen ADDR] [--health-listen ADDR]`: the ext_authz gRPC
//! server, with its probes and configuration reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use s3mesh_ext_authz::config::Config;
use s3mesh_ext_authz::identity::kubernetes::PodIdentities;
use s3mesh_ext_authz::identity::Source;
use s3mesh_ext_authz::reload::{self, Current};
use s3mesh_ext_authz::service::{self, AuthzService};
use s3mesh_ext_authz::{health, telemetry};

const USAGE: &str =
    "usage: s3mesh-ext-authz --config FILE [--listen ADDR (default 127.0.0.1:9191)] \
                     [--health-listen ADDR (default 127.0.0.1:9192)]";

struct Args {
    config: PathBuf,
    listen: SocketAddr,
    health_listen: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 9191));
    let mut health_listen = SocketAddr::from(([127, 0, 0, 1], 9192));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let addr = |v: String| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("{arg} {v:?}: {e}"))
        };
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--listen" => listen = addr(value()?)?,
            "--health-listen" => health_listen = addr(value()?)?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        listen,
        health_listen,
    })
}

/// Starts the pod watch when the configuration asks for the `kubernetes` source.
async fn pod_watch(config: &Config) -> Result<Option<PodIdentities>, String> {
    if !config.identity.sources.contains(&Source::PodIp) {
        return Ok(None);
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("the kubernetes identity source is on but no Kubernetes API is configured: {e}")
    })?;
    Ok(Some(PodIdentities::spawn(
        client,
        config.identity.kubernetes.namespace.as_deref(),
    )))
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    let pods = pod_watch(&config).await?;
    let checker = reload::load(&args.config, pods.clone())
        .map_err(|e| format!("configuration refused: {e}"))?;
    let current = Arc::new(Current::new(checker));
    tokio::spawn(reload::watch(
        args.config.clone(),
        pods.clone(),
        Arc::clone(&current),
        Duration::from_secs(2),
    ));

    let health = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.health_listen))?;
    let health_addr = health.local_addr().map_or(args.health_listen, |a| a);
    tokio::spawn(health::serve(health, pods));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_or(args.listen, |a| a);
    tracing::info!(listen = %local, health = %health_addr, config = %args.config.display(), "s3mesh-ext-authz serving");
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(AuthzService::new(current)))
        .serve_with_incoming_shutdown(service::incoming(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("server failed: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "s3mesh-ext-authz stopped");
            ExitCode::FAILURE
        }
    }
}
