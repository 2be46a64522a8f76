//! What ext-authz reads from the Kubernetes API besides pods: [`policy_resource`] objects and
//! credential Secrets ([`resources`]), and the bookkeeping every watch shares
//! ([`watch_state`]).

pub mod policy_resource;
pub mod resources;
pub mod watch_state;
