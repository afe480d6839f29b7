//! An adaptive concurrency limit: as many requests in flight as keep their latency near what one costs without
//! queueing, the rest refused at once.
//!
//! A fixed `--max-inflight` must be sized by hand to the capacity behind it, which changes with every replica
//! added, removed or slowed by a noisy neighbour: too high, and admitted requests queue (latency grows with the
//! limit, Little's law); too low, and capacity idles. This controller follows the capacity instead (the measurements:
//! `docs/decisions/0006-adaptive-concurrency-rules.md`).
//!
//! # The algorithm
//!
//! Envoy's adaptive-concurrency gradient controller (itself after Netflix's `concurrency-limits`): learn what a
//! request costs alone (the *ideal latency*, `min_rtt`) by admitting one at a time, then every window scale the
//! limit by how the window's median latency (`sample_rtt`) compares with the ideal plus a tolerance: above it the
//! limit shrinks, below it grows. Rules 1–3 are Envoy's and Netflix's; rules 4–7 are this controller's own, each
//! added because a measurement on the reliability rig showed the controller without it falling short (each rule's
//! numbers: `docs/decisions/0006-adaptive-concurrency-rules.md`).
//!
//! 1. **Measure the ideal at the minimum.** The limit is pinned to `min_limit` until `min_rtt_samples` requests
//!    have completed; the median of their latencies is the ideal. It is measured so again every
//!    `min_rtt_interval`.
//! 2. **Scale by the gradient every `window`.** `gradient = min_rtt × (1 + tolerance) / sample_rtt`, clamped
//!    between [`MIN_GRADIENT`] and [`MAX_GRADIENT`]; the limit is multiplied by it. The limit is a real number,
//!    so that small gradients add up; admission uses its integer part.
//! 3. **Grow only under demand.** The limit grows only if the window's peak in flight reached
//!    [`DEMAND_TO_GROW`] of it: an idle server's latency says nothing about its capacity, and a limit grown on it
//!    would admit a burst into a queue (Netflix's Gradient2 limit does not grow when "app limited" either).
//! 4. **Headroom only when growing, and only without overload.** `sqrt(limit)` is added when the limit grows and
//!    the window refused no more calls than it completed: the limit is then binding on modest demand (load just
//!    dropped, or grew a little) and catches up in a window or two. Under overload one more call in flight is one
//!    more queued, so the limit grows by the gradient alone. At a CPU-bound service's small limits, headroom on
//!    every increase is a queue as deep as the cores.
//! 5. **The ideal comes only from calls admitted at the minimum.** Any window spent at the minimum with at least
//!    [`MIN_WINDOW_SAMPLES`] completions measures the ideal for free, counting only calls admitted since the limit
//!    got there (those admitted under a higher limit had queued). A lower measurement replaces the ideal at once;
//!    higher ones only after [`HIGHER_TO_RAISE`] in a row, and then the lowest of them, so the ideal follows bigger
//!    requests without one window slowed by a busy machine raising it (a raised ideal raises the limit, and
//!    admitted calls queue). This replaces Envoy's pinned re-measurement after five windows at the minimum.
//! 6. **A window that refused nothing keeps room for one call more than it had in flight.** Its latency was the
//!    calls' own, not a queue's; shedding below what it admitted refuses light load for noise. Calls slowed by
//!    their own number soon reach the limit, are refused, and the limit shrinks as usual.
//! 7. **A refusal amid completions grows the limit by one at once.** Within a window, a refusal when recent
//!    refusals (weighted to halve every latency) do not outnumber completions grows the limit by
//!    [`EARLY_GROWTH`], once per window, and the call is admitted after all: a window that began during an
//!    overload otherwise refuses light load until it ends. Under overload refusals outnumber completions, so it
//!    hardly ever fires.
//!
//! The controller is plain state driven by the times it is given, so tests drive it with a simulated server and
//! clock (`tests.rs`).

use std::time::{Duration, Instant};

/// The floor of the limit by default: one call in flight is a call's latency alone, the ideal, and a CPU-bound
/// service behind a couple of cores may run no more than one or two calls without queueing (the reliability rig
/// settles at 1–2), so a higher floor would queue.
pub const DEFAULT_MIN_LIMIT: usize = 1;

/// The limit once the ideal is measured, if the ceiling is higher: modest, since nothing is known yet about the
/// capacity, and the gradient can double it every window (to 1024 in seven windows).
pub const DEFAULT_INITIAL_LIMIT: usize = 8;

