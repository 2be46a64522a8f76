//! Operator input: the wasm filter's plugin configuration (JSON) and ext-authz's configuration
//! file (YAML). Anything may be refused, nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3mesh_ext_authz::config::Config;
use s3mesh_filter::config::FilterConfig;

fuzz_target!(|input: (Vec<u8>, String)| {
    let (filter, authz) = input;
    let _ = FilterConfig::parse(&filter);
    let _ = Config::from_yaml(&authz, std::path::Path::new("/etc/s3mesh/ext-authz.yaml"));
});
