//! Taking a stuck thread's stack without harming it: the watchdog sends the thread a signal, and the thread's
//! handler copies its registers and its live stack into a buffer the watchdog allocated in advance, then returns.
//! Unwinding and symbolizing happen later, on the watchdog thread ([`crate::stack`]).
//!
//! The handler is async-signal-safe by construction: it takes no lock, allocates nothing, calls no unwinder; it
//! reads atomics, asks the kernel for its thread id, and copies memory that is its own live stack (between its
//! stack pointer and the top of the stack it registered, and only when the stack pointer lies inside those
//! bounds). It saves and restores `errno`. A signal that arrives late, or at a thread that is not the one asked
//! for, does nothing. One capture runs at a time (the watchdog is one thread), so one request slot is enough.
//!
//! The handler is installed once per process, and only where the signal's disposition is still the default: a
//! signal another library handles is left alone, and stacks are then off (the cause still works).

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicI32, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    stack::Registers,
    threads::{self, ThreadEntry},
};

/// How much of a stack the handler copies, from its stack pointer up: the innermost frames are what a report
/// needs, and a deeper stack is cut (the unwinder stops where the copy ends). 256 KiB is far deeper than a tokio
/// worker's usual stack in a handler, and copies in tens of microseconds.
pub(crate) const MAX_COPY: usize = 256 * 1024;

/// How long the watchdog waits for the handler: a thread that is running gets the signal at once, a thread in a
/// system call as soon as the kernel interrupts it; a thread that blocks the signal never answers.
const ANSWER_DEADLINE: Duration = Duration::from_millis(50);

const IDLE: u8 = 0;
const ARMED: u8 = 1;
const COPYING: u8 = 2;
const DONE: u8 = 3;

/// The one capture in progress: written by the watchdog before it signals, read by the handler.
struct Request {
    state: AtomicU8,
    tid: AtomicI32,
    pthread: AtomicU64,
    stack_top: AtomicU64,
    stack_size: AtomicU64,
    buffer: AtomicU64,
    copied: AtomicUsize,
    ip: AtomicU64,
    sp: AtomicU64,
    bp: AtomicU64,
}

static REQUEST: Request = Request {
    state: AtomicU8::new(IDLE),
    tid: AtomicI32::new(0),
    pthread: AtomicU64::new(0),
    stack_top: AtomicU64::new(0),
    stack_size: AtomicU64::new(0),
    buffer: AtomicU64::new(0),
    copied: AtomicUsize::new(0),
    ip: AtomicU64::new(0),
    sp: AtomicU64::new(0),
    bp: AtomicU64::new(0),
};

/// Why a capture has no stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missed {
    /// The signal handler could not be installed (another handler owns the signal, or not Linux x86_64).
    Unsupported,
    /// The thread did not answer within the deadline (it blocks the signal, or exited).
    NoAnswer,
    /// The thread's stack bounds are unknown, or its stack pointer lay outside them.
    OutsideStack,
}

impl Missed {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unsupported => "stack capture unavailable on this platform or signal",
            Self::NoAnswer => "the thread did not answer the capture signal in time",
            Self::OutsideStack => "the thread's stack pointer was outside its registered stack",
        }
    }
}

/// The signal handler's installation, once per process: the signal number, or why there is none.
static INSTALLED: OnceLock<Result<i32, String>> = OnceLock::new();

