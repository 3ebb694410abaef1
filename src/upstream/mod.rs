//! Server groups (clusters), their servers and their live state.

pub mod body;
pub mod client_body;
pub mod connect;
pub mod discovered;
pub mod edge;
pub mod forward;
pub mod group;
pub mod h1;
pub mod h2;
pub mod h2_settings;
pub mod health;
pub mod lease;
pub mod pool;
pub mod proxy_protocol;
pub mod queue;
pub mod response;
pub mod server;
pub mod tls;

pub use group::{ServerGroup, StateRegistry};
pub use lease::Lease;
pub use response::{ResponseBody, UpstreamResponse};
pub use server::{InFlightGuard, Server, ServerState};
