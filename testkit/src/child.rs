//! A server as a child process: started, its address read from its log, its CPU time read from `/proc`, stopped
//! with SIGTERM. `compare` runs compute and gateway this way so each has its own CPU account, as in production,
//! and the integration tests use it for what only a process has (signals, exit codes, its own log and trace
//! export). The serving line may be text (`addr=…`) or JSON (`"addr":"…"`, `--log-format json`).

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context;

/// Log lines kept per child (the newest): enough for a test to read a request's lines, bounded for long runs.
const LOG_LINES_KEPT: usize = 10_000;

/// A running server process, killed on drop if still running.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    /// The newest lines of its stdout (its log), and the thread reading them.
    log: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
    /// Where it listens, as it logged.
    pub addr: SocketAddr,
    /// Where it serves `/metrics`, if `--metrics-listen` was given.
    pub metrics_addr: Option<SocketAddr>,
}

impl ChildServer {
    /// Starts `command` (which must log `addr=HOST:PORT` on stdout once serving) and waits for that line.
    pub fn start(mut command: Command) -> anyhow::Result<Self> {
        // The serving line (at info) carries the address; the child's stdout is read here, not shown.
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let kept = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut sent = false;
            // Keep reading to the end, so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && field(&line, "addr").is_some() {
                    sent = tx.send(line.clone()).is_ok();
                }
                let mut kept = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.len() == LOG_LINES_KEPT {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!("{command:?} did not report its address (see its output above)");
            }
        };
        let addr = field(&line, "addr").context("no addr= in the serving line")?;
        let metrics_addr = field(&line, "metrics_addr").and_then(|a| a.parse().ok());
        let addr = addr.parse().with_context(|| format!("bad address {addr:?}"))?;
        Ok(Self { child, log, reader: Some(reader), addr, metrics_addr })
    }

    /// Its log lines so far (the newest [`LOG_LINES_KEPT`]). Once the process has exited, all of them: this waits
    /// for the reader to reach the end of its output.
    pub fn log_lines(&mut self) -> Vec<String> {
        if matches!(self.child.try_wait(), Ok(Some(_)))
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
    }

    /// Waits up to `timeout` for the process to exit; its exit code (None: still running, or killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => return None,
            }
        }
        None
    }

    /// SIGTERM, then wait up to `grace` for a clean exit, then SIGKILL.
    pub fn stop(mut self, grace: Duration) -> Option<i32> {
        self.terminate();
        let code = self.wait_exit(grace);
        if code.is_none() {
            let _ = self.child.kill();
        }
        code
    }

    /// SIGKILL, no drain (a crash, an OOM kill, a node lost), and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid()).unwrap_or_default()
    }

    /// Resident memory now and its peak so far, in bytes (`VmRSS`, `VmHWM`; zero where `/proc` is not there).
    pub fn memory(&self) -> Memory {
        memory_of(self.pid()).unwrap_or_default()
    }

    /// File descriptors the process has open (sockets included; zero where `/proc` is not there).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |dir| dir.count())
    }
}

/// A process's resident memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss: u64,
    /// The most it has been resident since it started (`VmHWM`, the high-water mark).
    pub peak: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/<pid>/status` (Linux).
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some(Memory { rss: kib("VmRSS:")? * 1024, peak: kib("VmHWM:")? * 1024 })
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `key` in a log line, text (`key=value`) or JSON (`"key":"value"`).
fn field(line: &str, key: &str) -> Option<String> {
    let text = line.split(&format!(" {key}=")).nth(1).and_then(|s| s.split_whitespace().next());
    let json = || line.split(&format!("\"{key}\":\"")).nth(1).and_then(|s| s.split('"').next());
    text.or_else(json).map(|v| v.trim_matches('"').to_owned())
}

/// CPU time of a process from `/proc/<pid>/stat` (Linux); `None` elsewhere or if it is gone.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is the 3rd field overall, utime the 14th, stime the 15th.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn serving_line_fields_are_read_from_text_and_json() {
        let text = "INFO offload-compute serving addr=127.0.0.1:4000 instance_id=x metrics_addr=\"127.0.0.1:9\"";
        assert_eq!(field(text, "addr").as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(field(text, "metrics_addr").as_deref(), Some("127.0.0.1:9"));
        let json =
            r#"{"level":"INFO","message":"offload-compute serving","addr":"127.0.0.1:4000","metrics_addr":"off"}"#;
        assert_eq!(field(json, "addr").as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(field(json, "metrics_addr").as_deref(), Some("off"));
        assert_eq!(field("no address here", "addr"), None);
    }
}
