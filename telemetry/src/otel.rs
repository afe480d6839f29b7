//! OpenTelemetry export: the process's spans leave as OTLP over gRPC when, and only when, an endpoint is configured.
//!
//! Configuration is the standard `OTEL_*` environment, read by the OpenTelemetry SDK and exporter themselves:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns export on; `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_{HEADERS,TIMEOUT,
//! COMPRESSION}` (and their `_TRACES_` forms) tune it; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn
//! it off again. Without an endpoint nothing is built: no exporter thread, no OpenTelemetry layer, no cost.
//!
//! The exporter's gRPC connection lives on its own one-thread runtime. The server's runtime is the thing this
//! project blocks on purpose (`INLINE`): the traces that show a blocked runtime must not wait for it to unblock.

use std::{env, time::Duration};

use anyhow::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};

/// Longest a shutdown waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A running export pipeline: the tracer provider (batching spans on its own thread) and the runtime its gRPC
/// connection lives on. [`Exporter::shutdown`] flushes.
#[derive(Debug)]
pub(crate) struct Exporter {
    pub(crate) provider: SdkTracerProvider,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Whether the environment asks for OTLP trace export.
fn export_requested() -> bool {
    let set = |name: &str| env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Builds the pipeline if the environment asks for one. `service` names the process unless `OTEL_SERVICE_NAME` or
/// a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` does.
pub(crate) fn from_env(service: &str) -> anyhow::Result<Option<Exporter>> {
    if !export_requested() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()
        .context("cannot start the OpenTelemetry export thread")?;
    let exporter = {
        // The exporter's channel spawns its connection tasks on the runtime it is built in.
        let _entered = runtime.enter();
        // Endpoint, headers, timeout and compression come from OTEL_EXPORTER_OTLP_* (the exporter reads them).
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(opentelemetry_otlp::Protocol::Grpc)
            .build()
            .context("invalid OTLP exporter configuration (OTEL_EXPORTER_OTLP_*)")?
    };
    let named_by_env = env::var_os("OTEL_SERVICE_NAME").is_some()
        || env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let mut resource = Resource::builder();
    if !named_by_env {
        resource = resource.with_service_name(service.to_owned());
    }
    // The sampler (OTEL_TRACES_SAMPLER) and batch settings (OTEL_BSP_*) are read by the SDK's defaults.
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    Ok(Some(Exporter { provider, runtime: Some(runtime) }))
}

impl Exporter {
    /// Exports what is buffered and stops. Errors are reported, not returned: shutdown goes on regardless.
    pub(crate) fn shutdown(&mut self) {
        if let Err(error) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            // The subscriber may already be gone for this thread's purposes; stderr always works.
            eprintln!("OpenTelemetry: could not flush the last spans: {error}");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
