//! `offload-loadgen`: a gRPC load generator in ghz's image — the same flags, config files and reports — plus
//! open-loop sending measured from each call's scheduled time, and p99.9. It calls any method of any service.
//!
//! It knows nothing of the servers it loads but their contract (`offload-proto`). Layout, in the order a call
//! flows: [`call`] is offload's own methods and the typed client that sends them; for any other service,
//! [`descriptors`] finds the method (by [`reflection`], `.proto` files or a protoset), [`request`] builds each
//! call's messages and metadata from [`json`] (or binary protobuf) and ghz's [`template`]s, and [`dynamic_call`]
//! sends them through the [`codec`] in any of gRPC's four call shapes, over the connections [`connect`] opens
//! (TLS, with [`skip_tls`] for `--skipTLS`). [`runner`] is how calls are sent (closed or open loop, shaped by the
//! [`schedule`]s, bounded in count and time), [`recording`] what was seen (its error texts bounded by [`error_texts`]), [`report`] ghz's report (its options
//! in [`report_options`]), written by [`format`] in every ghz output format ([`html`] for the page, with the
//! calls over time from [`timeline`]); [`load`] is the ghz-like command built from them, reading ghz's
//! [`config`] files (durations in Go's syntax, read by `offload-duration`); [`limits`] bounds every number a user or a server gives;
//! [`text`] escapes what a server says before a text output shows it; [`runtime`] is the client's tokio runtime.
//!
//! Past one generator and into CI: a report carries its histograms losslessly ([`histogram_codec`]) and second by
//! second ([`intervals`]), so [`merge`] adds the reports of a run's [`shard`]s exactly; [`threshold`]s fail a run
//! (and [`abort`] stops one early, through its [`cancel`]lation); [`diff`] gives a regression verdict with its confidence; and [`health`] says
//! whether the generator itself limited the run.

pub mod abort;
pub mod call;
pub mod cancel;
pub mod codec;
pub mod config;
pub mod connect;
pub mod descriptors;
pub mod diff;
pub mod dynamic_call;
pub mod error_texts;
pub mod format;
pub mod health;
pub mod histogram_codec;
pub mod html;
pub mod intervals;
pub mod json;
pub mod limits;
pub mod load;
pub mod merge;
pub mod recording;
pub mod reflection;
pub mod report;
pub mod report_options;
pub mod request;
pub mod runner;
pub mod runtime;
pub mod schedule;
pub mod shard;
pub mod skip_tls;
pub mod template;
pub mod text;
pub mod threshold;
pub mod timeline;
