//! The watchdog: an OS thread of its own (the runtimes it watches may be frozen) that every half threshold
//! reads each watched worker's progress from tokio's stable metrics, and for a worker that made none for the
//! threshold finds its thread, reads why it is stuck, takes its stack, names the call polling on it, and reports;
//! then follows the stall until the worker moves again.
//!
//! Which thread runs which worker: tokio's stable API does not say, so the watchdog learns it from the park hooks.
//! A parked worker's park/unpark count is odd, and its thread's hook marked it parked; whenever exactly one
//! unmatched worker and one unmatched thread are parked (or exactly one of each is running) on two ticks in a row,
//! they are each other's. A runtime of two workers is matched at its first request; a worker whose thread's state
//! disagrees with its count three ticks in a row (after `block_in_place` moved it) is matched anew.

use std::{
    future::Future,
    sync::{Arc, PoisonError, atomic::Ordering, mpsc},
    time::{Duration, Instant, SystemTime},
};

use tracing::field;

use crate::{
    OnStall, RuntimeSlot, Shared,
    calls::{Calls, InFlight},
    capture,
    cause::{self, Cause, Tally},
    rate::Bucket,
    report::{self, CallInfo, StackCost, StallReport},
    stack::{Frame, StackCopy, Symbolizer, Unwinder},
    threads::{self, ThreadEntry},
};

/// The shortest tick, however small the threshold: more wake-ups than this would cost more than they find.
const MIN_TICK: Duration = Duration::from_micros(250);

/// The note of a stall whose stack is being taken and symbolized.
pub(crate) const BEING_TAKEN: &str = "being taken";

/// Threads whose stacks are taken to find which of them is stuck, at most: more candidates than this is a runtime
/// with a large blocking pool busy, and the stall is then reported without its thread.
const MAX_LOOKS: usize = 4;

/// Frames kept of a stack: deeper ones are a runtime's and a thread's plumbing.
const MAX_FRAMES: usize = 128;

/// Ticks on which a matched thread's parked state must disagree with its worker's before the match is dropped.
const DISAGREEMENTS: u8 = 3;

/// What reaches the watchdog through its channel.
#[derive(Debug)]
pub(crate) enum Registration {
    Runtime(Arc<RuntimeSlot>),
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    Call(Arc<InFlight>),
}

/// The builder's choices the watchdog acts on.
pub(crate) struct Settings {
    /// `Some(why)` when stacks are off.
    pub(crate) stacks: Option<String>,
    pub(crate) stacks_per_second: u32,
    pub(crate) lines_per_second: u32,
    pub(crate) on_stall: Option<OnStall>,
}

