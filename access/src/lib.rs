//! The access decision, shared by ext-authz (a native service) and the wasm filter (inside
//! Envoy, `wasm32-wasip1`): plain Rust, no I/O.
//!
//! ext-authz is the one authority over identity, policy and credentials. It decides either per
//! request (Envoy's ext_authz filter asks it every time) or by [`grant`]: it hands the filter,
//! for one caller, the [`rules`] that apply to it and a day-scoped key per credential profile,
//! for a short time, and the filter then decides and signs in process. Both paths run the same
//! [`decision::decide`] on the same [`request::Request`], so a request gets the same answer,
//! word for word, either way.

pub mod decision;
pub mod grant;
pub mod request;
pub mod rules;
pub mod signing;
