//! The SVG renderer: a figure laid out for a given width, in plain SVG 1.1 (no scripts, no
//! external fonts or images), so the same text is an inline chart on the page and a file that
//! opens in any browser, slide tool or mail client.
//!
//! Every bar and point carries `data-series`, `data-category` (the report's value) and
//! `data-value` (the plotted number), and a `<title>` tooltip with the formatted value: the
//! browser test reads the chart back through them.

use std::fmt::Write;

use super::{Figure, Kind, Panel, Unit, format_tick, format_value};

/// How to render.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Width in px (clamped to 280–2400); the height follows from the content.
    pub width: u32,
    /// A file of its own: the title, subtitle and notes are drawn into the SVG, and its size
    /// is fixed. Inline (false), the page shows those as HTML and the SVG scales to its box.
    pub standalone: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            width: 960,
            standalone: true,
        }
    }
}

const FONT: &str =
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const INK: &str = "#212529";
const MUTED: &str = "#5c636a";
const GRID: &str = "#e9ecef";
const AXIS: &str = "#adb5bd";
const BAND_FILL: &str = "#fff3bf";
const BAND_INK: &str = "#7c5e00";
/// Between panels side by side, and between rows of panels.
const GAP: f64 = 28.0;
/// Between the legend and the plot of vertical bars and lines (a band's label goes there).
const PLOT_GAP: f64 = 24.0;
/// Narrower than this per panel and panels go under each other.
const MIN_PANEL_WIDTH: f64 = 380.0;

/// The figure as an SVG document.
pub fn render(figure: &Figure, options: Options) -> String {
    let width = f64::from(options.width.clamp(280, 2400));
    let mut body = String::new();
    let mut y = 0.0;
    if options.standalone {
        text(
            &mut body,
            0.0,
            20.0,
            18.0,
            "start",
            "font-weight=\"600\"",
            INK,
            &figure.title,
        );
        text(
            &mut body,
            0.0,
            40.0,
            12.0,
            "start",
            "",
            MUTED,
            &figure.subtitle,
        );
        y = 60.0;
    }
    if figure.is_empty() {
        let _ = write!(
            body,
            "<rect class=\"empty\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"80\" fill=\"#f8f9fa\" rx=\"6\"/>"
        );
        text(
            &mut body,
            width / 2.0,
            y + 45.0,
            14.0,
            "middle",
            "",
            MUTED,
            "No data for this period",
        );
        y += 80.0;
    } else {
        y = panels(&mut body, figure, width, y);
    }
    if options.standalone {
        for note in &figure.notes {
            y += 18.0;
            text(&mut body, 0.0, y, 12.0, "start", "", MUTED, note);
        }
        y += 8.0;
    }
    let height = y.ceil();
    // A file of its own gets a white margin; inline, the page around it is the margin.
    let (margin, size, background) = if options.standalone {
        let (w, h) = (width + 32.0, height + 32.0);
        (
            16.0,
            format!("width=\"{w}\" height=\"{h}\""),
            format!("<rect x=\"-16\" y=\"-16\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>"),
        )
    } else {
        (
            0.0,
            "width=\"100%\" preserveAspectRatio=\"xMinYMin meet\"".to_string(),
            String::new(),
        )
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"ts-chart\" data-figure=\"{id}\" \
         data-width=\"{width}\" viewBox=\"{x} {x} {w} {h}\" {size} role=\"img\" \
         aria-label=\"{label}\" font-family=\"{FONT}\"><title>{label}</title>{background}{body}</svg>",
        id = escape(figure.id),
        label = escape(&figure.title),
        x = -margin,
        w = width + 2.0 * margin,
        h = height + 2.0 * margin,
    )
}

