//! ghz's call-data templates: `-d`, `-D` and `-m` may contain Go template actions such as `{{.RequestNumber}}` or
//! `{{.UUID}}`, rendered afresh for every call (every stream message with `--stream-dynamic-messages`), so each
//! request can carry a unique id, a timestamp or the worker that sent it.
//!
//! The names and their formatting are ghz's (`runner/calldata.go`): `RequestNumber` counts calls from 0 across the
//! run, `WorkerID` is `g<worker>c<connection>`, `ServiceName`/`InputName`/`OutputName` are short names and
//! `FullyQualifiedName` is `package.Service.Method`, `Timestamp` is RFC 3339 to the second, booleans are
//! `true`/`false`. ghz's two template functions `newUUID` and `randomString N` are understood too. Anything else
//! is refused when the template is read, naming the action (ghz would silently send the template text as data).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use prost_reflect::MethodDescriptor;

use crate::limits::MAX_RANDOM_STRING;

/// One piece of a template: text copied as is, or an action replaced per call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
    /// `{{randomString N}}`: N random letters and digits (2 to 16 of them for N ≤ 0, as ghz).
    RandomString(i64),
}

/// The values a template can name: ghz's `CallData` fields (plus `newUUID`, which is `UUID` again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    WorkerId,
    RequestNumber,
    FullyQualifiedName,
    MethodName,
    ServiceName,
    InputName,
    OutputName,
    IsClientStreaming,
    IsServerStreaming,
    Timestamp,
    TimestampUnix,
    TimestampUnixMilli,
    TimestampUnixNano,
    Uuid,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            ".WorkerID" => Self::WorkerId,
            ".RequestNumber" => Self::RequestNumber,
            ".FullyQualifiedName" => Self::FullyQualifiedName,
            ".MethodName" => Self::MethodName,
            ".ServiceName" => Self::ServiceName,
            ".InputName" => Self::InputName,
            ".OutputName" => Self::OutputName,
            ".IsClientStreaming" => Self::IsClientStreaming,
            ".IsServerStreaming" => Self::IsServerStreaming,
            ".Timestamp" => Self::Timestamp,
            ".TimestampUnix" => Self::TimestampUnix,
            ".TimestampUnixMilli" => Self::TimestampUnixMilli,
            ".TimestampUnixNano" => Self::TimestampUnixNano,
            ".UUID" | "newUUID" => Self::Uuid,
            _ => return None,
        })
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; an action that is not one of ghz's is an error naming it. `what` (`-d`, `-m`) is for errors.
    pub fn parse(text: &str, what: &str) -> anyhow::Result<Self> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find("}}") else { bail!("{what}: unclosed {{{{ in {rest:?}") };
            let action = rest[open + 2..open + close].trim().trim_start_matches('-').trim_end_matches('-').trim();
            let mut words = action.split_whitespace();
            let piece = match (words.next(), words.next(), words.next()) {
                (Some(name), None, None) => Field::parse(name).map(Piece::Field),
                (Some("randomString"), Some(n), None) => match n.parse::<i64>() {
                    Ok(n) if n > MAX_RANDOM_STRING => bail!(
                        "{what}: {{{{randomString {n}}}}}: out of range; it takes up to {MAX_RANDOM_STRING} characters \
                         (0 or less: 2 to 16, as ghz)"
                    ),
                    Ok(n) => Some(Piece::RandomString(n)),
                    Err(_) => {
                        bail!("{what}: {{{{randomString {n}}}}}: N must be a whole number up to {MAX_RANDOM_STRING}")
                    }
                },
                _ => None,
            };
            let Some(piece) = piece else {
                bail!(
                    "{what}: unknown template action {{{{{action}}}}}; use one of ghz's: .RequestNumber, .WorkerID, \
                     .FullyQualifiedName, .MethodName, .ServiceName, .InputName, .OutputName, .IsClientStreaming, \
                     .IsServerStreaming, .Timestamp, .TimestampUnix, .TimestampUnixMilli, .TimestampUnixNano, .UUID, \
                     newUUID, randomString N"
                )
            };
            pieces.push(piece);
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { pieces })
    }

    /// Whether it has any action (if not, it renders the same every call and can be parsed once).
    pub fn is_constant(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    /// The text for one call.
    pub fn render(&self, data: &CallData<'_>) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for piece in &self.pieces {
            let _ = match piece {
                Piece::Text(text) => write!(out, "{text}"),
                Piece::RandomString(n) => write!(out, "{}", random_string(*n)),
                Piece::Field(field) => data.write(*field, &mut out),
            };
        }
        out
    }
}

