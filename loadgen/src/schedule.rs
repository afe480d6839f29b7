//! ghz's load and concurrency schedules (`--load-schedule`, `--concurrency-schedule`): a level (calls per second,
//! or workers) that is constant, or changes in steps, or along a line, from a start value toward an end value.
//!
//! As in ghz (`load/pacer.go`, `load/worker_ticker.go`): `step` is `start + step × ⌊t / step-duration⌋`; `line`
//! is the same with one step per second (`step` is then the slope); the level stops changing at `end` (when
//! given) or at `max-duration` (when given) and holds there; it never goes below zero.

use std::time::Duration;

/// How a level changes over a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Always this level.
    Const(f64),
    /// `start`, changing by `step` every `every`, held at `end` (if not 0) or from `max_duration` (if not 0).
    Step { start: f64, step: f64, every: Duration, end: f64, max_duration: Duration },
}

/// What a schedule is built from: ghz's flags or config keys for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleArgs {
    /// `const`, `step` or `line` (empty: `const`).
    pub kind: String,
    pub start: u64,
    pub end: u64,
    pub step: i64,
    pub step_duration: Option<Duration>,
    pub max_duration: Option<Duration>,
}

impl Schedule {
    /// The schedule `args` describe; `what` (`load` or `concurrency`) names the flags in errors; `constant` is
    /// the level of a `const` schedule.
    pub fn new(what: &str, args: &ScheduleArgs, constant: f64) -> Result<Self, String> {
        let kind = if args.kind.is_empty() { "const" } else { args.kind.as_str() };
        let every = match kind {
            "const" => return Ok(Self::Const(constant)),
            "step" => args
                .step_duration
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("--{what}-schedule=step needs --{what}-step-duration"))?,
            "line" => Duration::from_secs(1),
            other => return Err(format!("--{what}-schedule={other}: use const, step or line")),
        };
        if args.step == 0 {
            return Err(format!("--{what}-schedule={kind} needs a non-zero --{what}-step"));
        }
        if what == "load" && args.start == 0 {
            return Err(format!("--{what}-schedule={kind} needs --{what}-start above 0"));
        }
        Ok(Self::Step {
            start: args.start as f64,
            step: args.step as f64,
            every,
            end: args.end as f64,
            max_duration: args.max_duration.unwrap_or_default(),
        })
    }

    /// The level `elapsed` into the run.
    pub fn at(&self, elapsed: Duration) -> f64 {
        match *self {
            Self::Const(level) => level,
            Self::Step { start, step, every, end, max_duration } => {
                let t = if max_duration.is_zero() { elapsed } else { elapsed.min(max_duration) };
                let steps = (t.as_nanos() / every.as_nanos().max(1)) as f64;
                let mut level = start + step * steps;
                if end > 0.0 {
                    level = if step > 0.0 { level.min(end) } else { level.max(end) };
                }
                level.max(0.0)
            }
        }
    }

    /// When the level next changes after `elapsed`, if it ever does.
    pub fn next_change(&self, elapsed: Duration) -> Option<Duration> {
        match *self {
            Self::Const(_) => None,
            Self::Step { every, .. } => {
                let every_ns = every.as_nanos().max(1);
                let next = (elapsed.as_nanos() / every_ns + 1) * every_ns;
                Some(Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX)))
            }
        }
    }

    /// Whether the level changes at all.
    pub fn is_const(&self) -> bool {
        matches!(self, Self::Const(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: &str, start: u64, end: u64, step: i64, every: Option<u64>, max: Option<u64>) -> ScheduleArgs {
        ScheduleArgs {
            kind: kind.into(),
            start,
            end,
            step,
            step_duration: every.map(Duration::from_secs),
            max_duration: max.map(Duration::from_secs),
        }
    }

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn step_rises_every_step_duration_and_holds_at_end() {
        let sched = Schedule::new("load", &args("step", 10, 30, 5, Some(2), None), 0.0).expect("valid");
        let levels: Vec<f64> = [0.0, 1.9, 2.0, 4.5, 8.0, 100.0].iter().map(|&t| sched.at(s(t))).collect();
        assert_eq!(levels, [10.0, 10.0, 15.0, 20.0, 30.0, 30.0]);
        assert_eq!(sched.next_change(s(2.5)), Some(s(4.0)));
    }

    #[test]
    fn line_is_a_step_per_second_held_from_max_duration() {
        let sched = Schedule::new("load", &args("line", 5, 0, 2, None, Some(3)), 0.0).expect("valid");
        let levels: Vec<f64> = [0.5, 1.0, 2.0, 3.0, 60.0].iter().map(|&t| sched.at(s(t))).collect();
        assert_eq!(levels, [5.0, 7.0, 9.0, 11.0, 11.0]);
    }

    #[test]
    fn falling_schedules_stop_at_end_and_zero() {
        let down = Schedule::new("concurrency", &args("step", 10, 4, -3, Some(1), None), 0.0).expect("valid");
        assert_eq!(down.at(s(1.0)), 7.0);
        assert_eq!(down.at(s(5.0)), 4.0);
        let to_zero = Schedule::new("concurrency", &args("line", 2, 0, -1, None, None), 0.0).expect("valid");
        assert_eq!(to_zero.at(s(9.0)), 0.0);
    }

    #[test]
    fn const_and_refusals_name_the_flag() {
        assert_eq!(Schedule::new("load", &ScheduleArgs::default(), 50.0), Ok(Schedule::Const(50.0)));
        let err = Schedule::new("load", &args("step", 10, 0, 5, None, None), 0.0).expect_err("no step duration");
        assert!(err.contains("--load-step-duration"), "{err}");
        let err = Schedule::new("concurrency", &args("line", 1, 0, 0, None, None), 0.0).expect_err("no step");
        assert!(err.contains("--concurrency-step"), "{err}");
        let err = Schedule::new("load", &args("wave", 1, 0, 1, None, None), 0.0).expect_err("unknown");
        assert!(err.contains("--load-schedule=wave"), "{err}");
    }
}
