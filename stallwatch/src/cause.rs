//! Why a thread is stuck, read from the kernel while it is: `/proc/self/task/TID/syscall` (the system call it is
//! in, if any), `stat` (its scheduler state) and `schedstat` (nanoseconds on a CPU and waiting for one). The stuck
//! thread is not touched. The watchdog samples a stuck thread at each tick while the stall lasts, and the cause is
//! what most of the samples say (a tie goes to the system call):
//!
//! | cause | the samples show | what to do |
//! |---|---|---|
//! | `cpu` | running, on a CPU for most of the time | move the work to a compute pool (rayon) |
//! | `syscall` | sleeping in a system call other than `futex` (named: `clock_nanosleep`, `read`, …) | `spawn_blocking`, or an async client |
//! | `lock` | sleeping in `futex`: a `std::sync::Mutex`, a channel's blocking `recv`, a `Condvar` | an async lock or channel |
//! | `descheduled` | runnable, but waiting for a CPU longer than it ran | fewer threads than cores, or a larger CPU quota |

use std::time::Duration;

use serde::Serialize;

/// The kind of a stall's cause (see the module docs); its `as_str` is the `cause` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CauseKind {
    Cpu,
    Syscall,
    Lock,
    Descheduled,
    /// Nothing could be read (not Linux, or the thread is unknown).
    Unknown,
}

impl CauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Syscall => "syscall",
            Self::Lock => "lock",
            Self::Descheduled => "descheduled",
            Self::Unknown => "unknown",
        }
    }
}

/// Why a thread was stuck: the kind, and for `syscall` and `lock` the system call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub kind: CauseKind,
    /// The system call the thread was in (`clock_nanosleep`, `futex`), for `syscall` and `lock`.
    pub syscall: Option<String>,
}

impl Cause {
    pub(crate) const UNKNOWN: Self = Self { kind: CauseKind::Unknown, syscall: None };
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.syscall {
            Some(call) if self.kind == CauseKind::Syscall => write!(f, "syscall {call}"),
            _ => f.write_str(self.kind.as_str()),
        }
    }
}

/// One look at a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// The system call number it is in, or `None` when it runs (or the file said nothing).
    pub(crate) syscall: Option<i64>,
    /// Its state letter from `stat` (`R`, `S`, `D`, …).
    pub(crate) state: u8,
    /// Nanoseconds on a CPU and waiting on a run queue, since the thread began.
    pub(crate) on_cpu_ns: u64,
    pub(crate) waiting_ns: u64,
}

/// Reads `tid`'s files; `None` off Linux or when the thread is gone.
pub(crate) fn sample(tid: i32) -> Option<Sample> {
    let base = format!("/proc/self/task/{tid}");
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may itself hold spaces or parentheses.
    let state = stat.rsplit_once(')')?.1.trim_start().bytes().next()?;
    let syscall = std::fs::read_to_string(format!("{base}/syscall")).ok();
    let syscall = syscall.as_deref().and_then(|s| s.split_whitespace().next()).and_then(|n| n.parse::<i64>().ok());
    let schedstat = std::fs::read_to_string(format!("{base}/schedstat")).unwrap_or_default();
    let mut fields = schedstat.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
    let (on_cpu_ns, waiting_ns) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
    // -1: blocked, but not in a system call (a page fault, say): count it as running.
    Some(Sample { syscall: syscall.filter(|&n| n >= 0), state, on_cpu_ns, waiting_ns })
}

/// The samples of one stall, folded into a cause as they come.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    first: Option<Sample>,
    last: Option<Sample>,
    running: u32,
    /// Samples in each system call, by number (few distinct numbers per stall).
    in_syscall: Vec<(i64, u32)>,
    /// The wall time between the first and the last sample.
    span: Duration,
}

impl Tally {
    pub(crate) fn add(&mut self, sample: Sample, since_first: Duration) {
        self.first.get_or_insert(sample);
        self.last = Some(sample);
        self.span = since_first;
        match sample.syscall {
            Some(n) if sample.state != b'R' => match self.in_syscall.iter_mut().find(|(k, _)| *k == n) {
                Some((_, count)) => *count += 1,
                None => self.in_syscall.push((n, 1)),
            },
            _ => self.running += 1,
        }
    }

