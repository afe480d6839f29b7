//! `--pinned`: a round run again with the load generator confined to one CPU, to tell its share of the machine
//! from the servers' own costs. On two cores the load generator, the gateway and compute share every core; pinned,
//! the load generator's threads (this process's: the tokio workers sending heavy jobs and probes) compete on one
//! core only, and the servers (separate processes, started before the pinning and never pinned) have the other
//! core to themselves whenever the load generator is busy.
//!
//! Linux only (`sched_setaffinity` per thread); elsewhere `--pinned` is refused at start-up.

use std::io;

/// This process's threads confined to one CPU until dropped, when each gets back the CPUs it had.
#[derive(Debug)]
pub struct Pinned {
    /// Each thread pinned, with its CPU set before.
    #[cfg(target_os = "linux")]
    previous: Vec<(libc::pid_t, libc::cpu_set_t)>,
    /// The CPU the threads are confined to.
    pub cpu: usize,
}

/// The CPU the load generator is confined to: the last one it may use, so that the servers, whose threads the
/// kernel places from the first CPU up when the machine is idle, rarely start on it.
pub fn client_cpu() -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let set = affinity(0)?;
        // SAFETY: CPU_ISSET reads a bit of a fully initialised cpu_set_t.
        (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .ok_or_else(|| io::Error::other("this process may use no CPU"))
    }
    #[cfg(not(target_os = "linux"))]
    Err(io::Error::other("--pinned needs Linux (sched_setaffinity)"))
}

#[cfg(target_os = "linux")]
fn affinity(tid: libc::pid_t) -> io::Result<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity writes at most its size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

impl Pinned {
    /// Confines every current thread of this process to `cpu`. Threads started while pinned (a blocking-pool
    /// thread) keep the pinning; the load's own threads all exist before.
    pub fn confine(cpu: usize) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            let mut pinned = Self { previous: Vec::new(), cpu };
            // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET sets one bit of it.
            let only = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                set
            };
            for entry in std::fs::read_dir("/proc/self/task")? {
                let Some(tid) = entry?.file_name().to_str().and_then(|t| t.parse::<libc::pid_t>().ok()) else {
                    continue;
                };
                let before = affinity(tid)?;
                // SAFETY: `only` is a fully initialised cpu_set_t of the size passed.
                if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &only) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                pinned.previous.push((tid, before));
            }
            Ok(pinned)
        }
        #[cfg(not(target_os = "linux"))]
        Err(io::Error::other(format!("--pinned needs Linux (sched_setaffinity); cannot pin to CPU {cpu}")))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        for (tid, set) in &self.previous {
            // SAFETY: `set` is the fully initialised cpu_set_t read from this thread before. A thread that ended
            // meanwhile makes the call fail, which is fine.
            unsafe { libc::sched_setaffinity(*tid, std::mem::size_of::<libc::cpu_set_t>(), set) };
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn pinning_confines_every_thread_and_dropping_restores_it() {
        let cpu = client_cpu().expect("a CPU");
        let before = std::thread::available_parallelism().map_or(1, usize::from);
        {
            let _pinned = Pinned::confine(cpu).expect("pin");
            assert_eq!(std::thread::available_parallelism().map_or(0, usize::from), 1);
        }
        assert_eq!(std::thread::available_parallelism().map_or(0, usize::from), before);
    }
}
