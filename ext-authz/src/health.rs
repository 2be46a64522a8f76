//! `/healthz` (the process serves) and `/readyz` (it can decide) over plain HTTP, for
//! Kubernetes probes. Readiness is refused until every identity source can answer (the first
//! pod list has arrived); a pod watch that is failing afterwards leaves the service ready, with
//! the last known pods, and says `degraded` with the reason, since refusing readiness would
//! take every replica out at once and fail every request closed.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::identity::kubernetes::PodIdentities;

/// Readiness as `(ready, text)`.
pub fn readiness(pods: Option<&PodIdentities>) -> (bool, String) {
    let Some(pods) = pods else {
        return (true, "ready\n".to_owned());
    };
    let state = pods.state();
    if !state.synced() {
        return (
            false,
            "not ready: the pod list has not been loaded yet\n".to_owned(),
        );
    }
    match (state.connected(), state.last_error()) {
        (false, Some(error)) => (
            true,
            format!(
                "degraded: pod watch failing ({error}); serving {} known pods\n",
                pods.len()
            ),
        ),
        _ => (true, format!("ready: {} pods known\n", pods.len())),
    }
}

/// Serves the probes on `listener` until the process ends.
pub async fn serve(listener: TcpListener, pods: Option<PodIdentities>) {
    let pods = Arc::new(pods);
    while let Ok((mut stream, _)) = listener.accept().await {
        let pods = Arc::clone(&pods);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (ok, body) = match path {
                "/healthz" => (true, "ok\n".to_owned()),
                "/readyz" => readiness(pods.as_ref().as_ref()),
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
