//! `touchstream report [name]`: runs one of the report queries of `schemas/clickhouse/reports/`
//! against ClickHouse and prints it as a table, CSV or JSON, or draws its chart as SVG (the
//! chart of the web page, [`crate::figures`]). Without a name, lists the reports.

use std::io::Write;

use anyhow::{Context, bail};
use comfy_table::{Cell, CellAlignment, Table};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime};
use touchstream_model::AttributionModel;
use touchstream_warehouse::WarehouseConfig;
use touchstream_warehouse::reports::{self, Report, ReportParams, ReportTable};

use crate::{chart, figures};

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The report to print (source-of-sale, posts, funnel …); omit it to list them.
    pub name: Option<String>,
    /// Start of the period, inclusive: a date (UTC midnight) or an RFC 3339 time.
    /// Default: 30 days before --to.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the period: a date (that whole day is included) or an RFC 3339 time (exclusive).
    /// Default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// Attribution model: first_touch, last_touch, last_non_direct, linear, position_based,
    /// time_decay.
    #[arg(long, default_value = "last_non_direct")]
    pub model: String,
    /// The site to report on (every report reads one).
    #[arg(long, default_value = touchstream_model::DEFAULT_SITE)]
    pub site: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// With --format svg: which chart, when a report has several (source-of-sale: models, the
    /// six models side by side). Default: the report's own.
    #[arg(long)]
    pub chart: Option<String>,
    /// With --format svg: the width of the drawing in px.
    #[arg(long, default_value_t = 960)]
    pub width: u32,
    /// ClickHouse HTTP interface.
    #[arg(
        long,
        env = "TOUCHSTREAM_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    #[arg(long, default_value = "touchstream")]
    pub database: String,
    /// A read-only user is enough (and safer).
    #[arg(long, default_value = "touchstream_reader")]
    pub user: String,
    /// Default: the local development password of touchstream_reader.
    #[arg(
        long,
        env = "TOUCHSTREAM_CLICKHOUSE_PASSWORD",
        default_value = "touchstream_reader",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned, for a terminal.
    Table,
    /// RFC 4180, with a header row.
    Csv,
    /// `{"report", "site", "model", "from", "to", "columns", "rows": [{column: value}]}`; values are strings.
    Json,
    /// The report's chart as an SVG file (for a slide or an e-mail): `> chart.svg`.
    Svg,
}

pub async fn run(args: &ReportArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let Some(name) = &args.name else {
        return list(args.format, out);
    };
    let report = reports::by_name(name).with_context(|| {
        let names: Vec<&str> = reports::all().iter().map(|r| r.name).collect();
        format!(
            "no report named {name:?}; the reports are: {}",
            names.join(", ")
        )
    })?;
    let params = params(args, OffsetDateTime::now_utc())?;
    let cfg = WarehouseConfig {
        url: args.clickhouse_url.clone(),
        database: args.database.clone(),
        user: args.user.clone(),
        password: args.password.clone(),
        // Reports read the same table names on a cluster (the Distributed tables).
        ..WarehouseConfig::default()
    };
    if args.format == Format::Svg {
        return svg(args, report, &cfg, &params, out).await;
    }
    if args.chart.is_some() {
        bail!("--chart goes with --format svg");
    }
    let table = reports::run(&touchstream_warehouse::client(&cfg), report, &params)
        .await
        .with_context(|| {
            format!(
                "report {} on {} (database {}, user {})",
                report.name, cfg.url, cfg.database, cfg.user
            )
        })?;
    render(report, &params, &table, args.format, out)
}