/// Lays out the panels in rows (side by side while each gets [`MIN_PANEL_WIDTH`]) and returns
/// the y below them.
fn panels(out: &mut String, figure: &Figure, width: f64, mut y: f64) -> f64 {
    let n = figure.panels.len().max(1);
    let mut columns = n;
    while columns > 1 && (width - GAP * (columns - 1) as f64) / (columns as f64) < MIN_PANEL_WIDTH {
        columns -= 1;
    }
    for row in figure.panels.chunks(columns) {
        let count = row.len() as f64;
        // Horizontal bars over the same categories side by side share one label column.
        let shared = row.len() > 1
            && row.iter().all(|p| p.kind == Kind::HorizontalBars)
            && row.windows(2).all(|w| keys(&w[0]) == keys(&w[1]));
        let label_column = if shared {
            label_width(&row[0], width / 2.0)
        } else {
            0.0
        };
        let plot_share = (width - label_column - GAP * (count - 1.0)) / count;
        let header = row
            .iter()
            .map(|p| header_height(p, plot_share))
            .fold(0.0, f64::max);
        let mut x = 0.0;
        let mut bottom: f64 = y;
        for (i, panel) in row.iter().enumerate() {
            let (w, labels) = if shared {
                if i == 0 {
                    (label_column + plot_share, Some(label_column))
                } else {
                    (plot_share, Some(0.0))
                }
            } else {
                (plot_share, None)
            };
            let frame = Frame {
                x,
                y,
                width: w,
                header,
            };
            let h = match panel.kind {
                Kind::HorizontalBars => horizontal_bars(out, panel, &frame, labels),
                Kind::VerticalBars => vertical_bars(out, panel, &frame),
                Kind::Line => line(out, panel, &frame),
            };
            bottom = bottom.max(y + h);
            x += w + GAP;
        }
        y = bottom + GAP * 0.5;
    }
    y
}

fn keys(panel: &Panel) -> Vec<&str> {
    panel.categories.iter().map(|c| c.key.as_str()).collect()
}

/// Where a panel goes.
struct Frame {
    x: f64,
    y: f64,
    width: f64,
    /// Height of the title and legend (the same for panels in one row, so plots line up).
    header: f64,
}

/// Legend entries: the series with a colour of their own, when there is more than one series.
fn legend_items(panel: &Panel) -> Vec<(&str, &'static str)> {
    if panel.series.len() < 2 {
        return Vec::new();
    }
    panel
        .series
        .iter()
        .filter_map(|s| s.colour.map(|c| (s.name.as_str(), c)))
        .collect()
}

