//! The reliability report: one summary row per scenario (calls offered, OK, failed, by status) and a section of
//! figures each, as markdown for the terminal, `report.md` and `docs/reliability.md`.

use std::{fmt::Write as _, time::Duration};

use tonic::Code;

use super::scenarios::{
    AdmissionPlan, Deadlines, NetworkFault, Overload, OverloadPlan, PROXIED, ReplicaLoss, RollingRestart, Sample, Soak,
    recording_of,
};
use offload_loadgen::recording::Recording;
use offload_testkit::child::Memory;

/// Distinct failure messages listed per scenario.
const MESSAGES_SHOWN: usize = 3;

/// The report being written.
#[derive(Debug)]
pub struct Report {
    summary: Vec<[String; 5]>,
    details: String,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            summary: vec![["scenario", "offered", "OK", "failed", "statuses"].map(str::to_owned)],
            details: String::new(),
        }
    }
}

impl Report {
    /// Replica loss: the kill, the retries, and the return.
    pub fn replica_loss(&mut self, r: &ReplicaLoss) {
        self.summary.push(row("replica loss (SIGKILL 1 of N)", &recording_of(&r.samples)));
        self.section("Replica loss", &r.samples);
        let _ = writeln!(
            self.details,
            "- {} SIGKILLed at {:.1} s and restarted at {:.1} s; calls retried on another replica: {}\n\
             - gateway still tried the dead replica for {} after the kill\n\
             - restarted replica served again {} after its restart\n- calls per replica: {:?}\n",
            r.killed,
            r.killed_at.as_secs_f64(),
            r.restarted_at.as_secs_f64(),
            r.retried,
            ms(r.routed_to_dead_for),
            r.back_in_rotation_after.map_or("never".to_owned(), ms),
            r.served_by
        );
    }

    /// A network fault on one replica's link: when it left rotation, what failed when, what the slowness cost.
    pub fn network_fault(&mut self, name: &str, r: &NetworkFault) {
        self.summary.push(row(name, &recording_of(&r.samples)));
        self.section(&format!("Network fault: {name}"), &r.samples);
        let failed = |from: Duration, to: Duration| {
            r.samples.iter().filter(|s| s.code != Code::Ok && s.sent >= from && s.sent < to).count()
        };
        let detected = r.fault_at + r.bound;
        let (on_it, elsewhere) = r.during_fault();
        let _ = writeln!(
            self.details,
            "- {:?} on the link to {PROXIED} from {:.1} s to {:.1} s; keepalive bound (interval + timeout) {}\n\
             - left rotation {} after the fault (the gateway's log line)\n\
             - calls retried on another replica: {}; the last one first sent to {PROXIED} {} after the fault\n\
             - failed calls sent before the fault: {}, within the bound after it: {}, later during the fault: {}, \
             after the heal: {}\n\
             - during the fault, calls served through that link: {} (p50 {}), by the others: {} (p50 {})\n\
             - back in rotation {} after the heal; calls per replica: {:?}\n",
            r.fault,
            r.fault_at.as_secs_f64(),
            r.healed_at.as_secs_f64(),
            ms(r.bound),
            r.left_rotation_after.map_or("never".to_owned(), ms),
            r.retried,
            ms(r.routed_to_it_for),
            failed(Duration::ZERO, r.fault_at),
            failed(r.fault_at, detected),
            failed(detected, r.healed_at),
            failed(r.healed_at, Duration::MAX),
            on_it.len(),
            ms(recording_of(on_it).percentile(50.0)),
            elsewhere.len(),
            ms(recording_of(elsewhere).percentile(50.0)),
            r.back_in_rotation_after.map_or("never".to_owned(), ms),
            r.served_by
        );
    }