pub(crate) fn start(shared: Arc<Shared>, registered: mpsc::Receiver<Registration>, settings: Settings) {
    let spawned = std::thread::Builder::new().name("stall-watchdog".to_owned()).spawn(move || {
        let tick = (shared.threshold / 2).max(MIN_TICK);
        let mut watchdog = Watchdog::new(shared, settings);
        watchdog.warm_up();
        loop {
            std::thread::sleep(tick);
            loop {
                match registered.try_recv() {
                    Ok(Registration::Runtime(slot)) => watchdog.runtimes.push(Runtime::new(slot)),
                    Ok(Registration::Call(call)) => watchdog.calls.add(call),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            watchdog.tick(Instant::now());
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the stall watchdog: no stall will be reported");
    }
}

struct Watchdog {
    shared: Arc<Shared>,
    settings: Settings,
    runtimes: Vec<Runtime>,
    calls: Calls,
    stacks: Bucket,
    lines: Bucket,
    /// The stack copy's buffer, allocated once and reused.
    buffer: Vec<u8>,
    unwinder: Unwinder,
    symbolizer: Symbolizer,
}

/// One watched runtime.
struct Runtime {
    slot: Arc<RuntimeSlot>,
    workers: Vec<Worker>,
    /// Cleared once the runtime is found shut down: it is then forgotten.
    alive: bool,
}

/// One worker of a watched runtime.
struct Worker {
    /// Its park/unpark count and busy time when last seen, and when they last moved.
    seen: (u64, Duration),
    moved_at: Instant,
    thread: Option<Arc<ThreadEntry>>,
    disagreements: u8,
    /// A thread that matched it on the last tick, not yet taken.
    candidate: Option<i32>,
    stall: Option<Stall>,
}

/// A stall in progress.
struct Stall {
    began: Instant,
    began_wall: SystemTime,
    thread: Option<Arc<ThreadEntry>>,
    /// The wrapped call polling on the stuck thread when the stall was found, and its poll word.
    call: Option<(Arc<InFlight>, u64)>,
    info: Option<CallInfo>,
    tally: Tally,
    stack: Vec<Frame>,
    stack_note: Option<String>,
    stack_cost: Option<StackCost>,
    /// Its id in the shared list of stalls going on.
    ongoing_id: u64,
}

impl Runtime {
    fn new(slot: Arc<RuntimeSlot>) -> Self {
        Self { slot, workers: Vec::new(), alive: true }
    }
}

impl Watchdog {
    fn new(shared: Arc<Shared>, settings: Settings) -> Self {
        Self {
            stacks: Bucket::new(settings.stacks_per_second),
            lines: Bucket::new(settings.lines_per_second),
            shared,
            settings,
            runtimes: Vec::new(),
            calls: Calls::default(),
            buffer: Vec::new(),
            unwinder: Unwinder::new(),
            symbolizer: Symbolizer::new(),
        }
    }

    /// Loads the executable's symbols once, on this thread and before any stall, so the first stall's report is
    /// not late by it (a few milliseconds for a release binary; tens with debug info).
    fn warm_up(&mut self) {
        if self.settings.stacks.is_none() {
            let _ = self.symbolizer.symbolize(&[Self::warm_up as *const () as usize as u64]);
        }
    }

    fn tick(&mut self, now: Instant) {
        self.calls.prune();
        // The thread table only while some worker's thread is still unknown (once matched, a worker's thread is
        // checked through its own entry).
        let unmatched =
            self.runtimes.iter().any(|r| r.workers.is_empty() || r.workers.iter().any(|w| w.thread.is_none()));
        let threads = if unmatched { threads::all() } else { Vec::new() };
        for r in 0..self.runtimes.len() {
            self.tick_runtime(r, &threads, now);
        }
        self.runtimes.retain(|r| r.alive);
    }

    fn tick_runtime(&mut self, r: usize, threads: &[Arc<ThreadEntry>], now: Instant) {
        let Some(handle) = self.runtimes[r].slot.handle.get().cloned() else { return };
        let metrics = handle.metrics();
        let count = metrics.num_workers();
        let runtime = &mut self.runtimes[r];
        if runtime.workers.len() != count {
            let since = runtime.slot.since;
            // Seen now, moved last when watching began: a worker already stuck then is found a threshold later.
            runtime.workers = (0..count)
                .map(|index| Worker {
                    seen: (metrics.worker_park_unpark_count(index), metrics.worker_total_busy_duration(index)),
                    moved_at: since,
                    thread: None,
                    disagreements: 0,
                    candidate: None,
                    stall: None,
                })
                .collect();
        }
        let mut parked = Vec::with_capacity(count);
        let mut moved = Vec::with_capacity(count);
        for (index, worker) in runtime.workers.iter_mut().enumerate() {
            let now_seen = (metrics.worker_park_unpark_count(index), metrics.worker_total_busy_duration(index));
            parked.push(now_seen.0 % 2 == 1);
            moved.push(now_seen != worker.seen);
            if now_seen != worker.seen {
                worker.seen = now_seen;
                worker.moved_at = now;
            }
        }
        let id = runtime.slot.id;
        let mine: Vec<Arc<ThreadEntry>> = threads
            .iter()
            .filter(|t| t.runtime.load(Ordering::Relaxed) == id && t.alive.load(Ordering::Relaxed))
            .cloned()
            .collect();
        let workers: Vec<&Arc<ThreadEntry>> = mine.iter().filter(|t| t.worker.load(Ordering::Relaxed)).collect();
        match_threads(&mut runtime.workers, &parked, &workers);

        for index in 0..count {
            let runtime = &mut self.runtimes[r];
            let worker = &mut runtime.workers[index];
            if moved[index] || parked[index] {
                if let Some(stall) = worker.stall.take() {
                    self.end(r, index, stall, now);
                }
                continue;
            }
            if let Some(stall) = &mut worker.stall {
                // A new wrapped poll on the stuck thread: the stall that was is over, and the new poll is timed
                // from its own start.
                if let Some(thread) = &stall.thread
                    && let Some((_, word)) = &stall.call
                    && self.calls.polling_on(thread.slot).map(|(_, w, _)| w) != Some(*word)
                {
                    let stall = worker.stall.take();
                    worker.moved_at = now;
                    if let Some(stall) = stall {
                        self.end(r, index, stall, now);
                    }
                    continue;
                }
                if let Some(thread) = &stall.thread
                    && let Some(sample) = cause::sample(thread.tid)
                {
                    stall.tally.add(sample, now.saturating_duration_since(stall.began));
                }
                let (so_far, cause) = (now.saturating_duration_since(stall.began), stall.tally.cause());
                let ongoing_id = stall.ongoing_id;
                self.update_ongoing(ongoing_id, so_far, cause);
                continue;
            }
            if now.saturating_duration_since(worker.moved_at) < self.shared.threshold {
                continue;
            }
            if !self.runtime_is_running(r) {
                return;
            }
            self.begin(r, index, &parked, &mine, now);
        }
    }

    /// Whether the runtime still runs tasks: a shut-down runtime's workers stop moving for good, which is no
    /// stall. A task spawned on a shut-down runtime is cancelled at once.
    fn runtime_is_running(&mut self, r: usize) -> bool {
        let runtime = &mut self.runtimes[r];
        let Some(handle) = runtime.slot.handle.get() else { return false };
        let mut probe = handle.spawn(async {});
        let waker = std::task::Waker::noop();
        let polled = std::pin::Pin::new(&mut probe).poll(&mut std::task::Context::from_waker(waker));
        if let std::task::Poll::Ready(Err(e)) = polled
            && e.is_cancelled()
        {
            runtime.alive = false;
            return false;
        }
        true
    }

    /// A worker has made no progress for the threshold: find its thread and call, read the cause, take the stack.
    fn begin(&mut self, r: usize, index: usize, parked: &[bool], mine: &[Arc<ThreadEntry>], now: Instant) {
        let threshold = self.shared.threshold;
        let runtime = &self.runtimes[r];
        let name = runtime.slot.name.clone();
        let known = runtime.workers[index]
            .thread
            .clone()
            .filter(|t| !t.parked.load(Ordering::Acquire))
            .or_else(|| runtime.slot.driver.clone());
        let began = runtime.workers[index].moved_at;
        let (thread, taken) = match known {
            Some(thread) => (Some(thread), None),
            None => {
                // The tick skipped the thread table when every worker was matched; a stall needs it.
                let id = self.runtimes[r].slot.id;
                let fresh: Vec<Arc<ThreadEntry>>;
                let mine = if mine.is_empty() {
                    fresh = threads::all()
                        .into_iter()
                        .filter(|t| t.runtime.load(Ordering::Relaxed) == id && t.alive.load(Ordering::Relaxed))
                        .collect();
                    &fresh
                } else {
                    mine
                };
                self.guess_thread(r, index, parked, mine, now).map_or((None, None), |(t, f)| (Some(t), f))
            }
        };
        let call = thread.as_ref().and_then(|t| self.calls.polling_on(t.slot));
        // A wrapped poll says exactly when the stall began.
        let began = call
            .as_ref()
            .map_or(began, |(_, _, start_us)| self.shared.epoch + Duration::from_micros(*start_us))
            .min(began);
        let mut tally = Tally::default();
        if let Some(sample) = thread.as_ref().and_then(|t| cause::sample(t.tid)) {
            tally.add(sample, Duration::ZERO);
        }
        let info = call.as_ref().map(|(c, _, _)| c.call.describe());
        let so_far = now.saturating_duration_since(began);
        let began_wall = SystemTime::now().checked_sub(so_far).unwrap_or_else(SystemTime::now);
        let mut report = StallReport {
            time: report::rfc3339(began_wall),
            runtime: name,
            worker: index,
            thread: thread.as_ref().map(|t| t.name.clone()),
            length_ms: so_far,
            ongoing: true,
            cause: tally.cause(),
            call: info.clone(),
            stack: Vec::new(),
            stack_note: Some(BEING_TAKEN.to_owned()),
            stack_cost: None,
        };
        // Listed as going on before its stack is taken: symbolizing may take milliseconds the first time.
        let ongoing_id = self.push_ongoing(report.clone());
        let Taken { frames: stack, note: stack_note, cost } = match (&thread, taken) {
            (_, Some(taken)) => taken,
            (None, None) => Taken {
                frames: Vec::new(),
                note: Some("the stuck thread is not known (instrument the runtime's builder)".to_owned()),
                cost: None,
            },
            (Some(thread), None) => self.take_stack(thread, now),
        };
        report.stack.clone_from(&stack);
        report.stack_note.clone_from(&stack_note);
        report.stack_cost = cost;
        self.update_ongoing_stack(ongoing_id, &report);
        if self.lines.take(now) {
            let suppressed = self.shared.lines_suppressed.swap(0, Ordering::Relaxed);
            warn_begun(&report, threshold, suppressed);
        } else {
            self.shared.lines_suppressed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((c, _, _)) = &call
            && !report.stack.is_empty()
        {
            let stack = report.stack_text();
            c.call.span().in_scope(|| {
                tracing::warn!(stack = %stack, cause = %report.cause, "runtime stall: the stuck thread's stack");
            });
        }
        self.runtimes[r].workers[index].stall = Some(Stall {
            began,
            began_wall,
            thread,
            call: call.map(|(c, word, _)| (c, word)),
            info,
            tally,
            stack,
            stack_note,
            stack_cost: cost,
            ongoing_id,
        });
    }

    /// For a stalled worker not matched to a thread: when as many of the runtime's unmatched threads run as there
    /// are stalled unmatched workers, they are the stuck ones (any pairing names a stuck thread); else the one
    /// unmatched thread with a wrapped poll past the threshold; else the one whose stack is inside a worker's
    /// task poll (threads the runtime started that never parked may be its blocking pool's). The stack, when
    /// taking it decided, comes with the thread.
    fn guess_thread(
        &mut self,
        r: usize,
        index: usize,
        parked: &[bool],
        mine: &[Arc<ThreadEntry>],
        now: Instant,
    ) -> Option<(Arc<ThreadEntry>, Option<Taken>)> {
        let workers = &self.runtimes[r].workers;
        let busy = |t: &ThreadEntry| {
            workers.iter().any(|w| {
                w.thread.as_ref().is_some_and(|m| m.tid == t.tid)
                    || w.stall.as_ref().and_then(|s| s.thread.as_ref()).is_some_and(|m| m.tid == t.tid)
            })
        };
        let running: Vec<Arc<ThreadEntry>> =
            mine.iter().filter(|t| !t.parked.load(Ordering::Acquire) && !busy(t)).cloned().collect();
        let threshold = self.shared.threshold;
        let stalled: Vec<usize> = (0..workers.len())
            .filter(|&w| {
                workers[w].thread.is_none()
                    && !parked[w]
                    && workers[w].stall.is_none()
                    && now.saturating_duration_since(workers[w].moved_at) >= threshold
            })
            .collect();
        if running.len() == stalled.len() {
            let position = stalled.iter().position(|&w| w == index)?;
            return running.get(position).map(|t| (Arc::clone(t), None));
        }
        let threshold_us = threshold.as_micros() as u64;
        let now_us = crate::calls::micros_since(self.shared.epoch, now);
        let long: Vec<&Arc<ThreadEntry>> = running
            .iter()
            .filter(|t| {
                self.calls.polling_on(t.slot).is_some_and(|(_, _, start)| now_us.saturating_sub(start) >= threshold_us)
            })
            .collect();
        if let [one] = long.as_slice() {
            return Some((Arc::clone(one), None));
        }
        let mut polling = Vec::new();
        for thread in running.iter().take(MAX_LOOKS) {
            let taken = self.take_stack(thread, now);
            if taken.note.is_none() && is_polling_a_task(&taken.frames) {
                polling.push((Arc::clone(thread), taken));
            }
        }
        (polling.len() == 1).then(|| polling.pop()).flatten().map(|(t, taken)| (t, Some(taken)))
    }

    /// The stuck thread's stack, or why there is none.
    fn take_stack(&mut self, thread: &ThreadEntry, now: Instant) -> Taken {
        let missed = |note: &str| Taken { frames: Vec::new(), note: Some(note.to_owned()), cost: None };
        if let Some(why) = &self.settings.stacks {
            return missed(why);
        }
        if !self.stacks.take(now) {
            self.shared.stacks_skipped.fetch_add(1, Ordering::Relaxed);
            return missed("rate-limited");
        }
        match capture::capture(thread, std::mem::take(&mut self.buffer)) {
            Err((why, buffer)) => {
                self.buffer = buffer;
                missed(why.as_str())
            }
            Ok(captured) => {
                let started = Instant::now();
                let copy = StackCopy { regs: captured.regs, bytes: &captured.stack };
                let addresses = self.unwinder.unwind(&copy, MAX_FRAMES);
                let bytes = captured.stack.len();
                self.buffer = captured.stack;
                let frames = self.symbolizer.symbolize(&addresses);
                let cost = StackCost {
                    signal_to_copy_us: micros(captured.took),
                    copied_bytes: bytes,
                    unwind_and_names_us: micros(started.elapsed()),
                };
                Taken { frames, note: None, cost: Some(cost) }
            }
        }
    }

    fn push_ongoing(&self, report: StallReport) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.shared.ongoing.lock().unwrap_or_else(PoisonError::into_inner).push((id, report));
        id
    }

    fn update_ongoing(&self, id: u64, so_far: Duration, cause: Cause) {
        let mut ongoing = self.shared.ongoing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, report)) = ongoing.iter_mut().find(|(i, _)| *i == id) {
            report.length_ms = so_far;
            report.cause = cause;
        }
    }

    fn update_ongoing_stack(&self, id: u64, taken: &StallReport) {
        let mut ongoing = self.shared.ongoing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, report)) = ongoing.iter_mut().find(|(i, _)| *i == id) {
            report.stack.clone_from(&taken.stack);
            report.stack_note.clone_from(&taken.stack_note);
            report.stack_cost = taken.stack_cost;
        }
    }

    fn remove_ongoing(&self, id: u64) {
        self.shared.ongoing.lock().unwrap_or_else(PoisonError::into_inner).retain(|(i, _)| *i != id);
    }

    /// The worker moved again: the stall is over.
    fn end(&mut self, r: usize, index: usize, stall: Stall, now: Instant) {
        self.remove_ongoing(stall.ongoing_id);
        let length = now.saturating_duration_since(stall.began);
        let report = StallReport {
            time: report::rfc3339(stall.began_wall),
            runtime: self.runtimes[r].slot.name.clone(),
            worker: index,
            thread: stall.thread.as_ref().map(|t| t.name.clone()),
            length_ms: length,
            ongoing: false,
            cause: stall.tally.cause(),
            call: stall.info,
            stack: stall.stack,
            stack_note: stall.stack_note,
            stack_cost: stall.stack_cost,
        };
        if self.lines.take(now) {
            let suppressed = self.shared.lines_suppressed.swap(0, Ordering::Relaxed);
            warn_ended(&report, suppressed);
        } else {
            self.shared.lines_suppressed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(hook) = &self.settings.on_stall {
            hook(&report);
        }
        self.shared.history.push(report);
    }
}

/// A stack as [`Watchdog::take_stack`] took it.
struct Taken {
    frames: Vec<Frame>,
    /// Why there are no frames.
    note: Option<String>,
    cost: Option<StackCost>,
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

/// Whether a stack is a worker's, inside a task's poll (not its blocking pool's, nor in `block_in_place`, where
/// the thread has handed its worker to another).
fn is_polling_a_task(frames: &[Frame]) -> bool {
    let has = |needle: &str| frames.iter().any(|f| f.function.as_deref().is_some_and(|n| n.contains(needle)));
    (has("scheduler::multi_thread::worker") || has("scheduler::current_thread")) && !has("block_in_place")
}

/// Learns which thread runs which worker (see the module docs).
fn match_threads(workers: &mut [Worker], parked: &[bool], mine: &[&Arc<ThreadEntry>]) {
    for (index, worker) in workers.iter_mut().enumerate() {
        if let Some(thread) = &worker.thread {
            let agrees = thread.alive.load(Ordering::Relaxed) && thread.parked.load(Ordering::Acquire) == parked[index];
            worker.disagreements = if agrees { 0 } else { worker.disagreements + 1 };
            if worker.disagreements >= DISAGREEMENTS {
                worker.thread = None;
                worker.disagreements = 0;
            }
        }
    }
    let matched: Vec<i32> = workers.iter().filter_map(|w| w.thread.as_ref().map(|t| t.tid)).collect();
    let free: Vec<&Arc<ThreadEntry>> = mine.iter().copied().filter(|t| !matched.contains(&t.tid)).collect();
    let mut matched_now = None;
    for state in [true, false] {
        let workers_in: Vec<usize> =
            (0..workers.len()).filter(|&w| workers[w].thread.is_none() && parked[w] == state).collect();
        let threads_in: Vec<&&Arc<ThreadEntry>> =
            free.iter().filter(|t| t.parked.load(Ordering::Acquire) == state).collect();
        if let ([w], [t]) = (workers_in.as_slice(), threads_in.as_slice()) {
            matched_now = Some((*w, Arc::clone(t)));
        }
    }
    for (index, worker) in workers.iter_mut().enumerate() {
        match &matched_now {
            Some((w, thread)) if *w == index => {
                if worker.candidate == Some(thread.tid) {
                    worker.thread = Some(Arc::clone(thread));
                    worker.candidate = None;
                } else {
                    worker.candidate = Some(thread.tid);
                }
            }
            _ => worker.candidate = None,
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The `WARN` of a stall found while it lasts.
fn warn_begun(report: &StallReport, threshold: Duration, suppressed: u64) {
    let call = report.call.as_ref();
    tracing::warn!(
        runtime = %report.runtime,
        worker = report.worker,
        thread = report.thread.as_deref().unwrap_or("unknown"),
        so_far_ms = millis(report.length_ms),
        threshold_ms = millis(threshold),
        cause = %report.cause,
        culprit = report.culprit(3).as_deref().unwrap_or("unknown"),
        method = call.map(|c| field::display(&c.method)),
        mode = call.and_then(|c| c.mode.as_deref()),
        n = call.and_then(|c| c.n),
        trace_id = call.and_then(|c| c.trace_id.as_deref()),
        stack_note = report.stack_note.as_deref(),
        suppressed = (suppressed > 0).then_some(suppressed),
        "runtime stall: a worker has made no progress for {:.1?} and is still stuck",
        report.length_ms
    );
}

/// The line of a stall that has ended.
fn warn_ended(report: &StallReport, suppressed: u64) {
    let call = report.call.as_ref();
    tracing::warn!(
        runtime = %report.runtime,
        worker = report.worker,
        thread = report.thread.as_deref().unwrap_or("unknown"),
        stall_ms = millis(report.length_ms),
        cause = %report.cause,
        culprit = report.culprit(3).as_deref().unwrap_or("unknown"),
        method = call.map(|c| field::display(&c.method)),
        mode = call.and_then(|c| c.mode.as_deref()),
        n = call.and_then(|c| c.n),
        trace_id = call.and_then(|c| c.trace_id.as_deref()),
        suppressed = (suppressed > 0).then_some(suppressed),
        "runtime stall ended: the worker made no progress for {:.1?}",
        report.length_ms
    );
}
