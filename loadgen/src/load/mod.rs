//! `offload-bench load`: one load test against any gRPC endpoint, with ghz's flags, config files and reports.
//!
//! `offload-bench load --insecure --call offload.v1.Gateway/Factorial -d '{"n":20}' -c 50 -n 10000 127.0.0.1:50050`
//! is the same command line as ghz's; `--config` reads ghz's JSON, TOML and YAML files (the repository's
//! `bench/ghz/`); `-O` writes every ghz format ([`crate::format`]) from one report ([`crate::report`]).
//!
//! Two paths send the calls. offload's own methods and the health check, with plain JSON `-d`, no `-m`, no
//! compression and no descriptor flags, go through the typed clients ([`crate::call`]), which `compare` and
//! `reliability` use too. Every other call goes through the dynamic path ([`crate::dynamic_call`]): descriptors
//! from server reflection, `--proto` or `--protoset`, JSON or binary messages, ghz's templates and streaming.
//! `docs/loadgen.md` gives what the dynamic path costs per call.

mod args;
mod settings;

use std::sync::Arc;

use anyhow::{Context, bail};
use prost_reflect::MethodDescriptor;
use tonic::{client::Grpc, codec::CompressionEncoding};

pub use self::{
    args::LoadArgs,
    settings::{Data, Settings},
};
use crate::{
    abort::Abort,
    call::{self, Call, Caller},
    connect::Connections,
    descriptors::{self, Source},
    dynamic_call::DynamicCall,
    recording::Recording,
    report::Report,
    request::Payload,
    runner::{self, Cancel},
    threshold::{self, Threshold},
};

/// Resolves `args` and runs the load test on its own runtime, printing or writing its report; whether every
/// `--threshold` held (and the run was not aborted by one). The settings are resolved before the runtime exists:
/// `--cpus` (or "cpus" in `--config`) sizes it, as GOMAXPROCS in ghz.
pub fn run(args: LoadArgs) -> anyhow::Result<bool> {
    let settings = Settings::resolve(args)?;
    crate::runtime::client(Some(settings.cpus))?.block_on(execute(settings))
}

/// Runs resolved `settings`. Ctrl-C (SIGINT) stops sending, cancels the calls in flight (counted as `Canceled`)
/// and writes the report (ghz's `cancel` end reason); before the first call it ends the run with nothing to
/// report; a second Ctrl-C exits at once, without a report, as ghz and most command lines do. Returns whether
/// every threshold held.
pub async fn execute(settings: Settings) -> anyhow::Result<bool> {
    let mut controls = settings.controls()?;
    let cancel = Cancel::new();
    controls.cancel = Some(cancel.clone());
    if settings.abort_on_fail {
        controls.abort = Some(abort_check(&settings));
    }
    let abort = controls.abort.clone();
    tokio::spawn(interrupts(cancel.clone()));
    // What needs no server is checked before connecting: descriptors from files, and -d and -m against them.
    let typed = typed_call(&settings);
    let source = settings.descriptors.source();
    let from_files = match (&typed, source.method_from_files(&settings.call)) {
        (None, Some(method)) => Some(dynamic_call(&settings, method?)?),
        _ => None,
    };
    let setup = async {
        let connections = Connections::open(&settings.host, settings.connections, &settings.connect).await?;
        let deadline = settings.connect.connect_timeout;
        let dynamic = match (&typed, from_files) {
            // The typed path needs no descriptors, but a service the server's reflection does not list is
            // refused here rather than answered UNIMPLEMENTED on every call.
            (Some(_), _) => {
                descriptors::refuse_unlisted(&connections.first(), &settings.call, deadline).await?;
                None
            }
            (None, Some(dynamic)) => Some(dynamic),
            (None, None) => {
                Some(dynamic_call(&settings, source.method(&connections.first(), &settings.call, deadline).await?)?)
            }
        };
        anyhow::Ok((connections, dynamic))
    };
    let (connections, dynamic) = tokio::select! {
        ready = setup => ready?,
        () = cancel.cancelled() => bail!("interrupted (Ctrl-C) before the first call: nothing to report"),
    };
    let progress = runner::progress_bar(&settings.plan, "load", settings.quiet);
    let timeout = settings.timeout;
    let (method, recording) = match (typed, dynamic) {
        (Some(typed), _) => {
            let name = typed.method().to_owned();
            let conns = Arc::clone(&connections);
            let invoke = move |worker| {
                let mut caller = Caller::new(conns.for_worker(worker));
                let call = typed.clone();
                async move { caller.call(&call, timeout).await }
            };
            (name, runner::run_with(settings.plan, controls, invoke, progress).await)
        }
        (None, dynamic) => {
            let dynamic = Arc::new(dynamic.context("no method to call")?);
            let name = dynamic.method_name().to_owned();
            let (conns, gzip) = (Arc::clone(&connections), settings.enable_compression);
            let invoke = move |worker| {
                let mut grpc = Grpc::new(conns.for_worker(worker)).max_decoding_message_size(call::MAX_REPLY_BYTES);
                if gzip {
                    // -e: requests in gzip, and gzip replies taken (advertised in grpc-accept-encoding), as ghz.
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
                }
                let dynamic = Arc::clone(&dynamic);
                async move { dynamic.call_within(grpc, worker, timeout).await }
            };
            (name, runner::run_with(settings.plan, controls, invoke, progress).await)
        }
    };
    let held = write_report(&settings, &method, &recording)?;
    Ok(held && abort.as_ref().and_then(Abort::why).is_none())
}

