//! `offload-bench`: a gRPC load generator in ghz's image (same flags, same JSON report, plus open-loop sending
//! and p99.9) and the `compare` command that answers the project's question: what does each execution mode cost
//! under the same mixed load?
//!
//! Layout: [`call`] is what is sent, [`runner`] how (closed or open loop), [`recording`] what was seen,
//! [`report`] ghz's JSON shape; [`load`] is the ghz-like command, [`compare`] the main job, [`kernels`] the
//! in-process kernel benchmark; [`reliability`] the fault, overload and soak scenarios; [`child`] runs servers
//! as child processes, [`scrape`] reads their `/metrics`.

pub mod call;
pub mod child;
pub mod compare;
pub mod kernels;
pub mod load;
pub mod recording;
pub mod reliability;
pub mod report;
pub mod runner;
pub mod scrape;
