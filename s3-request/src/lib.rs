//! What s3mesh understands about an S3 request, in plain Rust with no I/O.
//!
//! Shared by the wasm filter (inside Envoy, `wasm32-wasip1`) and the ext-authz service, so both
//! agree on the canonical form of a request target, on which operation a request is, on which
//! headers belong to s3mesh, and on how an error looks to an S3 client.

pub mod audit;
pub mod chunk_signing;
pub mod error;
pub mod headers;
pub mod operation;
pub mod request_target;

pub use error::S3Error;
pub use operation::{Operation, OperationClass, S3Request};
pub use request_target::RequestTarget;
