//! Line charts as SVG, for evaluation reports kept in `docs/`. Written here rather than with a
//! plotting crate: plotters lays out text through a font backend (font-kit with the system's
//! fontconfig, or a bundled TTF), while an SVG file can leave text to the viewer.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend.
    pub name: String,
    /// Its colour (any SVG colour).
    pub color: String,
    /// Its points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A chart of lines over shared axes.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// Charts side by side in one SVG document of `width × height` pixels per chart.
pub fn svg(charts: &[LineChart], width: f64, height: f64) -> String {
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#,
        w = width * charts.len() as f64
    );
    for (i, chart) in charts.iter().enumerate() {
        chart.draw(&mut out, i as f64 * width, width, height);
    }
    out.push_str("</svg>\n");
    out
}

impl LineChart {
    fn draw(&self, out: &mut String, left: f64, width: f64, height: f64) {
        let (x0, x1) = bounds(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
        let (y0, y1) = bounds(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        let pad = (y1 - y0).max(1e-3) * 0.1;
        let (y0, y1) = (y0 - pad, y1 + pad);
        let plot = (left + 60.0, 40.0, left + width - 20.0, height - 50.0);
        let sx = |x: f64| plot.0 + (x - x0) / (x1 - x0).max(1e-9) * (plot.2 - plot.0);
        let sy = |y: f64| plot.3 - (y - y0) / (y1 - y0) * (plot.3 - plot.1);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            (plot.0 + plot.2) / 2.0,
            escape(&self.title)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            plot.0,
            plot.1,
            plot.2 - plot.0,
            plot.3 - plot.1
        );
        for k in 0..=4 {
            let y = y0 + (y1 - y0) * k as f64 / 4.0;
            let _ = writeln!(
                out,
                r##"<line x1="{a}" x2="{b}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{t}" y="{ty}" text-anchor="end">{v:.3}</text>"##,
                a = plot.0,
                b = plot.2,
                y = sy(y),
                t = plot.0 - 6.0,
                ty = sy(y) + 4.0,
                v = y
            );
        }
        let ticks = (x1 - x0).round().clamp(1.0, 20.0) as usize;
        for k in 0..=ticks {
            let x = x0 + (x1 - x0) * k as f64 / ticks as f64;
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                sx(x),
                plot.3 + 16.0,
                (x * 10.0).round() / 10.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            plot.2,
            height - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})">{}</text>"#,
            escape(&self.y_label),
            x = left + 16.0,
            y = (plot.1 + plot.3) / 2.0
        );
        for (i, series) in self.series.iter().enumerate() {
            let points: Vec<String> =
                series.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                points.join(" "),
                c = series.color
            );
            // The legend runs along the bottom-left corner, under the x axis, clear of the lines.
            let (lx, ly) = (plot.0 + 90.0 * i as f64, height - 18.0);
            let _ = writeln!(
                out,
                r#"<line x1="{a}" x2="{b}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{t}" y="{ty}">{}</text>"#,
                escape(&series.name),
                a = lx,
                b = lx + 20.0,
                c = series.color,
                t = lx + 26.0,
                ty = ly + 4.0
            );
        }
    }
}

/// The least and greatest of `values` ((0, 1) when there are none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_scale_into_the_plot_and_text_is_escaped() {
        let chart = LineChart {
            title: "AUC <by day>".into(),
            x_label: "day".into(),
            y_label: "AUC".into(),
            series: vec![Series {
                name: "online".into(),
                color: "red".into(),
                points: vec![(2.0, 0.6), (4.0, 0.7)],
            }],
        };
        let svg = svg(&[chart.clone(), chart], 400.0, 300.0);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains(r#"width="800""#), "two charts side by side");
        assert!(svg.contains("AUC &lt;by day&gt;"));
        // x from 2 to 4 spans the plot's left (60) to right (380) edges; y 0.6 – 0.7 (padded by a
        // tenth of the range) spans 232.5 to 57.5 of the plot's 250 – 40.
        assert!(svg.contains(r#"<polyline points="60.0,232.5 380.0,57.5""#), "{svg}");
    }
}
