//! The configuration shipped in `deploy/manifests/ext-authz.yaml` (rendered by
//! `deploy/render.py`) is one ext-authz accepts: it checks which sidecar asks, and its STS
//! profile example is valid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use s3mesh_ext_authz::callers::Verify;
use s3mesh_ext_authz::config::Config;
use serde::Deserialize;

#[test]
fn the_shipped_configmap_is_a_valid_configuration_that_verifies_callers() {
    let manifests =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/manifests/ext-authz.yaml");
    let text = std::fs::read_to_string(&manifests).unwrap();
    let configmap = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|o| o["kind"].as_str() == Some("ConfigMap"))
        .expect("a ConfigMap");
    let body = configmap["data"]["ext-authz.yaml"].as_str().unwrap();
    let config = Config::from_yaml(body, Path::new("/etc/s3mesh/ext-authz.yaml")).unwrap();
    assert_eq!(config.callers.verify, Verify::MeshIdentity);
    assert_eq!(config.callers.gateways.len(), 1);
    let sts = config.profiles["workloads-sts"]
        .sts
        .as_ref()
        .expect("the STS example");
    assert!(sts.session_policy && sts.role_arn.starts_with("arn:aws:iam::"));
}