/// What one call's templates are rendered from.
#[derive(Debug, Clone)]
pub struct CallData<'a> {
    pub method: &'a MethodDescriptor,
    /// The call's number in the run, from 0.
    pub request_number: u64,
    /// The worker sending it.
    pub worker: usize,
    /// HTTP/2 connections the workers share (the worker's connection is `worker % connections`).
    pub connections: usize,
    /// When the call is made.
    pub now: SystemTime,
}

impl CallData<'_> {
    fn write(&self, field: Field, out: &mut String) -> std::fmt::Result {
        use std::fmt::Write;
        let method = self.method;
        let since_epoch = self.now.duration_since(UNIX_EPOCH).unwrap_or_default();
        match field {
            Field::WorkerId => write!(out, "g{}c{}", self.worker, self.worker % self.connections.max(1)),
            Field::RequestNumber => write!(out, "{}", self.request_number),
            Field::FullyQualifiedName => write!(out, "{}", method.full_name()),
            Field::MethodName => write!(out, "{}", method.name()),
            Field::ServiceName => write!(out, "{}", method.parent_service().name()),
            Field::InputName => write!(out, "{}", method.input().name()),
            Field::OutputName => write!(out, "{}", method.output().name()),
            Field::IsClientStreaming => write!(out, "{}", method.is_client_streaming()),
            Field::IsServerStreaming => write!(out, "{}", method.is_server_streaming()),
            Field::Timestamp => write!(out, "{}", crate::report::rfc3339(self.now)),
            Field::TimestampUnix => write!(out, "{}", since_epoch.as_secs()),
            Field::TimestampUnixMilli => write!(out, "{}", since_epoch.as_millis()),
            Field::TimestampUnixNano => write!(out, "{}", since_epoch.as_nanos()),
            Field::Uuid => write!(out, "{}", uuid_v4()),
        }
    }
}

/// A random (version 4) UUID, as ghz's `{{.UUID}}`.
pub fn uuid_v4() -> String {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// ghz's `randomString`: `n` letters and digits, or 2 to 16 of them when `n` ≤ 0.
fn random_string(n: i64) -> String {
    const CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let len = if n <= 0 { fastrand::usize(2..=16) } else { n as usize };
    (0..len).map(|_| CHARSET[fastrand::usize(..CHARSET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method() -> MethodDescriptor {
        let pool = prost_reflect::DescriptorPool::decode(offload_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        pool.get_service_by_name("offload.v1.Gateway")
            .and_then(|s| s.methods().find(|m| m.name() == "Factorial"))
            .expect("Gateway.Factorial")
    }

    #[test]
    fn renders_every_ghz_field() {
        let method = method();
        let now = UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_456_789);
        let data = CallData { method: &method, request_number: 7, worker: 5, connections: 2, now };
        let text = "{{.RequestNumber}} {{ .WorkerID }} {{.FullyQualifiedName}} {{.MethodName}} {{.ServiceName}} \
                    {{.InputName}} {{.OutputName}} {{.IsClientStreaming}} {{.IsServerStreaming}} {{.Timestamp}} \
                    {{.TimestampUnix}} {{.TimestampUnixMilli}} {{.TimestampUnixNano}}";
        let rendered = Template::parse(text, "-d").expect("valid").render(&data);
        assert_eq!(
            rendered,
            "7 g5c1 offload.v1.Gateway.Factorial Factorial Gateway FactorialRequest FactorialResponse false false \
             2023-11-14T22:13:20Z 1700000000 1700000000123 1700000000123456789"
        );
        let uuid = Template::parse("{{.UUID}}", "-d").expect("valid").render(&data);
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(uuid, uuid_v4());
        let random = Template::parse("{{randomString 12}}", "-d").expect("valid").render(&data);
        assert_eq!(random.len(), 12);
    }

    #[test]
    fn constant_text_and_unknown_actions() {
        let plain = Template::parse(r#"{"n": 20}"#, "-d").expect("valid");
        assert!(plain.is_constant());
        let error = Template::parse("{{.Nope}}", "-m").expect_err("unknown").to_string();
        assert!(error.contains("-m: unknown template action {{.Nope}}"), "{error}");
        assert!(Template::parse("{{.UUID", "-d").is_err());
        let error = Template::parse("{{randomString 9999999999}}", "-d").expect_err("too long").to_string();
        assert!(error.contains("randomString 9999999999") && error.contains("1048576"), "{error}");
        let error = Template::parse("{{randomString 99999999999999999999}}", "-d").expect_err("not i64").to_string();
        assert!(error.contains("1048576"), "{error}");
    }
}