    /// Rolling restart: each replica's exit and return.
    pub fn rolling_restart(&mut self, r: &RollingRestart) {
        self.summary.push(row("rolling restart (SIGTERM each)", &recording_of(&r.samples)));
        self.section("Rolling restart", &r.samples);
        let _ =
            writeln!(self.details, "- calls retried on another replica: {}; grace period {}", r.retried, ms(r.grace));
        for restart in &r.restarts {
            let _ = writeln!(
                self.details,
                "- {}: exit code {:?} {} after SIGTERM; serving again {} after restart",
                restart.id,
                restart.exit_code,
                ms(restart.exited_after),
                ms(restart.back_in_rotation_after)
            );
        }
        self.details.push('\n');
    }

    /// Overload: refusals, admitted latency, probes, memory, recovery.
    pub fn overload(&mut self, r: &Overload, plan: &OverloadPlan) {
        let during = recording_of(&r.during);
        let (title, limited_by) = match plan.admission {
            AdmissionPlan::AdaptiveGateway => ("Overload", "adaptive limit at the gateway".to_owned()),
            AdmissionPlan::PerReplica(n) => ("Overload, per-replica limit", format!("--max-inflight {n} per replica")),
        };
        self.summary.push(row(&format!("overload ({:.0}× capacity, {limited_by})", plan.factor), &during));
        self.section(title, &r.during);
        let ok: Vec<&Sample> = r.during.iter().filter(|s| s.code == Code::Ok).collect();
        let refused: Vec<&Sample> = r.during.iter().filter(|s| s.code == Code::ResourceExhausted).collect();
        let (before, admitted, after) = (recording_of(&r.before), recording_of(ok), recording_of(&r.after));
        let refused = recording_of(refused);
        let _ = writeln!(
            self.details,
            "- capacity {:.0} calls/s (closed loop straight to the replicas, one call in flight on each); offered {:.0} calls/s for {}\n\
             - admitted {:.0} calls/s ({:.0} % of capacity); refused with RESOURCE_EXHAUSTED: {} calls, p50 {} p99 {}\n\
             - admitted calls p50/p99: {} / {} (at half capacity before: {} / {}; after: {} / {}, {} of {} OK)\n\
             - health probes straight to a replica p50/p99: {} / {} before, {} / {} during ({} of {} OK)\n\
             - the gateway's concurrency limit during the overload (every 200 ms): {}; its ideal latency (ms): {}\n\
             - every process still running: {}; peak RSS: {}\n",
            r.capacity_rps,
            r.offered_rps,
            ms(plan.duration),
            admitted.count() as f64 / plan.duration.as_secs_f64(),
            100.0 * admitted.count() as f64 / plan.duration.as_secs_f64() / r.capacity_rps,
            refused.count(),
            ms(refused.percentile(50.0)),
            ms(refused.percentile(99.0)),
            ms(admitted.percentile(50.0)),
            ms(admitted.percentile(99.0)),
            ms(before.percentile(50.0)),
            ms(before.percentile(99.0)),
            ms(after.percentile(50.0)),
            ms(after.percentile(99.0)),
            after.ok(),
            after.count(),
            ms(r.probes_before.percentile(50.0)),
            ms(r.probes_before.percentile(99.0)),
            ms(r.probes_during.percentile(50.0)),
            ms(r.probes_during.percentile(99.0)),
            r.probes_during.ok(),
            r.probes_during.count(),
            spread(&r.gateway_limits),
            spread(&r.gateway_ideal_latencies.iter().map(|s| (s * 1e4).round() / 10.0).collect::<Vec<_>>()),
            r.all_running,
            r.peak_memory.iter().map(|(who, m)| format!("{who} {}", mib(m.peak))).collect::<Vec<_>>().join(", ")
        );
    }

