//! One load run's settings, resolved once: the command line over the config file (ghz's precedence), files and
//! stdin read (`-D`, `-M`, `-B`, `-d @`, `-b`), defaults applied (ghz's), and every combination that cannot be
//! honoured refused with the flag or key it comes from. The report's `options` are written from here.

use std::{collections::BTreeMap, io::Read, path::PathBuf, time::Duration};

use anyhow::{Context, bail};

use super::args::LoadArgs;
use crate::{
    config::Config,
    connect::ConnectSettings,
    descriptors::DescriptorArgs,
    dynamic_call::StreamOptions,
    format::Format,
    limits::{self, check_range, origin},
    report::Options,
    runner::{Controls, DurationStop, Plan},
    schedule::{Schedule, ScheduleArgs},
    shard::{self, Shard},
    template::Template,
    threshold::Threshold,
};

/// ghz's defaults.
const DEFAULT_CONCURRENCY: usize = 50;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the request messages are made from.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// JSON text (maybe templated), or none (an empty message).
    Json(Option<String>),
    /// Binary protobuf: one message, or length-prefixed messages.
    Binary(Vec<u8>),
}

/// A resolved load run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub call: String,
    pub descriptors: DescriptorArgs,
    pub connect: ConnectSettings,
    pub connections: usize,
    pub plan: Plan,
    pub load: ScheduleArgs,
    pub concurrency: ScheduleArgs,
    pub max_duration: Option<Duration>,
    pub duration_stop: DurationStop,
    /// `None`: no deadline (`-t 0`).
    pub timeout: Option<Duration>,
    pub data: Data,
    pub metadata: Option<String>,
    pub stream: StreamOptions,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub skip_first: u64,
    pub count_errors: bool,
    pub name: String,
    pub tags: Option<BTreeMap<String, String>>,
    pub cpus: usize,
    pub enable_compression: bool,
    pub async_: bool,
    pub quiet: bool,
    /// Checked on the report (`--threshold`, config `thresholds`).
    pub thresholds: Vec<Threshold>,
    pub abort_on_fail: bool,
    /// This run is one shard of a split run; `plan` then holds this shard's part of `-c` and `-n`, and the
    /// whole run's rate (the shard sends every Nth call of its schedule).
    pub shard: Option<Shard>,
    pub start_at: Option<std::time::SystemTime>,
}

