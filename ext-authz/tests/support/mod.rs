//! Helpers shared by the integration tests that talk to a Kubernetes API. Each test crate uses
//! a different part of them.
#![allow(dead_code)]

pub mod authz_fixture;
pub mod fake_api_server;