    /// Deadlines: statuses, latency against the deadline, CPU freed.
    pub fn deadlines(&mut self, r: &Deadlines) {
        let recording = recording_of(&r.samples);
        self.summary.push(row("deadlines (100 ms vs 2 s jobs)", &recording));
        self.section("Deadlines", &r.samples);
        let mut freed = Recording::new();
        r.cpu_freed_after.iter().for_each(|d| freed.record(*d, Ok(())));
        let _ = writeln!(
            self.details,
            "- deadline {}; call latency p50 {} max {}\n\
             - from deadline to the replicas' CPU no longer growing (per wave of 10): p50 {} max {} \
             (10 ms CPU ticks, sampled every 20 ms)\n\
             - CPU used {:.2} s for jobs that would have cost {:.0} s uncancelled ({:.2} %)\n",
            ms(r.deadline),
            ms(recording.percentile(50.0)),
            ms(recording.percentile(100.0)),
            ms(freed.percentile(50.0)),
            ms(freed.percentile(100.0)),
            r.cpu_used.as_secs_f64(),
            r.cpu_if_uncancelled.as_secs_f64(),
            100.0 * r.cpu_used.as_secs_f64() / r.cpu_if_uncancelled.as_secs_f64()
        );
    }

    /// Soak: memory and descriptors as the calls add up.
    pub fn soak(&mut self, r: &Soak) {
        self.summary.push(row("soak (Factorial(20))", &r.recording));
        let _ = writeln!(self.details, "### Soak\n\n{} calls at {:.0} calls/s", r.recording.count(), r.recording.rps());
        let _ = writeln!(self.details, "\n| after calls | {} |", processes(&r.checkpoints[0].memory));
        let _ = writeln!(self.details, "|---|{}", "---|".repeat(r.checkpoints[0].memory.len()));
        for c in &r.checkpoints {
            let cells: Vec<String> = c
                .memory
                .iter()
                .zip(&c.fds)
                .map(|((_, m), (_, fds))| format!("{} RSS, {fds} fds", mib(m.rss)))
                .collect();
            let _ = writeln!(self.details, "| {} | {} |", c.calls, cells.join(" | "));
        }
        self.details.push('\n');
    }

    /// The summary table, then every section.
    pub fn render(&self) -> String {
        let mut table = String::new();
        for (i, row) in self.summary.iter().enumerate() {
            let _ = writeln!(table, "| {} |", row.join(" | "));
            if i == 0 {
                let _ = writeln!(table, "|{}", "---|".repeat(row.len()));
            }
        }
        format!("{table}\n{}", self.details)
    }

    fn section(&mut self, title: &str, samples: &[Sample]) {
        let r = recording_of(samples);
        let _ = writeln!(
            self.details,
            "### {title}\n\n{} calls, {} OK, {} failed; latency p50 {} p99 {} max {}\n",
            r.count(),
            r.ok(),
            r.failed(),
            ms(r.percentile(50.0)),
            ms(r.percentile(99.0)),
            ms(r.percentile(100.0))
        );
        // The most frequent failure messages (messages that carry a measured time are each unique).
        let mut errors: Vec<(&String, &u64)> = r.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1));
        for (error, count) in errors.iter().take(MESSAGES_SHOWN) {
            let _ = writeln!(self.details, "- {count} × {error}");
        }
        if errors.len() > MESSAGES_SHOWN {
            let rest: u64 = errors[MESSAGES_SHOWN..].iter().map(|(_, n)| **n).sum();
            let _ = writeln!(self.details, "- {rest} more, with {} other messages", errors.len() - MESSAGES_SHOWN);
        }
    }
}

fn row(name: &str, recording: &Recording) -> [String; 5] {
    let statuses = recording.statuses.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    [
        name.to_owned(),
        recording.count().to_string(),
        recording.ok().to_string(),
        recording.failed().to_string(),
        statuses,
    ]
}

fn processes(memory: &[(String, Memory)]) -> String {
    memory.iter().map(|(who, _)| who.as_str()).collect::<Vec<_>>().join(" | ")
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `min / median / max` of `values`, or `n/a`.
fn spread(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.get(sorted.len() / 2), sorted.last()) {
        (Some(min), Some(median), Some(max)) => format!("min {min} median {median} max {max}"),
        _ => "n/a".to_owned(),
    }
}
