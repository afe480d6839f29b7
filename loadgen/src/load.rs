//! `offload-bench load`: one load test against any gRPC endpoint, with ghz's flags and report.
//!
//! `offload-bench load --insecure --call offload.v1.Gateway/Factorial -d '{"n":20}' -c 50 -n 10000 127.0.0.1:50050`
//! is the same command line as ghz's, and `--config` reads ghz's JSON config files (the ones in the repository's
//! `bench/ghz/`).
//!
//! Two paths send the calls. offload's own methods and the health check, with plain `-d` and no `-m`, go through
//! the typed clients ([`crate::call`]), which `compare` and `reliability` use too. Every other call goes through
//! the dynamic path ([`crate::dynamic_call`]): descriptors from server reflection, `--proto` or `--protoset`, JSON
//! messages, ghz's templates and streaming. `docs/loadgen.md` gives what the dynamic path costs per call.

use std::{path::PathBuf, time::Duration};

use crate::duration::parse as parse_duration;
use anyhow::{Context, bail};
use clap::Args;

use std::sync::Arc;

use tonic::client::Grpc;

use crate::{
    call::{self, Call, Caller},
    descriptors::{DescriptorArgs, Source},
    dynamic_call::{DynamicCall, StreamOptions},
    report::{Options, Report, summary},
    runner::{self, Plan},
};

/// ghz-compatible load test flags.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server address, `host:port` (as ghz) or a URL.
    pub host: Option<String>,
    /// Fully qualified method, `package.Service/Method` or `package.Service.Method`: any method of any service
    /// (`offload.v1.Gateway/Factorial`, `grpc.health.v1.Health/Check`, …).
    #[arg(long)]
    pub call: Option<String>,
    /// Request as proto3 JSON (`{"n": 20, "mode": "EXEC_MODE_RAYON"}`); an array is the messages of a client
    /// stream, or sent round-robin to other methods. May use ghz's templates (`{{.RequestNumber}}`, `{{.UUID}}`, …).
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// Read `-d` from this file.
    #[arg(short = 'D', long = "data-file", conflicts_with = "data")]
    pub data_file: Option<PathBuf>,
    /// Request metadata as a JSON object of strings (`{"traceparent": "…"}`); may use ghz's templates.
    #[arg(short = 'm', long)]
    pub metadata: Option<String>,
    /// Where the method's descriptors come from.
    #[command(flatten)]
    pub descriptors: DescriptorArgs,
    /// End each stream after this long (`10s`).
    #[arg(long, value_parser = parse_duration)]
    pub stream_call_duration: Option<Duration>,
    /// End each stream after this many messages: sent by a client stream (cycling `-d`'s array), received from a
    /// server stream.
    #[arg(long)]
    pub stream_call_count: Option<u64>,
    /// Render `-d`'s templates anew for every message of a client stream, not once per stream.
    #[arg(long)]
    pub stream_dynamic_messages: bool,
    /// Wait this long between the messages of a client stream.
    #[arg(long, value_parser = parse_duration)]
    pub stream_interval: Option<Duration>,
    /// Calls in flight at once (workers). Default 50, as ghz.
    #[arg(short = 'c', long)]
    pub concurrency: Option<usize>,
    /// HTTP/2 connections the workers share. Default 1, as ghz.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Total calls. Default 200 when no --duration is given, as ghz.
    #[arg(short = 'n', long)]
    pub total: Option<u64>,
    /// Send for this long (`10s`, `1m`) instead of a fixed count.
    #[arg(short = 'z', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: send this many calls per second on a fixed schedule and measure latency from each call's
    /// scheduled time, so a stalled server cannot hide its stall. Default: closed loop, as fast as replies come.
    #[arg(long)]
    pub rps: Option<f64>,
    /// Per-call deadline (`20s`, `500ms`). Default 20s, as ghz.
    #[arg(short = 't', long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Plaintext connection (the only kind offload serves today; accepted for ghz compatibility).
    #[arg(long)]
    pub insecure: bool,
    /// ghz JSON config file; flags given on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format: `summary` (human) or `json` (ghz's JSON report).
    #[arg(short = 'O', long, default_value = "summary")]
    pub format: String,
    /// Write the report here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl LoadArgs {
    /// Fills what the command line left unset from the ghz config file, if any.
    fn with_config_file(mut self) -> anyhow::Result<Self> {
        let Some(path) = &self.config else { return Ok(self) };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let get = |key: &str| config.get(key);
        self.host = self.host.or_else(|| get("host").and_then(|v| v.as_str()).map(str::to_owned));
        self.call = self.call.or_else(|| get("call").and_then(|v| v.as_str()).map(str::to_owned));
        self.data = self.data.or_else(|| get("data").map(|v| v.to_string()));
        self.metadata = self.metadata.or_else(|| get("metadata").map(|v| v.to_string()));
        let descriptors = &mut self.descriptors;
        descriptors.protoset =
            descriptors.protoset.take().or_else(|| get("protoset").and_then(|v| v.as_str()).map(PathBuf::from));
        if descriptors.proto.is_empty()
            && let Some(proto) = get("proto").and_then(|v| v.as_str())
        {
            descriptors.proto.push(proto.into());
        }
        if descriptors.import_paths.is_empty()
            && let Some(paths) = get("import-paths").and_then(|v| v.as_array())
        {
            descriptors.import_paths = paths.iter().filter_map(|p| p.as_str()).map(PathBuf::from).collect();
        }
        self.concurrency = self.concurrency.or_else(|| get("concurrency").and_then(|v| v.as_u64()).map(|v| v as usize));
        self.connections = self.connections.or_else(|| get("connections").and_then(|v| v.as_u64()).map(|v| v as usize));
        self.total = self.total.or_else(|| get("total").and_then(|v| v.as_u64()));
        self.rps = self.rps.or_else(|| get("rps").and_then(|v| v.as_f64()).filter(|r| *r > 0.0));
        if self.duration.is_none()
            && let Some(d) = get("duration").and_then(|v| v.as_str())
        {
            self.duration = Some(parse_duration(d).map_err(anyhow::Error::msg)?);
        }
        if self.timeout.is_none()
            && let Some(t) = get("timeout").and_then(|v| v.as_str())
        {
            self.timeout = Some(parse_duration(t).map_err(anyhow::Error::msg)?);
        }
        Ok(self)
    }

    /// The typed call, if this run can take offload's typed path: one of its own methods or the health check,
    /// descriptors not given, `-d` without templates, no metadata and no stream flags.
    fn typed_call(&self, method: &str, data: Option<&str>) -> Option<Call> {
        let plain = self.descriptors.source() == Source::Reflection
            && self.metadata.is_none()
            && !data.is_some_and(|d| d.contains("{{"))
            && self.stream_call_count.is_none()
            && self.stream_call_duration.is_none();
        plain.then(|| Call::parse(method, data).ok()).flatten()
    }
}