/// The legend's rows when it wraps at `width`: each row, the x of each item in it.
fn legend_rows<'a>(
    items: &[(&'a str, &'static str)],
    width: f64,
) -> Vec<Vec<(f64, &'a str, &'static str)>> {
    let mut rows: Vec<Vec<(f64, &str, &'static str)>> = Vec::new();
    let mut x = 0.0;
    for &(name, colour) in items {
        let w = 16.0 + text_width(name, 12.0) + 16.0;
        if rows.is_empty() || (x + w > width && x > 0.0) {
            rows.push(Vec::new());
            x = 0.0;
        }
        if let Some(row) = rows.last_mut() {
            row.push((x, name, colour));
        }
        x += w;
    }
    rows
}

fn header_height(panel: &Panel, width: f64) -> f64 {
    22.0 + 18.0 * legend_rows(&legend_items(panel), width).len() as f64
}

fn header(out: &mut String, panel: &Panel, frame: &Frame) {
    text(
        out,
        frame.x,
        frame.y + 14.0,
        13.0,
        "start",
        "font-weight=\"600\"",
        INK,
        &panel.title,
    );
    for (row, items) in legend_rows(&legend_items(panel), frame.width)
        .iter()
        .enumerate()
    {
        let y = frame.y + 24.0 + 18.0 * row as f64;
        for &(x, name, colour) in items {
            let x = frame.x + x;
            let _ = write!(
                out,
                "<g class=\"legend-item\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"11\" height=\"11\" rx=\"2\" fill=\"{colour}\"/>"
            );
            text(out, x + 16.0, y + 10.0, 12.0, "start", "", INK, name);
            out.push_str("</g>");
        }
    }
}

/// Width of the category labels of horizontal bars, at most `limit`.
fn label_width(panel: &Panel, limit: f64) -> f64 {
    let widest = panel
        .categories
        .iter()
        .map(|c| text_width(&c.label, 12.0))
        .fold(0.0, f64::max);
    (widest + 24.0).clamp(60.0, limit.max(60.0)).min(260.0)
}

/// `labels`: the label column's width when the layout decided it (`Some(0.0)`: none, a panel
/// to the right of one that has them); `None`: this panel has its own.
fn horizontal_bars(out: &mut String, panel: &Panel, frame: &Frame, labels: Option<f64>) -> f64 {
    header(out, panel, frame);
    let top = frame.y + frame.header + 4.0;
    let label_w = labels.unwrap_or_else(|| label_width(panel, frame.width * 0.42));
    let n_series = panel.series.len().max(1);
    let grouped = !panel.stacked && n_series > 1;
    let bar_h = if grouped { 11.0 } else { 16.0 };
    let row_h = if grouped {
        n_series as f64 * bar_h + 10.0
    } else {
        26.0
    };
    let value_w = 60.0;
    let plot_x = frame.x + label_w;
    let plot_w = (frame.width - label_w - value_w).max(40.0);
    let rows_h = panel.categories.len() as f64 * row_h;
    let scale = Scale::new(max_value(panel), panel.unit, plot_w);

    for tick in &scale.ticks {
        let x = plot_x + scale.at(*tick);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{}\"/>",
            top + rows_h,
            if *tick == 0.0 { AXIS } else { GRID }
        );
        text(
            out,
            x,
            top + rows_h + 14.0,
            11.0,
            "middle",
            "class=\"tick\"",
            MUTED,
            &format_tick(*tick, panel.unit),
        );
    }
    text(
        out,
        plot_x + plot_w / 2.0,
        top + rows_h + 32.0,
        11.0,
        "middle",
        "class=\"axis-label\"",
        MUTED,
        &panel.value_axis,
    );

    for (i, category) in panel.categories.iter().enumerate() {
        let row_y = top + i as f64 * row_h;
        if label_w > 0.0 {
            let mid = row_y + row_h / 2.0;
            if let Some(colour) = category.colour {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{mid:.1}\" r=\"4.5\" fill=\"{colour}\"/>",
                    frame.x + 5.0,
                );
            }
            let shown = truncate(&category.label, label_w - 22.0, 12.0);
            let _ = write!(
                out,
                "<text class=\"category\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{INK}\"><title>{}</title>{}</text>",
                frame.x + 14.0,
                mid + 4.0,
                escape(&category.label),
                escape(&shown)
            );
        }
        let mut stacked_at = 0.0;
        for (j, series) in panel.series.iter().enumerate() {
            let Some(value) = series.values.get(i).copied().flatten() else {
                continue;
            };
            let (x, y) = if panel.stacked {
                (plot_x + scale.at(stacked_at), row_y + (row_h - bar_h) / 2.0)
            } else if grouped {
                (plot_x, row_y + 5.0 + j as f64 * bar_h)
            } else {
                (plot_x, row_y + (row_h - bar_h) / 2.0)
            };
            let h = if grouped { bar_h - 2.0 } else { bar_h };
            let w = scale.at(value.max(0.0));
            bar(out, panel, series, category, value, x, y, w, h);
            if panel.stacked {
                stacked_at += value.max(0.0);
            } else {
                value_label(
                    out,
                    x + w + 4.0,
                    y + h / 2.0 + 4.0,
                    "start",
                    value,
                    panel.unit,
                );
            }
        }
        if panel.stacked && n_series > 0 {
            let total: f64 = panel
                .series
                .iter()
                .filter_map(|s| s.values.get(i).copied().flatten())
                .sum();
            value_label(
                out,
                plot_x + scale.at(stacked_at) + 4.0,
                row_y + row_h / 2.0 + 4.0,
                "start",
                total,
                panel.unit,
            );
        }
    }
    frame.header + 4.0 + rows_h + 40.0
}