impl Settings {
    /// Resolves `args` (and its `--config` file). Reads stdin for `-d @` and `-b`.
    pub fn resolve(args: LoadArgs) -> anyhow::Result<Self> {
        let c = match &args.config {
            Some(path) => Config::read(path)?,
            None => Config::default(),
        };
        if args.reflect_metadata.is_some() {
            bail!("--reflect-metadata is not supported: reflection requests carry no metadata here");
        }
        if args.debug.is_some() {
            bail!("--debug is not supported: set RUST_LOG=debug for a debug log on stderr");
        }
        let host = args.host.or(c.host).context("no host: give HOST:PORT (or \"host\" in --config)")?;
        let call = args.call.or(c.call).context("no --call (or \"call\" in --config)")?;
        let mut descriptors = args.descriptors;
        if descriptors.proto.is_empty() && descriptors.protoset.is_none() {
            descriptors.protoset = c.protoset.map(PathBuf::from);
            descriptors.proto = c.proto.into_iter().map(PathBuf::from).collect();
        }
        if descriptors.import_paths.is_empty() {
            descriptors.import_paths = c.import_paths.unwrap_or_default().into_iter().map(PathBuf::from).collect();
        }
        let connect = ConnectSettings {
            insecure: args.insecure || c.insecure.unwrap_or(false),
            cacert: args.cacert.or(c.cacert.map(PathBuf::from)),
            cert: args.cert.or(c.cert.map(PathBuf::from)),
            key: args.key.or(c.key.map(PathBuf::from)),
            cname: args.cname.or(c.cname),
            skip_tls: args.skip_tls || c.skip_tls.unwrap_or(false),
            authority: args.authority.or(c.authority),
            connect_timeout: args.connect_timeout.or(c.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            keepalive: args.keepalive.or(c.keepalive),
            lb_strategy: args.lb_strategy.or(c.lb_strategy),
        };
        let concurrency = check_range(
            &origin("-c", "concurrency", args.concurrency.is_some()),
            args.concurrency.or(c.concurrency).unwrap_or(DEFAULT_CONCURRENCY),
            1..=limits::MAX_CONCURRENCY,
            " workers",
        )?;
        let connections = check_range(
            &origin("--connections", "connections", args.connections.is_some()),
            args.connections.or(c.connections).unwrap_or(1),
            1..=limits::MAX_CONNECTIONS,
            "",
        )?;
        if concurrency < connections {
            bail!("-c {concurrency} is less than --connections {connections}: each connection needs a worker (as ghz)");
        }
        let duration = args.duration.or(c.duration).filter(|d| !d.is_zero());
        // ghz: with -z, -n is ignored.
        let total = if duration.is_some() { None } else { args.total.or(c.total).filter(|&n| n > 0) };
        let rps = match args.rps.or(c.rps) {
            Some(rps) => limits::check_rps(&origin("--rps", "rps", args.rps.is_some()), rps)?,
            None => None,
        };
        // A schedule's rates are whole calls per second (ghz's integers), held to the same ceiling as --rps.
        let max_rate = limits::MAX_RPS as u64;
        let load = ScheduleArgs {
            kind: args.load_schedule.or(c.load_schedule).unwrap_or_default(),
            start: check_range(
                &origin("--load-start", "load-start", args.load_start.is_some()),
                args.load_start.or(c.load_start).unwrap_or(0),
                0..=max_rate,
                " calls per second",
            )?,
            end: check_range(
                &origin("--load-end", "load-end", args.load_end.is_some()),
                args.load_end.or(c.load_end).unwrap_or(0),
                0..=max_rate,
                " calls per second",
            )?,
            step: check_range(
                &origin("--load-step", "load-step", args.load_step.is_some()),
                args.load_step.or(c.load_step).unwrap_or(0),
                -(max_rate as i64)..=max_rate as i64,
                " calls per second",
            )?,
            step_duration: args.load_step_duration.or(c.load_step_duration),
            max_duration: args.load_max_duration.or(c.load_max_duration),
        };
        let max_workers = limits::MAX_CONCURRENCY as u64;
        let concurrency_schedule = ScheduleArgs {
            kind: args.concurrency_schedule.or(c.concurrency_schedule).unwrap_or_default(),
            start: check_range(
                &origin("--concurrency-start", "concurrency-start", args.concurrency_start.is_some()),
                args.concurrency_start.or(c.concurrency_start).unwrap_or(1),
                0..=max_workers,
                " workers",
            )?,
            end: check_range(
                &origin("--concurrency-end", "concurrency-end", args.concurrency_end.is_some()),
                args.concurrency_end.or(c.concurrency_end).unwrap_or(0),
                0..=max_workers,
                " workers",
            )?,
            step: check_range(
                &origin("--concurrency-step", "concurrency-step", args.concurrency_step.is_some()),
                args.concurrency_step.or(c.concurrency_step).unwrap_or(1),
                -(max_workers as i64)..=max_workers as i64,
                " workers",
            )?,
            step_duration: args.concurrency_step_duration.or(c.concurrency_step_duration),
            max_duration: args.concurrency_max_duration.or(c.concurrency_max_duration),
        };
        let open_loop = rps.is_some() || !matches!(load.kind.as_str(), "" | "const");
        if open_loop && !matches!(concurrency_schedule.kind.as_str(), "" | "const") {
            bail!(
                "--concurrency-schedule with --rps or --load-schedule: the open loop sends on schedule whatever the workers; -c caps the calls in flight"
            );
        }
        let async_ = args.async_ || c.async_.unwrap_or(false);
        if async_ && !open_loop {
            bail!("--async needs --rps or --load-schedule here: the open loop is how offload sends without waiting");
        }
        let timeout = args.timeout.or(c.timeout).unwrap_or(DEFAULT_TIMEOUT);
        let duration_stop = args.duration_stop.or(c.duration_stop).unwrap_or_default();
        let format = args.format.or(c.format).unwrap_or_default().parse::<Format>().map_err(anyhow::Error::msg)?;
        let tags = match args.tags {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("--tags must be a JSON object of strings: {text}"))?,
            ),
            None => c.tags,
        };
        let cli_data = data_from_flags(args.data, args.data_file, args.binary, args.binary_file)?;
        let data = match cli_data {
            Some(data) => data,
            None => data_from_config(c.data, c.data_file, c.binary_file)?,
        };
        let metadata = match (args.metadata, args.metadata_file) {
            (Some(_), Some(_)) => bail!("-m and -M both given: use one"),
            (Some(m), None) => Some(m),
            (None, Some(path)) => Some(read_text(&path, "-M")?),
            (None, None) => match (c.metadata, c.metadata_file) {
                (Some(m), _) => Some(serde_json::to_string(&m)?),
                (None, Some(path)) => Some(read_text(&PathBuf::from(path), "\"metadata-file\"")?),
                (None, None) => None,
            },
        };
        // Templates are checked now, before connecting, whatever the method turns out to be.
        if let Data::Json(Some(text)) = &data {
            Template::parse(text, "-d")?;
        }
        if let Some(text) = &metadata {
            Template::parse(text, "-m")?;
        }
        let thresholds = Threshold::parse_all(&if args.thresholds.is_empty() {
            c.thresholds.unwrap_or_default()
        } else {
            args.thresholds
        })?;
        let abort_on_fail = args.abort_on_fail || c.abort_on_fail.unwrap_or(false);
        if abort_on_fail && !thresholds.iter().any(Threshold::checkable_early) {
            bail!("--abort-on-fail needs a latency or errors --threshold to check while the run goes on");
        }
        let shard =
            Shard::from_flags(args.shard.as_deref(), args.shards, std::env::var(shard::JOB_INDEX_VAR).ok().as_deref())?;
        let (concurrency, total) = match shard {
            Some(_) if !matches!(concurrency_schedule.kind.as_str(), "" | "const") => {
                bail!(
                    "--concurrency-schedule with --shard or --shards: split a constant -c, or run the schedule unsplit"
                )
            }
            Some(shard) => {
                let part = shard.part(concurrency as u64) as usize;
                if part < connections {
                    bail!(
                        "-c {concurrency} over {} shards leaves shard {shard} {part} worker(s), fewer than                          --connections {connections}: give -c {} or more",
                        shard.count,
                        connections as u64 * shard.count
                    );
                }
                let total = match total {
                    Some(n) if shard.part(n) == 0 => {
                        bail!(
                            "-n {n} over {} shards leaves shard {shard} no call: give -n {} or more",
                            shard.count,
                            shard.count
                        )
                    }
                    n => n.map(|n| shard.part(n)),
                };
                (part, total)
            }
            None => (concurrency, total),
        };
        let start_at = args.start_at.as_deref().map(parse_start_at).transpose()?;
        let cpus = match args.cpus.or(c.cpus) {
            Some(cpus) => check_range(&origin("--cpus", "cpus", args.cpus.is_some()), cpus, 1..=limits::MAX_CPUS, "")?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()).min(limits::MAX_CPUS),
        };
        Ok(Self {
            host,
            call,
            descriptors,
            connect,
            connections,
            plan: Plan { concurrency, total, duration, rps },
            load,
            concurrency: concurrency_schedule,
            max_duration: args.max_duration.or(c.max_duration).filter(|d| !d.is_zero()),
            duration_stop: duration_stop.parse().map_err(anyhow::Error::msg)?,
            timeout: (!timeout.is_zero()).then_some(timeout),
            data,
            metadata,
            stream: StreamOptions {
                call_duration: args.stream_call_duration.or(c.stream_call_duration),
                call_count: args.stream_call_count.or(c.stream_call_count),
                dynamic_messages: args.stream_dynamic_messages || c.stream_dynamic_messages.unwrap_or(false),
                interval: args.stream_interval.or(c.stream_interval).filter(|d| !d.is_zero()),
            },
            format,
            output: args.output.or(c.output.filter(|o| !o.trim().is_empty()).map(PathBuf::from)),
            skip_first: args.skip_first.or(c.skip_first).unwrap_or(0),
            count_errors: args.count_errors || c.count_errors.unwrap_or(false),
            name: args.name.or(c.name).unwrap_or_default(),
            tags,
            cpus,
            enable_compression: args.enable_compression || c.enable_compression.unwrap_or(false),
            async_,
            quiet: args.quiet,
            thresholds,
            abort_on_fail,
            shard,
            start_at,
        })
    }

    /// The runner's controls: schedules, `-x`, `--skipFirst`, `--duration-stop`.
    pub fn controls(&self) -> anyhow::Result<Controls> {
        let rps = self.plan.rps.unwrap_or(0.0);
        let load = Schedule::new("load", &self.load, rps).map_err(anyhow::Error::msg)?;
        let concurrency = Schedule::new("concurrency", &self.concurrency, self.plan.concurrency as f64)
            .map_err(anyhow::Error::msg)?;
        Ok(Controls {
            load: (!load.is_const()).then_some(load),
            concurrency: (!concurrency.is_const()).then_some(concurrency),
            max_duration: self.max_duration,
            skip_first: self.skip_first,
            duration_stop: self.duration_stop,
            cancel: None,
            shard: self.shard,
            start_at: self.start_at,
            abort: None,
        })
    }

    /// Whether calls are sent open-loop.
    pub fn open_loop(&self) -> bool {
        self.plan.rps.is_some() || !matches!(self.load.kind.as_str(), "" | "const")
    }

    /// The report's `options`, with `call` as ghz prints it (`package.Service.Method`).
    pub fn options(&self, call: &str) -> Options {
        let ns = |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // A shard's own rate: its share of the run's, so the shards' options add up to the run's.
        let own_rate = self.plan.rps.map(|r| r / self.shard.map_or(1.0, |s| s.count as f64));
        let mut o = Options::new(call, &self.host).open_loop_at(own_rate);
        if self.open_loop() {
            o.open_loop = true;
            o.latency_from = "scheduled send time".into();
        }
        o.proto = self.descriptors.proto.first().map(|p| p.display().to_string()).unwrap_or_default();
        o.protoset = self.descriptors.protoset.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        o.import_paths = self.descriptors.import_paths.iter().map(|p| p.display().to_string()).collect();
        o.enable_compression = self.enable_compression;
        let text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        o.cacert = text(&self.connect.cacert);
        o.cert = text(&self.connect.cert);
        o.key = text(&self.connect.key);
        o.cname = self.connect.cname.clone().unwrap_or_default();
        o.skip_tls = self.connect.skip_tls;
        o.insecure = self.connect.insecure;
        o.authority = self.connect.authority.clone().unwrap_or_default();
        if !matches!(self.load.kind.as_str(), "" | "const") {
            o.load_schedule = self.load.kind.clone();
            o.load_start = self.load.start;
            o.load_end = self.load.end;
            o.load_step = self.load.step;
            o.load_step_duration = ns(self.load.step_duration);
            o.load_max_duration = ns(self.load.max_duration);
        }
        o.concurrency = self.plan.concurrency as u64;
        if !matches!(self.concurrency.kind.as_str(), "" | "const") {
            o.concurrency_schedule = self.concurrency.kind.clone();
            o.concurrency_start = self.concurrency.start;
            o.concurrency_end = self.concurrency.end;
            o.concurrency_step = self.concurrency.step;
            o.concurrency_step_duration = ns(self.concurrency.step_duration);
            o.concurrency_max_duration = ns(self.concurrency.max_duration);
        }
        o.total = self.plan.total.unwrap_or(0);
        o.async_ = self.async_;
        o.connections = self.connections as u64;
        o.duration = ns(self.plan.duration);
        o.timeout = ns(self.timeout);
        o.dial_timeout = ns(Some(self.connect.connect_timeout));
        o.keepalive = ns(self.connect.keepalive);
        match &self.data {
            Data::Json(text) => {
                o.data = text.as_deref().map_or(serde_json::Value::Null, |d| {
                    serde_json::from_str(d).unwrap_or_else(|_| serde_json::Value::String(d.to_owned()))
                });
            }
            Data::Binary(_) => o.binary = true,
        }
        o.metadata = self.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok());
        o.cpus = self.cpus as u64;
        o.name = self.name.clone();
        o.skip_first = self.skip_first;
        o.count_errors = self.count_errors;
        o.tags = self.tags.clone();
        o.lb_strategy = self.connect.lb_strategy.clone().unwrap_or_default();
        o
    }
}

