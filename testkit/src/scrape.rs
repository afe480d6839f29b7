//! Reading a server's `/metrics` (`--metrics-listen`): one plain HTTP/1.1 GET, parsed as Prometheus text, and the
//! arithmetic `compare` needs on it (differences between two scrapes, a percentile from histogram buckets).

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
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("connect to the metrics port")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("not an HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics: {}", head.lines().next().unwrap_or_default());
    }
    Ok(Scrape::parse(BufReader::new(body.as_bytes()).lines())?)
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
