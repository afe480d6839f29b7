//! What `stall` shows: a small table of the two phases, the verdict with the rule behind it, and the same as JSON
//! for scripts (`--json`).

use std::{fmt::Write as _, time::Duration};

use offload_loadgen::recording::Recording;
use serde_json::{Value, json};

use super::{
    StallArgs,
    verdict::{Judgement, Rule},
};

/// A finished measurement.
#[derive(Debug)]
pub struct Outcome {
    target: String,
    call: String,
    probe: String,
    concurrency: usize,
    rps: f64,
    idle: Recording,
    loaded: Recording,
    load: Recording,
    rule: Rule,
    judgement: Judgement,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Outcome {
    pub fn new(args: &StallArgs, probe: &str, idle: Recording, loaded: Recording, load: Recording, rule: Rule) -> Self {
        let judgement = rule.judge(idle.percentile(99.0), loaded.percentile(99.0));
        Self {
            target: args.target.clone(),
            call: args.call.clone(),
            probe: probe.to_owned(),
            concurrency: args.concurrency,
            rps: args.rps,
            idle,
            loaded,
            load,
            rule,
            judgement,
        }
    }

    /// The table and the verdict, for a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target {} · load: {} ×{} closed loop · probe: {} at {}/s open loop (latency from the scheduled send time)",
            self.target, self.call, self.concurrency, self.probe, self.rps
        );
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "probe", "calls", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        );
        for (name, r) in [("idle", &self.idle), ("loaded", &self.loaded)] {
            let _ = writeln!(
                out,
                "{:<8} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
                name,
                r.count(),
                ms(r.percentile(50.0)),
                ms(r.percentile(99.0)),
                ms(r.percentile(99.9)),
                ms(r.percentile(100.0)),
                r.failed()
            );
        }
        let _ = writeln!(
            out,
            "load: {:.1} calls/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
            self.load.ok_rps(),
            ms(self.load.percentile(50.0)),
            ms(self.load.percentile(99.0)),
            self.load.failed()
        );
        let _ = writeln!(
            out,
            "verdict: {} — loaded p99 is {:.1}× idle p99 and {:.2} ms above it (rule: {})",
            self.judgement.verdict,
            self.judgement.ratio,
            ms(self.judgement.extra),
            self.rule.describe()
        );
        out
    }

    /// The numbers and the verdict, for `--json`.
    pub fn json(&self) -> Value {
        let phase = |r: &Recording| {
            json!({
                "count": r.count(),
                "errors": r.failed(),
                "p50_ms": ms(r.percentile(50.0)),
                "p99_ms": ms(r.percentile(99.0)),
                "p999_ms": ms(r.percentile(99.9)),
                "max_ms": ms(r.percentile(100.0)),
            })
        };
        json!({
            "target": self.target,
            "call": self.call,
            "probe": self.probe,
            "concurrency": self.concurrency,
            "probe_rps": self.rps,
            "idle": phase(&self.idle),
            "loaded": phase(&self.loaded),
            "load": {
                "count": self.load.count(),
                "errors": self.load.failed(),
                "rps": self.load.ok_rps(),
                "p50_ms": ms(self.load.percentile(50.0)),
                "p99_ms": ms(self.load.percentile(99.0)),
            },
            "ratio": self.judgement.ratio,
            "extra_ms": ms(self.judgement.extra),
            "verdict": self.judgement.verdict.as_str(),
            "rule": {
                "min_ratio": self.rule.min_ratio,
                "min_extra_ms": ms(self.rule.min_extra),
                "text": self.rule.describe(),
            },
        })
    }
}
