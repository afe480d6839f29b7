//! `offload-bench load` and `stall` against servers that misbehave on purpose (the test kit's hostile HTTP/2
//! server): every run ends on its own flags and within seconds of Ctrl-C, reflection is bounded in time, files and
//! services, and a second Ctrl-C exits at once.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use offload_testkit::{
    foreign::echo_proto,
    hostile::{self, Answer, HostileServer},
};
use serde_json::Value;

use super::{BIN, run_within};

/// How long a run may take to end after what should end it (a deadline, a cap, Ctrl-C): a few seconds on a busy
/// 2-core machine, far below the 20 s default timeout and the hours of a run that does not end.
const PROMPTLY: Duration = Duration::from_secs(8);

/// Waits until `condition` holds, at most `limit`; false if it never did.
fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A running `offload-bench`, its stderr read line by line as it comes, killed if a test fails before it ends.
struct Running {
    child: Child,
    stderr: mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start offload-bench");
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut out = child.stdout.take().expect("stdout");
        let stdout = Some(std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            bytes
        }));
        Self { child, stderr, stdout }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    fn interrupt(&self) {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().expect("kill -INT");
        assert!(status.success(), "kill -INT failed");
    }

    /// Waits for a stderr line containing `text`, at most `limit`.
    fn wait_for_line(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {text:?} within {limit:?}"),
            }
        }
    }

    /// Waits for the process to end, at most `limit`: its exit code, stdout and the rest of its stderr.
    fn end_within(mut self, limit: Duration) -> (Option<i32>, Vec<u8>, String) {
        let ended = wait_for(limit, || self.child.try_wait().expect("wait").is_some());
        assert!(ended, "still running {limit:?} after it should have ended");
        let code = self.child.wait().expect("wait").code();
        let stdout = self.stdout.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (code, stdout, stderr.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn reflection_that_never_answers_ends_on_the_connect_timeout_and_on_ctrl_c() {
    let server = HostileServer::start(|_, _| Answer::Silence);
    let host = server.host();
    let started = Instant::now();
    let output = run_within(
        Command::new(BIN).args(["load", "--insecure", "--call", "a.B/C", "--connect-timeout", "1s", &host]),
        PROMPTLY,
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("reflection did not finish within 1s") && err.contains("--connect-timeout"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1), "ended before its deadline: {err}");
    // stall's reflection has its own deadline (5 s).
    let output = run_within(
        Command::new(BIN).args(["stall", "--insecure", "--target", &host, "--call", "a.B/C", "--probe", "a.B/D"]),
        Duration::from_secs(5) + PROMPTLY,
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && err.contains("reflection did not finish within 5s"), "{err}");

    // Ctrl-C while reflection waits (default --connect-timeout: 10 s): the run ends at once, saying why.
    let reflecting = |s: &HostileServer| s.seen().iter().filter(|c| c.path.contains("ServerReflection")).count();
    let before = reflecting(&server);
    let run = Running::start(&["load", "--insecure", "--call", "a.B/C", &host]);
    assert!(wait_for(PROMPTLY, || reflecting(&server) > before), "reflection was not asked for");
    let interrupted = Instant::now();
    run.interrupt();
    let (code, _, err) = run.end_within(PROMPTLY);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("interrupted (Ctrl-C) before the first call"), "{err}");
    assert!(interrupted.elapsed() < Duration::from_secs(5), "{:?} after Ctrl-C", interrupted.elapsed());
}

#[test]
fn endless_reflection_is_refused_at_its_caps() {
    for (answer, cap) in [
        (hostile::endless_imports as fn() -> Answer, "more than 10000 descriptor files"),
        (|| hostile::many_services(20_000), "more than 10000 services"),
    ] {
        let server = HostileServer::start(move |_, _| answer());
        let output = run_within(
            Command::new(BIN).args([
                "load",
                "--insecure",
                "--call",
                "a.B/C",
                "--connect-timeout",
                "60s",
                &server.host(),
            ]),
            Duration::from_secs(60),
        );
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && err.contains(cap), "{cap}: {err}");
    }
}