/// Runs the load test and prints or writes its report.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let args = args.with_config_file()?;
    let host = args.host.clone().context("no host: give HOST:PORT (or \"host\" in --config)")?;
    let method = args.call.clone().context("no --call (or \"call\" in --config)")?;
    if args.format != "summary" && args.format != "json" {
        bail!("-O {}: use summary or json", args.format);
    }
    let data = match &args.data_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("-D: cannot read {}", path.display()))?)
        }
        None => args.data.clone(),
    };
    let url = if host.contains("://") { host.clone() } else { format!("http://{host}") };
    let connections = args.connections.unwrap_or(1).max(1);
    let concurrency = args.concurrency.unwrap_or(50).max(1);
    let timeout = args.timeout.unwrap_or(Duration::from_secs(20));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(call::connect(&url).await?);
    }
    let plan = Plan { concurrency, total: args.total, duration: args.duration, rps: args.rps };
    let progress = runner::progress_bar(&plan, "load", args.quiet);
    let (method_name, recording) = match args.typed_call(&method, data.as_deref()) {
        Some(typed) => {
            let callers: Vec<_> = channels.into_iter().map(Caller::new).collect();
            let name = typed.method().to_owned();
            let recording = runner::run(
                plan,
                move |worker| {
                    let mut caller = callers[worker % callers.len()].clone();
                    let call = typed.clone();
                    async move { caller.call(&call, Some(timeout)).await }
                },
                progress,
            )
            .await;
            (name, recording)
        }
        None => {
            let descriptor = args.descriptors.source().method(&channels[0], &method).await?;
            let stream = StreamOptions {
                call_duration: args.stream_call_duration,
                call_count: args.stream_call_count,
                dynamic_messages: args.stream_dynamic_messages,
                interval: args.stream_interval,
            };
            let dynamic =
                Arc::new(DynamicCall::new(descriptor, data.as_deref(), args.metadata.as_deref(), stream, connections)?);
            let name = dynamic.method_name().to_owned();
            let grpcs: Vec<_> =
                channels.into_iter().map(|c| Grpc::new(c).max_decoding_message_size(call::MAX_REPLY_BYTES)).collect();
            let recording = runner::run(
                plan,
                move |worker| {
                    let grpc = grpcs[worker % grpcs.len()].clone();
                    let dynamic = Arc::clone(&dynamic);
                    async move { dynamic.call(grpc, worker, timeout).await }
                },
                progress,
            )
            .await;
            (name, recording)
        }
    };
    let options = Options {
        call: method_name,
        host,
        concurrency,
        connections,
        total: args.total,
        duration: args.duration.map(|d| d.as_nanos() as u64),
        rps: args.rps,
        timeout: Some(timeout.as_nanos() as u64),
        data: data.as_deref().map_or(serde_json::Value::Null, |d| {
            serde_json::from_str(d).unwrap_or_else(|_| serde_json::Value::String(d.to_owned()))
        }),
        open_loop: args.rps.is_some(),
    };
    let report = Report::new(&recording, options);
    let text = if args.format == "json" { serde_json::to_string_pretty(&report)? } else { summary(&report) };
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}
