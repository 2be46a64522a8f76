//! The s3mesh proxy-wasm filter, loaded into Envoy (`wasm32-wasip1`, V8 runtime).
//!
//! One module, two filter instances sharing one `vm_id`, each told its role in its plugin
//! configuration:
//! - role `pre`, before ext_authz ([`pre`]): removes headers clients must not set, puts the
//!   request target into canonical encoding (so what ext_authz signs is what Envoy forwards),
//!   and classifies the S3 operation;
//! - role `post`, after ext_authz ([`endpoint`]): names the upstream endpoints to try, best
//!   first, in `x-gateway-destination-endpoint` for Envoy's `override_host` load balancer, and
//!   re-signs the chunks of chunk-signed uploads ([`chunk_resign`]).
//!
//! Everything but `shell` is plain Rust that knows nothing of proxy-wasm; its tests run on the
//! host and, compiled to `wasm32-wasip1`, under Node's WASI (`make test-wasm`). `shell` is the
//! thin layer of host calls, compiled only into the wasm module.

pub mod chunk_resign;
pub mod config;
pub mod endpoint;
pub mod grants;
pub mod pre;

// Only Envoy provides the host functions the shell imports: not in test binaries.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod shell;
