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
    metadata::{MetadataKey, MetadataMap, MetadataValue},
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
            return Ok(Self::Fixed(json::messages(&method.input(), data, "-d")?));
        }
        let trial = template.render(&CallData::trial(method));
        json::messages(&method.input(), &trial, "-d").with_context(|| format!("-d as rendered for call 0: {trial}"))?;
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

/// `{"key": "value", …}` as gRPC metadata (keys lower-cased, as HTTP/2 sends them).
fn parse_metadata(text: &str) -> anyhow::Result<MetadataMap> {
    let pairs: BTreeMap<String, String> =
        serde_json::from_str(text).with_context(|| format!("-m must be a JSON object of strings: {text}"))?;
    let mut map = MetadataMap::new();
    for (key, value) in pairs {
        let name = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .with_context(|| format!("-m: {key:?} is not a metadata key"))?;
        let value = MetadataValue::try_from(value.as_str()).with_context(|| format!("-m: {key}: {value:?}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

impl CallData<'_> {
    /// The first call of the run: what templates are checked with at start-up.
    fn trial(method: &MethodDescriptor) -> CallData<'_> {
        CallData { method, request_number: 0, worker: 0, connections: 1, now: SystemTime::now() }
    }
}
