//! `--profile`: each server recorded with `perf` (Debian's `linux-perf`) under the benchmark's load, its stacks
//! folded and drawn as flame graphs with inferno, and every sample put down to a layer ([`super::layers`]) so the
//! CPU each process spends per call splits into what each layer costs.
//!
//! perf unwinds with DWARF (`--call-graph dwarf`): Rust's standard library is built without frame pointers, so
//! `-g`'s frame-pointer stacks stop at the first std frame. inferno is installed as a tool under `target/tools`
//! (`cargo install`), not a dependency of the workspace: nothing else needs it. Either missing and impossible to
//! install: the profile is skipped with the reason, the benchmark's numbers stand.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{
    h2load::H2load,
    layers::{self, Attribution},
    measure::{self, Plan},
    servers::{Servers, Target},
};

/// Samples per second per process: enough for a few thousand samples in a run, light enough that perf's own
/// copying of stacks does not change what it measures much (it shares the cores).
const FREQUENCY: &str = "499";
/// Bytes of stack perf copies per sample for DWARF unwinding: the request path's depth (tokio → hyper → tonic →
/// our layers → prost) fits; more makes every sample dearer.
const STACK_BYTES: &str = "16384";
/// The inferno release installed when it is missing.
const INFERNO_VERSION: &str = "0.12.8";
/// Time perf may take to write its file after SIGINT.
const PERF_STOP: Duration = Duration::from_secs(60);

/// The profiles of one `--profile` pass.
#[derive(Debug)]
pub struct Profiles {
    /// Per run and process: the flame graph written and the per-layer split of its CPU per call.
    pub recordings: Vec<Recording>,
}

/// One process's profile during one target's run.
#[derive(Debug)]
pub struct Recording {
    /// `echo`, `direct` or `gateway`: the run.
    pub run: &'static str,
    /// The process recorded (`compute` in both the direct and the gateway run).
    pub process: &'static str,
    pub cpu_us_per_call: f64,
    pub attribution: Attribution,
    pub flame_graph: PathBuf,
}

/// Records every target's servers under `plan` and writes flame graphs to `folder`. `None` (with the reason
/// printed) when perf or inferno cannot be had.
pub fn record(h2load: &H2load, servers: &Servers, plan: Plan, folder: &Path) -> anyhow::Result<Option<Profiles>> {
    let tools = match Tools::find_or_install() {
        Ok(tools) => tools,
        Err(e) => {
            eprintln!("SKIPPED the profiles: {e:#}");
            return Ok(None);
        }
    };
    let mut recordings = Vec::new();
    for target in [Target::Echo, Target::Direct, Target::Gateway] {
        eprintln!("profiling: {}", target.label());
        let (run, perfs) = measure::run(h2load, servers, target, plan, folder, |servers| {
            servers
                .processes(target)
                .into_iter()
                .map(|(name, process)| {
                    let data = folder.join(format!("{}-{name}.perf.data", target.label()));
                    (name, tools.start_perf(process.pid(), &data), data)
                })
                .collect::<Vec<_>>()
        })?;
        for ((name, perf, data), (_, cpu_us_per_call)) in perfs.into_iter().zip(run.cpu_us_per_call) {
            let folded = stop_perf(perf?).and_then(|()| tools.fold(&data));
            let _ = std::fs::remove_file(&data);
            let folded = folded?;
            let stem = folder.join(format!("{}-{name}", target.label()));
            std::fs::write(stem.with_extension("folded"), &folded)?;
            let flame_graph = stem.with_extension("svg");
            tools.flame_graph(&folded, &format!("{name} ({} run)", target.label()), &flame_graph)?;
            recordings.push(Recording {
                run: target.label(),
                process: name,
                cpu_us_per_call,
                attribution: layers::attribute(&folded),
                flame_graph,
            });
        }
    }
    Ok(Some(Profiles { recordings }))
}

