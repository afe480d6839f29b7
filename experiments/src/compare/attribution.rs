//! Where a call's time went, from the moment the load generator sent it to its reply: the send task waiting for
//! the load generator's runtime, the trip to the gateway and back, the gateway before and after its upstream call, the hop to compute
//! and back, compute's request path, the job's queue and the job itself.
//!
//! Beside it, the load generator's timer lateness: how long after its scheduled time an open-loop call was sent.
//! The recorded latency leaves it out (as ghz's does: a late timer is the client's fault, not the server's), so the
//! segments add up to the recorded latency and the timer is shown apart.
//!
//! The client times what it sees (lateness, and the call from start to reply); every server adds its own part to
//! the reply's `Execution` (`gateway_total_us`, `gateway_before_upstream_us`, `upstream_us`, `compute_total_us`,
//! `queue_us`, `compute_us`). Each segment is the difference between two nested intervals, so the segments of a
//! call add up to its total (to the microsecond each server rounds to) and a segment never hides inside another.
//!
//! A percentile is not additive: the p99 of each segment would not add up to the p99 of the total. So a percentile
//! is attributed by the calls *at* it: the calls whose total ranks within half a percentage point of it, their
//! segments averaged. Their mean total is then close to the percentile, and the segments say where those calls,
//! the slow ones for p99, spent their time.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use offload_loadgen::{
    call::{Call, Caller},
    recording::Recording,
};
use offload_proto::v1::Execution;

/// One part of a call's time, in the order the call goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// From the load generator's send time to the client starting the call: the send task waiting for a worker
    /// of the load generator's runtime (zero for closed-loop calls, which are sent by a running task).
    Spawn,
    /// The client's call less the gateway's handling: encoding, loopback both ways, the gateway's HTTP/2 and
    /// decoding before its handler, and the client reading the reply.
    Client,
    /// In the gateway before the upstream call: deadline, metrics, admission.
    GatewayBefore,
    /// The gateway's upstream call less compute's handling: the gateway's client, loopback both ways, compute's
    /// HTTP/2 and decoding.
    Upstream,
    /// Compute's request path less the job: deadline, metrics, admission, placement, the reply.
    ComputePath,
    /// The job waiting for its thread (`queue_us`).
    Queue,
    /// The job running (`compute_us`).
    Compute,
    /// In the gateway after compute answered: building and sending the reply.
    GatewayAfter,
}

impl Segment {
    /// Every segment, in the order of the call.
    pub const ALL: [Self; 8] = [
        Self::Spawn,
        Self::Client,
        Self::GatewayBefore,
        Self::Upstream,
        Self::ComputePath,
        Self::Queue,
        Self::Compute,
        Self::GatewayAfter,
    ];

    /// Its column header.
    pub fn name(self) -> &'static str {
        match self {
            Self::Spawn => "spawn",
            Self::Client => "client↔gw",
            Self::GatewayBefore => "gw before",
            Self::Upstream => "gw↔compute",
            Self::ComputePath => "compute path",
            Self::Queue => "queue",
            Self::Compute => "compute",
            Self::GatewayAfter => "gw after",
        }
    }
}

/// One call's time, by segment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Breakdown {
    parts: [Duration; Segment::ALL.len()],
    /// The timer's lateness: from the scheduled time to the send time, outside the recorded latency.
    pub timer_late: Duration,
}

impl Breakdown {
    /// A call that took `client` from start to reply, with the servers' report `e` (an open-loop call's send
    /// segments are set later, by [`Sink::take_open_loop`]). A part a server did not report (an older server) counts as zero, and its time stays
    /// in the segment around it.
    pub fn of_call(client: Duration, e: &Execution) -> Self {
        let us = Duration::from_micros;
        let (gateway, before, upstream) = (us(e.gateway_total_us), us(e.gateway_before_upstream_us), us(e.upstream_us));
        let (compute_total, queue, compute) = (us(e.compute_total_us), us(e.queue_us), us(e.compute_us));
        let mut parts = [Duration::ZERO; Segment::ALL.len()];
        for (segment, part) in [
            (Segment::Client, client.saturating_sub(gateway)),
            (Segment::GatewayBefore, before),
            (Segment::Upstream, upstream.saturating_sub(compute_total)),
            (Segment::ComputePath, compute_total.saturating_sub(queue + compute)),
            (Segment::Queue, queue),
            (Segment::Compute, compute),
            (Segment::GatewayAfter, gateway.saturating_sub(before + upstream)),
        ] {
            parts[segment as usize] = part;
        }
        Self { parts, timer_late: Duration::ZERO }
    }

