//! Reading a server's `/metrics` (`--metrics-listen`): one plain HTTP/1.1 GET, parsed as Prometheus text, and the
//! arithmetic `compare` needs on it (differences between two scrapes, a percentile from histogram buckets). The
//! same GET reads Prometheus's own HTTP API ([`crate::prometheus`]).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context, bail};
pub use prometheus_parse::Scrape;
use prometheus_parse::Value;

/// `GET /metrics` from `addr`, parsed.
pub fn scrape(addr: SocketAddr) -> anyhow::Result<Scrape> {
    let body = get(addr, "/metrics")?;
    Ok(Scrape::parse(BufReader::new(body.as_bytes()).lines())?)
}

/// The body of `GET path` from `addr` over plain HTTP/1.1 (no `Accept`: the classic Prometheus text format for
/// `/metrics`, what `promtool check metrics` reads); an error unless the status is 200.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to {addr} for GET {path}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").context("not an HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let chunked = head.lines().any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = String::from_utf8_lossy(&if chunked { dechunk(body) } else { body.to_vec() }).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {} {}", head.lines().next().unwrap_or_default(), body.chars().take(500).collect::<String>());
    }
    Ok(body)
}

/// A chunked HTTP/1.1 body joined back (Prometheus's API answers this way).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let rest = &body[line_end + 2..];
        match size {
            Some(size) if size > 0 && rest.len() >= size => {
                out.extend_from_slice(&rest[..size]);
                body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
            }
            _ => break,
        }
    }
    out
}

/// The value of the counter, gauge or untyped sample `name` whose labels include `labels`.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .and_then(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// How a histogram changed between two scrapes: the observations in between, their mean and an upper bound on
/// their `percentile` (the bucket boundary it falls under).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramDelta {
    pub count: f64,
    pub mean: f64,
    pub upper_bound: f64,
}

/// The change of histogram `name` from `before` to `after`, with the bucket bound of `percentile` (0–100).
pub fn histogram_delta(before: &Scrape, after: &Scrape, name: &str, percentile: f64) -> Option<HistogramDelta> {
    let buckets = |s: &Scrape| -> Vec<(f64, f64)> {
        s.samples
            .iter()
            .find(|x| x.metric == name)
            .and_then(|x| match &x.value {
                Value::Histogram(b) => Some(b.iter().map(|h| (h.less_than, h.count)).collect()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let (b, a) = (buckets(before), buckets(after));
    let delta: Vec<(f64, f64)> =
        a.iter().map(|&(le, n)| (le, n - b.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, m)| *m))).collect();
    let count = delta.iter().map(|(_, n)| *n).fold(0.0, f64::max);
    if count <= 0.0 {
        return None;
    }
    let sum = value(after, &format!("{name}_sum"), &[])? - value(before, &format!("{name}_sum"), &[]).unwrap_or(0.0);
    let target = count * percentile / 100.0;
    let upper_bound = delta.iter().find(|(_, n)| *n >= target).map_or(f64::INFINITY, |(le, _)| *le);
    Some(HistogramDelta { count, mean: sum / count, upper_bound })
}
