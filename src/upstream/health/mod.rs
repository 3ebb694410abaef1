//! Health checking of a group's servers: the I/O side of health.
//!
//! * [`active`]: one probe scheduler task per group (pingora's background
//!   service loop): HTTP, TCP or gRPC ([`grpc`]) probes on their own short
//!   connections, made with the group's connector.
//! * [`passive`]: consecutive-failure ejection from real traffic, with
//!   doubling ejection times and Envoy's "never eject more than half" (it
//!   looks at the whole group, so it lives next to it).
//!
//! The settings, the rise/fall state machine, the ejection backoff and the
//! ejection clock are in [`crate::health`], below the balancers and this
//! module.

pub mod active;
pub mod grpc;
pub mod passive;
