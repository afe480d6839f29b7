//! `offload-loadgen`: a gRPC load generator in ghz's image — the same flags, config files and JSON report — plus
//! open-loop sending measured from each call's scheduled time, and p99.9. It calls any method of any service.
//!
//! It knows nothing of the servers it loads but their contract (`offload-proto`). Layout, in the order a call
//! flows: [`call`] is offload's own methods and the typed client that sends them; for any other service,
//! [`descriptors`] finds the method (by [`reflection`], `.proto` files or a protoset), [`request`] builds each
//! call's messages and metadata from [`json`] and ghz's [`template`]s, and [`dynamic_call`] sends them through
//! the [`codec`] in any of gRPC's four call shapes. [`runner`] is how calls are sent (closed or open loop, bounded
//! in count and time), [`recording`] what was seen (latency histogram and status counts), [`report`] ghz's report
//! shape; [`load`] is the ghz-like command built from them; [`duration`] reads durations as ghz writes them.

pub mod call;
pub mod codec;
pub mod config;
pub mod connect;
pub mod descriptors;
pub mod duration;
pub mod dynamic_call;
pub mod format;
pub mod html;
pub mod json;
pub mod load;
pub mod recording;
pub mod reflection;
pub mod report;
pub mod report_options;
pub mod request;
pub mod runner;
pub mod schedule;
pub mod skip_tls;
pub mod template;