/// The plot area of vertical bars and lines: value axis on the left, categories below.
struct Columns {
    top: f64,
    plot_x: f64,
    plot_w: f64,
    plot_h: f64,
    slot: f64,
    scale: Scale,
}

impl Columns {
    fn new(panel: &Panel, frame: &Frame, max: f64) -> Self {
        // Room above the plot for a band's label (all panels alike, so plots in a row align).
        let top = frame.y + frame.header + PLOT_GAP;
        let plot_x = frame.x + 62.0;
        let plot_w = (frame.width - 62.0 - 8.0).max(40.0);
        let plot_h = 190.0;
        let slot = plot_w / panel.categories.len().max(1) as f64;
        Self {
            top,
            plot_x,
            plot_w,
            plot_h,
            slot,
            scale: Scale::new(max, panel.unit, plot_h),
        }
    }

    fn y(&self, value: f64) -> f64 {
        self.top + self.plot_h - self.scale.at(value)
    }

    fn center(&self, i: usize) -> f64 {
        self.plot_x + (i as f64 + 0.5) * self.slot
    }

    /// Band, grid, value axis, category labels (every `every`-th), axis labels; returns the
    /// height used below the plot.
    fn draw_frame(&self, out: &mut String, panel: &Panel, frame: &Frame, every: usize) -> f64 {
        if let Some(band) = &panel.band
            && band.first <= band.last
            && band.last < panel.categories.len()
        {
            let x = self.plot_x + band.first as f64 * self.slot;
            let w = (band.last - band.first + 1) as f64 * self.slot;
            let _ = write!(
                out,
                "<rect class=\"band\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{BAND_FILL}\"/>",
                self.top, self.plot_h
            );
            text(
                out,
                x + w / 2.0,
                self.top - 6.0,
                11.0,
                "middle",
                "class=\"band-label\" font-weight=\"600\"",
                BAND_INK,
                &truncate(&band.label, w.max(90.0), 11.0),
            );
        }
        for tick in &self.scale.ticks {
            let y = self.y(*tick);
            let _ = write!(
                out,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\"/>",
                self.plot_x,
                self.plot_x + self.plot_w,
                if *tick == 0.0 { AXIS } else { GRID }
            );
            text(
                out,
                self.plot_x - 6.0,
                y + 4.0,
                11.0,
                "end",
                "class=\"tick\"",
                MUTED,
                &format_tick(*tick, panel.unit),
            );
        }
        let mid_y = self.top + self.plot_h / 2.0;
        let axis_x = frame.x + 10.0;
        let _ = write!(
            out,
            "<text class=\"axis-label\" x=\"{axis_x:.1}\" y=\"{mid_y:.1}\" font-size=\"11\" fill=\"{MUTED}\" \
             text-anchor=\"middle\" transform=\"rotate(-90 {axis_x:.1} {mid_y:.1})\">{}</text>",
            escape(&truncate(&panel.value_axis, self.plot_h, 11.0))
        );

        let widest = panel
            .categories
            .iter()
            .map(|c| text_width(&c.label, 11.0))
            .fold(0.0, f64::max);
        let room = self.slot * every as f64 - 6.0;
        let rotate = widest > room;
        let below = self.top + self.plot_h;
        let mut labels_h: f64 = 18.0;
        for (i, category) in panel.categories.iter().enumerate() {
            if i % every != 0 {
                continue;
            }
            let x = self.center(i);
            if rotate {
                let shown = truncate(&category.label, 110.0, 11.0);
                labels_h = labels_h.max(14.0 + text_width(&shown, 11.0) * 0.62);
                let y = below + 14.0;
                let _ = write!(
                    out,
                    "<text class=\"category\" x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"11\" fill=\"{INK}\" \
                     text-anchor=\"end\" transform=\"rotate(-38 {x:.1} {y:.1})\"><title>{}</title>{}</text>",
                    escape(&category.label),
                    escape(&shown)
                );
            } else {
                let _ = write!(
                    out,
                    "<text class=\"category\" x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{INK}\" \
                     text-anchor=\"middle\"><title>{}</title>{}</text>",
                    below + 16.0,
                    escape(&category.label),
                    escape(&category.label)
                );
            }
        }
        text(
            out,
            self.plot_x + self.plot_w / 2.0,
            below + labels_h + 16.0,
            11.0,
            "middle",
            "class=\"axis-label\"",
            MUTED,
            &panel.category_axis,
        );
        labels_h + 24.0
    }
}

