//! The threads that run a watched runtime's tasks: what the watchdog needs to look at a stuck one from outside
//! (its kernel thread id for `/proc` and the signal, its `pthread_t` and stack bounds so the signal handler copies
//! only its own live stack) and whether it is parked, as the runtime's park hooks say.
//!
//! A thread registers itself, on itself, the first time a hook or a wrapped poll runs on it; the entry is dropped
//! from the table when the thread exits. Registering takes the table's lock once per thread; after that a thread
//! reaches its entry through a thread-local, without a lock.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

/// One thread, as the watchdog sees it.
#[derive(Debug)]
pub(crate) struct ThreadEntry {
    /// A small number for the thread, unique among live threads: what a wrapped poll's word stores.
    pub(crate) slot: u16,
    /// The kernel's thread id (`gettid`): `/proc/self/task/TID/...` and `tgkill`.
    pub(crate) tid: i32,
    /// `pthread_self()` as an integer: the signal handler checks it, so a reused tid never copies a stranger.
    pub(crate) pthread: u64,
    /// The thread's name and tid, as the reports print it (`tokio-runtime-worker (tid 4242)`).
    pub(crate) name: String,
    /// The stack's highest address (it grows down) and its size; `(0, 0)` when the thread library did not say.
    pub(crate) stack_top: u64,
    pub(crate) stack_size: u64,
    /// Set by the runtime's `on_thread_park` hook, cleared by `on_thread_unpark`.
    pub(crate) parked: AtomicBool,
    /// The watched runtime that started this thread or whose hooks run on it (0: none).
    pub(crate) runtime: AtomicU64,
    /// Set by the first park hook: the thread runs a worker (a thread the runtime started may instead be one of
    /// its blocking pool's).
    pub(crate) worker: AtomicBool,
    /// Cleared when the thread exits.
    pub(crate) alive: AtomicBool,
}

/// Every live thread that registered, by slot (`None`: a free slot).
static TABLE: Mutex<Vec<Option<Arc<ThreadEntry>>>> = Mutex::new(Vec::new());

/// Gives the thread's slot back when it exits.
struct Registration(Arc<ThreadEntry>);

impl Drop for Registration {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = table.get_mut(usize::from(self.0.slot)) {
            *entry = None;
        }
    }
}

thread_local! {
    static ME: Registration = Registration(register());
}

fn register() -> Arc<ThreadEntry> {
    let thread = std::thread::current();
    let tid = current_tid();
    let name = format!("{} (tid {tid})", thread.name().unwrap_or("unnamed"));
    let (stack_top, stack_size) = stack_bounds();
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = table.iter().position(Option::is_none).unwrap_or_else(|| {
        table.push(None);
        table.len() - 1
    });
    let entry = Arc::new(ThreadEntry {
        // More than 65 536 threads alive at once: the last slot is shared, and a call on it may be misnamed.
        slot: u16::try_from(slot).unwrap_or(u16::MAX),
        tid,
        pthread: pthread_self(),
        name,
        stack_top,
        stack_size,
        parked: AtomicBool::new(false),
        runtime: AtomicU64::new(0),
        worker: AtomicBool::new(false),
        alive: AtomicBool::new(true),
    });
    table[slot] = Some(Arc::clone(&entry));
    entry
}

/// The current thread's entry, registering it on first use; `None` while the thread is exiting.
pub(crate) fn current() -> Option<Arc<ThreadEntry>> {
    ME.try_with(|me| Arc::clone(&me.0)).ok()
}

/// Runs `f` on the current thread's entry without cloning it (the hot path of a wrapped poll).
pub(crate) fn with_current<R>(f: impl FnOnce(&ThreadEntry) -> R) -> Option<R> {
    ME.try_with(|me| f(&me.0)).ok()
}

/// The live threads that registered.
pub(crate) fn all() -> Vec<Arc<ThreadEntry>> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner).iter().flatten().cloned().collect()
}

#[cfg(target_os = "linux")]
pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn current_tid() -> i32 {
    0
}

pub(crate) fn pthread_self() -> u64 {
    // SAFETY: pthread_self has no preconditions; pthread_t is an integer or a pointer, stored as its bits.
    unsafe { libc::pthread_self() as u64 }
}

/// The current thread's stack: its highest address and its size, as the thread library reports them.
#[cfg(target_os = "linux")]
fn stack_bounds() -> (u64, u64) {
    // SAFETY: the attribute object is initialised by pthread_getattr_np before it is read and destroyed after.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &raw mut addr, &raw mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        if got != 0 || addr.is_null() {
            return (0, 0);
        }
        (addr as u64 + size as u64, size as u64)
    }
}

#[cfg(not(target_os = "linux"))]
fn stack_bounds() -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_registers_once_with_its_own_slot_tid_and_stack() {
        let here = current().expect("registered");
        assert!(Arc::ptr_eq(&here, &current().expect("again")));
        let probe = 0u8;
        let at = &raw const probe as u64;
        assert!(at < here.stack_top && at > here.stack_top - here.stack_size, "a local lies on the stack");
        let there = std::thread::Builder::new()
            .name("slot-test".to_owned())
            .spawn(|| {
                let me = current().expect("registered");
                (me.slot, me.tid, me.name.clone())
            })
            .expect("spawn")
            .join()
            .expect("join");
        assert_ne!(there.0, here.slot);
        assert_ne!(there.1, here.tid);
        assert!(there.2.starts_with("slot-test (tid "), "{}", there.2);
        assert!(!all().iter().any(|e| e.tid == there.1), "an exited thread leaves the table");
    }
}
