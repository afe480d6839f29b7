//! `offload-loadgen`: a gRPC load generator in ghz's image — the same flags, config files and JSON report — plus
//! open-loop sending measured from each call's scheduled time, and p99.9.
//!
//! It knows nothing of the servers it loads but their contract (`offload-proto`). Layout, in the order a call
//! flows: [`call`] is what is sent and the client that sends it, [`runner`] how (closed or open loop, bounded in
//! count and time), [`recording`] what was seen (latency histogram and status counts), [`report`] ghz's report
//! shape; [`load`] is the ghz-like command built from them; [`duration`] reads durations as ghz writes them.

pub mod call;
pub mod duration;
pub mod load;
pub mod recording;
pub mod report;
pub mod runner;
