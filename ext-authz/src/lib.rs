//! The s3mesh ext_authz service: runs beside Envoy (a Deployment in Kubernetes, a local process
//! in `make run`) and answers Envoy's `envoy.service.auth.v3.Authorization/Check`.
//!
//! For every S3 request Envoy asks: who is calling ([`identity`]), may the proxy that asks
//! speak for them ([`callers`]), may they do this ([`policy`]), and with which credentials
//! ([`credentials`]). An allowed request comes back
//! with SigV4 headers ([`s3mesh_access::signing`]) so that pods hold no S3 keys; a refused one with an S3 XML
//! error. [`check`] is that decision as plain Rust; [`service`] is the gRPC shell around it;
//! [`reload`] swaps in a changed configuration, from the file and, in a cluster, from the
//! policy objects and Secrets that [`kubernetes`] watches; [`health`] answers Kubernetes probes.

pub mod callers;
pub mod check;
pub mod config;
pub mod credentials;
pub mod health;
pub mod identity;
pub mod kubernetes;
pub mod policy;
pub mod reload;
pub mod service;
pub mod sts;
pub mod telemetry;
