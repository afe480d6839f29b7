//! The integration tests, one binary: real servers on `127.0.0.1:0` (in this process on runtimes of their own, or
//! as child processes of the real binaries), spoken to over gRPC, raw HTTP/2 and Python's `grpcio`.
//!
//! One module per subject. A single binary links the services once: separate test binaries cost most of a cold
//! build's time.

mod bad_input;
mod compression;
mod compute_cli;
mod deadlines_and_shutdown;
mod deploy;
mod discovery;
mod doc_pages;
mod foreign_service;
mod gateway_cli;
mod hostile_clients;
mod metrics;
mod module_cycles;
mod monitoring;
mod mtls;
mod network_faults;
mod one_connection;
mod prometheus;
mod python_client;
mod queued_deadlines;
mod replicas;
mod service_pair;
mod silent_connections;
mod slow_readers;
mod stall_verdict;
mod stalls;
mod supply_chain;
mod tonic_without_reflection;
mod tracing;
mod unread_waves;
mod upstream_wait;
