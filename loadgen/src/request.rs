//! What one call of the dynamic path sends: its request messages (from `-d`/`-D`) and its metadata (from `-m`),
//! rendered from ghz's call-data templates for that call.
//!
//! Data without template actions is parsed once, at start-up, and each call clones the messages; templated data
//! is rendered and parsed for every call (as ghz does), after one trial rendering at start-up so that a `-d` that
//! does not fit the method is refused before any load is sent.

use std::{collections::BTreeMap, time::SystemTime};

use anyhow::Context;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tonic::{
    Status,
    metadata::{Ascii, Binary, MetadataKey, MetadataMap, MetadataValue},
};

use crate::{
    json,
    template::{CallData, Template},
};

/// The request messages: fixed, or rendered per call.
#[derive(Debug, Clone)]
pub enum Payload {
    Fixed(Vec<DynamicMessage>),
    Templated(Template),
}

impl Payload {
    /// From `-d` (JSON text, maybe templated; `None` for an empty message), checked against `method`'s input.
    pub fn new(method: &MethodDescriptor, data: Option<&str>) -> anyhow::Result<Self> {
        let data = data.unwrap_or("{}");
        let template = Template::parse(data, "-d")?;
        if template.is_constant() {
            let messages = json::messages(&method.input(), data, "-d")?;
            refuse_no_message(method, &messages)?;
            return Ok(Self::Fixed(messages));
        }
        let trial = template.render(&CallData::trial(method));
        let messages = json::messages(&method.input(), &trial, "-d")
            .with_context(|| format!("-d as rendered for call 0: {trial}"))?;
        refuse_no_message(method, &messages)?;
        Ok(Self::Templated(template))
    }

    /// From binary protobuf (`-b`/`-B`), as ghz reads it: a sequence of length-prefixed messages (each preceded by
    /// its size as a varint, as protobuf's `writeDelimitedTo` writes them) if the bytes are exactly that, else
    /// one message.
    pub fn binary(method: &MethodDescriptor, bytes: &[u8]) -> anyhow::Result<Self> {
        let input = method.input();
        let delimited = || -> Option<Vec<DynamicMessage>> {
            let mut rest = bytes;
            let mut messages = Vec::new();
            while !rest.is_empty() {
                let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
                let (message, tail) = (rest.get(..len)?, rest.get(len..)?);
                messages.push(DynamicMessage::decode(input.clone(), message).ok()?);
                rest = tail;
            }
            (!messages.is_empty()).then_some(messages)
        };
        if let Some(messages) = delimited() {
            return Ok(Self::Fixed(messages));
        }
        let message = DynamicMessage::decode(input.clone(), bytes).with_context(|| {
            format!("binary data is not a {} message (nor length-prefixed ones)", input.full_name())
        })?;
        Ok(Self::Fixed(vec![message]))
    }

    /// The messages for the call `data` describes.
    pub fn messages(&self, method: &MethodDescriptor, data: &CallData<'_>) -> Result<Vec<DynamicMessage>, Status> {
        match self {
            Self::Fixed(messages) => Ok(messages.clone()),
            Self::Templated(template) => json::messages(&method.input(), &template.render(data), "-d")
                .map_err(|e| Status::invalid_argument(format!("{e:#}"))),
        }
    }

    /// Message `index` (wrapping around) for the call `data` describes: what unary and server-streaming calls
    /// send, `index` being the request number, so an array in `-d` is sent round-robin (as ghz).
    pub fn message(
        &self,
        method: &MethodDescriptor,
        data: &CallData<'_>,
        index: u64,
    ) -> Result<DynamicMessage, Status> {
        let pick = |messages: &[DynamicMessage]| {
            let len = messages.len() as u64;
            (len > 0).then(|| messages[(index % len.max(1)) as usize].clone())
        };
        let found = match self {
            Self::Fixed(messages) => pick(messages),
            Self::Templated(_) => pick(&self.messages(method, data)?),
        };
        found.ok_or_else(|| Status::invalid_argument("-d is an empty array: no message to send"))
    }
}

/// A unary or server-streaming call sends exactly one message: an empty `-d` array leaves it nothing to send,
/// which is the user's mistake to hear about now, not a per-call error that reads as the server's.
fn refuse_no_message(method: &MethodDescriptor, messages: &[DynamicMessage]) -> anyhow::Result<()> {
    if messages.is_empty() && !method.is_client_streaming() {
        anyhow::bail!(
            "-d: an empty array has no message to send; {} takes one request message (give an object)",
            method.full_name()
        );
    }
    Ok(())
}