    /// The cause the samples so far point to (see the module docs).
    pub(crate) fn cause(&self) -> Cause {
        let Some((first, last)) = self.first.zip(self.last) else { return Cause::UNKNOWN };
        // A tie goes to the system call: a thread seen blocked in one is the more specific evidence, and a starved
        // watchdog (a loaded machine) may take as few as two samples, one of them as the call returns.
        let blocked: u32 = self.in_syscall.iter().map(|(_, c)| c).sum();
        if blocked > 0 && blocked >= self.running {
            let (number, _) = self.in_syscall.iter().copied().max_by_key(|&(_, c)| c).unwrap_or((-1, 0));
            let name = syscall_name(number);
            let kind = if is_lock(number) { CauseKind::Lock } else { CauseKind::Syscall };
            return Cause { kind, syscall: Some(name) };
        }
        // Runnable for most of it: on a CPU, unless the run queue kept it off one longer than it ran.
        let ran = last.on_cpu_ns.saturating_sub(first.on_cpu_ns);
        let waited = last.waiting_ns.saturating_sub(first.waiting_ns);
        if !self.span.is_zero() && waited > ran {
            return Cause { kind: CauseKind::Descheduled, syscall: None };
        }
        Cause { kind: CauseKind::Cpu, syscall: None }
    }
}

#[cfg(target_os = "linux")]
fn is_lock(number: i64) -> bool {
    number == libc::SYS_futex || number == libc::SYS_futex_waitv
}

#[cfg(not(target_os = "linux"))]
fn is_lock(_number: i64) -> bool {
    false
}

