//! What each layer of a call costs, from a profile: every sampled stack is put down to the innermost frame that
//! belongs to a known layer (the kernel's socket calls, prost's decoding, our spans, metrics, admission, …), so
//! each sample counts once and a layer's share excludes the layers it calls. Memory allocation is reported
//! separately as an "of which" row: it happens inside every layer and is part of each one's share.

/// A layer, and the frames (substrings of the symbol) that are its code. Innermost match wins, so the order only
/// matters for a single frame matching two layers: the first listed wins.
const LAYERS: &[(&str, &[&str])] = &[
    ("kernel (syscalls, TCP, scheduler)", &["_[k]"]),
    ("decode/encode (prost, tonic codec)", &["prost::", "tonic::codec", "tonic_prost", "offload_proto::"]),
    (
        "spans (tracing, OpenTelemetry context)",
        &[
            "tracing_subscriber::",
            "tracing_core::",
            "tracing::span",
            "tracing_opentelemetry",
            "opentelemetry",
            "grpc_trace",
            "rpc_attributes",
        ],
    ),
    ("metrics (labels, histograms)", &["prometheus_client::", "offload_telemetry::metrics"]),
    ("admission", &["offload_serve::admission"]),
    ("deadline", &["offload_serve::deadline"]),
    ("stall detector", &["stallwatch::layer"]),
    ("stream bounds (read/send timeouts)", &["offload_serve::stream"]),
    ("compute job (validate, place, run)", &["offload_compute::"]),
    ("balancer", &["offload_gateway::balancer", "offload_gateway::discovery"]),
    (
        "client call (tonic client, the gateway's h2 connection)",
        &["tonic::client", "offload_gateway::connection", "h2::client"],
    ),
    ("gateway handler (forward, retry, wait)", &["offload_gateway::"]),
    ("tonic server (routing, grpc framing)", &["tonic::server", "tonic::transport", "tonic::service"]),
    ("HTTP/2 (h2, hyper)", &["h2::", "hyper::", "hyper_util::"]),
    ("tokio runtime (tasks, timers, IO driver)", &["tokio::", "mio::"]),
    ("echo handler", &["overhead::echo"]),
];

/// Frames of the memory allocator (glibc's and Rust's entry points into it), by name.
const ALLOCATOR: &[&str] =
    &["malloc", "_int_free", "__libc_free", "cfree", "realloc", "calloc", "__rust_alloc", "__rust_dealloc"];

/// A profile's samples, split by layer.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// What perf counted over all stacks (its sample period: CPU-clock nanoseconds).
    pub samples: u64,
    /// Samples per entry of [`LAYERS`], and last those matching none.
    by_layer: Vec<u64>,
    /// Samples with an allocator frame on the stack.
    allocator: u64,
}

impl Attribution {
    /// `(layer, share of the samples)`, largest first, then the allocator's "of which" row; empty layers left out.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let total = self.samples.max(1) as f64;
        let mut rows: Vec<(String, f64)> = self
            .by_layer
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let name = LAYERS.get(i).map_or("other (std, libc, unresolved)", |(name, _)| name);
                (name.to_owned(), *n as f64 / total)
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows.push(("of which memory allocation (all layers)".to_owned(), self.allocator as f64 / total));
        rows
    }
}

/// Splits the folded stacks (`frame;frame;…;leaf count` per line, as inferno-collapse-perf writes them).
pub fn attribute(folded: &str) -> Attribution {
    let mut attribution = Attribution { by_layer: vec![0; LAYERS.len() + 1], ..Default::default() };
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else { continue };
        let Ok(count) = count.trim().parse::<u64>() else { continue };
        attribution.samples += count;
        let frames: Vec<String> = stack.split(';').map(without_generics).collect();
        let layer = frames.iter().rev().find_map(|f| layer_of(f)).unwrap_or(LAYERS.len());
        attribution.by_layer[layer] += count;
        if frames.iter().any(|frame| frame == "free" || ALLOCATOR.iter().any(|a| frame.contains(a))) {
            attribution.allocator += count;
        }
    }
    attribution
}

/// A frame's name without its generic arguments: `poll<hyper::…<offload_serve::…>>` is hyper's or tokio's code
/// that merely *names* our types, and must not count as ours. A qualified path's own `<Type as Trait>` stays
/// (the `<` that opens a frame or follows a space or `;`), its inner generics go.
fn without_generics(frame: &str) -> String {
    let mut out = String::with_capacity(frame.len());
    let mut depth = 0usize;
    let mut previous = ' ';
    for c in frame.chars() {
        match c {
            '<' if depth > 0 || previous.is_alphanumeric() || previous == '_' || previous == ':' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
        previous = c;
    }
    out
}

/// The layer a frame belongs to, if any.
fn layer_of(frame: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, patterns)| patterns.iter().any(|p| frame.contains(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_arguments_do_not_make_a_frame_ours() {
        assert_eq!(without_generics("poll<hyper::H2Stream<offload_serve::admission::X>>"), "poll");
        assert_eq!(
            without_generics("<offload_telemetry::grpc_trace::ServerTrace<S> as tower_service::Service<Req<B>>>::call"),
            "<offload_telemetry::grpc_trace::ServerTrace as tower_service::Service>::call"
        );
        assert_eq!(layer_of(&without_generics("poll<offload_serve::admission::Admission>")), None);
    }

    #[test]
    fn each_sample_goes_to_its_innermost_layer() {
        let folded = "\
tokio::runtime::worker::run;hyper::proto::h2::server::poll;offload_serve::admission::Admission::call;malloc 3
tokio::runtime::worker::run;h2::codec::write;__send_[k] 5
main;std::rt::lang_start 2
";
        let a = attribute(folded);
        assert_eq!(a.samples, 10);
        let shares: std::collections::HashMap<_, _> = a.shares().into_iter().collect();
        assert_eq!(shares["admission"], 0.3);
        assert_eq!(shares["kernel (syscalls, TCP, scheduler)"], 0.5);
        assert_eq!(shares["other (std, libc, unresolved)"], 0.2);
        assert_eq!(shares["of which memory allocation (all layers)"], 0.3);
    }
}
