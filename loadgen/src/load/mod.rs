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

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context;
use tonic::{client::Grpc, codec::CompressionEncoding};

pub use self::{
    args::LoadArgs,
    settings::{Data, Settings},
};
use crate::{
    call::{self, Call, Caller},
    connect::Connections,
    descriptors::Source,
    dynamic_call::DynamicCall,
    recording::Recording,
    report::Report,
    request::Payload,
    runner,
};

/// Resolves `args` and runs the load test on its own runtime, printing or writing its report. The settings are
/// resolved before the runtime exists: `--cpus` (or "cpus" in `--config`) sizes it, as GOMAXPROCS in ghz.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    crate::runtime::client(Some(settings.cpus))?.block_on(execute(settings))
}

/// Runs resolved `settings`; Ctrl-C stops sending and still writes the report (ghz's `cancel` end reason).
pub async fn execute(settings: Settings) -> anyhow::Result<()> {
    let mut controls = settings.controls()?;
    let cancel = Arc::new(AtomicBool::new(false));
    controls.cancel = Some(Arc::clone(&cancel));
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let connections = Connections::open(&settings.host, settings.connections, &settings.connect).await?;
    let progress = runner::progress_bar(&settings.plan, "load", settings.quiet);
    let timeout = settings.timeout;
    let (method, recording) = match typed_call(&settings) {
        Some(typed) => {
            let name = typed.method().to_owned();
            let conns = Arc::clone(&connections);
            let invoke = move |worker| {
                let mut caller = Caller::new(conns.for_worker(worker));
                let call = typed.clone();
                async move { caller.call(&call, timeout).await }
            };
            (name, runner::run_with(settings.plan, controls, invoke, progress).await)
        }
        None => {
            let descriptor = settings.descriptors.source().method(&connections.first(), &settings.call).await?;
            let payload = match &settings.data {
                Data::Json(text) => Payload::new(&descriptor, text.as_deref())?,
                Data::Binary(bytes) => Payload::binary(&descriptor, bytes)?,
            };
            let dynamic = Arc::new(DynamicCall::with_payload(
                descriptor,
                payload,
                settings.metadata.as_deref(),
                settings.stream,
                settings.connections,
            )?);
            let name = dynamic.method_name().to_owned();
            let (conns, gzip) = (Arc::clone(&connections), settings.enable_compression);
            let invoke = move |worker| {
                let mut grpc = Grpc::new(conns.for_worker(worker)).max_decoding_message_size(call::MAX_REPLY_BYTES);
                if gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                let dynamic = Arc::clone(&dynamic);
                async move { dynamic.call_within(grpc, worker, timeout).await }
            };
            (name, runner::run_with(settings.plan, controls, invoke, progress).await)
        }
    };
    write_report(&settings, &method, &recording)
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

/// Writes the report in `-O`'s format to `-o` (or stdout).
fn write_report(settings: &Settings, method: &str, recording: &Recording) -> anyhow::Result<()> {
    let report = Report::new(recording, settings.options(method));
    let text = settings.format.render(&report, recording)?;
    match &settings.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("-o: cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
