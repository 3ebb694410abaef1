//! Server groups (clusters), their servers and their live state.

pub mod group;
pub mod pool;
pub mod server;

pub use group::{ServerGroup, StateRegistry};
pub use server::{InFlightGuard, Server, ServerState};