/// How often the limit is adjusted by default (`--adaptive-window`): enough completions at millisecond requests
/// for a stable median, and the limit follows a change of load within a fraction of a second.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(100);

/// Completions whose median is the ideal latency by default: enough that a few slow calls do not move the median,
/// few enough that the measurement, which admits one call at a time and refuses bursts meanwhile, is short.
pub const DEFAULT_MIN_RTT_SAMPLES: usize = 25;

/// How often the ideal is measured again by default (`--adaptive-min-rtt-interval`): every measurement refuses
/// bursts for a while, and windows at the minimum (rule 5) measure it for free in between.
pub const DEFAULT_MIN_RTT_INTERVAL: Duration = Duration::from_secs(30);

/// How far the median may rise above the ideal before the limit shrinks by default (`--adaptive-tolerance`),
/// as Envoy: a window's median wavers by some per cent with nothing queued, and shrinking for that would refuse
/// load the service can take, while a queue of even one call behind each doubles latency, far beyond 25 %.
pub const DEFAULT_TOLERANCE: f64 = 0.25;

/// The most a window may shrink the limit by (a factor), as Envoy: one bad window halves it at worst, and the
/// next ones take it further if latency stays high.
pub const MIN_GRADIENT: f64 = 0.5;

/// The most a window may grow the limit by (a factor), as Envoy: doubling per window reaches any ceiling in
/// a second or so, while one window of low latency cannot admit a flood.
pub const MAX_GRADIENT: f64 = 2.0;

/// The fraction of the limit a window's peak in flight must reach for the limit to grow (rule 3): demand that
/// pressed against the limit, as Netflix's gradient limit asks.
pub const DEMAND_TO_GROW: f64 = 0.5;

/// How much a refusal amid completions grows the limit (rule 7): one call, the one just refused.
pub const EARLY_GROWTH: f64 = 1.0;

/// Calls a window that refused nothing keeps room for above its peak in flight (rule 6): one, so that a call
/// arriving while the others run still gets in.
pub const ROOM_ABOVE_QUIET_PEAK: usize = 1;

/// Completions a window at the minimum limit needs to count as a measurement of the ideal latency (rule 5): the
/// median of fewer is moved by one odd call.
pub const MIN_WINDOW_SAMPLES: usize = 5;

/// Measurements at the minimum above the ideal it takes to raise the ideal (to the lowest of them, rule 5): one
/// busy window must not raise it, a lasting change (bigger requests) must; five windows are half a second.
pub const HIGHER_TO_RAISE: usize = 5;

/// Most latencies kept per window: enough for a stable median, bounded whatever the request rate.
const MAX_SAMPLES: usize = 4096;

/// The least time [`Recent`] takes to halve (rule 7): calls of microseconds would otherwise make it forget a
/// refusal before the next call arrives.
const MIN_HALF_LIFE: Duration = Duration::from_millis(1);

/// The least median latency the gradient divides by: a window of calls that took no measurable time must not
/// divide by zero.
const MIN_SAMPLE_RTT: Duration = Duration::from_micros(1);