/// Installs the handler for `signal` (once per process; later calls return the first result).
pub(crate) fn install(signal: i32) -> Result<i32, String> {
    INSTALLED.get_or_init(|| install_handler(signal)).clone()
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn install_handler(signal: i32) -> Result<i32, String> {
    // SAFETY: sigaction with a zeroed, then filled, struct; the old disposition is read before it is replaced.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &raw mut old) != 0 {
            return Err(format!("signal {signal}: {}", std::io::Error::last_os_error()));
        }
        if old.sa_sigaction != libc::SIG_DFL {
            return Err(format!("signal {signal} already has a handler; stacks are off (choose another signal)"));
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&raw mut action.sa_mask);
        if libc::sigaction(signal, &raw const action, std::ptr::null_mut()) != 0 {
            return Err(format!("signal {signal}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(signal)
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn install_handler(_signal: i32) -> Result<i32, String> {
    Err("stack capture needs Linux on x86_64".to_owned())
}

/// The handler (see the module docs). Everything here must stay async-signal-safe.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
extern "C" fn on_signal(_signal: libc::c_int, _info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is thread-local; reading and restoring it is what every signal handler must do.
    let errno = unsafe { *libc::__errno_location() };
    if REQUEST.state.load(Ordering::Acquire) == ARMED
        && REQUEST.tid.load(Ordering::Relaxed) == threads::current_tid()
        && REQUEST.pthread.load(Ordering::Relaxed) == threads::pthread_self()
        && REQUEST.state.compare_exchange(ARMED, COPYING, Ordering::Acquire, Ordering::Relaxed).is_ok()
    {
        // SAFETY: the kernel hands an SA_SIGINFO handler the interrupted context as a ucontext_t.
        let gregs = unsafe { (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let (ip, sp, bp) = (
            gregs[libc::REG_RIP as usize] as u64,
            gregs[libc::REG_RSP as usize] as u64,
            gregs[libc::REG_RBP as usize] as u64,
        );
        let (top, size) = (REQUEST.stack_top.load(Ordering::Relaxed), REQUEST.stack_size.load(Ordering::Relaxed));
        let copied = if size > 0 && sp < top && sp >= top - size {
            let len = usize::try_from(top - sp).unwrap_or(MAX_COPY).min(MAX_COPY);
            // SAFETY: [sp, sp + len) lies inside this thread's own mapped stack (checked above) and the buffer
            // holds MAX_COPY bytes, allocated by the watchdog and kept alive until the state leaves COPYING.
            unsafe {
                std::ptr::copy_nonoverlapping(sp as *const u8, REQUEST.buffer.load(Ordering::Relaxed) as *mut u8, len);
            }
            len
        } else {
            0
        };
        REQUEST.ip.store(ip, Ordering::Relaxed);
        REQUEST.sp.store(sp, Ordering::Relaxed);
        REQUEST.bp.store(bp, Ordering::Relaxed);
        REQUEST.copied.store(copied, Ordering::Relaxed);
        REQUEST.state.store(DONE, Ordering::Release);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Registers and a copy of a stuck thread's stack, as its handler took them.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) regs: Registers,
    /// The stack from `regs.sp` up, possibly cut at [`MAX_COPY`].
    pub(crate) stack: Vec<u8>,
    /// How long from the signal to the copy being ready (the stuck thread's share of it is the copy itself).
    pub(crate) took: Duration,
}

/// Asks `thread` for its registers and stack; `buffer` must hold [`MAX_COPY`] bytes and is returned, filled, in
/// the result (the watchdog allocates it once and reuses it).
pub(crate) fn capture(thread: &ThreadEntry, mut buffer: Vec<u8>) -> Result<Captured, (Missed, Vec<u8>)> {
    let Some(Ok(signal)) = INSTALLED.get() else { return Err((Missed::Unsupported, buffer)) };
    // Several detectors in one process (a test binary's) take turns with the one request slot. Only watchdog
    // threads take this lock; the stuck thread never does.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if thread.stack_size == 0 {
        return Err((Missed::OutsideStack, buffer));
    }
    buffer.resize(MAX_COPY, 0);
    let started = Instant::now();
    REQUEST.tid.store(thread.tid, Ordering::Relaxed);
    REQUEST.pthread.store(thread.pthread, Ordering::Relaxed);
    REQUEST.stack_top.store(thread.stack_top, Ordering::Relaxed);
    REQUEST.stack_size.store(thread.stack_size, Ordering::Relaxed);
    REQUEST.buffer.store(buffer.as_mut_ptr() as u64, Ordering::Relaxed);
    REQUEST.copied.store(0, Ordering::Relaxed);
    REQUEST.state.store(ARMED, Ordering::Release);
    if !signal_thread(thread.tid, *signal) {
        REQUEST.state.store(IDLE, Ordering::Release);
        return Err((Missed::NoAnswer, buffer));
    }
    let answered = loop {
        match REQUEST.state.load(Ordering::Acquire) {
            DONE => break true,
            COPYING => std::thread::yield_now(),
            _ if started.elapsed() >= ANSWER_DEADLINE => {
                // Disarm unless the handler has just started copying; then wait for it (a bounded memcpy).
                if REQUEST.state.compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    break false;
                }
            }
            _ => std::thread::sleep(Duration::from_micros(50)),
        }
    };
    if !answered {
        return Err((Missed::NoAnswer, buffer));
    }
    let regs = Registers {
        ip: REQUEST.ip.load(Ordering::Relaxed),
        sp: REQUEST.sp.load(Ordering::Relaxed),
        bp: REQUEST.bp.load(Ordering::Relaxed),
    };
    let copied = REQUEST.copied.load(Ordering::Relaxed);
    REQUEST.state.store(IDLE, Ordering::Release);
    if copied == 0 {
        return Err((Missed::OutsideStack, buffer));
    }
    buffer.truncate(copied);
    Ok(Captured { regs, stack: buffer, took: started.elapsed() })
}

#[cfg(target_os = "linux")]
fn signal_thread(tid: i32, signal: i32) -> bool {
    // SAFETY: tgkill with this process's id only ever reaches a thread of this process.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn signal_thread(_tid: i32, _signal: i32) -> bool {
    false
}

/// The default signal: a real-time one above those glibc keeps for itself, which nothing else in a tokio server
/// uses by default (profilers take `SIGPROF`, runtimes `SIGUSR1`/`SIGUSR2`).
#[cfg(target_os = "linux")]
pub(crate) fn default_signal() -> i32 {
    libc::SIGRTMIN() + 7
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn default_signal() -> i32 {
    0
}
