//! The report's `options`: ghz's `runner.Options`, field for field (JSON keys, types and `omitempty` as ghz's
//! struct tags have them), plus offload's own keys, which Go's decoder skips: `open-loop`, `latency-from`,
//! `open-loop-rps` and `lb-strategy`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn zero(v: &u64) -> bool {
    *v == 0
}

fn no(v: &bool) -> bool {
    !*v
}

/// How a run was configured, echoed in the report (and read back by `merge` and `diff`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Options {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub call: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proto: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protoset: String,
    #[serde(rename = "import-paths", skip_serializing_if = "Vec::is_empty")]
    pub import_paths: Vec<String>,
    #[serde(rename = "enable-compression", skip_serializing_if = "no")]
    pub enable_compression: bool,

    #[serde(skip_serializing_if = "String::is_empty")]
    pub cacert: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cname: String,
    #[serde(rename = "skipTLS", skip_serializing_if = "no")]
    pub skip_tls: bool,
    pub insecure: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub authority: String,

    /// Calls per second (ghz: an integer); 0 when not rate-limited.
    #[serde(skip_serializing_if = "zero")]
    pub rps: u64,
    #[serde(rename = "load-schedule")]
    pub load_schedule: String,
    #[serde(rename = "load-start")]
    pub load_start: u64,
    #[serde(rename = "load-end")]
    pub load_end: u64,
    #[serde(rename = "load-step")]
    pub load_step: i64,
    /// Nanoseconds.
    #[serde(rename = "load-step-duration")]
    pub load_step_duration: u64,
    /// Nanoseconds.
    #[serde(rename = "load-max-duration")]
    pub load_max_duration: u64,

    #[serde(skip_serializing_if = "zero")]
    pub concurrency: u64,
    #[serde(rename = "concurrency-schedule")]
    pub concurrency_schedule: String,
    #[serde(rename = "concurrency-start")]
    pub concurrency_start: u64,
    #[serde(rename = "concurrency-end")]
    pub concurrency_end: u64,
    #[serde(rename = "concurrency-step")]
    pub concurrency_step: i64,
    /// Nanoseconds.
    #[serde(rename = "concurrency-step-duration")]
    pub concurrency_step_duration: u64,
    /// Nanoseconds.
    #[serde(rename = "concurrency-max-duration")]
    pub concurrency_max_duration: u64,

    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(rename = "async", skip_serializing_if = "no")]
    pub async_: bool,

    #[serde(skip_serializing_if = "zero")]
    pub connections: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "zero")]
    pub duration: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "zero")]
    pub timeout: u64,
    /// Nanoseconds.
    #[serde(rename = "dial-timeout", skip_serializing_if = "zero")]
    pub dial_timeout: u64,
    /// Nanoseconds.
    #[serde(rename = "keepalive", skip_serializing_if = "zero")]
    pub keepalive: u64,

    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    pub binary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,

    #[serde(rename = "CPUs")]
    pub cpus: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,

    #[serde(rename = "skipFirst", skip_serializing_if = "zero")]
    pub skip_first: u64,
    #[serde(rename = "count-errors", skip_serializing_if = "no")]
    pub count_errors: bool,

    /// Not written: the report's top-level `tags`.
    #[serde(skip)]
    pub tags: Option<BTreeMap<String, String>>,

    /// offload: calls were sent on a fixed schedule (`--rps` or a load schedule) whatever the server did.
    #[serde(rename = "open-loop")]
    pub open_loop: bool,
    /// offload: where each latency starts: `scheduled send time` (open loop) or `send time` (closed loop).
    #[serde(rename = "latency-from")]
    pub latency_from: String,
    /// offload: the exact open-loop rate when `rps` (an integer, as ghz's) had to round it.
    #[serde(rename = "open-loop-rps", skip_serializing_if = "Option::is_none")]
    pub open_loop_rps: Option<f64>,
    /// offload: `pick_first` or `round_robin`, when given.
    #[serde(rename = "lb-strategy", skip_serializing_if = "String::is_empty")]
    pub lb_strategy: String,
}

impl Options {
    /// Options for a run of `call` on `host` (everything else at ghz's zero values, schedules `const`).
    pub fn new(call: impl Into<String>, host: impl Into<String>) -> Self {
        Self {
            call: call.into(),
            host: host.into(),
            load_schedule: "const".into(),
            concurrency_schedule: "const".into(),
            latency_from: "send time".into(),
            ..Self::default()
        }
    }

    /// Marks the run open-loop at `rps` calls per second (ghz's integer `rps`, and the exact rate beside it when
    /// it is not whole).
    pub fn open_loop_at(mut self, rps: Option<f64>) -> Self {
        if let Some(rate) = rps {
            self.open_loop = true;
            self.latency_from = "scheduled send time".into();
            self.rps = rate.round() as u64;
            self.open_loop_rps = (rate.fract() != 0.0).then_some(rate);
        }
        self
    }
}
