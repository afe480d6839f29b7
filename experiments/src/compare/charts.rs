//! The two charts of the report, as SVG (plotters): probe latency percentiles per mode (log scale, the blocked
//! runtime is orders of magnitude off), and heavy throughput per mode against each round's ideal. Drawn into a
//! string, so `report.html` can open on the first while the folder keeps both as files.

use plotters::prelude::*;

use super::scenario::RoundResult;

const SIZE: (u32, u32) = (900, 480);
const SERIES: [(&str, f64, RGBColor); 3] = [
    ("p50", 50.0, RGBColor(90, 160, 220)),
    ("p99", 99.0, RGBColor(240, 150, 40)),
    ("p99.9", 99.9, RGBColor(200, 50, 50)),
];

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("chart: {e}")
}

/// Groups sit at integer x (0, 1, …) on an axis from −0.5 to n − 0.5, so each tick label falls under its group;
/// ticks that are not whole numbers get no label.
fn group_label(labels: &[String], x: f64) -> String {
    if (x - x.round()).abs() > 1e-6 || x < -0.1 {
        return String::new();
    }
    labels.get(x.round() as usize).cloned().unwrap_or_default()
}

/// Grouped bars: for each round, probe latency at p50, p99 and p99.9, in ms on a log axis.
pub fn probe_latency(rounds: &[RoundResult], title: &str) -> anyhow::Result<String> {
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let values: Vec<f64> = rounds
        .iter()
        .flat_map(|r| SERIES.iter().map(move |(_, p, _)| r.probe.percentile(*p).as_secs_f64() * 1e3))
        .collect();
    let top = values.iter().copied().fold(1.0f64, f64::max) * 4.0;
    let bottom = values.iter().copied().filter(|v| *v > 0.0).fold(top, f64::min).max(1e-3) / 2.0;
    let labels: Vec<String> = rounds.iter().map(|r| r.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..rounds.len() as f64 - 0.5, (bottom..top).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rounds.len() + 1)
        .x_label_formatter(&|x| group_label(&labels, *x))
        .y_desc("latency (ms, log scale)")
        .draw()
        .map_err(plot_error)?;
    for (k, (name, percentile, color)) in SERIES.iter().enumerate() {
        let bars = rounds.iter().enumerate().map(|(i, r)| {
            let x0 = i as f64 - 0.35 + k as f64 * 0.24;
            let v = (r.probe.percentile(*percentile).as_secs_f64() * 1e3).max(bottom);
            Rectangle::new([(x0, bottom), (x0 + 0.2, v)], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    drop(chart);
    drop(root);
    Ok(svg)
}

/// Bars: heavy jobs completed per second for each mode, each with its round's ideal `cores / job time` (`ideals`,
/// one per round) as a line across its bar.
pub fn heavy_throughput(rounds: &[RoundResult], ideals: &[f64]) -> anyhow::Result<String> {
    let (rounds, ideals): (Vec<&RoundResult>, Vec<f64>) =
        rounds.iter().zip(ideals).filter(|(r, _)| r.heavy.is_some()).map(|(r, i)| (r, *i)).unzip();
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let highest = rounds.iter().filter_map(|r| r.heavy.as_ref()).map(|h| h.ok_rps()).chain(ideals.iter().copied());
    let top = highest.fold(1.0, f64::max) * 1.4;
    let n = rounds.len().max(1) as f64;
    let labels: Vec<String> = rounds.iter().map(|r| r.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("Heavy jobs completed per second, against each round's ideal (cores / job time)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rounds.len() + 1)
        .x_label_formatter(&|x| group_label(&labels, *x))
        .y_desc("jobs / s")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(rounds.iter().enumerate().map(|(i, r)| {
            let v = r.heavy.as_ref().map_or(0.0, |h| h.ok_rps());
            Rectangle::new([(i as f64 - 0.3, 0.0), (i as f64 + 0.3, v)], RGBColor(90, 160, 220).filled())
        }))
        .map_err(plot_error)?
        .label("completed")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], RGBColor(90, 160, 220).filled()));
    chart
        .draw_series(ideals.iter().enumerate().map(|(i, ideal)| {
            PathElement::new([(i as f64 - 0.4, *ideal), (i as f64 + 0.4, *ideal)], RED.stroke_width(2))
        }))
        .map_err(plot_error)?
        .label("ideal")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    drop(chart);
    drop(root);
    Ok(svg)
}