/// Draws the report's chart (or `--chart`) and writes the SVG.
async fn svg(
    args: &ReportArgs,
    report: &Report,
    cfg: &WarehouseConfig,
    params: &ReportParams,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let charts = figures::for_report(report.name);
    let spec = match &args.chart {
        Some(id) => *charts
            .iter()
            .find(|f| f.id == id.as_str())
            .with_context(|| {
                let ids: Vec<&str> = charts.iter().map(|f| f.id).collect();
                format!(
                    "report {} has no chart {id:?}; its charts are: {}",
                    report.name,
                    ids.join(", ")
                )
            })?,
        None => charts
            .first()
            .with_context(|| format!("report {} has no chart", report.name))?,
    };
    let tables = figures::load(&touchstream_warehouse::client(cfg), &[spec], params)
        .await
        .with_context(|| {
            format!(
                "report {} on {} (database {}, user {})",
                report.name, cfg.url, cfg.database, cfg.user
            )
        })?;
    let figure = figures::build(spec, &tables, params).map_err(anyhow::Error::msg)?;
    let svg = chart::render(
        &figure,
        chart::Options {
            width: args.width,
            standalone: true,
        },
    );
    Ok(writeln!(out, "{svg}")?)
}

fn list(format: Format, out: &mut impl Write) -> anyhow::Result<()> {
    let table = ReportTable {
        columns: vec!["name".into(), "title".into()],
        rows: reports::all()
            .iter()
            .map(|r| vec![r.name.to_string(), r.title.to_string()])
            .collect(),
    };
    match format {
        Format::Table | Format::Svg => {
            writeln!(
                out,
                "Reports (touchstream report <name> [--site --from --to --model] [--format svg]):"
            )?;
            write_table(&table, out)
        }
        Format::Csv => write_csv(&table, out),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &rows_as_objects(&table))?;
            Ok(writeln!(out)?)
        }
    }
}

fn params(args: &ReportArgs, now: OffsetDateTime) -> anyhow::Result<ReportParams> {
    let model = AttributionModel::parse(&args.model).with_context(|| {
        let models: Vec<&str> = AttributionModel::ALL.iter().map(|m| m.as_str()).collect();
        format!(
            "unknown --model {:?}; use one of: {}",
            args.model,
            models.join(", ")
        )
    })?;
    let to = match &args.to {
        Some(to) => parse_time(to, Bound::End).context("--to")?,
        None => now,
    };
    let from = match &args.from {
        Some(from) => parse_time(from, Bound::Start).context("--from")?,
        None => to - Duration::days(30),
    };
    if from >= to {
        bail!("--from ({from}) must be before --to ({to})");
    }
    Ok(ReportParams {
        site: args.site.clone(),
        from,
        to,
        model,
    })
}

#[derive(Clone, Copy)]
pub(crate) enum Bound {
    Start,
    End,
}

/// A date (`2026-01-31`: its midnight, or the next one for the end of a period, so the day is
/// included) or an RFC 3339 time.
pub(crate) fn parse_time(text: &str, bound: Bound) -> anyhow::Result<OffsetDateTime> {
    if let Ok(date) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        let day = match bound {
            Bound::Start => date,
            Bound::End => date.next_day().context("a date at the end of time")?,
        };
        return Ok(day.midnight().assume_utc());
    }
    OffsetDateTime::parse(text, &Rfc3339).with_context(|| {
        format!(
            "{text:?} is neither a date (2026-01-31) nor an RFC 3339 time (2026-01-31T12:00:00Z)"
        )
    })
}

fn render(
    report: &Report,
    params: &ReportParams,
    table: &ReportTable,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let from = params.from.format(&Rfc3339)?;
    let to = params.to.format(&Rfc3339)?;
    match format {
        // SVG is drawn before any table is read (see `svg`).
        Format::Table | Format::Svg => {
            writeln!(out, "{} — {}", report.name, report.title)?;
            writeln!(
                out,
                "model {}, from {from} to {to} (exclusive)",
                params.model.as_str()
            )?;
            if table.rows.is_empty() {
                writeln!(out, "(no rows)")?;
                return Ok(());
            }
            write_table(table, out)
        }
        Format::Csv => write_csv(table, out),
        Format::Json => {
            let json = serde_json::json!({
                "report": report.name,
                "site": params.site,
                "model": params.model.as_str(),
                "from": from,
                "to": to,
                "columns": table.columns,
                "rows": rows_as_objects(table),
            });
            serde_json::to_writer_pretty(&mut *out, &json)?;
            Ok(writeln!(out)?)
        }
    }
}

