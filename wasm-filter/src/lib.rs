//! The s3mesh filter's proxy-wasm shell, loaded into Envoy (`wasm32-wasip1`, V8 runtime): the
//! portable build, what Istio's WasmPlugin and ECDS load.
//!
//! One module, two filter instances sharing one `vm_id`, each told its role (`pre` or `post`)
//! in its plugin configuration. All the logic is in `s3mesh-filter` (`filter/`); `shell` holds
//! only the proxy-wasm contexts and host calls around it, and is compiled only into the wasm
//! module.

// Only Envoy provides the host functions the shell imports: not in test binaries.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod shell;
