//! `/healthz` (the process serves) and `/readyz` (it can decide) over plain HTTP, for
//! Kubernetes probes. Readiness is refused until every watch (pods, policy objects, Secrets)
//! has delivered its first full list; a watch that is failing afterwards leaves the service
//! ready, with the last known objects, and says `degraded` with the reason, since refusing
//! readiness would take every replica out at once and fail every request closed.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::identity::kubernetes::PodIdentities;
use crate::kubernetes::resources::ClusterResources;
use crate::kubernetes::watch_state::WatchState;
use crate::sts::Sessions;

/// The Kubernetes watches readiness and metrics look at.
#[derive(Debug, Clone, Default)]
pub struct Watches {
    /// The pod watch of the `kubernetes` identity source.
    pub pods: Option<PodIdentities>,
    /// The policy-object and Secret watches.
    pub cluster: Option<ClusterResources>,
}

impl Watches {
    /// Each running watch as `(kind, state, objects known)`.
    pub fn each(&self) -> Vec<(&'static str, &WatchState, usize)> {
        let mut all = Vec::new();
        if let Some(pods) = &self.pods {
            all.push(("pods", pods.state(), pods.len()));
        }
        if let Some(cluster) = &self.cluster {
            if let Some(p) = cluster.policies() {
                all.push(("s3accesspolicies", p.state(), p.len()));
            }
            if let Some(s) = cluster.secrets() {
                all.push(("secrets", s.state(), s.len()));
            }
        }
        all
    }
}

/// Readiness as `(ready, text)`; `sts_failures` are the STS calls failing now
/// ([`Sessions::failures`]): degraded, not unready, since other callers and profiles serve.
pub fn readiness(watches: &Watches, sts_failures: &[String]) -> (bool, String) {
    let all = watches.each();
    if let Some((kind, _, _)) = all.iter().find(|(_, state, _)| !state.synced()) {
        return (
            false,
            format!("not ready: the {kind} list has not been loaded yet\n"),
        );
    }
    let known = all
        .iter()
        .map(|(kind, _, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ");
    let failing: Vec<String> = all
        .iter()
        .filter(|(_, state, _)| !state.connected())
        .filter_map(|(kind, state, _)| {
            state
                .last_error()
                .map(|e| format!("{kind} watch failing ({e})"))
        })
        .chain(sts_failures.iter().cloned())
        .collect();
    if failing.is_empty() {
        (true, format!("ready: {known} known\n"))
    } else {
        (
            true,
            format!(
                "degraded: {}; serving the last known {known}\n",
                failing.join("; ")
            ),
        )
    }
}

/// Serves the probes on `listener` until the process ends.
pub async fn serve(listener: TcpListener, watches: Watches, sessions: Sessions) {
    let watches = Arc::new(watches);
    while let Ok((mut stream, _)) = listener.accept().await {
        let watches = Arc::clone(&watches);
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (ok, body) = match path {
                "/healthz" => (true, "ok\n".to_owned()),
                "/readyz" => readiness(&watches, &sessions.failures()),
                _ => (false, "not found\n".to_owned()),
            };
            let status = match (ok, path) {
                (true, _) => "200 OK",
                (false, "/readyz") => "503 Service Unavailable",
                (false, _) => "404 Not Found",
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
