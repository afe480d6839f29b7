//! A tonic codec for messages known only by their descriptors: requests are [`DynamicMessage`]s built from `-d`
//! JSON, replies are decoded against the method's output descriptor. With it, `tonic::client::Grpc` calls any
//! method of any service, the way generated clients call theirs.
//!
//! Replies are decoded, not skipped: a reply that does not match the method's descriptor fails the call, as it
//! would in a real client.

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// Encodes any [`DynamicMessage`]; decodes replies as `output`.
#[derive(Debug, Clone)]
pub struct DynamicCodec {
    output: MessageDescriptor,
}

impl DynamicCodec {
    /// A codec whose replies are `output` messages.
    pub fn new(output: MessageDescriptor) -> Self {
        Self { output }
    }
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder { output: self.output.clone() }
    }
}

/// Writes a request in protobuf's binary encoding.
#[derive(Debug, Clone, Copy)]
pub struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst).map_err(|e| Status::internal(format!("cannot encode the request: {e}")))
    }
}

/// Reads a reply as the method's output message.
#[derive(Debug, Clone)]
pub struct DynamicDecoder {
    output: MessageDescriptor,
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        DynamicMessage::decode(self.output.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(format!("reply is not a {}: {e}", self.output.full_name())))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        hint::black_box,
        time::{Duration, Instant, SystemTime},
    };

    use offload_proto::v1::{ExecMode, Execution, FactorialRequest, FactorialResponse};
    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::template::{CallData, Template};

    /// Calls timed per path: enough for a stable mean (a few hundred ms per path in release).
    const CALLS: u32 = 200_000;

    fn per_call(mut one: impl FnMut()) -> Duration {
        for _ in 0..CALLS / 10 {
            one(); // warm-up
        }
        let start = Instant::now();
        for _ in 0..CALLS {
            one();
        }
        start.elapsed() / CALLS
    }

    /// What the load generator's CPU spends per call on messages alone (encode the request, decode the reply),
    /// typed against dynamic, for `offload.v1.Gateway/Factorial`. Run in release, as the numbers in
    /// `docs/loadgen.md`: `cargo test -p offload-loadgen --release -- --ignored --nocapture encoding_cost`.
    #[test]
    #[ignore = "a measurement: run in release with --ignored --nocapture"]
    fn encoding_cost() {
        let pool = DescriptorPool::decode(offload_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let method = pool
            .get_service_by_name("offload.v1.Gateway")
            .and_then(|s| s.methods().find(|m| m.name() == "Factorial"))
            .expect("Gateway.Factorial");
        let reply = FactorialResponse {
            value: "2432902008176640000".into(),
            digits: 19,
            execution: Some(Execution {
                mode: ExecMode::Rayon as i32,
                queue_us: 12,
                compute_us: 3,
                served_by: "compute-7f9c".into(),
                ..Default::default()
            }),
        };
        let reply_bytes = reply.encode_to_vec();
        let request = FactorialRequest { n: 20, mode: ExecMode::Rayon as i32, ..Default::default() };
        let data = r#"{"n": "20", "mode": "EXEC_MODE_RAYON"}"#;
        let fixed = crate::json::messages(&method.input(), data, "-d").expect("fits").remove(0);
        let templated = Template::parse(r#"{"n": "{{.RequestNumber}}", "mode": "EXEC_MODE_RAYON"}"#, "-d").expect("ok");
        let mut buf = Vec::with_capacity(64);

        let typed = per_call(|| {
            buf.clear();
            black_box(request).encode(&mut buf).expect("encodes");
            black_box(FactorialResponse::decode(black_box(reply_bytes.as_slice())).expect("decodes"));
        });
        let dynamic = per_call(|| {
            buf.clear();
            black_box(fixed.clone()).encode(&mut buf).expect("encodes");
            black_box(DynamicMessage::decode(method.output(), black_box(reply_bytes.as_slice())).expect("decodes"));
        });
        let mut number = 0;
        let rendered = per_call(|| {
            number += 1;
            let call =
                CallData { method: &method, request_number: number, worker: 0, connections: 1, now: SystemTime::now() };
            let text = templated.render(&call);
            let message = crate::json::messages(&method.input(), &text, "-d").expect("fits").remove(0);
            buf.clear();
            message.encode(&mut buf).expect("encodes");
            black_box(DynamicMessage::decode(method.output(), black_box(reply_bytes.as_slice())).expect("decodes"));
        });
        println!("per call, request encoded and reply decoded (offload.v1.Gateway/Factorial, {CALLS} calls each):");
        println!("  typed (prost structs):                 {:>6} ns", typed.as_nanos());
        println!("  dynamic, -d parsed once:               {:>6} ns", dynamic.as_nanos());
        println!("  dynamic, -d templated (render + JSON): {:>6} ns", rendered.as_nanos());
    }
}
