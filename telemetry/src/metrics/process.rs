//! The `process_*` metrics every Prometheus client library exports (CPU seconds, resident and virtual memory,
//! open and maximum descriptors, start time, threads), under the same names and types, so the dashboards and alerts
//! operators already have for any other server work on ours unchanged.
//!
//! The values are read at each scrape by `metrics-process` (client_golang's collector ported to Rust, over
//! `procfs` on Linux); this module only encodes them through prometheus-client. A value the platform cannot give
//! is left out, as client_golang does.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

/// Registered once in the root registry (no `offload_` prefix, no `server` label: the names are the standard ones).
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = metrics_process::collector::collect();
        if let Some(seconds) = m.cpu_seconds_total {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            ("process_open_fds", "Number of open file descriptors", m.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", m.max_fds),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", m.virtual_memory_bytes),
            (
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes",
                m.virtual_memory_max_bytes,
            ),
            ("process_resident_memory_bytes", "Resident memory size in bytes", m.resident_memory_bytes),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                m.start_time_seconds,
            ),
            ("process_threads", "Number of OS threads in the process", m.threads),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            // i64 as client_golang's float would print it, without a fractional part (no value here nears 2^63).
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