/// The name of a system call that a blocked thread is commonly found in; others by number.
#[cfg(target_os = "linux")]
pub(crate) fn syscall_name(number: i64) -> String {
    use libc::*;
    #[rustfmt::skip]
    let known: &[(i64, &str)] = &[
        (SYS_read, "read"), (SYS_write, "write"), (SYS_pread64, "pread64"), (SYS_pwrite64, "pwrite64"),
        (SYS_readv, "readv"), (SYS_writev, "writev"), (SYS_openat, "openat"), (SYS_close, "close"),
        (SYS_fsync, "fsync"), (SYS_fdatasync, "fdatasync"), (SYS_sync_file_range, "sync_file_range"),
        (SYS_recvfrom, "recvfrom"), (SYS_recvmsg, "recvmsg"), (SYS_sendto, "sendto"), (SYS_sendmsg, "sendmsg"),
        (SYS_connect, "connect"), (SYS_accept4, "accept4"), (SYS_ppoll, "ppoll"), (SYS_pselect6, "pselect6"),
        (SYS_epoll_pwait, "epoll_pwait"), (SYS_clock_nanosleep, "clock_nanosleep"), (SYS_futex, "futex"),
        (SYS_futex_waitv, "futex_waitv"), (SYS_wait4, "wait4"), (SYS_waitid, "waitid"), (SYS_flock, "flock"),
        (SYS_fcntl, "fcntl"), (SYS_ioctl, "ioctl"), (SYS_getrandom, "getrandom"), (SYS_mmap, "mmap"),
        (SYS_munmap, "munmap"), (SYS_madvise, "madvise"), (SYS_msync, "msync"), (SYS_sched_yield, "sched_yield"),
        (SYS_io_uring_enter, "io_uring_enter"), (SYS_copy_file_range, "copy_file_range"), (SYS_statx, "statx"),
        (SYS_newfstatat, "newfstatat"), (SYS_getdents64, "getdents64"), (SYS_rt_sigtimedwait, "rt_sigtimedwait"),
        #[cfg(target_arch = "x86_64")] (SYS_nanosleep, "nanosleep"),
        #[cfg(target_arch = "x86_64")] (SYS_poll, "poll"),
        #[cfg(target_arch = "x86_64")] (SYS_select, "select"),
        #[cfg(target_arch = "x86_64")] (SYS_epoll_wait, "epoll_wait"),
        #[cfg(target_arch = "x86_64")] (SYS_accept, "accept"),
        #[cfg(target_arch = "x86_64")] (SYS_open, "open"),
        #[cfg(target_arch = "x86_64")] (SYS_stat, "stat"),
    ];
    known.iter().find(|(n, _)| *n == number).map_or_else(|| format!("syscall {number}"), |(_, name)| (*name).to_owned())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn syscall_name(number: i64) -> String {
    format!("syscall {number}")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::{Arc, Barrier, Mutex};

    use super::*;

    /// Samples `tid` a few times over `for_`, as the watchdog would.
    fn watch(tid: i32, for_: Duration) -> Cause {
        let started = std::time::Instant::now();
        let mut tally = Tally::default();
        while started.elapsed() < for_ {
            if let Some(s) = sample(tid) {
                tally.add(s, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tally.cause()
    }

    /// Runs `block` on a thread of its own, hands its tid to `look` once it has started, and joins it.
    fn on_a_thread(block: impl FnOnce() + Send + 'static, look: impl FnOnce(i32) -> Cause) -> Cause {
        let (sender, tid) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            sender.send(crate::threads::current_tid()).expect("send");
            block();
        });
        let tid = tid.recv().expect("tid");
        // The thread reaches its blocking call within microseconds of sending; the watch lasts far longer.
        let cause = look(tid);
        thread.join().expect("join");
        cause
    }

    fn at(syscall: Option<i64>, state: u8, on_cpu_ns: u64, waiting_ns: u64) -> Sample {
        Sample { syscall, state, on_cpu_ns, waiting_ns }
    }

    #[test]
    fn the_samples_decide_and_a_tie_goes_to_the_system_call() {
        let ms = Duration::from_millis;
        let mut tie = Tally::default();
        tie.add(at(Some(libc::SYS_clock_nanosleep), b'S', 0, 0), ms(0));
        tie.add(at(None, b'R', 1_000, 0), ms(5));
        assert_eq!(tie.cause(), Cause { kind: CauseKind::Syscall, syscall: Some("clock_nanosleep".to_owned()) });
        let mut spinning = Tally::default();
        spinning.add(at(None, b'R', 0, 0), ms(0));
        spinning.add(at(None, b'R', 9_000_000, 1_000_000), ms(10));
        assert_eq!(spinning.cause().kind, CauseKind::Cpu);
        let mut starved = Tally::default();
        starved.add(at(None, b'R', 0, 0), ms(0));
        starved.add(at(None, b'R', 2_000_000, 8_000_000), ms(10));
        assert_eq!(starved.cause().kind, CauseKind::Descheduled);
        let mut locked = Tally::default();
        locked.add(at(Some(libc::SYS_futex), b'S', 0, 0), ms(0));
        assert_eq!(locked.cause().kind, CauseKind::Lock);
        assert_eq!(Tally::default().cause(), Cause::UNKNOWN);
    }

    #[test]
    fn a_sleeping_thread_is_in_clock_nanosleep() {
        let cause = on_a_thread(
            || std::thread::sleep(Duration::from_millis(300)),
            |tid| watch(tid, Duration::from_millis(150)),
        );
        assert_eq!(cause, Cause { kind: CauseKind::Syscall, syscall: Some("clock_nanosleep".to_owned()) });
    }

    #[test]
    fn a_thread_waiting_on_a_mutex_is_a_lock() {
        let lock = Arc::new(Mutex::new(()));
        let held = lock.lock().expect("lock");
        let (waiter, ready) = (Arc::clone(&lock), Arc::new(Barrier::new(2)));
        let ready2 = Arc::clone(&ready);
        let cause = on_a_thread(
            move || {
                ready2.wait();
                drop(waiter.lock().expect("lock"));
            },
            |tid| {
                ready.wait();
                let cause = watch(tid, Duration::from_millis(150));
                drop(held);
                cause
            },
        );
        assert_eq!(cause.kind, CauseKind::Lock, "{cause:?}");
    }

    #[test]
    fn a_spinning_thread_is_on_the_cpu() {
        let cause = on_a_thread(
            || {
                let until = std::time::Instant::now() + Duration::from_millis(300);
                let mut x = 0u64;
                while std::time::Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            },
            |tid| watch(tid, Duration::from_millis(150)),
        );
        // On a machine whose other core is busy the spinner may wait for its core part of the time, but it is never
        // in a system call.
        assert!(matches!(cause.kind, CauseKind::Cpu | CauseKind::Descheduled), "{cause:?}");
    }
}
