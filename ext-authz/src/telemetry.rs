//! Logging set-up: `tracing` to stderr, level from `RUST_LOG` (default `info`), JSON lines
//! when `S3MESH_LOG_FORMAT=json`. No secret is ever passed to a log macro: credentials redact
//! themselves in `Debug`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("S3MESH_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