/// `--start-at`: an RFC 3339 UTC time, or Unix seconds.
fn parse_start_at(text: &str) -> anyhow::Result<std::time::SystemTime> {
    if let Ok(secs) = text.trim().parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs)
            .map(|d| std::time::SystemTime::UNIX_EPOCH + d)
            .map_err(|_| anyhow::anyhow!("--start-at {text}: Unix seconds take a number 0 or more"));
    }
    humantime::parse_rfc3339(text.trim()).with_context(|| {
        format!("--start-at {text:?}: write an RFC 3339 UTC time (2026-12-07T10:00:00Z) or Unix seconds")
    })
}

/// The data given on the command line, if any: `-d` (`@`: stdin), `-D`, `-b` (stdin) or `-B`; one of them.
fn data_from_flags(
    data: Option<String>,
    data_file: Option<PathBuf>,
    binary: bool,
    binary_file: Option<PathBuf>,
) -> anyhow::Result<Option<Data>> {
    let given = [data.is_some(), data_file.is_some(), binary, binary_file.is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        bail!("-d, -D, -b and -B each give the request data: use one");
    }
    Ok(if let Some(data) = data {
        Some(Data::Json(Some(if data == "@" { read_stdin("-d @")? } else { data })))
    } else if let Some(path) = data_file {
        Some(Data::Json(Some(read_text(&path, "-D")?)))
    } else if binary {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("-b: cannot read stdin")?;
        Some(Data::Binary(bytes))
    } else if let Some(path) = binary_file {
        Some(Data::Binary(std::fs::read(&path).with_context(|| format!("-B: cannot read {}", path.display()))?))
    } else {
        None
    })
}

/// The data a config file gives: `data`, `data-file` or `binary-file`.
fn data_from_config(
    data: Option<serde_json::Value>,
    data_file: Option<String>,
    binary_file: Option<String>,
) -> anyhow::Result<Data> {
    Ok(match (data, data_file, binary_file) {
        (Some(data), _, _) => Data::Json(Some(data.to_string())),
        (None, Some(path), _) => Data::Json(Some(read_text(&PathBuf::from(path), "\"data-file\"")?)),
        (None, None, Some(path)) => {
            Data::Binary(std::fs::read(&path).with_context(|| format!("\"binary-file\": cannot read {path}"))?)
        }
        (None, None, None) => Data::Json(None),
    })
}

fn read_text(path: &PathBuf, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
}

fn read_stdin(flag: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).with_context(|| format!("{flag}: cannot read stdin"))?;
    Ok(text)
}
