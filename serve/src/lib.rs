//! Server plumbing shared by `offload-compute` and `offload-gateway`, written once so both behave the same way
//! under load, deadlines and shutdown.
//!
//! - [`admin`]: the admin port (`/metrics`) on its own thread and runtime, with timeouts and a connection cap.
//! - [`admission`]: a bounded number of requests in flight, fixed or adapted to latency, shared fairly across
//!   connections, the rest refused at once with `RESOURCE_EXHAUSTED`.
//! - [`connection`]: the gRPC port's connections: a cap, and a timeout for the first bytes.
//! - [`deadline`]: the client's `grpc-timeout`, as an instant the work can check and the gateway can forward.
//! - [`drain`]: SIGTERM/SIGINT, then stop accepting and drain in-flight requests within a bounded grace period.
//! - [`health`]: the gRPC health service, whose `Watch` streams end at the drain.
//! - [`flags`]: parsers for flag values such as durations (`15s`, `500ms`).
//! - [`limits`]: the flags bounding what one client can make a server hold.
//! - [`runtime`]: the tokio runtime flavour and size, chosen on the command line.
//! - [`stall`]: the stall detector, naming the call whose poll held a worker thread past `--stall-threshold`.
//! - [`server`]: the skeleton both servers are built on (health, reflection, metrics, admin port, drain).
//! - [`shards`]: `--runtime thread-per-core`, connections spread over threads each with a runtime of its own.
//! - [`stream`]: one HTTP/2 stream's bounds: its arrival, its request's read timeout, its reply's slot and send
//!   timeout.
//! - [`transport`]: HTTP/2 and TLS settings, reflection.
//!
//! A server's request path is a tower stack of typed layers, below the decoding of the message: the ones both
//! servers share are [`deadline::DeadlineLayer`] and [`admission::AdmissionLayer`] (and, in `offload-telemetry`,
//! the request metrics); in front of every route, [`stall::StallLayer`].

pub mod admin;
pub mod admission;
pub mod arrival;
pub mod batched_writes;
pub mod connection;
pub mod deadline;
pub mod drain;
pub mod flags;
pub mod health;
pub mod limits;
pub mod listener;
pub mod runtime;
pub mod server;
pub mod shards;
pub mod spread;
pub mod stall;
pub mod stream;
pub mod transport;
