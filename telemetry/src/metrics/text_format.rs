//! The classic Prometheus text format (0.0.4) for scrapers that do not ask for OpenMetrics: `curl`, `promtool check
//! metrics`, older agents. prometheus-client writes only OpenMetrics; the two differ, for what we export, in three
//! places, which [`to_prometheus_text`] rewrites:
//!
//! - a counter's family is named without `_total` in OpenMetrics (`# TYPE offload_shed counter`, then samples
//!   `offload_shed_total`); the classic format names family and samples alike (`offload_shed_total`);
//! - OpenMetrics ends with `# EOF`, which the classic format does not have;
//! - OpenMetrics's `unknown` type is the classic `untyped`.
//!
//! Prometheus itself asks for OpenMetrics (its `Accept` header), so what it stores is unchanged.

/// The content type of the classic text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The content type of OpenMetrics text, what prometheus-client writes.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus sends it with a higher quality than
/// `text/plain`; anything that does not name it gets the classic format).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("application/openmetrics-text"))
}

/// Rewrites OpenMetrics text as written by prometheus-client into the classic Prometheus text format.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) { format!("{name}_total") } else { name.to_owned() };
                let tail = if prefix == "# TYPE " && tail == "unknown" { "untyped" } else { tail };
                out.push_str(&format!("{prefix}{name} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_take_their_samples_name_and_eof_goes() {
        let openmetrics = "# HELP a_shed Refused.\n# TYPE a_shed counter\na_shed_total{server=\"x\"} 3\n\
                           # HELP a_in_flight In flight.\n# TYPE a_in_flight gauge\na_in_flight 1\n\
                           # HELP a_odd Odd.\n# TYPE a_odd unknown\na_odd 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP a_shed_total Refused.\n# TYPE a_shed_total counter\na_shed_total{server=\"x\"} 3\n\
             # HELP a_in_flight In flight.\n# TYPE a_in_flight gauge\na_in_flight 1\n\
             # HELP a_odd Odd.\n# TYPE a_odd untyped\na_odd 2\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_curl_the_classic_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
