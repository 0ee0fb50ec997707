//! SVG charts with plotters (no font files needed: the SVG names a font family and the
//! viewer draws the text).

use std::path::Path;

use plotters::prelude::*;

use super::EvalError;

/// One line of a chart: a label and (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// Recall@k per configuration: k on the x axis, one line per configuration.
pub fn recall_chart(path: &Path, series: &[Series]) -> Result<(), EvalError> {
    line_chart(path, "recall@k per configuration", "k", "recall", series)
}

/// Score distribution per dimension: for each dimension, the share of cases at or above
/// each score (a survival curve reads well with many dimensions on one chart).
pub fn distribution_chart(path: &Path, dimensions: &[(String, Vec<f64>)]) -> Result<(), EvalError> {
    let series: Vec<Series> = dimensions
        .iter()
        .map(|(name, scores)| {
            let n = scores.len().max(1) as f64;
            let points = (0..=10)
                .map(|i| {
                    let t = f64::from(i) / 10.0;
                    (
                        t,
                        scores.iter().filter(|s| **s >= t - 1e-9).count() as f64 / n,
                    )
                })
                .collect();
            (name.clone(), points)
        })
        .collect();
    line_chart(
        path,
        "share of cases scoring at least x",
        "score",
        "share",
        &series,
    )
}

fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), EvalError> {
    let fail = |e: &dyn std::fmt::Display| EvalError::Chart {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max * 1.02, 0.0..1.02)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_chart_writes_an_svg_with_the_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recall.svg");
        let series = vec![
            ("300/30/sparse".to_string(), vec![(1.0, 0.5), (5.0, 0.8)]),
            ("500/50/sparse".to_string(), vec![(1.0, 0.6), (5.0, 0.9)]),
        ];
        recall_chart(&path, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("500/50/sparse"));
    }
}