    /// Sets the timer's lateness and the spawn segment of an open-loop call.
    fn set_send(&mut self, timer_late: Duration, spawn: Duration) {
        self.timer_late = timer_late;
        self.parts[Segment::Spawn as usize] = spawn;
    }

    /// The time spent in `segment`.
    pub fn get(&self, segment: Segment) -> Duration {
        self.parts[segment as usize]
    }

    /// From the send time to the reply (the recorded latency): the sum of the segments.
    pub fn total(&self) -> Duration {
        self.parts.iter().sum()
    }
}

/// The calls at one percentile of the total, their segments averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtPercentile {
    pub percentile: f64,
    /// Calls averaged.
    pub calls: usize,
    /// Their mean segments (whose sum is their mean total).
    pub mean: Breakdown,
}

/// The percentiles every table attributes.
pub const PERCENTILES: [f64; 2] = [50.0, 99.0];

/// Width of the rank window around a percentile, in percentage points: one percent of the calls (10 of a default
/// round's 1 000 probes), enough to average out one odd call, narrow enough to stay at the percentile.
const WINDOW_POINTS: f64 = 1.0;

/// The calls of `calls` whose total ranks within half of [`WINDOW_POINTS`] of `percentile`, averaged; `None`
/// without calls.
pub fn at_percentile(calls: &[Breakdown], percentile: f64) -> Option<AtPercentile> {
    if calls.is_empty() {
        return None;
    }
    let mut totals: Vec<(Duration, usize)> = calls.iter().enumerate().map(|(i, c)| (c.total(), i)).collect();
    totals.sort_unstable();
    let n = calls.len() as f64;
    let rank = |p: f64| ((p / 100.0 * n).round() as usize).min(calls.len() - 1);
    let first = rank((percentile - WINDOW_POINTS / 2.0).max(0.0));
    let last = rank(percentile + WINDOW_POINTS / 2.0).max(first);
    let chosen = &totals[first..=last];
    let mut mean = Breakdown::default();
    for segment in Segment::ALL {
        let sum: Duration = chosen.iter().map(|&(_, i)| calls[i].get(segment)).sum();
        mean.parts[segment as usize] = sum / chosen.len() as u32;
    }
    mean.timer_late = chosen.iter().map(|&(_, i)| calls[i].timer_late).sum::<Duration>() / chosen.len() as u32;
    Some(AtPercentile { percentile, calls: chosen.len(), mean })
}

/// An open-loop call's number and when the client started it.
type Started = Option<(usize, Instant)>;

/// Where the calls of one load put their breakdowns, with the open-loop call's number and start. Cheap to clone:
/// every call of the load shares it.
#[derive(Debug, Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<(Started, Breakdown)>>>);

