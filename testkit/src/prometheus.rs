//! The real Prometheus tools, for tests that check our metrics, rules and dashboard the way an operator's stack
//! reads them: `promtool` (`check metrics`, `test rules`) and a Prometheus server on loopback, queried through its
//! HTTP API.
//!
//! Both come from Debian's `prometheus` package: installed with `apt-get` when missing and running as root;
//! otherwise [`tool`] answers `None` and the test skips with a message.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// `promtool` or `prometheus` from PATH, installing Debian's `prometheus` package first if it is missing and this
/// process is root. `None` where it cannot be had (the caller skips, saying so).
pub fn tool(name: &str) -> Option<PathBuf> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let runs = |name: &str| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    if runs(name) {
        return Some(PathBuf::from(name));
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !runs(name) && root {
        let quiet = |args: &[&str]| {
            let mut command = Command::new("apt-get");
            command.args(args).env("DEBIAN_FRONTEND", "noninteractive").stdout(Stdio::null());
            command.status().is_ok_and(|s| s.success())
        };
        if !quiet(&["install", "-y", "--no-install-recommends", "prometheus"]) {
            quiet(&["update"]);
            quiet(&["install", "-y", "--no-install-recommends", "prometheus"]);
        }
    }
    runs(name).then(|| PathBuf::from(name))
}

/// `promtool check metrics` on an exposition text: `Ok` when it has nothing to say, else its complaints.
pub fn check_metrics(promtool: &Path, exposition: &str) -> Result<(), String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool: {e}"))?;
    child.stdin.take().expect("stdin").write_all(exposition.as_bytes()).map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() && said.trim().is_empty() { Ok(()) } else { Err(said) }
}

/// A Prometheus server on 127.0.0.1 with a config (and rule files) of the test's, killed on drop.
#[derive(Debug)]
pub struct PrometheusServer {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl PrometheusServer {
    /// Writes `config` (prometheus.yml) and `files` (name, content: rule files the config names) into a fresh
    /// directory under `target/`, starts `prometheus` on a free loopback port and waits until it is ready.
    pub fn start(prometheus: &Path, config: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("current exe")?;
        let target = exe.ancestors().nth(3).context("target dir")?; // target/<profile>/deps/<exe>
        let dir = target.join(format!("prometheus-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(dir.join("prometheus.yml"), config)?;
        for (name, content) in files {
            std::fs::write(dir.join(name), content)?;
        }
        // A free port: bound, read, released (Prometheus cannot report a port-0 bind back).
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(prometheus)
            .current_dir(&dir)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
            .spawn()
            .context("cannot start prometheus")?;
        let server = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::scrape::get(addr, "/-/ready").is_err() {
            if Instant::now() > deadline {
                bail!("prometheus not ready after 30 s; its log: {}", server.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Its log so far (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `params`, its `data` (an error when the status is not `success`).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<Value> {
        let query: Vec<String> =
            params.iter().map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC))).collect();
        let body = crate::scrape::get(self.addr, &format!("/api/v1/{path}?{}", query.join("&")))?;
        let answer: Value = serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        if answer["status"] != "success" {
            bail!("{path} {params:?}: {answer}");
        }
        Ok(answer["data"].clone())
    }

    /// The result vector of an instant query now.
    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.api("query", &[("query", expr)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Every alert now (pending or firing), as `/api/v1/alerts` lists them.
    pub fn alerts(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.api("alerts", &[])?["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// The scrape targets' health (`up`, `down`, `unknown`) by scrape URL.
    pub fn targets(&self) -> anyhow::Result<Vec<(String, String)>> {
        let data = self.api("targets", &[])?;
        let active = data["activeTargets"].as_array().cloned().unwrap_or_default();
        Ok(active
            .iter()
            .map(|t| (t["scrapeUrl"].as_str().unwrap_or("").to_owned(), t["health"].as_str().unwrap_or("").to_owned()))
            .collect())
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A number distinct per call in this process, for directory names.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