/// How the limit adapts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientSettings {
    /// The limit never goes below this (and is pinned to it while `min_rtt` is measured).
    pub min_limit: usize,
    /// The limit never goes above this: the hard ceiling (`--max-inflight`).
    pub max_limit: usize,
    /// The limit once the ideal is first measured.
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
    /// The default settings for a server whose hard ceiling is `max_limit`.
    pub fn with_ceiling(max_limit: usize) -> Self {
        let max_limit = max_limit.max(1);
        Self {
            min_limit: DEFAULT_MIN_LIMIT,
            max_limit,
            initial_limit: max_limit.min(DEFAULT_INITIAL_LIMIT),
            window: DEFAULT_WINDOW,
            min_rtt_samples: DEFAULT_MIN_RTT_SAMPLES,
            min_rtt_interval: DEFAULT_MIN_RTT_INTERVAL,
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Limit pinned to the minimum; the samples measure the ideal latency (rule 1).
    MeasuringMinRtt,
    /// Limit adjusted every window against the ideal latency (rules 2–7).
    Adjusting,
}

/// The controller's state. Not thread-safe by itself: the admission keeps it behind a mutex.
#[derive(Debug, Clone)]
pub struct Gradient {
    settings: GradientSettings,
    phase: Phase,
    /// The limit while adjusting, as a real number (admission uses its integer part).
    limit: f64,
    /// The ideal latency, once measured.
    min_rtt: Option<Duration>,
    /// When the ideal is next measured with the limit pinned (rule 1).
    next_min_rtt: Instant,
    /// When the current window began.
    window_started: Instant,
    /// Latencies completed in the current window, whose median is `sample_rtt`.
    samples: Vec<Duration>,
    /// Most requests in flight at once since the last adjustment (rules 3 and 6).
    peak_in_flight: usize,
    /// Requests refused since the last adjustment (rules 4 and 6).
    refused: usize,
    /// Whether the limit already grew early (on a refusal) in this window (rule 7).
    grew_early: bool,
    /// Refusals and completions of the last few latencies (rule 7).
    recent: Recent,
    /// The last window's median latency.
    last_sample_rtt: Duration,
    /// Since when the limit has been at its minimum, if it is.
    at_min_since: Option<Instant>,
    /// Latencies of requests admitted since `at_min_since`: each ran with at most the minimum in flight (requests
    /// admitted under a higher limit had to finish first), so they measure the ideal (rule 5).
    alone: Vec<Duration>,
    /// Measurements at the minimum since the last one that was not above the ideal (rule 5).
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
    /// completions), or the ideal if higher, within [`MIN_HALF_LIFE`] and a window.
    fn half_life(&self) -> Duration {
        let window = self.settings.window.max(MIN_HALF_LIFE);
        let latency = self.last_sample_rtt.max(self.min_rtt.unwrap_or(window));
        latency.clamp(MIN_HALF_LIFE, window)
    }

    /// The ideal latency, once measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// A request was admitted with `in_flight` requests (itself included) now in flight.
    pub fn admitted(&mut self, in_flight: usize) {
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }

    /// A request was refused at `now`. Returns the new limit if it grew (rule 7): the caller then admits the
    /// request after all, and it is not counted as refused.
    pub fn refused(&mut self, now: Instant) -> Option<usize> {
        self.recent.refused(now, self.half_life());
        if self.phase != Phase::Adjusting || self.grew_early || self.recent.refusals > self.recent.completions {
            self.refused += 1;
            return None;
        }
        let before = self.limit();
        self.grew_early = true;
        self.limit = (self.limit + EARLY_GROWTH).min(self.settings.max_limit as f64);
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
    /// calls admitted from now on, and only at the minimum, measure it (rule 5).
    fn limit_changed(&mut self, before: usize, now: Instant) -> Option<usize> {
        let after = self.limit();
        if after == before {
            return None;
        }
        self.alone.clear();
        self.at_min_since = (after == self.settings.min_limit).then_some(now);
        Some(after)
    }

    /// The end of a window: rules 5, 2, 3, 4 and 6 in turn, then the pinned measurement of rule 1 if it is due.
    fn adjust(&mut self, now: Instant) {
        let Some(mut min_rtt) = self.min_rtt else { return };
        let sample_rtt = median(&mut self.samples).max(MIN_SAMPLE_RTT);
        self.last_sample_rtt = sample_rtt;
        // Rule 5: a window at the minimum measures the ideal.
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
        // Rule 2: the gradient.
        let target = min_rtt.as_secs_f64() * (1.0 + self.settings.tolerance);
        let mut gradient = (target / sample_rtt.as_secs_f64()).clamp(MIN_GRADIENT, MAX_GRADIENT);
        // Rule 3: growing needs demand that pressed against the limit.
        if gradient > 1.0 && (self.peak_in_flight as f64) < self.limit * DEMAND_TO_GROW {
            gradient = 1.0;
        }
        // Rule 4: headroom when growing, unless refusals outnumbered completions.
        let headroom = if gradient > 1.0 && self.refused <= self.samples.len() { self.limit.sqrt() } else { 0.0 };
        let (min, max) = (self.settings.min_limit as f64, self.settings.max_limit as f64);
        let mut limit = (self.limit * gradient + headroom).clamp(min, max);
        // Rule 6: a window that refused nothing was not limited; keep room above what it had in flight.
        if self.refused == 0 {
            limit = limit.max(((self.peak_in_flight + ROOM_ABOVE_QUIET_PEAK) as f64).min(self.limit));
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
/// *now*, which a window that began during an overload cannot tell (rule 7).
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
mod tests;