impl Profiles {
    /// Per run and process: µs per call of each layer, largest first.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for r in &self.recordings {
            let _ = writeln!(
                out,
                "\nprofile: {} in the {} run, {:.1} us of CPU per call ({})",
                r.process,
                r.run,
                r.cpu_us_per_call,
                r.flame_graph.display()
            );
            for (layer, share) in r.attribution.shares() {
                let _ = writeln!(out, "  {layer:<44} {:>6.1} us {:>5.1} %", share * r.cpu_us_per_call, share * 100.0);
            }
        }
        out
    }

    /// The files written.
    pub fn written(&self) -> Vec<PathBuf> {
        self.recordings.iter().map(|r| r.flame_graph.clone()).collect()
    }
}

/// perf and inferno's two commands.
#[derive(Debug)]
struct Tools {
    perf: PathBuf,
    collapse: PathBuf,
    flame_graph: PathBuf,
}

impl Tools {
    fn find_or_install() -> anyhow::Result<Self> {
        // inferno's commands have no --version; --help answers with success when the program runs.
        let runs = |exe: &Path| {
            Command::new(exe)
                .arg(if exe == Path::new("perf") { "--version" } else { "--help" })
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let perf = PathBuf::from("perf");
        if !runs(&perf) {
            offload_testkit::apt::install("linux-perf", "perf").context("no perf")?;
            if !runs(&perf) {
                bail!("linux-perf was installed but perf does not start");
            }
        }
        let root = tools_dir()?;
        let (collapse, flame_graph) = (root.join("bin/inferno-collapse-perf"), root.join("bin/inferno-flamegraph"));
        if !runs(&collapse) || !runs(&flame_graph) {
            eprintln!("installing inferno {INFERNO_VERSION} into {} (once)", root.display());
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["install", "inferno", "--locked", "--version", INFERNO_VERSION, "--root"])
                .arg(&root)
                .status()
                .context("no cargo to install inferno with")?;
            if !status.success() || !runs(&collapse) {
                bail!("cargo install inferno failed: no flame graphs");
            }
        }
        Ok(Self { perf, collapse, flame_graph })
    }

    /// `perf record` attached to `pid` (all its threads) until SIGINT.
    fn start_perf(&self, pid: u32, data: &Path) -> anyhow::Result<Child> {
        let child = Command::new(&self.perf)
            .args(["record", "--quiet", "-F", FREQUENCY, "--call-graph"])
            .arg(format!("dwarf,{STACK_BYTES}"))
            .args(["-p", &pid.to_string(), "-o"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start perf record")?;
        // perf attaches asynchronously; the load must not start before it samples.
        std::thread::sleep(Duration::from_millis(300));
        Ok(child)
    }

    /// `perf script` through `inferno-collapse-perf`: one line per distinct stack, with its sample count.
    fn fold(&self, data: &Path) -> anyhow::Result<String> {
        let script = Command::new(&self.perf)
            .arg("script")
            .arg("-i")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run perf script")?;
        let stdout = script.stdout.context("perf script's output")?;
        let output = Command::new(&self.collapse)
            .arg("--all")
            .stdin(stdout)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run inferno-collapse-perf")?;
        if !output.status.success() {
            bail!("inferno-collapse-perf failed on {}", data.display());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `inferno-flamegraph` of `folded` into `svg`.
    fn flame_graph(&self, folded: &str, title: &str, svg: &Path) -> anyhow::Result<()> {
        let mut child = Command::new(&self.flame_graph)
            .args(["--title", title])
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(svg)?)
            .spawn()
            .context("cannot run inferno-flamegraph")?;
        std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, folded.as_bytes())?;
        if !child.wait()?.success() {
            bail!("inferno-flamegraph failed for {}", svg.display());
        }
        Ok(())
    }
}

/// SIGINT (perf writes its file and exits), bounded.
fn stop_perf(mut perf: Child) -> anyhow::Result<()> {
    let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
    let deadline = Instant::now() + PERF_STOP;
    while perf.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = perf.kill();
            let _ = perf.wait();
            bail!("perf record did not stop within {PERF_STOP:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `target/tools` beside this executable (`target/<profile>/offload-bench`), where `.ci` tools go too.
fn tools_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let target = exe.ancestors().nth(2).context("no target directory above this executable")?;
    Ok(target.join("tools"))
}
