//! Which calls stalled a server's runtime in a round, and where. The servers' stall detector counts every time a
//! tokio worker made no progress for `--stall-threshold` in `offload_runtime_stalls_total{method,mode,cause}`; the
//! difference between two scrapes, summed over compute and gateway, gives the round's stalls and its top culprit,
//! the `method/mode` with the most, with the cause most of them had. The stalls the servers kept at
//! `/debug/stalls` ([`super::stall_events`]) add where the culprit was stuck: the innermost frame of the program's
//! own code most of its stalls show. The table's cell reads `45 SumOfSquares/inline cpu lanes_avx512`, so it says
//! not only that a mode hurts but which calls did it, why, and in which function.
//!
//! `prometheus_client` exports a family only once it has a sample, so a server whose detector saw no stall has
//! no such line at all: a `/metrics` read without it counts as zero (compare starts this executable's own servers,
//! which have the detector). The column shows `–` only when no `/metrics` was read: a `--gateway` started
//! elsewhere, whose metrics port compare does not know.

use std::collections::BTreeMap;

use offload_testkit::scrape::{self, Scrape};

use super::stall_events::{Frame, StallEvent};

/// The counter's name on `/metrics` (prometheus' `_total` suffix included).
pub const STALLS_TOTAL: &str = "offload_runtime_stalls_total";

/// A round's stalls over every server scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct Stalls {
    /// Stalls in the round, from the counters.
    pub total: f64,
    /// The `method/mode` with the most stalls; `None` if nothing stalled.
    pub culprit: Option<Culprit>,
    /// The round's stalls the servers kept (their last 64 each), by start time.
    pub kept: Vec<StallEvent>,
}

/// The call that stalled the runtime most in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct Culprit {
    /// `SumOfSquares/inline`.
    pub call: String,
    /// Its stalls, from the counters.
    pub stalls: f64,
    /// The cause most of its stalls had (the counter's `cause` label); `None` from a server without that label.
    pub cause: Option<String>,
    /// The innermost own frame most of its kept stalls show; `None` when none of them had a stack.
    pub frame: Option<Frame>,
}

impl Stalls {
    /// `12 SumOfSquares/inline cpu lanes_avx512`, or `0`; `–` when no server's `/metrics` was read. The frame's
    /// last path segment only: the cell sits in a terminal table (the whole frame is in the report's stalls table).
    pub fn cell(stalls: Option<&Self>) -> String {
        let Some(stalls) = stalls else { return "–".to_owned() };
        let mut cell = format!("{:.0}", stalls.total);
        if let Some(culprit) = &stalls.culprit {
            for part in
                [Some(culprit.call.as_str()), culprit.cause.as_deref(), culprit.frame.as_ref().map(Frame::short)]
                    .into_iter()
                    .flatten()
            {
                cell.push(' ');
                cell.push_str(part);
            }
        }
        cell
    }
}

/// Stall counts by `method/mode` and cause in one scrape, each sample its own value.
fn counts(scrape: &Scrape) -> BTreeMap<(String, Option<String>), f64> {
    let mut counts = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == STALLS_TOTAL) {
        let label = |key: &str| sample.labels.get(key).unwrap_or("?").to_owned();
        let call = format!("{}/{}", label("method"), label("mode"));
        // Every label of the sample, so the one sample and no other is read.
        let labels: Vec<(&str, &str)> = sample.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let value = scrape::value(scrape, STALLS_TOTAL, &labels).unwrap_or(0.0);
        *counts.entry((call, sample.labels.get("cause").map(str::to_owned))).or_default() += value;
    }
    counts
}

/// The stalls between `before` and `after`, pairs of scrapes of the same servers, with the stalls they kept in
/// the round; `None` if no server was scraped.
pub fn of_round(pairs: &[(&Scrape, &Scrape)], kept: Vec<StallEvent>) -> Option<Stalls> {
    if pairs.is_empty() {
        return None;
    }
    let mut by_cause: BTreeMap<(String, Option<String>), f64> = BTreeMap::new();
    for (before, after) in pairs {
        let before = counts(before);
        for (key, n) in counts(after) {
            let moved = n - before.get(&key).copied().unwrap_or(0.0);
            *by_cause.entry(key).or_default() += moved.max(0.0);
        }
    }
    let mut by_call: BTreeMap<&str, f64> = BTreeMap::new();
    for ((call, _), n) in &by_cause {
        *by_call.entry(call).or_default() += n;
    }
    let total = by_call.values().fold(0.0, |sum, n| sum + n); // Not `sum()`: an empty f64 sum is -0.0.
    let culprit = by_call.into_iter().filter(|(_, n)| *n > 0.0).max_by(|a, b| a.1.total_cmp(&b.1)).map(|(call, n)| {
        let cause = by_cause
            .iter()
            .filter(|((c, cause), n)| c == call && cause.is_some() && **n > 0.0)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .and_then(|((_, cause), _)| cause.clone());
        Culprit { call: call.to_owned(), stalls: n, cause, frame: commonest_frame(&kept, call) }
    });
    Some(Stalls { total, culprit, kept })
}

