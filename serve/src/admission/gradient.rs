//! An adaptive concurrency limit: as many requests in flight as keep latency near what it is without queueing.
//!
//! A fixed `--max-inflight` must be sized by hand to the capacity behind it, which changes with every replica
//! added, removed or slowed by a noisy neighbour: set too high, admitted requests queue (latency grows with the
//! limit, Little's law); set too low, capacity idles. This controller finds the limit from the latency of the
//! requests it admits, the gradient algorithm of Envoy's adaptive-concurrency filter (itself after Netflix's
//! `concurrency-limits`):
//!
//! 1. **Ideal latency (`min_rtt`)**: the limit is pinned to its minimum until `min_rtt_samples` requests have
//!    completed; the median of their latencies is what a request costs without queueing. It is measured again
//!    every `min_rtt_interval`, and any window the limit spent at its minimum (with at least
//!    [`MIN_WINDOW_SAMPLES`] completions) is such a measurement too: a lower one replaces it at once, higher ones
//!    only when [`HIGHER_TO_RAISE`] came in a row (then the lowest of them), so the ideal follows bigger requests
//!    or slower machines without the limit being pinned again, while one window slowed by a busy machine does not
//!    raise it (a raised ideal raises the limit, and admitted calls queue). Only requests admitted once the limit
//!    reached the minimum count: those admitted under a higher limit queued.
//! 2. **Every `window`**: the median latency of the window's requests (`sample_rtt`) against the ideal plus a
//!    `tolerance` gives the gradient `min_rtt × (1 + tolerance) / sample_rtt`, clamped to [0.5, 2]; the limit is
//!    multiplied by it. Latency above the target shrinks the limit, below it grows it, but only when demand
//!    reached at least half the limit in that window: an idle server learns nothing about its capacity.
//!
//! Unlike Envoy, `sqrt(limit)` of headroom is added only when growing and only when the window refused no more
//! calls than it completed: the limit is then binding on modest demand (load just dropped, or grew a little),
//! and one more call in flight costs little, so the limit catches up in a window or two and light load is not
//! refused for long. When refusals outnumber completions (overload), one more call in flight is one more queued,
//! so the limit grows only by the gradient: at the small limits a CPU-bound service has (its cores), a headroom
//! of `sqrt(limit)` would be a queue as deep as the cores and double latency. The limit is kept as a real number
//! and admission uses its integer part.
//!
//! A similar rule acts at once, within a window: a refusal when, over the last few latencies, no more calls were
//! refused than completed grows the limit by one (once per window) and the call is admitted after
//! all, so light load right after an overload is not refused while the window that saw the overload ends.
//!
//! Nor does the limit shrink, in a window that refused nothing, below one more call than that window had in
//! flight: light load whose latency wavers (a busy neighbour, one slower call) was not limited, and must not be
//! refused for it; if the calls slow down because there are too many of them, the limit is soon reached, calls
//! are refused, and it shrinks as usual.
//!
//! The controller is plain state driven by the completion times it is given, so tests can drive it with a
//! simulated server and clock.

use std::time::{Duration, Instant};

/// Completions a window at the minimum limit needs to count as a measurement of the ideal latency.
pub const MIN_WINDOW_SAMPLES: usize = 5;

/// Measurements at the minimum above the ideal it takes to raise the ideal (to the lowest of them): one busy
/// window must not raise it, a lasting change (bigger requests) must.
pub const HIGHER_TO_RAISE: usize = 5;

/// Most latencies kept per window: enough for a stable median, bounded whatever the request rate.
const MAX_SAMPLES: usize = 4096;

/// How the limit adapts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientSettings {
    /// The limit never goes below this (and is pinned to it while `min_rtt` is measured).
    pub min_limit: usize,
    /// The limit never goes above this: the hard ceiling (`--max-inflight`).
    pub max_limit: usize,
    /// The limit before the first adjustment.
    pub initial_limit: usize,
    /// How often the limit is adjusted.
    pub window: Duration,
    /// Completed requests whose median is the ideal latency.
    pub min_rtt_samples: usize,
    /// How often the ideal latency is measured again.
    pub min_rtt_interval: Duration,
    /// How far above the ideal latency the median may go before the limit shrinks (0.25: 25 %).
    pub tolerance: f64,
}

