//! GMP itself as the factorial benchmark's reference, timed in the same run as our kernel.
//!
//! GMP comes from Python's `gmpy2` wheel, which bundles a prebuilt GMP: `pip install` into a virtualenv under
//! `target/` is all a fresh machine needs (the `rug` crate would build GMP from C source, minutes of compiling and a
//! C toolchain). One Python process stays up for the whole run and times `gmpy2.fac(n).digits()` in-process each
//! time it is asked, so its timings interleave with ours and a noisy neighbour hits both sides alike; process start
//! and the pipe are outside the timed region. Each answer also carries the digit count and the leading and last
//! non-zero digits, so the bench can check that both sides computed the same number.
//!
//! Where Python, `venv` or the package index is missing, [`Gmp::start`] says why and the bench prints our times
//! without the ratio.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

/// The timing loop on the Python side: one `n` per line in, `wall-ns cpu-ns digits head tail` per line out.
const SCRIPT: &str = r#"
import sys, time, gmpy2
print("ready", gmpy2.version(), gmpy2.mp_version().replace(" ", "-"), flush=True)
for line in sys.stdin:
    n = int(line)
    start, cpu = time.perf_counter_ns(), time.process_time_ns()
    s = gmpy2.fac(n).digits()
    cpu, elapsed = time.process_time_ns() - cpu, time.perf_counter_ns() - start
    print(elapsed, cpu, len(s), s[:32], s.rstrip("0")[-32:], flush=True)
"#;

/// What identifies one decimal string without shipping it through the pipe.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub digits: usize,
    pub head: String,
    pub tail: String,
}

impl Fingerprint {
    /// The same summary the Python side prints.
    pub fn of(decimal: &str) -> Self {
        let head = decimal[..decimal.len().min(32)].to_string();
        let trimmed = decimal.trim_end_matches('0');
        let tail = trimmed[trimmed.len().saturating_sub(32)..].to_string();
        Self { digits: decimal.len(), head, tail }
    }
}

/// A running Python process with gmpy2 loaded, answering timing requests.
pub struct Gmp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// `gmpy2 2.3.2, GMP 6.3.0`, for the bench's header.
    pub version: String,
}

impl Gmp {
    /// Installs gmpy2 (once) and starts the timing process, or says why it cannot.
    pub fn start() -> Result<Self, String> {
        let venv = venv()?;
        let mut child = Command::new(venv.join("bin/python"))
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the virtualenv's python: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).map_err(|e| format!("gmpy2 did not start: {e}"))?;
        let mut words = ready.split_whitespace();
        if words.next() != Some("ready") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("gmpy2 did not start (said {ready:?})"));
        }
        let version =
            format!("gmpy2 {}, {}", words.next().unwrap_or("?"), words.next().unwrap_or("?").replace('-', " "));
        Ok(Self { child, stdin, stdout, version })
    }

    /// GMP's wall and CPU time for `n!` with its decimal string, and the string's fingerprint.
    pub fn factorial_decimal(&mut self, n: u64) -> (Duration, Duration, Fingerprint) {
        writeln!(self.stdin, "{n}").expect("write to gmpy2");
        self.stdin.flush().expect("flush to gmpy2");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from gmpy2");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [nanos, cpu_nanos, digits, head, tail] = fields[..] else { panic!("gmpy2 answered {line:?}") };
        let duration = |field: &str| Duration::from_nanos(field.parse().expect("nanoseconds"));
        let fingerprint =
            Fingerprint { digits: digits.parse().expect("digit count"), head: head.into(), tail: tail.into() };
        (duration(nanos), duration(cpu_nanos), fingerprint)
    }
}

impl Drop for Gmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/gmp-reference-venv`, created and filled from `requirements-gmp.txt` once; a changed requirements file
/// reinstalls.
fn venv() -> Result<PathBuf, String> {
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/kernels/requirements-gmp.txt");
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let target = exe.ancestors().nth(3).ok_or("no target directory above the bench binary")?; // target/<profile>/deps/<exe>
    let venv = target.join("gmp-reference-venv");
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv), "python3 -m venv")?;
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install gmpy2",
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(venv)
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{what} failed ({status})")),
        Err(e) => Err(format!("{what} could not run: {e}")),
    }
}
