//! Line plots of bench results as SVG (plotters' SVG backend, no fonts or system libraries:
//! text is written as SVG `<text>` and laid out by the viewer).
//!
//! The module knows nothing about records: [`crate::tables`] builds a [`LinePlot`] and
//! [`render_svg`] draws it. The output is a pure function of the plot (same input, same bytes).

use anyhow::{Result, anyhow, ensure};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Width and height of every plot, in pixels.
const SIZE: (u32, u32) = (820, 520);

/// One method's curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// Points joined by a line, drawn with circles (unstructured sparsities), sorted by x.
    pub line: Vec<(f64, f64)>,
    /// Points drawn as triangles and not joined (N:M patterns at their nominal sparsity).
    pub marks: Vec<(f64, f64)>,
}

/// A horizontal dashed line across the plot (the dense model's value).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Legend entry.
    pub label: String,
    /// Where the line is.
    pub y: f64,
}

/// A plot: y against x, one colour per series.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// Caption above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic y axis (perplexity).
    pub log_y: bool,
    /// Legend in the upper left corner (where a curve rising with x leaves room), else in
    /// the lower left.
    pub legend_upper: bool,
    /// The curves.
    pub series: Vec<Series>,
    /// The horizontal reference lines.
    pub references: Vec<Reference>,
}

impl LinePlot {
    /// Finite points (and, on a log axis, positive ones); the rest cannot be drawn.
    fn drawable(&self, (_, y): (f64, f64)) -> bool {
        y.is_finite() && (!self.log_y || y > 0.0)
    }

    /// The x and y ranges covering every drawable point and reference, with a margin.
    fn ranges(&self) -> Option<((f64, f64), (f64, f64))> {
        let points = self
            .series
            .iter()
            .flat_map(|s| s.line.iter().chain(&s.marks))
            .copied();
        let points: Vec<(f64, f64)> = points
            .filter(|&p| p.0.is_finite() && self.drawable(p))
            .collect();
        if points.is_empty() {
            return None;
        }
        let (mut x0, mut x1) = (f64::MAX, f64::MIN);
        let (mut y0, mut y1) = (f64::MAX, f64::MIN);
        for &(x, y) in &points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for r in &self.references {
            if self.drawable((0.0, r.y)) {
                y0 = y0.min(r.y);
                y1 = y1.max(r.y);
            }
        }
        let xpad = ((x1 - x0) * 0.05).max(2.5);
        let (y0, y1) = if self.log_y {
            (y0 / 1.15, y1 * 1.15)
        } else {
            let pad = ((y1 - y0) * 0.08).max(y1.abs() * 0.02).max(1e-6);
            (y0 - pad, y1 + pad)
        };
        Some(((x0 - xpad, x1 + xpad), (y0, y1)))
    }
}

/// Draws the plot into an SVG document.
pub fn render_svg(plot: &LinePlot) -> Result<String> {
    let ((x0, x1), (y0, y1)) = plot
        .ranges()
        .ok_or_else(|| anyhow!("plot '{}' has no drawable point", plot.title))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&plot.title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72);
        if plot.log_y {
            let y = (y0..y1).log_scale().with_key_points(log_ticks(y0, y1));
            let chart = builder.build_cartesian_2d(x0..x1, y).map_err(draw_err)?;
            draw(chart, plot, (x0, x1))?;
        } else {
            let chart = builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_err)?;
            draw(chart, plot, (x0, x1))?;
        }
        root.present().map_err(draw_err)?;
    }
    ensure!(svg.starts_with("<svg"), "plotters wrote no SVG document");
    Ok(svg)
}