impl GradientSettings {
    /// Settings for a server whose hard ceiling is `max_limit`: windows of 100 ms, ideal latency from 25 requests
    /// every 30 s, 25 % tolerance (as Envoy).
    pub fn with_ceiling(max_limit: usize) -> Self {
        let max_limit = max_limit.max(1);
        Self {
            min_limit: 1,
            max_limit,
            initial_limit: max_limit.min(8),
            window: Duration::from_millis(100),
            min_rtt_samples: 25,
            min_rtt_interval: Duration::from_secs(30),
            tolerance: 0.25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Limit pinned to the minimum; the samples measure the ideal latency.
    MeasuringMinRtt,
    /// Limit adjusted every window against the ideal latency.
    Adjusting,
}

/// The controller's state. Not thread-safe by itself: the admission keeps it behind a mutex.
#[derive(Debug, Clone)]
pub struct Gradient {
    settings: GradientSettings,
    phase: Phase,
    /// The limit while adjusting, as a real number (admission uses its integer part).
    limit: f64,
    min_rtt: Option<Duration>,
    next_min_rtt: Instant,
    window_started: Instant,
    samples: Vec<Duration>,
    /// Most requests in flight at once since the last adjustment.
    peak_in_flight: usize,
    /// Requests refused since the last adjustment.
    refused: usize,
    /// Whether the limit already grew early (on a refusal) in this window.
    grew_early: bool,
    /// Refusals and completions of the last few latencies.
    recent: Recent,
    /// The last window's median latency.
    last_sample_rtt: Duration,
    /// Since when the limit has been at its minimum, if it is.
    at_min_since: Option<Instant>,
    /// Latencies of requests admitted since `at_min_since`: each ran with at most the minimum in flight (requests
    /// admitted under a higher limit had to finish first), so they measure the ideal.
    alone: Vec<Duration>,
    /// Measurements at the minimum since the last one that was not above the ideal.
    higher: Vec<Duration>,
}

impl Gradient {
    /// A controller that starts by measuring the ideal latency.
    pub fn new(settings: GradientSettings, now: Instant) -> Self {
        let min_limit = settings.min_limit.max(1);
        let settings = GradientSettings {
            min_limit,
            max_limit: settings.max_limit.max(min_limit),
            initial_limit: settings.initial_limit.clamp(min_limit, settings.max_limit.max(min_limit)),
            ..settings
        };
        Self {
            settings,
            phase: Phase::MeasuringMinRtt,
            limit: settings.initial_limit as f64,
            min_rtt: None,
            next_min_rtt: now,
            window_started: now,
            samples: Vec::new(),
            peak_in_flight: 0,
            refused: 0,
            grew_early: false,
            recent: Recent { at: now, refusals: 0.0, completions: 0.0 },
            last_sample_rtt: Duration::ZERO,
            at_min_since: Some(now),
            alone: Vec::new(),
            higher: Vec::new(),
        }
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        match self.phase {
            Phase::MeasuringMinRtt => self.settings.min_limit,
            Phase::Adjusting => (self.limit as usize).clamp(self.settings.min_limit, self.settings.max_limit),
        }
    }

    /// How fast [`Recent`] forgets: the last window's median latency (at the minimum limit, the time between
    /// completions), or the ideal if higher, within 1 ms and a window.
    fn half_life(&self) -> Duration {
        let window = self.settings.window.max(Duration::from_millis(1));
        let latency = self.last_sample_rtt.max(self.min_rtt.unwrap_or(window));
        latency.clamp(Duration::from_millis(1), window)
    }

    /// The ideal latency, once measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// A request was admitted with `in_flight` requests (itself included) now in flight.
    pub fn admitted(&mut self, in_flight: usize) {
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }

    /// A request was refused at `now`. Returns the new limit if it grew: when, recently (over the last few
    /// latencies), no more calls were refused than completed, demand is only just above the limit
    /// (load just dropped after an overload, or grew a little), and the limit grows by one at once, once per
    /// window, instead of refusing light load until the window ends. The caller then admits the request after
    /// all, and it is not counted as refused.
    pub fn refused(&mut self, now: Instant) -> Option<usize> {
        self.recent.refused(now, self.half_life());
        if self.phase != Phase::Adjusting || self.grew_early || self.recent.refusals > self.recent.completions {
            self.refused += 1;
            return None;
        }
        let before = self.limit();
        self.grew_early = true;
        self.limit = (self.limit + 1.0).min(self.settings.max_limit as f64);
        self.limit_changed(before, now)
    }

    /// A request admitted `latency` ago completed at `now`. Returns the new limit when it changed.
    pub fn completed(&mut self, now: Instant, latency: Duration) -> Option<usize> {
        let before = self.limit();
        self.recent.completed(now, self.half_life());
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(latency);
        }
        let admitted_at = now.checked_sub(latency);
        if self.at_min_since.is_some_and(|since| admitted_at.is_some_and(|at| at >= since))
            && self.alone.len() < MAX_SAMPLES
        {
            self.alone.push(latency);
        }
        match self.phase {
            Phase::MeasuringMinRtt => {
                if self.alone.len() >= self.settings.min_rtt_samples.max(1) {
                    self.min_rtt = Some(median(&mut self.alone));
                    self.higher.clear();
                    self.phase = Phase::Adjusting;
                    self.next_min_rtt = now + self.settings.min_rtt_interval;
                    self.start_window(now);
                }
            }
            Phase::Adjusting if now.duration_since(self.window_started) >= self.settings.window => {
                self.adjust(now);
            }
            Phase::Adjusting => {}
        }
        self.limit_changed(before, now)
    }

    /// The limit now, if it is no longer `before`. A change of limit restarts the measurement of the ideal: only
    /// calls admitted from now on, and only at the minimum, measure it.
    fn limit_changed(&mut self, before: usize, now: Instant) -> Option<usize> {
        let after = self.limit();
        if after == before {
            return None;
        }
        self.alone.clear();
        self.at_min_since = (after == self.settings.min_limit).then_some(now);
        Some(after)
    }

    fn adjust(&mut self, now: Instant) {
        let Some(mut min_rtt) = self.min_rtt else { return };
        let sample_rtt = median(&mut self.samples).max(Duration::from_micros(1));
        self.last_sample_rtt = sample_rtt;
        if self.alone.len() >= MIN_WINDOW_SAMPLES {
            let measured = median(&mut self.alone);
            if measured <= min_rtt {
                self.higher.clear();
                min_rtt = measured;
            } else {
                self.higher.push(measured);
                if self.higher.len() >= HIGHER_TO_RAISE {
                    min_rtt = self.higher.drain(..).min().unwrap_or(measured);
                }
            }
            self.min_rtt = Some(min_rtt);
        }
        self.alone.clear();
        let target = min_rtt.as_secs_f64() * (1.0 + self.settings.tolerance);
        let mut gradient = (target / sample_rtt.as_secs_f64()).clamp(0.5, 2.0);
        // Growing needs evidence: demand that actually pressed against the limit.
        if gradient > 1.0 && (self.peak_in_flight as f64) < self.limit / 2.0 {
            gradient = 1.0;
        }
        let headroom = if gradient > 1.0 && self.refused <= self.samples.len() { self.limit.sqrt() } else { 0.0 };
        let (min, max) = (self.settings.min_limit as f64, self.settings.max_limit as f64);
        let mut limit = (self.limit * gradient + headroom).clamp(min, max);
        // A window that refused nothing was not limited: its latency is the calls' own, and shedding below what
        // it admitted would refuse light load for noise. Keep room for one call more than it had in flight.
        if self.refused == 0 {
            limit = limit.max(((self.peak_in_flight + 1) as f64).min(self.limit));
        }
        self.limit = limit;
        if now >= self.next_min_rtt {
            self.phase = Phase::MeasuringMinRtt;
        }
        self.start_window(now);
    }

    fn start_window(&mut self, now: Instant) {
        self.samples.clear();
        self.window_started = now;
        self.peak_in_flight = 0;
        self.refused = 0;
        self.grew_early = false;
    }
}

/// Refusals and completions, each weighted by how recent it is (halving every latency, the time between
/// completions at the minimum limit, so that it counts a few of them): whether refusals outnumber completions
/// *now*, which a window that began during an overload cannot tell.
#[derive(Debug, Clone, Copy)]
struct Recent {
    at: Instant,
    refusals: f64,
    completions: f64,
}

impl Recent {
    fn decay_to(&mut self, now: Instant, half_life: Duration) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let factor = 0.5f64.powf(elapsed / half_life.as_secs_f64());
        self.refusals *= factor;
        self.completions *= factor;
        self.at = self.at.max(now);
    }

