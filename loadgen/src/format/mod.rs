//! Every output format of ghz's `-O`, each written from the one in-memory [`Report`]: `summary` (the human
//! text), `pretty` and `json` (the report itself), `csv` (one line per call), `html` (a page to look at),
//! `influx-summary` and `influx-details` (InfluxDB line protocol) and `prometheus` (the text exposition format).

mod csv;
mod influx;
mod prometheus;
mod summary;

use std::{fmt, str::FromStr};

use crate::{recording::Recording, report::Report};

/// One of ghz's output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Summary,
    Pretty,
    Json,
    Csv,
    Html,
    InfluxSummary,
    InfluxDetails,
    Prometheus,
}

impl Format {
    /// Every format, by ghz's name.
    pub const ALL: [(&'static str, Self); 8] = [
        ("summary", Self::Summary),
        ("pretty", Self::Pretty),
        ("json", Self::Json),
        ("csv", Self::Csv),
        ("html", Self::Html),
        ("influx-summary", Self::InfluxSummary),
        ("influx-details", Self::InfluxDetails),
        ("prometheus", Self::Prometheus),
    ];

    /// ghz's name for it.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, f)| *f == self).map_or("summary", |(name, _)| name)
    }

    /// The report written in this format. `recording` is what the HTML page's charts are drawn from.
    pub fn render(self, report: &Report, recording: &Recording) -> anyhow::Result<String> {
        Ok(match self {
            Self::Summary => summary::render(report),
            Self::Pretty => serde_json::to_string_pretty(report)? + "\n",
            Self::Json => serde_json::to_string(report)? + "\n",
            Self::Csv => csv::render(report),
            Self::Html => crate::html::render(report, recording),
            Self::InfluxSummary => influx::summary(report),
            Self::InfluxDetails => influx::details(report),
            Self::Prometheus => prometheus::render(report),
        })
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = if s.is_empty() { "summary" } else { s };
        Self::ALL.iter().find(|(name, _)| *name == s).map(|(_, f)| *f).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown format {s:?}: use one of {}", names.join(", "))
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A duration as ghz's `formatNanoUnit` prints it: `850 ns`, `12.34 ms`, `1.50 s`.
pub(crate) fn nano_unit(ns: u64) -> String {
    if ns < 10_000 {
        return format!("{ns} ns");
    }
    let ms = ns as f64 / 1e6;
    if ms < 1000.0 { format!("{ms:.2} ms") } else { format!("{:.2} s", ms / 1000.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for (name, format) in Format::ALL {
            assert_eq!(name.parse::<Format>(), Ok(format));
            assert_eq!(format.name(), name);
        }
        assert!("xml".parse::<Format>().expect_err("unknown").contains("influx-details"));
    }

    #[test]
    fn nano_units_as_ghz() {
        assert_eq!(nano_unit(850), "850 ns");
        assert_eq!(nano_unit(12_345_678), "12.35 ms");
        assert_eq!(nano_unit(1_500_000_000), "1.50 s");
    }
}
