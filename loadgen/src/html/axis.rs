//! The numbers on the charts' axes: bounds rounded to 1-2-5 values, ticks between them, and how a value is printed.
//! Shared by every chart ([`super::chart`], [`super::closeup`]) and by the close-up's window, whose width is one
//! such round value ([`super::closeup_window`]).

/// The largest 1-2-5 value (…, 0.1, 0.2, 0.5, 1, 2, 5, 10, …) at or below `v`.
pub(super) fn nice_below(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0].iter().map(|m| m * decade).find(|n| *n <= v * (1.0 + 1e-9)).unwrap_or(decade)
}

/// The smallest 1-2-5 value at or above `v`.
pub(super) fn nice_above(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * decade).find(|n| *n >= v * (1.0 - 1e-9)).unwrap_or(decade * 10.0)
}

/// The 1-2-5 values from `low` to `high`, or only the powers of ten when those are too many to label.
pub(super) fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(low.log10().floor());
    while decade <= high * (1.0 + 1e-9) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * decade;
            if v >= low * (1.0 - 1e-9) && v <= high * (1.0 + 1e-9) {
                ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    if ticks.len() > 10 {
        ticks.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
    }
    ticks
}

/// About `want` round steps (1-2-5 × a power of ten) from 0 to `top`.
pub(super) fn linear_ticks(top: f64, want: f64) -> Vec<f64> {
    let step = nice_above(top / want);
    (0..).map(|i| i as f64 * step).take_while(|v| *v <= top * (1.0 + 1e-9)).collect()
}

/// `0.05`, `2`, `150`: a value without trailing zeros.
pub(super) fn number(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// `4.93`, `90.8`, `135`: three significant digits, enough to tell buckets apart without a wall of decimals.
pub(super) fn significant(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v if v >= 1.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_bounds_and_ticks() {
        assert_eq!(nice_below(0.034), 0.02);
        assert_eq!(nice_below(15.0), 10.0);
        assert_eq!(nice_above(15.0), 20.0);
        assert_eq!(nice_above(0.8), 1.0);
        assert_eq!(nice_above(100.0), 100.0);
        assert_eq!(log_ticks(0.05, 20.0), vec![0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(log_ticks(0.001, 1000.0), vec![0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(linear_ticks(5.0, 10.0), vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]);
        assert_eq!(number(0.05), "0.05");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(150.4), "150");
        assert_eq!(significant(4.929), "4.93");
        assert_eq!(significant(90.782), "90.8");
        assert_eq!(significant(0.0523), "0.052");
    }
}
