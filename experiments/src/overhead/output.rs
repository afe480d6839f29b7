//! The benchmark's table: each run's median over the rounds (throughput, latency, CPU per call per process), then
//! the same-round ratios the project's overhead goals are set on, each beside its goal, with the load average the machine had
//! (the servers and h2load share its cores with whatever else runs).

use std::{fmt::Write as _, path::Path, path::PathBuf};

use super::{h2load::Load, measure::Run, servers::Target};
use crate::goals;

/// The runs of one round.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Echo, proxy, direct, gateway at the offered load.
    pub parallel: Vec<Run>,
    /// The same, one call at a time.
    pub serial: Vec<Run>,
}

impl Round {
    fn find(runs: &[Run], target: Target) -> Option<&Run> {
        runs.iter().find(|r| r.target == target)
    }

    fn throughput(&self, target: Target) -> f64 {
        Self::find(&self.parallel, target).map_or(f64::NAN, |r| r.outcome.throughput)
    }

    fn serial_p50(&self, target: Target) -> f64 {
        Self::find(&self.serial, target).map_or(f64::NAN, |r| r.outcome.quantile(0.5).as_secs_f64())
    }

    /// This round's value of each of [`RATIOS`], in order.
    fn ratios(&self) -> Vec<f64> {
        vec![
            self.throughput(Target::Direct) / self.throughput(Target::Echo),
            self.throughput(Target::Gateway) / self.throughput(Target::Direct),
            self.serial_p50(Target::Gateway) / self.serial_p50(Target::Direct),
        ]
    }

    /// This round's value of each of [`FLOORS`], in order.
    fn floors(&self) -> Vec<f64> {
        vec![
            self.throughput(Target::Proxy) / self.throughput(Target::Echo),
            self.serial_p50(Target::Proxy) / self.serial_p50(Target::Echo),
        ]
    }
}

/// A ratio's name (as the table prints it, one word), what it compares, and its goal ([`crate::goals`]).
const RATIOS: [(&str, Goal); 3] = [
    // A bare tonic server is the floor: ours adds health, metrics, spans, admission and deadlines to the same path.
    ("compute/echo-throughput", Goal::AtLeast(goals::COMPUTE_OVER_ECHO_THROUGHPUT)),
    // The gateway does one server call and one client call per request: its floor is the bare proxy's (FLOORS).
    ("gateway/direct-throughput", Goal::AtLeast(goals::HOP_THROUGHPUT)),
    // One more loopback round trip would be 2.0; the bare proxy's ratio (FLOORS) is what tonic does here.
    ("gateway/direct-serial-p50", Goal::AtMost(goals::HOP_SERIAL_P50)),
];

/// The hop's ratios between bare tonic servers (the proxy in front of the echo): what the gateway's two ratios
/// would be if the gateway and compute cost nothing of their own on this machine.
const FLOORS: [&str; 2] = ["proxy/echo-throughput", "proxy/echo-serial-p50"];

#[derive(Debug, Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Self::AtLeast(goal) => value >= goal,
            Self::AtMost(goal) => value <= goal,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::AtLeast(goal) => format!(">= {goal:.2}"),
            Self::AtMost(goal) => format!("<= {goal:.2}"),
        }
    }
}

/// Everything the rounds measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub offered: Load,
    pub serial: Load,
    pub rounds: Vec<Round>,
}

/// The median of `values` (NaN when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// The `i`-th ratio of every round: its median, and each round's value as printed.
fn column(per_round: &[Vec<f64>], i: usize) -> (f64, String) {
    let values: Vec<f64> = per_round.iter().map(|r| r[i]).collect();
    let rounds: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    (median(values), rounds.join(" "))
}

/// The machine's 1-, 5- and 15-minute load averages, as `/proc/loadavg` has them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

impl Report {
    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nFactorial(1) INLINE, h2load {} connections x {} streams for {:?} (serial: 1 x 1 for {:?}), {} rounds; {} cores, load average {}",
            self.offered.connections,
            self.offered.streams,
            self.offered.duration,
            self.serial.duration,
            self.rounds.len(),
            crate::available_cores(),
            load_average()
        );
        let _ = writeln!(
            out,
            "\n{:<16} {:>9} {:>8} {:>8} {:>7}  cpu us/call",
            "run", "calls/s", "p50 us", "p99 us", "failed"
        );
        let rows = [
            ("echo", Target::Echo, false),
            ("proxy", Target::Proxy, false),
            ("direct", Target::Direct, false),
            ("gateway", Target::Gateway, false),
            ("echo-serial", Target::Echo, true),
            ("proxy-serial", Target::Proxy, true),
            ("direct-serial", Target::Direct, true),
            ("gateway-serial", Target::Gateway, true),
        ];
        for (name, target, serial) in rows {
            let runs: Vec<&Run> = self
                .rounds
                .iter()
                .filter_map(|r| Round::find(if serial { &r.serial } else { &r.parallel }, target))
                .collect();
            let Some(first) = runs.first() else { continue };
            let of = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(|r| f(r)).collect());
            let cpu: Vec<String> = first
                .cpu_us_per_call
                .iter()
                .enumerate()
                .map(|(i, (process, _))| format!("{process} {:.1}", of(&|r| r.cpu_us_per_call[i].1)))
                .collect();
            let _ = writeln!(
                out,
                "{name:<16} {:>9.0} {:>8.0} {:>8.0} {:>7.0}  {}",
                of(&|r| r.outcome.throughput),
                of(&|r| r.outcome.quantile(0.5).as_secs_f64() * 1e6),
                of(&|r| r.outcome.quantile(0.99).as_secs_f64() * 1e6),
                of(&|r| r.outcome.failed as f64),
                cpu.join("  ")
            );
        }
        let _ = writeln!(out, "\n{:<26} {:>7}  {:<8} {:<4}  per round", "ratio", "median", "goal", "met");
        let per_round: Vec<Vec<f64>> = self.rounds.iter().map(Round::ratios).collect();
        for (i, (name, goal)) in RATIOS.iter().enumerate() {
            let (value, rounds) = column(&per_round, i);
            let met = if goal.met(value) { "yes" } else { "no" };
            let _ = writeln!(out, "{name:<26} {value:>7.2}  {:<8} {met:<4}  {rounds}", goal.describe());
        }
        let _ =
            writeln!(out, "\nfloor of the hop: a bare tonic proxy (server + Channel client) in front of the bare echo");
        let _ = writeln!(out, "{:<26} {:>7}  per round", "ratio", "median");
        let per_round: Vec<Vec<f64>> = self.rounds.iter().map(Round::floors).collect();
        for (i, name) in FLOORS.iter().enumerate() {
            let (value, rounds) = column(&per_round, i);
            let _ = writeln!(out, "{name:<26} {value:>7.2}  {rounds}");
        }
        out
    }

    /// Writes the table to `overhead.txt` in `folder`; the paths written.
    pub fn write(&self, folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let path = folder.join("overhead.txt");
        std::fs::write(&path, self.table())?;
        Ok(vec![path])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_missing_values() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, f64::NAN, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn goals_are_bounds_on_the_right_side() {
        assert!(Goal::AtLeast(0.85).met(0.9) && !Goal::AtLeast(0.85).met(0.8));
        assert!(Goal::AtMost(2.2).met(2.0) && !Goal::AtMost(2.2).met(2.5));
    }
}
