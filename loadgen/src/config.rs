//! ghz's config files (`--config`): JSON, TOML or YAML by the file's extension (`.json`, `.toml`, `.yaml`/`.yml`),
//! with ghz's keys (`runner/config.go`: `load-schedule`, `skipFirst`, `max-duration`, `metadata`, `format`,
//! `output`, …) and Go durations (`"1m30s"`). A key ghz does not have, or that offload cannot honour, is refused
//! with its name: a setting the user wrote is never silently dropped. Flags given on the command line win
//! ([`crate::load::LoadArgs`] merges them).

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer};

/// One ghz config file, every key optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub host: Option<String>,
    pub call: Option<String>,
    pub proto: Option<String>,
    pub protoset: Option<String>,
    #[serde(rename = "import-paths")]
    pub import_paths: Option<Vec<String>>,

    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub cname: Option<String>,
    #[serde(rename = "skipTLS")]
    pub skip_tls: Option<bool>,
    pub insecure: Option<bool>,
    pub authority: Option<String>,

    pub total: Option<u64>,
    #[serde(rename = "async")]
    pub async_: Option<bool>,
    pub concurrency: Option<usize>,
    pub connections: Option<usize>,
    pub rps: Option<f64>,
    #[serde(default, deserialize_with = "go_duration")]
    pub duration: Option<Duration>,
    #[serde(rename = "duration-stop")]
    pub duration_stop: Option<String>,
    #[serde(rename = "max-duration", default, deserialize_with = "go_duration")]
    pub max_duration: Option<Duration>,
    #[serde(default, deserialize_with = "go_duration")]
    pub timeout: Option<Duration>,
    #[serde(rename = "connect-timeout", default, deserialize_with = "go_duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "go_duration")]
    pub keepalive: Option<Duration>,
    pub cpus: Option<usize>,
    #[serde(rename = "skipFirst")]
    pub skip_first: Option<u64>,
    #[serde(rename = "count-errors")]
    pub count_errors: Option<bool>,
    #[serde(rename = "enable-compression")]
    pub enable_compression: Option<bool>,
    #[serde(rename = "lb-strategy")]
    pub lb_strategy: Option<String>,

    #[serde(rename = "load-schedule")]
    pub load_schedule: Option<String>,
    #[serde(rename = "load-start")]
    pub load_start: Option<u64>,
    #[serde(rename = "load-end")]
    pub load_end: Option<u64>,
    #[serde(rename = "load-step")]
    pub load_step: Option<i64>,
    #[serde(rename = "load-step-duration", default, deserialize_with = "go_duration")]
    pub load_step_duration: Option<Duration>,
    #[serde(rename = "load-max-duration", default, deserialize_with = "go_duration")]
    pub load_max_duration: Option<Duration>,
    #[serde(rename = "concurrency-schedule")]
    pub concurrency_schedule: Option<String>,
    #[serde(rename = "concurrency-start")]
    pub concurrency_start: Option<u64>,
    #[serde(rename = "concurrency-end")]
    pub concurrency_end: Option<u64>,
    #[serde(rename = "concurrency-step")]
    pub concurrency_step: Option<i64>,
    #[serde(rename = "concurrency-step-duration", default, deserialize_with = "go_duration")]
    pub concurrency_step_duration: Option<Duration>,
    #[serde(rename = "concurrency-max-duration", default, deserialize_with = "go_duration")]
    pub concurrency_max_duration: Option<Duration>,

    pub data: Option<serde_json::Value>,
    #[serde(rename = "data-file")]
    pub data_file: Option<String>,
    #[serde(rename = "binary-file")]
    pub binary_file: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "metadata-file")]
    pub metadata_file: Option<String>,
    #[serde(rename = "stream-interval", default, deserialize_with = "go_duration")]
    pub stream_interval: Option<Duration>,
    #[serde(rename = "stream-call-duration", default, deserialize_with = "go_duration")]
    pub stream_call_duration: Option<Duration>,
    #[serde(rename = "stream-call-count")]
    pub stream_call_count: Option<u64>,
    #[serde(rename = "stream-dynamic-messages")]
    pub stream_dynamic_messages: Option<bool>,

    pub name: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub format: Option<String>,
    pub output: Option<String>,

    /// offload: pass/fail criteria (`--threshold`), k6's syntax.
    pub thresholds: Option<Vec<String>>,
    /// offload: stop at the first failed threshold (`--abort-on-fail`).
    #[serde(rename = "abort-on-fail")]
    pub abort_on_fail: Option<bool>,

    /// ghz keys offload cannot honour: read so that the refusal can name them (see [`Config::refuse_unsupported`]).
    #[serde(rename = "reflect-metadata")]
    pub reflect_metadata: Option<serde_json::Value>,
    pub debug: Option<serde_json::Value>,
}

/// A Go duration string (`"1m30s"`), or the number 0.
fn go_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        N(u64),
    }
    match Option::<Text>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Text::S(s)) => offload_duration::parse(&s).map(Some).map_err(serde::de::Error::custom),
        Some(Text::N(0)) => Ok(Some(Duration::ZERO)),
        Some(Text::N(n)) => {
            Err(serde::de::Error::custom(format!("{n}: a duration needs a unit (\"{n}s\", \"{n}ms\")")))
        }
    }
}

