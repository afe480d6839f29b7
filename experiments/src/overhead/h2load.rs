//! h2load (nghttp2's HTTP/2 benchmarking client, written in C) as the one load generator every server gets: the
//! same client at the same offered load, so the ratios compare servers, not clients. It sends a fixed gRPC request
//! body from a file with gRPC's headers, and its summary and per-request log are parsed back here.
//!
//! h2load is found on the `PATH` or installed with `apt-get install -y nghttp2-client` when running as root on
//! Debian; otherwise [`H2load::find_or_install`] says why and the caller skips.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// How much longer than its own duration an h2load run may take (connecting, the last replies) before it is
/// killed as hung.
const OVERRUN: Duration = Duration::from_secs(30);

/// The h2load executable.
#[derive(Debug, Clone)]
pub struct H2load {
    exe: PathBuf,
}

/// What one run offers: connections × streams per connection, for a time.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub streams: usize,
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Requests answered with HTTP 200 and a gRPC message (see [`H2load::run`]).
    pub succeeded: u64,
    /// Requests that failed, errored or timed out, by h2load's count.
    pub failed: u64,
    /// Succeeded requests per second of the measured time.
    pub throughput: f64,
    /// Each request's time from start to end of response, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    /// The `q`-quantile (0..=1) of the request times; zero when there are none.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }
}

impl H2load {
    /// h2load, installed first if missing and possible; `Err` says why there is none.
    pub fn find_or_install() -> anyhow::Result<Self> {
        if let Some(found) = Self::find() {
            return Ok(found);
        }
        offload_testkit::apt::install("nghttp2-client", "h2load")?;
        Self::find().context("nghttp2-client was installed but h2load does not start")
    }

    /// h2load on the `PATH`, if it starts.
    pub fn find() -> Option<Self> {
        let ok = Command::new("h2load").arg("--version").output().is_ok_and(|o| o.status.success());
        ok.then(|| Self { exe: PathBuf::from("h2load") })
    }

    /// Offers `load` to `url` (`http://host:port/package.Service/Method`), POSTing the gRPC frame in `body` with
    /// `content-type: application/grpc` and `te: trailers`. A request counts as succeeded when h2load saw a 2xx
    /// and the server sent a message: a gRPC error is a trailers-only reply with status 200 and no body, so the
    /// DATA bytes must cover at least a frame header and a byte per success, or the run is refused as failing.
    pub fn run(&self, url: &str, body: &Path, load: Load, scratch: &Path) -> anyhow::Result<Outcome> {
        let log = scratch.join(format!("h2load-{}.log", std::process::id()));
        let mut child = Command::new(&self.exe)
            .args(["--clients", &load.connections.to_string()])
            .args(["--max-concurrent-streams", &load.streams.to_string()])
            .args(["--threads", "1"])
            .args(["--duration", &format!("{}ms", load.duration.as_millis().max(1))])
            .arg("--data")
            .arg(body)
            .args(["--header", "content-type: application/grpc", "--header", "te: trailers"])
            .arg("--log-file")
            .arg(&log)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let deadline = Instant::now() + load.duration + OVERRUN;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("h2load against {url} did not finish within {:?}", load.duration + OVERRUN);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output()?;
        let summary = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "h2load against {url} exited with {}: {summary}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let outcome =
            parse(&summary, &log_text).with_context(|| format!("h2load's output against {url}:\n{summary}"))?;
        Ok(outcome)
    }
}

/// Reads h2load's summary (`finished in …`, `requests: …`, `status codes: …`, `traffic: …`) and its per-request
/// log (tab-separated: start µs since the epoch, HTTP status, µs to the end of the response).
pub fn parse(summary: &str, log: &str) -> anyhow::Result<Outcome> {
    let line = |prefix: &str| {
        summary.lines().find_map(|l| l.trim().strip_prefix(prefix)).with_context(|| format!("no {prefix:?} line"))
    };
    // `finished in 2.00s, 12345.50 req/s, 1.20MB/s`
    let finished = line("finished in ")?;
    let seconds = finished.split(',').next().and_then(seconds_of).context("finished in what time?")?;
    // `requests: 100 total, 100 started, 100 done, 98 succeeded, 2 failed, 0 errored, 0 timeout`
    let requests = line("requests:")?;
    let count = |what: &str| counted(requests, what).with_context(|| format!("no {what:?} count in requests:"));
    let (succeeded, failed) = (count("succeeded")?, count("failed")? + count("errored")? + count("timeout")?);
    let ok_status = counted(line("status codes:")?, "2xx").context("no 2xx count")?;
    // `traffic: 3.65MB (3826920) total, 56.56KB (57920) headers (space savings 94.72%), 2.21MB (2320000) data`
    let data = line("traffic:")?
        .split(',')
        .find(|part| part.trim_end().ends_with("data"))
        .and_then(|part| part.split(['(', ')']).nth(1)?.parse::<u64>().ok())
        .context("no data bytes in traffic:")?;
    // A gRPC message is a 5-byte frame header and its payload.
    if succeeded > 0 && (ok_status < succeeded || data < succeeded * 6) {
        bail!(
            "{succeeded} requests succeeded but only {ok_status} had status 2xx and {data} bytes of replies: gRPC errors"
        );
    }
    let mut latencies: Vec<Duration> = log
        .lines()
        .filter_map(|l| {
            let mut columns = l.split('\t');
            let status = columns.nth(1)?;
            let micros = columns.next()?.trim().parse::<u64>().ok()?;
            (status == "200").then(|| Duration::from_micros(micros))
        })
        .collect();
    latencies.sort_unstable();
    let throughput = if seconds > 0.0 { succeeded as f64 / seconds } else { 0.0 };
    Ok(Outcome { succeeded, failed, throughput, latencies })
}

/// h2load's elapsed time (`2.00s`, `301.58ms`, `950.20us`) in seconds.
fn seconds_of(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(us) = text.strip_suffix("us") {
        (us, 1e-6)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    Some(number.trim().parse::<f64>().ok()? * scale)
}

/// The number before `what` in a comma-separated summary line (`98 succeeded`).
fn counted(line: &str, what: &str) -> Option<u64> {
    line.split(',').find_map(|part| {
        let mut words = part.split_whitespace();
        let number = words.next()?.parse().ok()?;
        (words.next()? == what).then_some(number)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "\
finished in 2.00s, 12345.50 req/s, 1.20MB/s
requests: 100 total, 100 started, 100 done, 98 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 98 2xx, 0 3xx, 0 4xx, 2 5xx
traffic: 3.65MB (3826920) total, 56.56KB (57920) headers (space savings 94.72%), 2.21MB (2320000) data
";

    #[test]
    fn the_summary_and_log_are_read() {
        let log = "1700000000000000\t200\t150\n1700000000000100\t200\t90\n1700000000000200\t503\t5\n";
        let outcome = parse(SUMMARY, log).expect("parses");
        assert_eq!((outcome.succeeded, outcome.failed), (98, 2));
        assert!((outcome.throughput - 49.0).abs() < 1e-9);
        assert_eq!(outcome.latencies, vec![Duration::from_micros(90), Duration::from_micros(150)]);
        assert_eq!(outcome.quantile(0.0), Duration::from_micros(90));
        assert_eq!(seconds_of("301.5ms"), Some(0.3015));
        assert_eq!(seconds_of("950us"), Some(0.00095));
    }

    #[test]
    fn replies_without_messages_are_grpc_errors() {
        let summary = SUMMARY.replace("(2320000) data", "(0) data");
        assert!(parse(&summary, "").is_err());
    }
}
