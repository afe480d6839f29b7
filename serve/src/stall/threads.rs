//! Small numbers for threads, so a poll's thread fits beside its start time in one atomic word, and the watchdog
//! can name the thread a stalled poll runs on.
//!
//! A thread takes a slot the first time it polls a watched call and gives it back when it exits, so the table is
//! as long as the most threads alive at once, however many the runtime's blocking pool starts and stops.

use std::sync::{Mutex, PoisonError};

/// The threads' names (with their `ThreadId`: tokio names every worker alike), by slot; `None` for a free slot.
static NAMES: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());

/// The name of a slot no thread holds.
const UNNAMED: &str = "unknown";

/// A thread's slot, given back when the thread exits.
struct Slot(u16);

impl Slot {
    fn take() -> Self {
        let thread = std::thread::current();
        let name = format!("{} ({:?})", thread.name().unwrap_or(UNNAMED), thread.id());
        let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match names.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                names.push(None);
                names.len() - 1
            }
        };
        names[slot] = Some(name);
        // More than 65 536 threads alive at once: the last slot is shared, and its name may be wrong.
        Self(u16::try_from(slot).unwrap_or(u16::MAX))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(name) = NAMES.lock().unwrap_or_else(PoisonError::into_inner).get_mut(usize::from(self.0)) {
            *name = None;
        }
    }
}

thread_local! {
    static SLOT: Slot = Slot::take();
}

/// The current thread's slot.
pub(super) fn current() -> u16 {
    SLOT.with(|slot| slot.0)
}

/// The name of the thread in `slot`.
pub(super) fn name(slot: u16) -> String {
    let names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    names.get(usize::from(slot)).and_then(Option::as_deref).unwrap_or(UNNAMED).to_owned()
}
