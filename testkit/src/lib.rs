//! `offload-testkit`: what the integration tests and the experiments share to put real servers under test.
//!
//! - [`apt`]: Debian packages a test needs, installed when running as root.
//! - [`binaries`]: the workspace's server binaries, built on demand in the caller's profile.
//! - [`child`]: a server as a child process: its address read from its log, its CPU, memory and descriptors read
//!   from `/proc`, stopped with SIGTERM.
//! - [`fault_proxy`]: an unlucky network between two processes: latency, a blackhole, resets, a bandwidth limit.
//! - [`cluster`]: a gateway in front of several compute replicas, each a process that can be killed or restarted.
//! - [`job`]: sizing a job to take X ms of one core, measured by the server itself.
//! - [`scrape`]: `/metrics` read and parsed back as Prometheus text.
//! - [`prometheus`]: `promtool` and a real Prometheus server on loopback, queried through its HTTP API.
//! - [`raw`]: HTTP/2 without gRPC's guard rails, for what a well-behaved client never sends.
//! - [`hostile`]: a gRPC server that misbehaves on purpose, for what a well-behaved server never sends.
//! - [`foreign`]: a gRPC service that is not offload's (Python), for the load generator's tests.
//! - [`python`]: Python peers and checkers in private virtualenvs under `target/`.
//! - [`browser`]: headless Chromium, for the pages people look at (their DOM as the browser built it, a screenshot).
//! - [`pages`]: the user-facing Markdown pages, their links, headings and the offload command lines they show.
//!
//! It depends on the servers' public contract only (`offload-proto`, their flags and log lines), never on their
//! code: what it tests is what a user runs.

pub mod apt;
pub mod binaries;
pub mod browser;
pub mod child;
pub mod cluster;
pub mod fault_proxy;
pub mod foreign;
pub mod hostile;
pub mod job;
pub mod pages;
pub mod prometheus;
pub mod python;
pub mod raw;
pub mod scrape;
pub mod skip;

use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;

/// A channel to `url` (`http://host:port`), connected, with Nagle off as the load generator has it.
pub async fn channel(url: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(url.to_owned())
        .with_context(|| format!("not a URL: {url}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}
