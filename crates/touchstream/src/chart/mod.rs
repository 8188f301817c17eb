//! Charts as data, and one renderer that turns them into SVG.
//!
//! The web page (`touchstream serve`) inlines the SVG this module writes, and `touchstream
//! report <name> --format svg` writes the same SVG to a file: one implementation of every chart,
//! no JavaScript charting on the page. A [`Figure`] is what one section of the page shows (a
//! title, one or more [`Panel`]s, and the table of numbers behind them, which is also its CSV);
//! a panel is one plot: horizontal bars, vertical bars (a histogram is vertical bars over
//! ordered buckets) or lines, grouped or stacked.

pub mod palette;
mod svg;

use serde::Serialize;
use touchstream_warehouse::reports::ReportTable;

pub use svg::{Options, escape, render};

/// How a panel draws its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Categories down the side, bars to the right: long labels (networks, posts) stay
    /// readable on a phone.
    HorizontalBars,
    /// Categories along the bottom: models side by side, histograms.
    VerticalBars,
    /// Categories along the bottom (weeks), one line per series; a missing value breaks it.
    Line,
}

/// What a value is, for axis ticks and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Conversions, visitors (fractional under multi-touch models).
    Count,
    /// Currency in major units (the reports' minor units / 100).
    Money,
    /// 0–100.
    Percent,
}

/// One position on the category axis.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Category {
    /// The value as the report has it (`data-category` on the page, the CSV's value).
    pub key: String,
    /// What the axis shows.
    pub label: String,
    /// Usually the colour of the network or channel the category is ([`palette::network`]):
    /// a dot beside the label, and the bars of a series that has no colour of its own.
    pub colour: Option<&'static str>,
}

/// One measure across the categories.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    /// `None`: each bar takes its category's network colour.
    pub colour: Option<&'static str>,
    /// One per category; `None` is no value (a gap in a line, no bar).
    pub values: Vec<Option<f64>>,
}

/// A run of categories to highlight (the 7–13 touches a sale typically takes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Band {
    /// First and last category index, inclusive.
    pub first: usize,
    pub last: usize,
    pub label: String,
}

/// One plot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Panel {
    pub title: String,
    pub kind: Kind,
    /// Series stacked on each other rather than side by side.
    pub stacked: bool,
    pub unit: Unit,
    pub value_axis: String,
    pub category_axis: String,
    pub categories: Vec<Category>,
    pub series: Vec<Series>,
    pub band: Option<Band>,
}

impl Panel {
    /// Nothing to draw: no categories, or every value missing or zero.
    pub fn is_empty(&self) -> bool {
        self.series
            .iter()
            .flat_map(|s| &s.values)
            .all(|v| v.is_none_or(|v| v == 0.0))
    }
}

/// One section of the page, one SVG file, one CSV.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    /// Stable id: the page's anchor, the chart's URL, `--chart`.
    pub id: &'static str,
    pub title: String,
    /// What the figure shows and how to read it, one or two sentences.
    pub description: String,
    /// Model and period.
    pub subtitle: String,
    pub panels: Vec<Panel>,
    /// The numbers behind the panels, as the report gives them: the CSV and the page's table.
    pub table: ReportTable,
    /// Remarks under the chart (rows left out, a takeaway).
    pub notes: Vec<String>,
}

impl Figure {
    pub fn is_empty(&self) -> bool {
        self.panels.iter().all(Panel::is_empty)
    }
}

/// `value` for people: thousands separated, at most two decimals (one for percentages).
pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Percent => format!("{}%", trimmed(value, 1)),
        Unit::Money => grouped(value, 2),
        Unit::Count if (value - value.round()).abs() < 1e-9 => grouped(value, 0),
        Unit::Count => trimmed(value, 2),
    }
}

/// A tick label: short (1.2k, 3M).
pub fn format_tick(value: f64, unit: Unit) -> String {
    if unit == Unit::Percent {
        return format!("{}%", trimmed(value, 1));
    }
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", trimmed(value / 1e6, 1))
    } else if magnitude >= 1e4 {
        format!("{}k", trimmed(value / 1e3, 1))
    } else {
        grouped_trimmed(value, 2)
    }
}

/// `value` with at most `decimals` decimals and no trailing zeros.
fn trimmed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" { "0".into() } else { text }
}

fn grouped_trimmed(value: f64, decimals: usize) -> String {
    let text = trimmed(value, decimals);
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int = group_digits(int);
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

fn grouped(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int = group_digits(int);
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

fn group_digits(int: &str) -> String {
    let (sign, digits) = int
        .strip_prefix('-')
        .map_or(("", int), |digits| ("-", digits));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_numbers_people_write() {
        assert_eq!(format_value(1234567.0, Unit::Count), "1,234,567");
        assert_eq!(format_value(0.8333, Unit::Count), "0.83");
        assert_eq!(format_value(2.5, Unit::Count), "2.5");
        assert_eq!(format_value(366.0, Unit::Money), "366.00");
        assert_eq!(format_value(-1234.5, Unit::Money), "-1,234.50");
        assert_eq!(format_value(42.86, Unit::Percent), "42.9%");
        assert_eq!(format_value(50.0, Unit::Percent), "50%");
        assert_eq!(format_tick(25_000.0, Unit::Money), "25k");
        assert_eq!(format_tick(1_500.0, Unit::Count), "1,500");
        assert_eq!(format_tick(2_500_000.0, Unit::Count), "2.5M");
        assert_eq!(format_tick(0.25, Unit::Count), "0.25");
        assert_eq!(format_tick(-0.0, Unit::Count), "0");
    }
}
