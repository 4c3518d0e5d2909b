//! SVG plots of latency distributions: latency (log scale) against
//! percentile, on the usual HDR scale where each step to the right adds a
//! nine (90 %, 99 %, 99.9 %, ...), one line per run.

use std::path::Path;

use plotters::prelude::*;

use crate::stats::Latency;

/// How many nines the x axis reaches at most (99.999 %).
const MAX_NINES: f64 = 5.0;

/// The percentile label for `nines` (0 → "0%", 2 → "99%", 3 → "99.9%").
///
/// ```
/// use session_bench::plot::percentile_label;
/// assert_eq!(percentile_label(0.0), "0%");
/// assert_eq!(percentile_label(1.0), "90%");
/// assert_eq!(percentile_label(3.0), "99.9%");
/// ```
pub fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.round() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

/// The points of one percentile curve: `(nines, latency in ms)`.
pub fn percentile_curve(histogram: &Latency) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // No further right than the samples support.
    let nines = (histogram.len() as f64).log10().clamp(1.0, MAX_NINES);
    let steps = (nines * 100.0) as usize;
    (0..=steps)
        .map(|k| {
            let x = k as f64 / 100.0;
            let q = 1.0 - 10f64.powf(-x);
            // At least 1 µs: the log scale has no zero.
            (x, histogram.value_at_quantile(q).max(1) as f64 / 1000.0)
        })
        .collect()
}

/// Writes an SVG of the percentile curves of `series` (`(name, histogram
/// in µs)`) to `path`.
pub fn write_percentiles(
    path: &Path,
    title: &str,
    series: &[(String, &Latency)],
) -> Result<(), String> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, h)| (name.clone(), percentile_curve(h)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if curves.is_empty() {
        return Err("no samples to plot".into());
    }
    let x_max = curves
        .iter()
        .filter_map(|(_, c)| c.last().map(|p| p.0))
        .fold(1.0, f64::max);
    // Latency spans orders of magnitude (a 1 s SYN retransmission over
    // a few ms of median): a log scale shows both.
    let y_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.01, f64::max)
        * 1.5;
    let y_min = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .filter(|&y| y > 0.0)
        .fold(y_max, f64::min)
        / 1.5;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .margin_right(48)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(err)?;
    let label = |x: &f64| percentile_label(*x);
    chart
        .configure_mesh()
        .x_labels((x_max.ceil() as usize) + 1)
        .x_label_formatter(&label)
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .draw()
        .map_err(err)?;
    for (i, (name, curve)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                curve.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::latency;

    #[test]
    fn writes_an_svg_with_a_curve() {
        let mut h = latency();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let curve = percentile_curve(&h);
        assert!(curve.first().unwrap().1 < curve.last().unwrap().1);
        let path = std::env::temp_dir().join(format!("bench-plot-{}.svg", std::process::id()));
        write_percentiles(&path, "test", &[("run 1".into(), &h)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("99.9%"), "{svg}");
        let _ = std::fs::remove_file(&path);
    }
}
