//! The process around the data plane: the worker threads that serve
//! connections (one current-thread tokio runtime per core, each with its own
//! accept sockets, pools and counters).

pub mod workers;

pub use workers::Workers;