/// Request metadata (`-m`, a JSON object of strings): fixed, or rendered per call.
#[derive(Debug, Clone)]
pub enum Metadata {
    Fixed(MetadataMap),
    Templated(Template),
}

impl Metadata {
    /// From `-m` (maybe templated; `None` for none), checked at start-up.
    pub fn new(method: &MethodDescriptor, metadata: Option<&str>) -> anyhow::Result<Self> {
        let Some(text) = metadata else { return Ok(Self::Fixed(MetadataMap::new())) };
        let template = Template::parse(text, "-m")?;
        if template.is_constant() {
            return Ok(Self::Fixed(parse_metadata(text)?));
        }
        let trial = template.render(&CallData::trial(method));
        parse_metadata(&trial).with_context(|| format!("-m as rendered for call 0: {trial}"))?;
        Ok(Self::Templated(template))
    }

    /// The metadata for the call `data` describes.
    pub fn map(&self, data: &CallData<'_>) -> Result<MetadataMap, Status> {
        match self {
            Self::Fixed(map) => Ok(map.clone()),
            Self::Templated(template) => {
                parse_metadata(&template.render(data)).map_err(|e| Status::invalid_argument(format!("{e:#}")))
            }
        }
    }
}

/// `{"key": "value", …}` as gRPC metadata (keys lower-cased, as HTTP/2 sends them). A key ending in `-bin` is
/// binary metadata: its value is base64 (standard or URL-safe alphabet, padded or not), as grpcurl and ghz take
/// it, decoded here and sent as the bytes it stands for (gRPC base64-encodes them again on the wire).
fn parse_metadata(text: &str) -> anyhow::Result<MetadataMap> {
    let pairs: BTreeMap<String, String> =
        serde_json::from_str(text).with_context(|| format!("-m must be a JSON object of strings: {text}"))?;
    let mut map = MetadataMap::new();
    for (key, value) in pairs {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with("-bin") {
            let name = MetadataKey::<Binary>::from_bytes(lower.as_bytes())
                .with_context(|| format!("-m: {key:?} is not a metadata key"))?;
            let bytes = base64_decode(&value)
                .with_context(|| format!("-m: {key}: a -bin key takes a base64 value, not {value:?}"))?;
            map.insert_bin(name, MetadataValue::from_bytes(&bytes));
            continue;
        }
        let name = MetadataKey::<Ascii>::from_bytes(lower.as_bytes())
            .with_context(|| format!("-m: {key:?} is not a metadata key"))?;
        let value = MetadataValue::try_from(value.as_str()).with_context(|| format!("-m: {key}: {value:?}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Base64 as gRPC peers write binary metadata: the standard or URL-safe alphabet, with or without `=` padding.
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        }))
    };
    let digits = text.trim_end_matches('=').as_bytes();
    if digits.len() % 4 == 1 || text.len() - digits.len() > 2 {
        anyhow::bail!("not base64 (its length)");
    }
    let mut bytes = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut word = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            word |= sextet(c).with_context(|| format!("not base64 ({:?} is not a base64 digit)", c as char))?
                << (18 - 6 * i);
        }
        bytes.extend_from_slice(&word.to_be_bytes()[1..chunk.len()]);
    }
    Ok(bytes)
}

impl CallData<'_> {
    /// The first call of the run: what templates are checked with at start-up.
    fn trial(method: &MethodDescriptor) -> CallData<'_> {
        CallData { method, request_number: 0, worker: 0, connections: 1, now: SystemTime::now() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_keys_take_base64_and_send_its_bytes() {
        let map = parse_metadata(r#"{"trace-bin": "AAEC/w==", "x-id-bin": "AAEC_w", "plain": "text"}"#).expect("ok");
        for key in ["trace-bin", "x-id-bin"] {
            let value = map.get_bin(key).unwrap_or_else(|| panic!("{key}"));
            assert_eq!(value.to_bytes().expect("base64 on the wire").as_ref(), [0, 1, 2, 255], "{key}");
        }
        assert_eq!(map.get("plain").and_then(|v| v.to_str().ok()), Some("text"));
        let error = format!("{:#}", parse_metadata(r#"{"a-bin": "not base64!"}"#).expect_err("refused"));
        assert!(error.contains("a-bin") && error.contains("base64"), "{error}");
        assert_eq!(base64_decode("").expect("empty"), Vec::<u8>::new());
        assert_eq!(base64_decode("aGVsbG8").expect("hello"), b"hello");
        assert!(base64_decode("a").is_err());
    }
}
