//! The two charts of the report, drawn with the load generator's own SVG charts: probe latency percentiles per mode
//! (log scale, the blocked runtime is orders of magnitude off), and heavy throughput per mode against each round's
//! ideal. Drawn into a string, so `report.html` can open on the first while the folder keeps both as files.

use offload_loadgen::html::bars::{Bars, Scale, Series, grouped};

use super::scenario::RoundResult;

/// Probe latency percentiles drawn, with their colours (the report's p50 and p99 colours, and a red for the tail).
const PERCENTILES: [(&str, f64, &str); 3] =
    [("p50", 50.0, "#2f6fb0"), ("p99", 99.0, "#e07b00"), ("p99.9", 99.9, "#c8312f")];

/// Grouped bars: for each round, probe latency at p50, p99 and p99.9, in ms on a log axis.
pub fn probe_latency(rounds: &[RoundResult], title: &str) -> String {
    let groups: Vec<String> = rounds.iter().map(|r| r.label.clone()).collect();
    let series: Vec<Series> = PERCENTILES
        .iter()
        .map(|&(name, percentile, color)| Series {
            name,
            color,
            values: rounds.iter().map(|r| r.probe.percentile(percentile).as_secs_f64() * 1e3).collect(),
        })
        .collect();
    grouped(&Bars {
        title,
        axis: "latency (ms, log scale)",
        groups: &groups,
        series: &series,
        marks: None,
        scale: Scale::Log,
    })
}

/// Bars: heavy jobs completed per second for each mode, each with its round's ideal `cores / job time` (`ideals`,
/// one per round) as a mark across its bar.
pub fn heavy_throughput(rounds: &[RoundResult], ideals: &[f64]) -> String {
    let (rounds, ideals): (Vec<&RoundResult>, Vec<f64>) =
        rounds.iter().zip(ideals).filter(|(r, _)| r.heavy.is_some()).map(|(r, i)| (r, *i)).unzip();
    let groups: Vec<String> = rounds.iter().map(|r| r.label.clone()).collect();
    let completed = rounds.iter().map(|r| r.heavy.as_ref().map_or(0.0, |h| h.ok_rps())).collect();
    let series = [Series { name: "completed", color: "#2f6fb0", values: completed }];
    grouped(&Bars {
        title: "Heavy jobs completed per second, against each round's ideal (cores / job time)",
        axis: "jobs / s",
        groups: &groups,
        series: &series,
        marks: Some(("ideal", &ideals)),
        scale: Scale::Linear,
    })
}