#[test]
fn ctrl_c_cancels_the_calls_in_flight_and_writes_the_report() {
    let server = HostileServer::start(|_, _| Answer::Silence);
    let (host, proto) = (server.host(), echo_proto().display().to_string());
    let call = ["load", "--quiet", "--insecure", "--proto", &proto, "--call", "echo.v1.Echo/Unary", "-O", "json"];
    // No deadline, and ghz's default of 20 s: either way Ctrl-C ends the calls now, not when they expire.
    for timeout in [&["-t", "0"][..], &[]] {
        let before = server.seen().len();
        let run = Running::start(&[&call[..], timeout, &["-c", "3", "-n", "100", &host]].concat());
        assert!(wait_for(PROMPTLY, || server.seen().len() >= before + 3), "three calls in flight");
        let interrupted = Instant::now();
        run.interrupt();
        let (code, stdout, err) = run.end_within(PROMPTLY);
        assert!(
            interrupted.elapsed() < Duration::from_secs(5),
            "{timeout:?}: {:?} after Ctrl-C",
            interrupted.elapsed()
        );
        assert_eq!(code, Some(0), "{timeout:?}: {err}");
        let report: Value = serde_json::from_slice(&stdout).expect("a JSON report");
        assert_eq!(report["endReason"], "cancel", "{report}");
        assert_eq!(report["statusCodeDistribution"]["Canceled"], 3, "{report}");
        assert_eq!(report["count"], 3, "{report}");
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let server = HostileServer::start(|_, _| Answer::Silence);
    let (host, proto) = (server.host(), echo_proto().display().to_string());
    // The report goes to a FIFO nobody reads: after the first Ctrl-C, writing it blocks for ever.
    let fifo = std::env::temp_dir().join(format!("offload-second-ctrl-c-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let fifo_arg = fifo.display().to_string();
    let run = Running::start(&[
        "load",
        "--quiet",
        "--insecure",
        "--proto",
        &proto,
        "--call",
        "echo.v1.Echo/Unary",
        "-c",
        "2",
        "-o",
        &fifo_arg,
        &host,
    ]);
    assert!(wait_for(PROMPTLY, || server.seen().len() >= 2), "calls in flight");
    run.interrupt();
    run.wait_for_line("Ctrl-C again to exit at once", PROMPTLY);
    let interrupted = Instant::now();
    run.interrupt();
    let (code, _, err) = run.end_within(PROMPTLY);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted again"), "{err}");
    assert!(interrupted.elapsed() < Duration::from_secs(3), "{:?} after the second Ctrl-C", interrupted.elapsed());
    let _ = std::fs::remove_file(&fifo);
}

/// The highest resident memory of process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

#[test]
fn error_text_memory_is_bounded_under_unique_messages() {
    const CALLS: u64 = 20_000;
    let padding = "x".repeat(15_000);
    let server = HostileServer::start(move |_, n| Answer::status(13, &format!("{n} {padding}")));
    let proto = echo_proto().display().to_string();
    let calls = CALLS.to_string();
    let run = Running::start(&[
        "load",
        "--quiet",
        "--insecure",
        "--proto",
        &proto,
        "--call",
        "echo.v1.Echo/Unary",
        "-c",
        "20",
        "-n",
        &calls,
        &server.host(),
    ]);
    // Read while it runs: the peak is the high-water mark just before it exits.
    let pid = run.child.id();
    let mut peak = 0;
    let ended = {
        let mut run = run;
        let deadline = Instant::now() + Duration::from_secs(120);
        while run.child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
            peak = peak.max(peak_rss(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(10));
        }
        run.end_within(PROMPTLY)
    };
    let (code, stdout, err) = ended;
    assert_eq!(code, Some(0), "{err}");
    let summary = String::from_utf8_lossy(&stdout);
    // 20 000 messages of 15 KB are 300 MB; what is kept is a hundred of them, cut to 1 KiB.
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
    assert!(summary.len() < 300_000, "a {} byte summary", summary.len());
    let kept = summary.lines().filter(|l| l.contains("rpc error: code = Internal desc = ")).count();
    assert_eq!(kept, 100, "{summary}");
    let beyond = format!("(not kept: {} more distinct error messages, past the first 100)", CALLS - 100);
    assert!(summary.contains(&beyond), "{summary}");
    assert!(summary.contains("… (cut: 15"), "long messages cut, saying so");
}