impl Sink {
    /// Sends `call` with `caller`, timing it; a successful reply's breakdown is kept. `number` is an open-loop
    /// call's number (`None` for closed loop: no lateness).
    pub async fn call(
        &self,
        mut caller: Caller,
        call: &Call,
        timeout: Duration,
        number: Option<usize>,
    ) -> Result<(), tonic::Status> {
        let started = Instant::now();
        let execution = caller.call_reporting(call, Some(timeout)).await?;
        let client = started.elapsed();
        if let Some(e) = execution {
            self.lock().push((number.map(|i| (i, started)), Breakdown::of_call(client, &e)));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Started, Breakdown)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every breakdown kept, closed loop.
    pub fn take(&self) -> Vec<Breakdown> {
        std::mem::take(&mut *self.lock()).into_iter().map(|(_, b)| b).collect()
    }

    /// Every breakdown kept of an open loop at `rps` per second, with its timer lateness and spawn segment from
    /// the runner's `recording`, which holds each call's send time (from the run's start). The runner sends in
    /// order of number, so its sorted send times are the calls' by number when it recorded every call (it does
    /// unless told to skip some; otherwise both stay zero).
    ///
    /// The run's start is not known here, only bounded: no call started before it was sent, so the start is at
    /// most each call's start less its send time; the least bound is taken (exact for the call that started at
    /// once, and a few microseconds late at most for the others).
    pub fn take_open_loop(&self, recording: &Recording, rps: f64) -> Vec<Breakdown> {
        let mut sent: Vec<Duration> = recording.details.iter().map(|d| d.sent).collect();
        sent.sort_unstable();
        let mut calls = std::mem::take(&mut *self.lock());
        if sent.len() as u64 != recording.count() {
            return calls.into_iter().map(|(_, b)| b).collect();
        }
        let sent_of = |started: Started| started.and_then(|(i, at)| Some((i, at, *sent.get(i)?)));
        let run_start = calls.iter().filter_map(|&(s, _)| sent_of(s)).map(|(_, at, sent)| at - sent).min();
        for (started, b) in &mut calls {
            if let (Some((i, at, sent)), Some(run_start)) = (sent_of(*started), run_start) {
                let scheduled = Duration::from_secs_f64(i as f64 / rps);
                b.set_send(sent.saturating_sub(scheduled), at.saturating_duration_since(run_start + sent));
            }
        }
        calls.into_iter().map(|(_, b)| b).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution() -> Execution {
        Execution {
            gateway_total_us: 900,
            gateway_before_upstream_us: 50,
            upstream_us: 800,
            compute_total_us: 600,
            queue_us: 100,
            compute_us: 300,
            ..Execution::default()
        }
    }

    #[test]
    fn segments_add_up_to_the_recorded_latency() {
        let mut b = Breakdown::of_call(Duration::from_micros(1_000), &execution());
        b.set_send(Duration::from_micros(700), Duration::from_micros(40));
        let us = |s| b.get(s).as_micros();
        assert_eq!(
            Segment::ALL.map(us),
            [40, 100, 50, 200, 200, 100, 300, 50],
            "spawn, client, gw before, upstream, compute path, queue, compute, gw after"
        );
        assert_eq!(b.total(), Duration::from_micros(1_040), "the timer's lateness is not in the total");
        assert_eq!(b.timer_late, Duration::from_micros(700));
    }

    #[test]
    fn a_server_rounding_below_its_parts_yields_no_negative_segment() {
        let e = Execution { compute_total_us: 399, ..execution() };
        let b = Breakdown::of_call(Duration::from_micros(899), &e);
        assert!(Segment::ALL.iter().all(|&s| b.get(s) < Duration::from_secs(1)));
        assert_eq!(b.get(Segment::ComputePath), Duration::ZERO);
        assert_eq!(b.get(Segment::Client), Duration::ZERO);
    }

    #[test]
    fn a_percentile_is_attributed_to_the_calls_at_it() {
        // 1 000 calls of 1..=1000 µs, all in compute: p99 averages the ten calls ranked 985..=995.
        let calls: Vec<_> = (1..=1000u64)
            .map(|t| {
                let e = Execution {
                    compute_us: t,
                    compute_total_us: t,
                    upstream_us: t,
                    gateway_total_us: t,
                    ..Default::default()
                };
                Breakdown::of_call(Duration::from_micros(t), &e)
            })
            .collect();
        let p99 = at_percentile(&calls, 99.0).expect("calls");
        assert_eq!(p99.calls, 11);
        assert_eq!(p99.mean.total(), p99.mean.get(Segment::Compute));
        assert!((985..=995).contains(&p99.mean.total().as_micros()), "{:?}", p99.mean.total());
        let p50 = at_percentile(&calls, 50.0).expect("calls");
        assert!((495..=505).contains(&p50.mean.total().as_micros()));
        assert!(at_percentile(&[], 50.0).is_none());
    }
}