fn vertical_bars(out: &mut String, panel: &Panel, frame: &Frame) -> f64 {
    header(out, panel, frame);
    let cols = Columns::new(panel, frame, max_value(panel));
    let below = cols.draw_frame(out, panel, frame, 1);
    let n_series = panel.series.len().max(1);
    let group_w = cols.slot * 0.74;
    let bar_w = if panel.stacked {
        group_w
    } else {
        group_w / n_series as f64
    };
    for (i, category) in panel.categories.iter().enumerate() {
        let left = cols.center(i) - group_w / 2.0;
        let mut stacked_at = 0.0;
        for (j, series) in panel.series.iter().enumerate() {
            let Some(value) = series.values.get(i).copied().flatten() else {
                continue;
            };
            let v = value.max(0.0);
            let (x, bottom) = if panel.stacked {
                (left, stacked_at)
            } else {
                (left + j as f64 * bar_w, 0.0)
            };
            let y = cols.y(bottom + v);
            let h = cols.y(bottom) - y;
            bar(out, panel, series, category, value, x, y, bar_w - 1.0, h);
            if panel.stacked {
                stacked_at += v;
            } else if bar_w >= 26.0 {
                value_label(out, x + bar_w / 2.0, y - 4.0, "middle", value, panel.unit);
            }
        }
        if panel.stacked && cols.slot >= 30.0 {
            value_label(
                out,
                cols.center(i),
                cols.y(stacked_at) - 4.0,
                "middle",
                stacked_at,
                panel.unit,
            );
        }
    }
    frame.header + PLOT_GAP + cols.plot_h + below
}

fn line(out: &mut String, panel: &Panel, frame: &Frame) -> f64 {
    header(out, panel, frame);
    let max = if panel.unit == Unit::Percent {
        100.0
    } else {
        max_value(panel)
    };
    let cols = Columns::new(panel, frame, max);
    let widest = panel
        .categories
        .iter()
        .map(|c| text_width(&c.label, 11.0) + 10.0)
        .fold(1.0, f64::max);
    let every = ((widest / cols.slot).ceil() as usize).max(1);
    let below = cols.draw_frame(out, panel, frame, every);
    for series in &panel.series {
        let colour = series.colour.unwrap_or(INK);
        // One path per run of values; a missing value breaks the line.
        let mut d = String::new();
        let mut pen_down = false;
        for (i, value) in series.values.iter().enumerate() {
            match value {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1} {:.1}",
                        if pen_down { " L" } else { " M" },
                        cols.center(i),
                        cols.y(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                "<path class=\"line\" data-series=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\" stroke-linejoin=\"round\"/>",
                escape(&series.name),
                d.trim_start()
            );
        }
        for (i, value) in series.values.iter().enumerate() {
            let (Some(v), Some(category)) = (value, panel.categories.get(i)) else {
                continue;
            };
            let _ = write!(
                out,
                "<circle class=\"point\" data-series=\"{s}\" data-category=\"{c}\" data-value=\"{v}\" \
                 cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1\">\
                 <title>{l}, {s}: {f}</title></circle>",
                cols.center(i),
                cols.y(*v),
                s = escape(&series.name),
                c = escape(&category.key),
                l = escape(&category.label),
                f = escape(&format_value(*v, panel.unit)),
            );
        }
    }
    frame.header + PLOT_GAP + cols.plot_h + below
}

