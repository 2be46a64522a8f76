//! `s3mesh-ext-authz --config FILE [--listen ADDR]`: the ext_authz gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use s3mesh_ext_authz::check::Checker;
use s3mesh_ext_authz::config::Config;
use s3mesh_ext_authz::service::AuthzService;
use s3mesh_ext_authz::telemetry;

const USAGE: &str =
    "usage: s3mesh-ext-authz --config FILE [--listen ADDR (default 127.0.0.1:9191)]";

struct Args {
    config: PathBuf,
    listen: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 9191));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|e| format!("--listen {v:?}: {e}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        listen,
    })
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
    let checker = match Config::load(&args.config).and_then(|c| Checker::from_config(&c)) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "configuration refused");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %args.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().map_or(args.listen, |a| a);
    tracing::info!(listen = %local, config = %args.config.display(), "s3mesh-ext-authz serving");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let served = tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(AuthzService::new(checker)))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