fn write_table(table: &ReportTable, out: &mut impl Write) -> anyhow::Result<()> {
    let mut pretty = Table::new();
    pretty.set_header(&table.columns);
    for row in &table.rows {
        pretty.add_row(row.iter().map(|value| {
            let cell = Cell::new(value);
            if value.parse::<f64>().is_ok() {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    Ok(writeln!(out, "{pretty}")?)
}

pub(crate) fn write_csv(table: &ReportTable, out: &mut impl Write) -> anyhow::Result<()> {
    for row in std::iter::once(&table.columns).chain(&table.rows) {
        let line: Vec<String> = row.iter().map(|value| csv_field(value)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

/// RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn rows_as_objects(table: &ReportTable) -> Vec<serde_json::Map<String, serde_json::Value>> {
    table
        .rows
        .iter()
        .map(|row| {
            table
                .columns
                .iter()
                .zip(row)
                .map(|(column, value)| (column.clone(), serde_json::Value::from(value.as_str())))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;
    use time::macros::datetime;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        report: ReportArgs,
    }

    fn args(argv: &[&str]) -> ReportArgs {
        Cli::parse_from(std::iter::once("report").chain(argv.iter().copied())).report
    }

    #[test]
    fn the_period_defaults_to_the_last_30_days_and_dates_include_the_whole_day() {
        let now = datetime!(2026-03-15 10:00 UTC);
        let p = params(&args(&[]), now).unwrap();
        assert_eq!((p.from, p.to), (datetime!(2026-02-13 10:00 UTC), now));
        assert_eq!(p.model, AttributionModel::LastNonDirect);

        let p = params(
            &args(&[
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-31",
                "--model",
                "linear",
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            (p.from, p.to),
            (
                datetime!(2026-01-01 00:00 UTC),
                datetime!(2026-02-01 00:00 UTC)
            )
        );
        assert_eq!(p.model, AttributionModel::Linear);

        let p = params(
            &args(&[
                "--from",
                "2026-01-01T12:00:00+02:00",
                "--to",
                "2026-01-02T00:00:00Z",
            ]),
            now,
        )
        .unwrap();
        assert_eq!(p.from, datetime!(2026-01-01 10:00 UTC));
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        let now = datetime!(2026-03-15 10:00 UTC);
        let e = params(&args(&["--model", "u-shaped"]), now).unwrap_err();
        assert!(format!("{e:#}").contains("last_non_direct"), "{e:#}");
        let e = params(&args(&["--from", "yesterday"]), now).unwrap_err();
        assert!(format!("{e:#}").contains("RFC 3339"), "{e:#}");
        let e = params(&args(&["--from", "2026-02-01", "--to", "2026-01-01"]), now).unwrap_err();
        assert!(format!("{e:#}").contains("before"), "{e:#}");
    }

    fn sample() -> ReportTable {
        ReportTable {
            columns: vec!["content".into(), "sales".into()],
            rows: vec![
                vec!["reel, \"1\"".into(), "2.5".into()],
                vec!["ad-7".into(), "1".into()],
            ],
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        write_csv(&sample(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "content,sales\n\"reel, \"\"1\"\"\",2.5\nad-7,1\n"
        );
    }

    #[test]
    fn every_format_renders() {
        let report = reports::by_name("posts").unwrap();
        let params = ReportParams {
            site: "default".into(),
            from: datetime!(2026-01-01 00:00 UTC),
            to: datetime!(2026-02-01 00:00 UTC),
            model: AttributionModel::Linear,
        };
        let mut out = Vec::new();
        render(report, &params, &sample(), Format::Table, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("posts") && text.contains("ad-7") && text.contains("model linear"),
            "{text}"
        );

        let mut out = Vec::new();
        render(report, &params, &sample(), Format::Json, &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["rows"][1]["content"], "ad-7");
        assert_eq!(json["from"], "2026-01-01T00:00:00Z");

        let mut out = Vec::new();
        list(Format::Table, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("source-of-sale"));
    }
}
