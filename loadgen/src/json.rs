//! Messages from and to JSON with protobuf's canonical proto3 mapping (`prost-reflect`): 64-bit integers as
//! strings or numbers, enums by name or number, bytes as base64, well-known types, `oneof`, maps and nested
//! messages, so the `-d` a user passes to grpcurl or ghz works unchanged.
//!
//! When `-d` does not fit, the error names the field (`inner.values[]`), what the message expects there and what
//! was given, found by trying the object one field at a time: the mapping's own error names neither.

use anyhow::{anyhow, bail};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions};
use serde_json::Value;

/// The request messages in `data` (ghz's forms: one object, or an array of them), as `message` messages.
pub fn messages(message: &MessageDescriptor, data: &str, what: &str) -> anyhow::Result<Vec<DynamicMessage>> {
    let value: Value = serde_json::from_str(data).map_err(|e| anyhow!("{what} is not JSON ({e}): {data}"))?;
    match value {
        Value::Array(items) => items.iter().map(|item| from_value(message, item, what)).collect(),
        item => Ok(vec![from_value(message, &item, what)?]),
    }
}

/// One message from a JSON value.
pub fn from_value(message: &MessageDescriptor, value: &Value, what: &str) -> anyhow::Result<DynamicMessage> {
    if !value.is_object() {
        bail!("{what}: expected a {} object (or an array of them), got {value}", message.full_name());
    }
    DynamicMessage::deserialize(message.clone(), value)
        .map_err(|e| anyhow!("{what}: {}", locate(message, value, "", &e)))
}

/// A message as canonical JSON (field names in lowerCamelCase, as grpcurl prints them).
pub fn to_json(message: &DynamicMessage) -> String {
    let mut out = serde_json::Serializer::new(Vec::new());
    let _ = message.serialize_with_options(&mut out, &SerializeOptions::new());
    String::from_utf8(out.into_inner()).unwrap_or_default()
}

/// The first field of `value` that `message` refuses, and why; `error` is the mapping's own, kept as a detail.
fn locate(message: &MessageDescriptor, value: &Value, path: &str, error: &serde_json::Error) -> String {
    let Value::Object(object) = value else {
        return format!("{path}: expected a {} object, got {value}", message.full_name());
    };
    for (key, item) in object {
        let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let Some(field) = message.get_field_by_json_name(key).or_else(|| message.get_field_by_name(key)) else {
            let known: Vec<_> = message.fields().map(|f| f.name().to_owned()).collect();
            return format!("unknown field {at:?} ({} has {})", message.full_name(), known.join(", "));
        };
        let alone = Value::Object([(key.clone(), item.clone())].into_iter().collect());
        let Err(e) = DynamicMessage::deserialize(message.clone(), &alone) else { continue };
        if let (Kind::Message(inner), false, Value::Object(_)) = (field.kind(), field.is_map(), item)
            && !is_well_known(&inner)
        {
            return locate(&inner, item, &at, &e);
        }
        return format!("field {at:?}: expected {}, got {item} ({e})", expected(&field));
    }
    error.to_string()
}

fn is_well_known(message: &MessageDescriptor) -> bool {
    message.package_name() == "google.protobuf"
}

/// What JSON a field takes, in the words of the proto3 JSON mapping.
fn expected(field: &FieldDescriptor) -> String {
    if let (true, Kind::Message(entry)) = (field.is_map(), field.kind()) {
        return format!("a JSON object of {}", kind(&entry.map_entry_value_field().kind()));
    }
    let one = kind(&field.kind());
    if field.is_list() { format!("a JSON array, each item {one}") } else { one }
}

fn kind(kind: &Kind) -> String {
    match kind {
        Kind::Double | Kind::Float => "a number (or \"NaN\", \"Infinity\")".to_owned(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => "a 32-bit integer".to_owned(),
        Kind::Uint32 | Kind::Fixed32 => "a non-negative 32-bit integer".to_owned(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => "a 64-bit integer (number or decimal string)".to_owned(),
        Kind::Uint64 | Kind::Fixed64 => "a non-negative 64-bit integer (number or decimal string)".to_owned(),
        Kind::Bool => "true or false".to_owned(),
        Kind::String => "a string".to_owned(),
        Kind::Bytes => "base64-encoded bytes".to_owned(),
        Kind::Enum(e) => {
            let names: Vec<_> = e.values().map(|v| v.name().to_owned()).collect();
            format!("one of {}'s names ({}) or a number", e.full_name(), names.join(", "))
        }
        Kind::Message(m) => match m.full_name() {
            "google.protobuf.Timestamp" => "an RFC 3339 timestamp string (\"2024-01-01T00:00:00Z\")".to_owned(),
            "google.protobuf.Duration" => "a duration string in seconds (\"1.5s\")".to_owned(),
            name => format!("a {name} object"),
        },
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;

    fn factorial_request() -> MessageDescriptor {
        let pool = DescriptorPool::decode(offload_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        pool.get_message_by_name("offload.v1.FactorialRequest").expect("FactorialRequest")
    }

    #[test]
    fn canonical_json_both_ways() {
        let request = factorial_request();
        let one = messages(&request, r#"{"n": "20", "mode": "EXEC_MODE_RAYON"}"#, "-d").expect("fits");
        assert_eq!(to_json(&one[0]), r#"{"n":"20","mode":"EXEC_MODE_RAYON"}"#);
        let two = messages(&request, r#"[{"n": 1, "upstreamWait": 2}, {"n": 2, "upstream_wait": 1}]"#, "-d");
        assert_eq!(two.expect("fits").len(), 2);
    }

    #[test]
    fn misfits_name_the_field_and_what_it_takes() {
        let request = factorial_request();
        let error = |data: &str| messages(&request, data, "-d").expect_err("misfit").to_string();
        let e = error(r#"{"n": 1, "mode": "FAST"}"#);
        assert!(
            e.starts_with(r#"-d: field "mode": expected one of offload.v1.ExecMode's names (EXEC_MODE_UNSPECIFIED"#),
            "{e}"
        );
        let e = error(r#"{"n": -1}"#);
        assert!(e.contains(r#"field "n": expected a non-negative 64-bit integer"#), "{e}");
        let e = error(r#"{"ms": 5}"#);
        assert!(e.contains(r#"unknown field "ms" (offload.v1.FactorialRequest has n, mode, upstream_wait)"#), "{e}");
        assert!(error("[1]").contains("expected a offload.v1.FactorialRequest object"));
        assert!(error("{").contains("-d is not JSON"));
    }
}
