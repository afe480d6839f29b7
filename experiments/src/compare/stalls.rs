//! Which calls stalled a server's runtime in a round: the servers' stall detector counts every handler poll that
//! held a tokio worker past `--stall-threshold` in `offload_runtime_stalls_total{method,mode}`; the difference
//! between two scrapes, summed over compute and gateway, gives the round's stalls and its top culprit
//! (`SumOfSquares/inline`), so the table says not only that a mode hurts but which calls did it.
//!
//! `prometheus_client` exports a family only once it has a sample, so a server whose detector saw no stall has
//! no such line at all: a `/metrics` read without it counts as zero (compare starts this executable's own servers,
//! which have the detector). The column shows `–` only when no `/metrics` was read: a `--gateway` started
//! elsewhere, whose metrics port compare does not know.

use std::collections::BTreeMap;

use offload_testkit::scrape::{self, Scrape};

/// The counter's name on `/metrics` (prometheus' `_total` suffix included).
pub const STALLS_TOTAL: &str = "offload_runtime_stalls_total";

/// A round's stalls over every server scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct Stalls {
    /// Stalled polls in the round.
    pub total: f64,
    /// The `method/mode` with the most stalls, and their number; `None` if nothing stalled.
    pub culprit: Option<(String, f64)>,
}

impl Stalls {
    /// `12 SumOfSquares/inline`, or `0`; `–` when no server's `/metrics` was read.
    pub fn cell(stalls: Option<&Self>) -> String {
        match stalls {
            None => "–".to_owned(),
            Some(Self { total, culprit: Some((name, _)) }) => format!("{total:.0} {name}"),
            Some(Self { total, culprit: None }) => format!("{total:.0}"),
        }
    }
}

/// Stall counts by `method/mode` in one scrape.
fn counts(scrape: &Scrape) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == STALLS_TOTAL) {
        let label = |key: &str| sample.labels.get(key).unwrap_or("?").to_owned();
        let name = format!("{}/{}", label("method"), label("mode"));
        let value = scrape::value(scrape, STALLS_TOTAL, &[("method", &label("method")), ("mode", &label("mode"))]);
        *counts.entry(name).or_default() += value.unwrap_or(0.0);
    }
    counts
}

/// The stalls between `before` and `after`, pairs of scrapes of the same servers; `None` if no server was
/// scraped.
pub fn delta(pairs: &[(&Scrape, &Scrape)]) -> Option<Stalls> {
    let mut by_call: BTreeMap<String, f64> = BTreeMap::new();
    for (before, after) in pairs {
        let before = counts(before);
        for (name, n) in counts(after) {
            let moved = n - before.get(&name).copied().unwrap_or(0.0);
            *by_call.entry(name).or_default() += moved.max(0.0);
        }
    }
    if pairs.is_empty() {
        return None;
    }
    let total = by_call.values().fold(0.0, |sum, n| sum + n); // Not `sum()`: an empty f64 sum is -0.0.
    let culprit = by_call.into_iter().filter(|(_, n)| *n > 0.0).max_by(|a, b| a.1.total_cmp(&b.1));
    Some(Stalls { total, culprit })
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use super::*;

    fn parse(text: &str) -> Scrape {
        Scrape::parse(std::io::BufReader::new(text.as_bytes()).lines()).expect("valid exposition")
    }

    const HELP: &str = "# HELP offload_runtime_stalls Stalled polls.\n# TYPE offload_runtime_stalls counter\n";

    #[test]
    fn sums_both_servers_and_names_the_top_culprit() {
        let compute_before =
            parse(&format!("{HELP}offload_runtime_stalls_total{{method=\"SumOfSquares\",mode=\"inline\"}} 5\n"));
        let compute_after = parse(&format!(
            "{HELP}offload_runtime_stalls_total{{method=\"SumOfSquares\",mode=\"inline\"}} 45\n\
             offload_runtime_stalls_total{{method=\"Factorial\",mode=\"inline\"}} 2\n"
        ));
        let gateway_before = parse(HELP);
        let gateway_after =
            parse(&format!("{HELP}offload_runtime_stalls_total{{method=\"SumOfSquares\",mode=\"blocking\"}} 3\n"));
        let stalls = delta(&[(&compute_before, &compute_after), (&gateway_before, &gateway_after)]).expect("exported");
        assert_eq!(stalls.total, 45.0);
        assert_eq!(stalls.culprit, Some(("SumOfSquares/inline".to_owned(), 40.0)));
        assert_eq!(Stalls::cell(Some(&stalls)), "45 SumOfSquares/inline");
    }

    #[test]
    fn no_stall_sample_is_zero_and_no_scrape_is_a_dash() {
        let quiet = parse("# HELP offload_requests Requests.\n# TYPE offload_requests counter\n");
        let stalls = delta(&[(&quiet, &quiet)]).expect("scraped");
        assert_eq!(stalls, Stalls { total: 0.0, culprit: None });
        assert_eq!(Stalls::cell(Some(&stalls)), "0");
        assert_eq!(delta(&[]), None);
        assert_eq!(Stalls::cell(None), "–");
    }
}