    fn refused(&mut self, now: Instant, half_life: Duration) {
        self.decay_to(now, half_life);
        self.refusals += 1.0;
    }

    fn completed(&mut self, now: Instant, half_life: Duration) {
        self.decay_to(now, half_life);
        self.completions += 1.0;
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let middle = samples.len() / 2;
    *samples.select_nth_unstable(middle).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overload: ten times as many calls offered as the limit admits (a marker for [`simulate`]).
    const OVERLOAD: usize = usize::MAX;

    /// A server with `cores` cores and requests of `work` each: with `c` in flight, each takes
    /// `work × max(1, c / cores)` (processor sharing). Each round `offered` calls arrive (or, for [`OVERLOAD`],
    /// ten times the limit); as many as the limit allows are admitted, and they complete one after another over
    /// one latency, the rest being refused in between, evenly (as they arrive). Runs `rounds` rounds.
    fn simulate(
        gradient: &mut Gradient,
        clock: &mut Instant,
        cores: f64,
        work: Duration,
        offered: usize,
        rounds: usize,
    ) {
        for _ in 0..rounds {
            let limit = gradient.limit();
            let offered = if offered == OVERLOAD { limit * 10 } else { offered };
            let in_flight = limit.min(offered);
            for i in 1..=in_flight {
                gradient.admitted(i);
            }
            let latency = work.mul_f64((in_flight as f64 / cores).max(1.0));
            let step = latency / in_flight.max(1) as u32;
            let excess = offered - in_flight;
            for k in 0..in_flight {
                for _ in excess * k / in_flight..excess * (k + 1) / in_flight {
                    // A limit grown on a refusal admits that call; the simulation keeps its round as it was.
                    let _ = gradient.refused(*clock);
                }
                *clock += step;
                gradient.completed(*clock, latency);
            }
        }
    }

    fn settings(max: usize) -> GradientSettings {
        GradientSettings { tolerance: 0.25, ..GradientSettings::with_ceiling(max) }
    }

    #[test]
    fn measures_the_ideal_latency_at_the_minimum_limit_first() {
        let mut clock = Instant::now();
        let mut gradient = Gradient::new(settings(100), clock);
        assert_eq!(gradient.limit(), 1, "pinned while measuring");
        for _ in 0..24 {
            clock += Duration::from_millis(5);
            gradient.completed(clock, Duration::from_millis(5));
        }
        assert_eq!(gradient.min_rtt(), None);
        clock += Duration::from_millis(5);
        assert_eq!(gradient.completed(clock, Duration::from_millis(5)), Some(8), "back to the initial limit");
        assert_eq!(gradient.min_rtt(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn settles_near_the_capacity_under_overload() {
        let mut clock = Instant::now();
        let mut gradient = Gradient::new(settings(1024), clock);
        let work = Duration::from_millis(10);
        simulate(&mut gradient, &mut clock, 4.0, work, OVERLOAD, 1_000);
        // Latency above the ideal × 1.25 shrinks the limit: at 4 cores it may not pass 5 in flight, and it may
        // not stay below the cores either (the minimum only while measuring the ideal).
        for _ in 0..1_000 {
            simulate(&mut gradient, &mut clock, 4.0, work, OVERLOAD, 1);
            let limit = gradient.limit();
            assert!(limit <= 5 && (limit >= 3 || gradient.phase == Phase::MeasuringMinRtt), "limit {limit}");
        }
    }

    #[test]
    fn grows_to_the_demand_when_latency_stays_flat() {
        let mut clock = Instant::now();
        let mut gradient = Gradient::new(settings(1024), clock);
        // 1000 cores: latency never grows, so the limit doubles each window up to the ceiling.
        simulate(&mut gradient, &mut clock, 1000.0, Duration::from_millis(1), OVERLOAD, 20_000);
        assert_eq!(gradient.limit(), 1024);
    }

    /// A controller adjusting at `limit`, whose ideal latency is `min_rtt`.
    fn adjusting_at(limit: f64, min_rtt: Duration, now: Instant) -> Gradient {
        let mut gradient = Gradient::new(settings(1024), now);
        gradient.phase = Phase::Adjusting;
        gradient.min_rtt = Some(min_rtt);
        gradient.next_min_rtt = now + Duration::from_secs(3600);
        gradient.limit = limit;
        gradient.at_min_since = (gradient.limit() == 1).then_some(now);
        gradient
    }

    #[test]
    fn modest_demand_over_the_limit_is_caught_up_with_in_one_window() {
        // The overload just ended at a limit of 1; now two calls at a time arrive, and the server (its
        // neighbours gone) has room: as many refusals as completions, so the limit grows with headroom and
        // serves both after one window. By the gradient alone, 1 → 2 takes four.
        let (work, mut clock) = (Duration::from_millis(10), Instant::now());
        let mut gradient = adjusting_at(1.0, work, clock);
        let started = clock;
        while gradient.limit() < 2 {
            simulate(&mut gradient, &mut clock, 8.0, work, 2, 1);
            let took = clock - started;
            assert!(took <= Duration::from_millis(150), "limit {} after {took:?}", gradient.limit());
        }
    }

    #[test]
    fn a_refusal_amid_completions_grows_the_limit_at_once_but_not_amid_refusals() {
        let (work, clock) = (Duration::from_millis(10), Instant::now());
        // Light load at a limit of 1: five calls completed this window, then one arrives during another.
        let mut light = adjusting_at(1.0, work, clock);
        for i in 1..=5 {
            light.completed(clock + work * i, work);
        }
        let now = clock + work * 5;
        assert_eq!(light.refused(now), Some(2), "admit it after all");
        assert_eq!(light.refused(now), None, "once per window");
        // Overload: refusals come ten to a completion.
        let mut overload = adjusting_at(1.0, work, clock);
        for round in 0..3 {
            for i in 0..10 {
                let now = clock + work * round + work / 10 * i;
                assert_eq!(overload.refused(now), None, "refused more than completed");
            }
            overload.completed(clock + work * (round + 1), work);
        }
        assert_eq!(overload.limit(), 1);
    }

    #[test]
    fn under_overload_the_limit_grows_by_the_gradient_alone() {
        // Ten times the limit offered: one more call in flight would be one more queued, so no headroom, even
        // with latency at the ideal: 1 × 1.25 after a window, still one call in flight.
        let (work, mut clock) = (Duration::from_millis(10), Instant::now());
        let mut gradient = adjusting_at(1.0, work, clock);
        simulate(&mut gradient, &mut clock, 8.0, work, OVERLOAD, 11);
        assert_eq!(gradient.limit(), 1, "real limit {}", gradient.limit);
    }

    #[test]
    fn only_calls_admitted_at_the_minimum_measure_the_ideal() {
        let (work, mut clock) = (Duration::from_millis(10), Instant::now());
        let mut gradient = adjusting_at(1.0, work * 2, clock);
        // Calls admitted before the limit came down to 1 finish late, having queued: they say nothing about
        // the ideal, however many of them there are.
        for _ in 0..10 {
            clock += Duration::from_millis(1);
            gradient.completed(clock, Duration::from_millis(50));
        }
        clock += Duration::from_millis(100);
        gradient.completed(clock, Duration::from_millis(50));
        assert_eq!(gradient.min_rtt(), Some(work * 2), "unchanged by calls admitted earlier");
        // Calls admitted since, one at a time, do; the first window with five of them replaces the ideal.
        let started = clock;
        while clock - started <= Duration::from_millis(110) {
            clock += work;
            gradient.completed(clock, work);
        }
        assert_eq!(gradient.min_rtt(), Some(work));
    }

    #[test]
    fn one_slow_window_at_the_minimum_does_not_raise_the_ideal_but_a_lasting_change_does() {
        let (work, mut clock) = (Duration::from_millis(10), Instant::now());
        let mut gradient = adjusting_at(1.0, work, clock);
        // A window where every call, alone, took twice as long (the machine was busy for 100 ms).
        let window = |gradient: &mut Gradient, clock: &mut Instant, latency: Duration| {
            let started = *clock;
            while *clock - started <= Duration::from_millis(100) {
                *clock += latency;
                gradient.completed(*clock, latency);
            }
        };
        window(&mut gradient, &mut clock, work * 2);
        assert_eq!(gradient.min_rtt(), Some(work));
        // Five such windows in a row: the calls did get bigger.
        for _ in 0..HIGHER_TO_RAISE {
            window(&mut gradient, &mut clock, work * 2);
        }
        assert_eq!(gradient.min_rtt(), Some(work * 2));
    }

    #[test]
    fn light_load_keeps_room_for_one_call_more_whatever_its_latency() {
        // One call at a time, each half again slower than the ideal (a busy neighbour): nothing was refused, so
        // the limit stays at 2 and a second call arriving during one still gets in.
        let (work, mut clock) = (Duration::from_millis(10), Instant::now());
        let mut gradient = adjusting_at(2.0, work, clock);
        for _ in 0..100 {
            simulate(&mut gradient, &mut clock, 1.0, work.mul_f64(1.5), 1, 1);
            assert!(gradient.limit() >= 2, "real limit {}", gradient.limit);
        }
    }

    #[test]
    fn an_idle_server_does_not_grow_its_limit() {
        let mut clock = Instant::now();
        let mut gradient = Gradient::new(settings(1024), clock);
        simulate(&mut gradient, &mut clock, 1000.0, Duration::from_millis(1), 2, 5_000);
        assert!(gradient.limit() <= 8, "demand of 2 never justified more than the initial 8: {}", gradient.limit());
    }

    #[test]
    fn measures_the_ideal_again_when_the_requests_got_bigger() {
        let mut clock = Instant::now();
        let mut gradient = Gradient::new(settings(1024), clock);
        simulate(&mut gradient, &mut clock, 4.0, Duration::from_millis(1), OVERLOAD, 500);
        assert_eq!(gradient.min_rtt(), Some(Duration::from_millis(1)));
        // Every request now costs 20× more: latency far above the old ideal brings the limit to the minimum,
        // where a window measures the new ideal instead of starving the server for good.
        simulate(&mut gradient, &mut clock, 4.0, Duration::from_millis(20), OVERLOAD, 500);
        assert_eq!(gradient.min_rtt(), Some(Duration::from_millis(20)));
        assert!(gradient.limit() >= 3, "limit {}", gradient.limit());
    }

    #[test]
    fn never_leaves_its_bounds() {
        let mut clock = Instant::now();
        let bounds = GradientSettings { min_limit: 2, max_limit: 6, ..settings(6) };
        let mut gradient = Gradient::new(bounds, clock);
        simulate(&mut gradient, &mut clock, 1000.0, Duration::from_millis(1), OVERLOAD, 2_000);
        assert_eq!(gradient.limit(), 6);
        // A hundred times too slow: the limit drops to the floor; the ideal is measured again there, after which
        // it wavers between the floor and one above (latency within the tolerance of the new ideal).
        for _ in 0..200 {
            simulate(&mut gradient, &mut clock, 0.01, Duration::from_millis(1), OVERLOAD, 10);
            assert!((2..=3).contains(&gradient.limit()), "limit {}", gradient.limit());
        }
    }
}