/// `--abort-on-fail`'s check: the latency and error thresholds on a report of the calls so far.
fn abort_check(settings: &Settings) -> Abort {
    let thresholds: Vec<Threshold> = settings.thresholds.iter().filter(|t| t.checkable_early()).cloned().collect();
    let options = settings.options(&settings.call);
    Abort::new(Arc::new(move |live: &Recording| {
        if live.count() == 0 {
            return None;
        }
        let report = Report::new(live, options.clone());
        threshold::check(&thresholds, &report)
            .into_iter()
            .find(|o| !o.pass)
            .map(|o| format!("threshold {} failed on the calls so far ({})", o.threshold, o.value))
    }))
}

/// The dynamic call of `method` with `settings`' data, metadata and stream options, checked against it.
fn dynamic_call(settings: &Settings, method: MethodDescriptor) -> anyhow::Result<DynamicCall> {
    let payload = match &settings.data {
        Data::Json(text) => Payload::new(&method, text.as_deref())?,
        Data::Binary(bytes) => Payload::binary(&method, bytes)?,
    };
    DynamicCall::with_payload(method, payload, settings.metadata.as_deref(), settings.stream, settings.connections)
}

/// Ctrl-C: the first cancels the run, a second exits at once. One signal stream for both, so a second Ctrl-C
/// that comes before this task runs again is still seen.
async fn interrupts(cancel: Cancel) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut interrupts) = signal(SignalKind::interrupt()) else { return };
        if interrupts.recv().await.is_none() {
            return;
        }
        interrupted(&cancel);
        if interrupts.recv().await.is_some() {
            exit_at_once();
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        interrupted(&cancel);
        if tokio::signal::ctrl_c().await.is_ok() {
            exit_at_once();
        }
    }
}

/// The first Ctrl-C: the run is cancelled, and the user told what comes next.
fn interrupted(cancel: &Cancel) {
    eprintln!("interrupted: cancelling the calls in flight, then the report (Ctrl-C again to exit at once)");
    cancel.cancel();
}

/// A second Ctrl-C: the user wants out now, report or not (128 + SIGINT, as a shell reports it).
fn exit_at_once() -> ! {
    eprintln!("interrupted again: exiting without a report");
    std::process::exit(130)
}

/// The typed call, if this run can take offload's typed path: one of its own methods or the health check,
/// descriptors not given, JSON `-d` without templates, no metadata, no compression and no stream flags.
fn typed_call(settings: &Settings) -> Option<Call> {
    let Data::Json(data) = &settings.data else { return None };
    let plain = settings.descriptors.source() == Source::Reflection
        && settings.metadata.is_none()
        && !settings.enable_compression
        && !data.as_deref().is_some_and(|d| d.contains("{{"))
        && settings.stream.call_count.is_none()
        && settings.stream.call_duration.is_none();
    plain.then(|| Call::parse(&settings.call, data.as_deref()).ok()).flatten()
}

/// Writes the report in `-O`'s format to `-o` (or stdout), its thresholds checked and printed on stderr; whether
/// they all held.
fn write_report(settings: &Settings, method: &str, recording: &Recording) -> anyhow::Result<bool> {
    let mut report = Report::new(recording, settings.options(method));
    report.shard = settings.shard;
    report.thresholds = threshold::check(&settings.thresholds, &report);
    let text = settings.format.render(&report, recording)?;
    match &settings.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("-o: cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    threshold::print(&report.thresholds);
    if let Some(warning) = report.generator.as_ref().and_then(crate::health::Health::warning) {
        eprintln!("{warning}");
    }
    Ok(report.thresholds.iter().all(|t| t.pass))
}