/// The innermost own frame most of `call`'s kept stalls show (the first seen among equals).
fn commonest_frame(kept: &[StallEvent], call: &str) -> Option<Frame> {
    let mut seen: Vec<(&Frame, usize)> = Vec::new();
    for frame in kept.iter().filter(|e| e.call == call).filter_map(|e| e.frame.as_ref()) {
        match seen.iter_mut().find(|(f, _)| f.function == frame.function) {
            Some((_, n)) => *n += 1,
            None => seen.push((frame, 1)),
        }
    }
    let most = seen.iter().map(|(_, n)| *n).max()?;
    seen.into_iter().find(|(_, n)| *n == most).map(|(f, _)| f.clone())
}

#[cfg(test)]
mod tests {
    use std::{io::BufRead, time::Duration};

    use super::{
        super::stall_events::{
            in_window,
            tests::{SAMPLE, round_start},
        },
        *,
    };

    fn parse(text: &str) -> Scrape {
        Scrape::parse(std::io::BufReader::new(text.as_bytes()).lines()).expect("valid exposition")
    }

    const HELP: &str = "# HELP offload_runtime_stalls Stalled polls.\n# TYPE offload_runtime_stalls counter\n";

    fn sample(method: &str, mode: &str, cause: &str, n: u32) -> String {
        format!("offload_runtime_stalls_total{{method=\"{method}\",mode=\"{mode}\",cause=\"{cause}\"}} {n}\n")
    }

    #[test]
    fn sums_both_servers_and_names_the_top_culprit_its_cause_and_frame() {
        let compute_before = parse(&format!("{HELP}{}", sample("SumOfSquares", "inline", "cpu", 5)));
        let compute_after = parse(&format!(
            "{HELP}{}{}",
            sample("SumOfSquares", "inline", "cpu", 45),
            sample("Factorial", "inline", "cpu", 2)
        ));
        let gateway_before = parse(HELP);
        let gateway_after = parse(&format!("{HELP}{}", sample("SumOfSquares", "blocking", "lock", 3)));
        let kept = in_window(SAMPLE, round_start(), Duration::from_secs(4)).expect("parsed");
        let stalls =
            of_round(&[(&compute_before, &compute_after), (&gateway_before, &gateway_after)], kept).expect("exported");
        assert_eq!(stalls.total, 45.0);
        let culprit = stalls.culprit.as_ref().expect("a culprit");
        assert_eq!(
            (culprit.call.as_str(), culprit.stalls, culprit.cause.as_deref()),
            ("SumOfSquares/inline", 40.0, Some("cpu"))
        );
        assert_eq!(stalls.kept.len(), 4, "the round's stalls of the sample");
        assert_eq!(Stalls::cell(Some(&stalls)), "45 SumOfSquares/inline cpu lanes_avx512");
    }

    #[test]
    fn several_causes_of_one_call_are_each_counted_and_the_commonest_named() {
        let before = parse(&format!(
            "{HELP}{}{}",
            sample("SumOfSquares", "block-in-place", "cpu", 10),
            sample("SumOfSquares", "block-in-place", "descheduled", 1)
        ));
        let after = parse(&format!(
            "{HELP}{}{}{}{}",
            sample("SumOfSquares", "block-in-place", "cpu", 14),
            sample("SumOfSquares", "block-in-place", "descheduled", 9),
            sample("SumOfSquares", "block-in-place", "lock", 2),
            sample("Factorial", "inline", "cpu", 12),
        ));
        let stalls = of_round(&[(&before, &after)], Vec::new()).expect("scraped");
        assert_eq!(stalls.total, 4.0 + 8.0 + 2.0 + 12.0);
        let culprit = stalls.culprit.expect("a culprit");
        assert_eq!(culprit.call, "SumOfSquares/block-in-place", "14 stalls over three causes beat 12 of one");
        assert_eq!(culprit.stalls, 14.0);
        assert_eq!(culprit.cause.as_deref(), Some("descheduled"));
        assert_eq!(culprit.frame, None, "no stall kept");
    }

    #[test]
    fn a_server_without_the_cause_label_still_names_its_culprit() {
        let old = parse(&format!("{HELP}offload_runtime_stalls_total{{method=\"SumOfSquares\",mode=\"inline\"}} 7\n"));
        let stalls = of_round(&[(&parse(HELP), &old)], Vec::new()).expect("scraped");
        assert_eq!(Stalls::cell(Some(&stalls)), "7 SumOfSquares/inline");
    }

    #[test]
    fn no_stall_sample_is_zero_and_no_scrape_is_a_dash() {
        let quiet = parse("# HELP offload_requests Requests.\n# TYPE offload_requests counter\n");
        let stalls = of_round(&[(&quiet, &quiet)], Vec::new()).expect("scraped");
        assert_eq!(stalls, Stalls { total: 0.0, culprit: None, kept: Vec::new() });
        assert_eq!(Stalls::cell(Some(&stalls)), "0");
        assert_eq!(of_round(&[], Vec::new()), None);
        assert_eq!(Stalls::cell(None), "–");
    }
}
