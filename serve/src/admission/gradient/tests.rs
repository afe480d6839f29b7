//! The controller driven by a simulated server and clock: a CPU-bound service of a few cores under steady,
//! light or overwhelming demand, each test checking one rule of the module doc.

use super::*;

/// Overload: [`OVERLOAD_FACTOR`] times as many calls offered as the limit admits (a marker for [`simulate`]).
const OVERLOAD: usize = usize::MAX;

/// How many times the limit an overload offers: the reliability rig's overload scenario offers 10× capacity.
const OVERLOAD_FACTOR: usize = 10;

/// A server with `cores` cores and requests of `work` each: with `c` in flight, each takes
/// `work × max(1, c / cores)` (processor sharing). Each round `offered` calls arrive (or, for [`OVERLOAD`],
/// [`OVERLOAD_FACTOR`] times the limit); as many as the limit allows are admitted, and they complete one after
/// another over one latency, the rest being refused in between, evenly (as they arrive). Runs `rounds` rounds.
fn simulate(gradient: &mut Gradient, clock: &mut Instant, cores: f64, work: Duration, offered: usize, rounds: usize) {
    for _ in 0..rounds {
        let limit = gradient.limit();
        let offered = if offered == OVERLOAD { limit * OVERLOAD_FACTOR } else { offered };
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