/// Tick values of a logarithmic axis from `lo` to `hi`: 1, 2, 5 x 10^k, or every digit x 10^k
/// when that gives fewer than four, or geometric steps on a range narrower than a digit.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |digits: &[f64]| -> Vec<f64> {
        (k0..=k1)
            .flat_map(|k| digits.iter().map(move |d| d * 10f64.powi(k)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let ticks = within(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 4 {
        return ticks;
    }
    let ticks = within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if ticks.len() >= 3 {
        return ticks;
    }
    (1..=4)
        .map(|i| lo * (hi / lo).powf(f64::from(i) / 5.0))
        .map(|v| round_significant(v, 3))
        .collect()
}

fn round_significant(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// A tick label: integers without decimals, others with at most three significant digits.
fn tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) {
        return format!("{v:.0}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

fn draw<'a, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    plot: &LinePlot,
    (x0, x1): (f64, f64),
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(plot.x_label.as_str())
        .y_desc(plot.y_label.as_str())
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)?;

    for (i, r) in plot.references.iter().enumerate() {
        if !plot.drawable((0.0, r.y)) {
            continue;
        }
        let grey = if i % 2 == 0 {
            BLACK.mix(0.6)
        } else {
            BLACK.mix(0.35)
        };
        let style = ShapeStyle::from(grey).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x0, r.y), (x1, r.y)],
                8,
                5,
                style,
            ))
            .map_err(draw_err)?
            .label(r.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }

    for (i, s) in plot.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = s
            .line
            .iter()
            .copied()
            .filter(|&p| plot.drawable(p))
            .collect();
        let marks: Vec<(f64, f64)> = s
            .marks
            .iter()
            .copied()
            .filter(|&p| plot.drawable(p))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(draw_err)?;
        chart
            .draw_series(
                marks
                    .iter()
                    .map(|&p| TriangleMarker::new(p, 7, color.filled())),
            )
            .map_err(draw_err)?;
    }

    chart
        .configure_series_labels()
        .position(if plot.legend_upper {
            SeriesLabelPosition::UpperLeft
        } else {
            SeriesLabelPosition::LowerLeft
        })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// Whether `svg` has a text element reading `text` (plotters writes it on a line of its own).
#[cfg(test)]
pub(crate) fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(log_y: bool) -> LinePlot {
        LinePlot {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_y,
            legend_upper: log_y,
            series: vec![Series {
                label: "a".into(),
                line: vec![(50.0, 20.0), (60.0, 40.0)],
                marks: vec![(50.0, 30.0)],
            }],
            references: vec![Reference {
                label: "dense".into(),
                y: 15.0,
            }],
        }
    }

    #[test]
    fn renders_deterministic_svg_on_both_axes() {
        for log_y in [false, true] {
            let a = render_svg(&plot(log_y)).unwrap();
            assert!(a.starts_with("<svg"));
            assert!(a.trim_end().ends_with("</svg>"));
            assert!(has_text(&a, "dense") && has_text(&a, "a") && has_text(&a, "t"));
            assert_eq!(a, render_svg(&plot(log_y)).unwrap());
        }
    }

    #[test]
    fn log_ticks_lie_in_range_and_increase() {
        for (lo, hi) in [
            (17.4, 47.7),
            (5.0, 5000.0),
            (27.1, 28.3),
            (0.8, 1.9),
            (1e3, 2e5),
        ] {
            let t = log_ticks(lo, hi);
            assert!(t.len() >= 3, "{lo}..{hi}: {t:?}");
            assert!(t.iter().all(|v| (lo..=hi).contains(v)), "{lo}..{hi}: {t:?}");
            assert!(t.windows(2).all(|w| w[0] < w[1]), "{lo}..{hi}: {t:?}");
        }
    }

    #[test]
    fn tick_labels_are_short() {
        for (v, want_len) in [(50.0, 2), (27.456, 4), (0.12345, 5), (1234.5, 4)] {
            assert!(tick(v).len() <= want_len, "{v} -> {}", tick(v));
            assert!((tick(v).parse::<f64>().unwrap() - v).abs() <= v.abs() * 0.01);
        }
    }

    #[test]
    fn undrawable_points_are_skipped_and_an_empty_plot_is_an_error() {
        let mut p = plot(true);
        p.series[0].line.push((70.0, f64::INFINITY));
        p.series[0].marks.push((75.0, -1.0));
        assert!(render_svg(&p).unwrap().starts_with("<svg"));
        p.series[0].line.clear();
        p.series[0].marks.clear();
        assert!(render_svg(&p).is_err());
    }
}
