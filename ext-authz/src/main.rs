//! `s3mesh-ext-authz --config FILE [--listen ADDR] [--health-listen ADDR]`: the ext_authz gRPC
//! server, with its probes and configuration reload. `s3mesh-ext-authz crd` prints the
//! `S3AccessPolicy` CustomResourceDefinition.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use s3mesh_ext_authz::config::Config;
use s3mesh_ext_authz::health::{self, Watches};
use s3mesh_ext_authz::identity::kubernetes::PodIdentities;
use s3mesh_ext_authz::identity::Source;
use s3mesh_ext_authz::kubernetes::policy_resource::crd_yaml;
use s3mesh_ext_authz::kubernetes::resources::ClusterResources;
use s3mesh_ext_authz::reload::{Current, Reloader};
use s3mesh_ext_authz::service;
use s3mesh_ext_authz::telemetry;

const USAGE: &str =
    "usage: s3mesh-ext-authz --config FILE [--listen ADDR (default 127.0.0.1:9191)] \
                     [--health-listen ADDR (default 127.0.0.1:9192)]\n       s3mesh-ext-authz crd";

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

/// Starts the Kubernetes watches the configuration asks for: pods for the `kubernetes`
/// identity source; policy objects and Secrets for a `cluster` section.
async fn start_watches(config: &Config) -> Result<Watches, String> {
    let pods_on = config.identity.sources.contains(&Source::PodIp);
    if !pods_on && config.cluster.is_none() {
        return Ok(Watches::default());
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("the configuration reads from Kubernetes but no Kubernetes API is configured: {e}")
    })?;
    let pods = pods_on.then(|| {
        PodIdentities::spawn(
            client.clone(),
            config.identity.kubernetes.namespace.as_deref(),
        )
    });
    let cluster = config.cluster.as_ref().map(|cluster| {
        let namespace = cluster
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let secrets = config.profiles.values().any(|p| p.secret.is_some());
        ClusterResources::spawn(client, &namespace, cluster.policies, secrets)
    });
    Ok(Watches { pods, cluster })
}

/// SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C): stop accepting, finish what is
/// in flight, flush telemetry.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    let watches = start_watches(&config).await?;
    let mut reloader = Reloader::new(
        args.config.clone(),
        watches.pods.clone(),
        watches.cluster.clone(),
    );
    let checker = reloader
        .build()
        .map_err(|e| format!("configuration refused: {e}"))?;
    let current = Arc::new(Current::new(checker));
    let reloader_refusals = reloader.refusals();
    let sessions = reloader.sessions();
    tokio::spawn(reloader.watch(Arc::clone(&current), Duration::from_secs(2)));

    let health = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.health_listen))?;
    let health_addr = health.local_addr().map_or(args.health_listen, |a| a);
    telemetry::register_gauges(watches.clone(), reloader_refusals);
    tokio::spawn(health::serve(health, watches, sessions));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_or(args.listen, |a| a);
    tracing::info!(listen = %local, health = %health_addr, config = %args.config.display(), "s3mesh-ext-authz serving");
    tonic::transport::Server::builder()
        .add_routes(service::routes(current))
        .serve_with_incoming_shutdown(service::incoming(listener), stop_signal())
        .await
        .map_err(|e| format!("server failed: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("crd") {
        return match crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init();
    let code = match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "s3mesh-ext-authz stopped");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