#[allow(clippy::too_many_arguments)]
fn bar(
    out: &mut String,
    panel: &Panel,
    series: &super::Series,
    category: &super::Category,
    value: f64,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
) {
    let colour = series.colour.or(category.colour).unwrap_or(INK);
    let tooltip = if panel.series.len() > 1 {
        format!(
            "{}, {}: {}",
            category.label,
            series.name,
            format_value(value, panel.unit)
        )
    } else {
        format!("{}: {}", category.label, format_value(value, panel.unit))
    };
    let _ = write!(
        out,
        "<rect class=\"bar\" data-series=\"{}\" data-category=\"{}\" data-value=\"{value}\" \
         x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}</title></rect>",
        escape(&series.name),
        escape(&category.key),
        w.max(0.0),
        h.max(0.0),
        escape(&tooltip)
    );
}

fn value_label(out: &mut String, x: f64, y: f64, anchor: &str, value: f64, unit: Unit) {
    text(
        out,
        x,
        y,
        10.5,
        anchor,
        "class=\"value\"",
        MUTED,
        &format_value(value, unit),
    );
}

/// The largest value to fit: the largest stack when stacked.
fn max_value(panel: &Panel) -> f64 {
    if panel.stacked {
        (0..panel.categories.len())
            .map(|i| {
                panel
                    .series
                    .iter()
                    .filter_map(|s| s.values.get(i).copied().flatten())
                    .map(|v| v.max(0.0))
                    .sum::<f64>()
            })
            .fold(0.0, f64::max)
    } else {
        panel
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0, |a, &b| a.max(b))
    }
}

/// A linear scale from 0 to a round number at or above the largest value, with its ticks.
struct Scale {
    top: f64,
    length: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn new(max: f64, unit: Unit, length: f64) -> Self {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let rough = max / 5.0;
        let magnitude = 10f64.powf(rough.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|f| f * magnitude)
            .find(|s| *s >= rough)
            .unwrap_or(10.0 * magnitude);
        // Counts of whole things do not need ticks between 0 and 1.
        let step = if unit != Unit::Percent && max >= 1.0 && step < 1.0 {
            1.0
        } else {
            step
        };
        let steps = (max / step - 1e-9).ceil().max(1.0) as usize;
        let ticks: Vec<f64> = (0..=steps).map(|k| k as f64 * step).collect();
        Self {
            top: steps as f64 * step,
            length,
            ticks,
        }
    }

    fn at(&self, value: f64) -> f64 {
        value / self.top * self.length
    }
}

#[allow(clippy::too_many_arguments)]
fn text(
    out: &mut String,
    x: f64,
    y: f64,
    size: f64,
    anchor: &str,
    extra: &str,
    fill: &str,
    content: &str,
) {
    let _ = write!(
        out,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" fill=\"{fill}\" text-anchor=\"{anchor}\" {extra}>{}</text>",
        escape(content)
    );
}

/// An estimate of the width of `text` in a sans-serif font at `size` px (there are no font
/// metrics here; 0.57 em is a typical average advance, digits and lower case included).
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.57
}

/// `text` cut to about `width` px, with an ellipsis when cut.
fn truncate(text: &str, width: f64, size: f64) -> String {
    if text_width(text, size) <= width {
        return text.to_string();
    }
    let keep = ((width / (size * 0.57)).floor() as usize)
        .saturating_sub(1)
        .max(1);
    let mut cut: String = text.chars().take(keep).collect();
    cut.push('…');
    cut
}

