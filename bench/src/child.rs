//! A server as a child process: started, its address read from its log, its CPU time read from `/proc`, stopped
//! with SIGTERM. `compare` runs compute and gateway this way so each has its own CPU account, as in production,
//! and the integration tests use it for what only a process has (signals, exit codes).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// A running server process, killed on drop if still running.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    /// Where it listens, as it logged.
    pub addr: SocketAddr,
    /// Where it serves `/metrics`, if `--metrics-listen` was given.
    pub metrics_addr: Option<SocketAddr>,
}

impl ChildServer {
    /// Starts `command` (which must log `addr=HOST:PORT` on stdout once serving) and waits for that line.
    pub fn start(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .env("NO_COLOR", "1")
            // The serving line (at info) carries the address; the child's stdout is read here, not shown.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep reading to the end, so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && line.contains(" addr=") {
                    sent = tx.send(line).is_ok();
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!("{command:?} did not report its address (see its output above)");
            }
        };
        let field = |key: &str| line.split(key).nth(1).and_then(|s| s.split_whitespace().next()).map(str::to_owned);
        let addr = field(" addr=").context("no addr= in the serving line")?;
        let metrics_addr = field(" metrics_addr=").and_then(|a| a.trim_matches('"').parse().ok());
        Ok(Self { child, addr: addr.parse().with_context(|| format!("bad address {addr:?}"))?, metrics_addr })
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

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid()).unwrap_or_default()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