impl Config {
    /// Reads `path`, choosing JSON, TOML or YAML by its extension.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--config: cannot read {}", path.display()))?;
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        let config = Self::parse(&text, &extension).with_context(|| format!("--config {}", path.display()))?;
        config.refuse_unsupported()?;
        Ok(config)
    }

    /// Parses `text` written in `format` (`json`, `toml`, `yaml` or `yml`).
    pub fn parse(text: &str, format: &str) -> anyhow::Result<Self> {
        let config: Self = match format {
            "json" => serde_json::from_str(text)?,
            "toml" => toml::from_str(text)?,
            "yaml" | "yml" => serde_yaml_ng::from_str(text)?,
            other => bail!("unknown config file type {other:?}: use .json, .toml, .yaml or .yml (as ghz)"),
        };
        if let Some(data) = &config.data {
            check_data(data)?;
        }
        Ok(config)
    }

    /// Refuses the ghz keys offload reads but cannot honour, naming each.
    pub fn refuse_unsupported(&self) -> anyhow::Result<()> {
        if self.reflect_metadata.is_some() {
            bail!("config key \"reflect-metadata\" is not supported: reflection requests carry no metadata here");
        }
        if self.debug.is_some() {
            bail!("config key \"debug\" is not supported: set RUST_LOG=debug for a debug log on stderr");
        }
        Ok(())
    }
}

/// ghz's rule for `data`: an object, or a non-empty array of objects.
fn check_data(data: &serde_json::Value) -> anyhow::Result<()> {
    match data {
        serde_json::Value::Object(_) => Ok(()),
        serde_json::Value::Array(items) if items.is_empty() => bail!("\"data\": the array must not be empty"),
        serde_json::Value::Array(items) if items.iter().all(serde_json::Value::is_object) => Ok(()),
        _ => bail!("\"data\" must be an object or an array of objects"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
        "call": "offload.v1.Gateway/Factorial", "host": "127.0.0.1:50050", "insecure": true,
        "total": 100, "concurrency": 4, "connections": 2, "duration": "1m30s", "max-duration": "2m",
        "timeout": "500ms", "skipFirst": 5, "load-schedule": "step", "load-start": 10, "load-step": 5,
        "load-step-duration": "1s", "metadata": {"traceparent": "00-x"}, "format": "csv", "output": "out.csv",
        "data": {"n": 20}, "tags": {"env": "ci"}, "name": "smoke", "enable-compression": true
    }"#;

    #[test]
    fn json_toml_and_yaml_read_the_same() {
        let json = Config::parse(JSON, "json").expect("json");
        let toml = Config::parse(
            r#"
call = "offload.v1.Gateway/Factorial"
host = "127.0.0.1:50050"
insecure = true
total = 100
concurrency = 4
connections = 2
duration = "1m30s"
max-duration = "2m"
timeout = "500ms"
skipFirst = 5
load-schedule = "step"
load-start = 10
load-step = 5
load-step-duration = "1s"
format = "csv"
output = "out.csv"
name = "smoke"
enable-compression = true
[metadata]
traceparent = "00-x"
[data]
n = 20
[tags]
env = "ci"
"#,
            "toml",
        )
        .expect("toml");
        let yaml = Config::parse(
            r#"
call: offload.v1.Gateway/Factorial
host: 127.0.0.1:50050
insecure: true
total: 100
concurrency: 4
connections: 2
duration: 1m30s
max-duration: 2m
timeout: 500ms
skipFirst: 5
load-schedule: step
load-start: 10
load-step: 5
load-step-duration: 1s
metadata: {traceparent: 00-x}
format: csv
output: out.csv
data: {n: 20}
tags: {env: ci}
name: smoke
enable-compression: true
"#,
            "yaml",
        )
        .expect("yaml");
        assert_eq!(json, toml);
        assert_eq!(json, yaml);
        assert_eq!(json.duration, Some(Duration::from_secs(90)));
        assert_eq!(json.max_duration, Some(Duration::from_secs(120)));
        assert_eq!(json.skip_first, Some(5));
        assert_eq!(json.metadata.as_ref().map(|m| m["traceparent"].as_str()), Some("00-x"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, format) in [
            (r#"{"call": "a.B/C", "concurency": 4}"#, "json"),
            ("call = \"a.B/C\"\nconcurency = 4\n", "toml"),
            ("call: a.B/C\nconcurency: 4\n", "yaml"),
        ] {
            let err = format!("{:#}", Config::parse(text, format).expect_err("unknown key"));
            assert!(err.contains("concurency"), "{format}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let err = format!("{:#}", Config::parse(r#"{"duration": "10"}"#, "json").expect_err("no unit"));
        assert!(err.contains("\"10\""), "{err}");
        let err = format!("{:#}", Config::parse(r#"{"data": [1]}"#, "json").expect_err("not objects"));
        assert!(err.contains("data"), "{err}");
        assert_eq!(Config::parse(r#"{"timeout": 0}"#, "json").expect("zero").timeout, Some(Duration::ZERO));
        let err = Config::parse("{}", "ini").expect_err("type");
        assert!(err.to_string().contains(".toml"), "{err}");
        let unsupported = Config::parse(r#"{"debug": "/tmp/log"}"#, "json").expect("parses");
        assert!(unsupported.refuse_unsupported().expect_err("debug").to_string().contains("\"debug\""));
    }
}
