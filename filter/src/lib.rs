//! The s3mesh filter's logic: plain Rust that knows nothing of its host.
//!
//! Envoy runs it through a shell that makes the host calls: `wasm-filter/` (proxy-wasm, the
//! portable default) or `native-filter/` (an Envoy dynamic module). The filter runs as two
//! instances, each told its role in its configuration ([`config`]), or in grant mode as one
//! instance of role `both` (`pre` then `post`):
//! - role `pre`, before authorization ([`pre`], through the shell's [`pre::Host`]): removes
//!   headers clients must not set, puts the request target into canonical encoding (so what is
//!   signed is what Envoy forwards), and classifies the S3 operation;
//! - role `post`, after authorization ([`post`], one stream through the shell's [`post::Host`]):
//!   in grant mode decides and signs with the caller's grant ([`grants`]); names the upstream
//!   endpoints to try, best first, and learns from how each request went ([`endpoint`]);
//!   re-signs the chunks of chunk-signed uploads ([`chunk_resign`]).
//!
//! Tests run on the host and, compiled to `wasm32-wasip1`, under Node's WASI (`make test-wasm`).

pub mod chunk_resign;
pub mod config;
pub mod endpoint;
pub mod grants;
pub mod post;
pub mod pre;
mod random;
pub mod read_cache;
pub mod signature_diagnosis;
pub mod usage;
