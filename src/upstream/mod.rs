//! Server groups (clusters), their servers and their live state.

pub mod edge;
pub mod group;
pub mod pool;
pub mod proxy_protocol;
pub mod queue;
pub mod server;

pub use group::{ServerGroup, StateRegistry};
pub use server::{InFlightGuard, Server, ServerState};
