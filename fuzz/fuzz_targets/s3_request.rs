//! A client's request head through the `pre` filter's logic: virtual-host rewriting, request
//! target canonicalization, operation classification. It must never panic, and what it lets
//! through must already be canonical (ext_authz signs exactly that).
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3mesh_s3_request::RequestTarget;
use s3mesh_filter::config::PreConfig;
use s3mesh_filter::pre::{inspect, RequestHead};

fuzz_target!(|input: (String, String, String, Option<String>, Vec<String>)| {
    let (method, authority, path, copy_source, header_names) = input;
    let config = PreConfig {
        virtual_host_domains: vec!["localhost".to_owned(), "s3.example.com".to_owned()],
        ..PreConfig::default()
    };
    let head = RequestHead {
        method: &method,
        authority: &authority,
        path: &path,
        copy_source: copy_source.as_deref(),
    };
    if let Ok(changes) = inspect(&config, &head, header_names.iter().map(String::as_str)) {
        let forwarded = changes.new_path.as_deref().unwrap_or(&path);
        let target = RequestTarget::canonicalize(forwarded).expect("a forwarded target parses");
        assert_eq!(target.to_string(), forwarded, "a forwarded target is canonical");
    }
});