/// Text and attribute values in XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::{Band, Category, Series, palette};
    use super::*;
    use touchstream_warehouse::reports::ReportTable;

    fn category(key: &str) -> Category {
        Category {
            key: key.into(),
            label: key.into(),
            colour: Some(palette::network(key)),
        }
    }

    fn figure(kind: Kind, stacked: bool) -> Figure {
        Figure {
            id: "t",
            title: "A <test> & more".into(),
            description: String::new(),
            subtitle: "model linear".into(),
            panels: vec![Panel {
                title: "p".into(),
                kind,
                stacked,
                unit: Unit::Count,
                value_axis: "conversions".into(),
                category_axis: "network".into(),
                categories: vec![category("facebook"), category("x"), category("tiktok")],
                series: vec![
                    Series {
                        name: "sales".into(),
                        colour: Some(palette::SALES),
                        values: vec![Some(4.0), Some(0.5), None],
                    },
                    Series {
                        name: "micro".into(),
                        colour: Some(palette::MICRO),
                        values: vec![Some(39.0), Some(2.0), Some(1.0)],
                    },
                ],
                band: Some(Band {
                    first: 1,
                    last: 1,
                    label: "7–13".into(),
                }),
            }],
            table: ReportTable::default(),
            notes: vec!["a note".into()],
        }
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn every_value_is_one_bar_with_its_number() {
        for kind in [Kind::HorizontalBars, Kind::VerticalBars] {
            for stacked in [false, true] {
                let svg = render(&figure(kind, stacked), Options::default());
                assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
                assert!(svg.ends_with("</svg>"));
                assert_eq!(count(&svg, "class=\"bar\""), 5, "{kind:?} {stacked}");
                assert!(
                    svg.contains("data-series=\"sales\" data-category=\"x\" data-value=\"0.5\"")
                );
                assert!(svg.contains("A &lt;test&gt; &amp; more"));
                assert!(!svg.contains("<test>"));
                assert_eq!(count(&svg, "class=\"legend-item\""), 2);
            }
        }
        let svg = render(&figure(Kind::VerticalBars, true), Options::default());
        assert_eq!(count(&svg, "class=\"band\""), 1);
        assert!(svg.contains("a note"), "standalone SVGs carry the notes");
        let inline = render(
            &figure(Kind::VerticalBars, true),
            Options {
                width: 600,
                standalone: false,
            },
        );
        assert!(!inline.contains("a note") && inline.contains("width=\"100%\""));
    }

    #[test]
    fn a_line_breaks_at_a_missing_value() {
        let svg = render(&figure(Kind::Line, false), Options::default());
        assert_eq!(count(&svg, "class=\"point\""), 5);
        // sales: two points then a gap; micro: one run of three.
        assert_eq!(count(&svg, "class=\"line\""), 2);
        let sales = svg
            .split("<path class=\"line\" data-series=\"sales\" d=\"")
            .nth(1)
            .unwrap();
        let d = &sales[..sales.find('"').unwrap()];
        assert_eq!(d.matches('M').count(), 1);
        assert_eq!(d.matches('L').count(), 1);
    }

    #[test]
    fn an_empty_figure_says_so() {
        let mut f = figure(Kind::HorizontalBars, false);
        for s in &mut f.panels[0].series {
            s.values = vec![None, Some(0.0), None];
        }
        let svg = render(&f, Options::default());
        assert!(svg.contains("No data for this period"));
        assert_eq!(count(&svg, "class=\"bar\""), 0);
    }

    #[test]
    fn scales_end_on_round_numbers() {
        let s = Scale::new(366.0, Unit::Money, 100.0);
        assert_eq!(s.ticks, [0.0, 100.0, 200.0, 300.0, 400.0]);
        let s = Scale::new(0.83, Unit::Count, 100.0);
        assert_eq!(*s.ticks.last().unwrap(), 1.0);
        let s = Scale::new(3.0, Unit::Count, 100.0);
        assert_eq!(s.ticks, [0.0, 1.0, 2.0, 3.0]);
        let s = Scale::new(0.0, Unit::Count, 100.0);
        assert_eq!(s.top, 1.0);
        assert!((s.at(0.5) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn long_labels_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("short", 200.0, 12.0), "short");
        let cut = truncate("a-very-long-utm-content-value-for-a-post", 80.0, 12.0);
        assert!(cut.ends_with('…') && cut.chars().count() < 15, "{cut}");
    }
}
