//! The figures of the web report and of `touchstream report <name> --format svg`, built from
//! the answers of the report queries in `schemas/clickhouse/reports/` as
//! [`touchstream_warehouse::reports::run`] returns them: every number a chart shows is a value
//! of a report row (or, for the models side by side, a sum of them), never a query of its own.

use std::collections::{BTreeMap, HashMap};

use time::macros::format_description;
use time::{Duration, OffsetDateTime, Time};
use touchstream_model::AttributionModel;
use touchstream_warehouse::WarehouseError;
use touchstream_warehouse::reports::{self, ReportParams, ReportTable};

use crate::chart::{Band, Category, Figure, Kind, Panel, Series, Unit, palette};

/// How to build one figure.
pub struct FigureSpec {
    /// The figure's id (page anchor, URL, `--chart`).
    pub id: &'static str,
    /// The report it is built on (`touchstream report <report> --format svg`).
    pub report: &'static str,
    /// Needs the report under all six models, not only the chosen one.
    pub all_models: bool,
    /// Other reports it reads (under the chosen model): the currencies of the revenue come
    /// from the source of sale.
    pub extra: &'static [&'static str],
    /// Shown on the web page (the others only as SVG from the terminal).
    pub on_page: bool,
    build: fn(&Tables, &ReportParams) -> Result<Figure, String>,
}

impl std::fmt::Debug for FigureSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

/// Every figure, in the page's order.
pub const FIGURES: &[FigureSpec] = &[
    FigureSpec {
        id: "source-of-sale",
        report: "source-of-sale",
        all_models: false,
        extra: &[],
        on_page: true,
        build: source_of_sale,
    },
    FigureSpec {
        id: "models",
        report: "source-of-sale",
        all_models: true,
        extra: &[],
        on_page: true,
        build: models,
    },
    FigureSpec {
        id: "social-micro-macro",
        report: "social-micro-macro",
        all_models: false,
        extra: &[],
        on_page: true,
        build: micro_macro,
    },
    FigureSpec {
        id: "posts",
        report: "posts",
        all_models: false,
        extra: &["source-of-sale"],
        on_page: true,
        build: posts,
    },
    FigureSpec {
        id: "path-length",
        report: "path-length",
        all_models: false,
        extra: &[],
        on_page: true,
        build: path_length,
    },
    FigureSpec {
        id: "lifecycle",
        report: "lifecycle",
        all_models: false,
        extra: &[],
        on_page: true,
        build: lifecycle,
    },
    FigureSpec {
        id: "channel-share-weekly",
        report: "channel-share-weekly",
        all_models: false,
        extra: &[],
        on_page: true,
        build: channel_share_weekly,
    },
    FigureSpec {
        id: "channel-share",
        report: "channel-share",
        all_models: false,
        extra: &[],
        on_page: false,
        build: channel_share,
    },
    FigureSpec {
        id: "funnel",
        report: "funnel",
        all_models: false,
        extra: &[],
        on_page: false,
        build: funnel,
    },
];

pub fn by_id(id: &str) -> Option<&'static FigureSpec> {
    FIGURES.iter().find(|f| f.id == id)
}

/// The figures built on `report`, the main one first.
pub fn for_report(report: &str) -> Vec<&'static FigureSpec> {
    FIGURES.iter().filter(|f| f.report == report).collect()
}

pub fn on_page() -> Vec<&'static FigureSpec> {
    FIGURES.iter().filter(|f| f.on_page).collect()
}

/// Report answers by (report, model).
#[derive(Clone, Debug, Default)]
pub struct Tables {
    answers: HashMap<(&'static str, AttributionModel), ReportTable>,
}

impl Tables {
    pub fn insert(&mut self, report: &'static str, model: AttributionModel, table: ReportTable) {
        self.answers.insert((report, model), table);
    }

    fn get(&self, report: &str, model: AttributionModel) -> Result<&ReportTable, String> {
        self.answers
            .iter()
            .find(|((r, m), _)| *r == report && *m == model)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("report {report} under {model} was not loaded"))
    }

    /// Every answer, by (report, model).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, AttributionModel, &ReportTable)> {
        self.answers.iter().map(|((r, m), t)| (*r, *m, t))
    }

    /// No report has a row: nothing happened in the period (or nothing at all).
    pub fn is_empty(&self) -> bool {
        self.answers.values().all(|t| t.rows.is_empty())
    }
}

/// The report runs `figures` need under `model`, without repeats.
pub fn queries(
    figures: &[&FigureSpec],
    model: AttributionModel,
) -> Vec<(&'static str, AttributionModel)> {
    let mut out = Vec::new();
    for figure in figures {
        let models: &[AttributionModel] = if figure.all_models {
            &AttributionModel::ALL
        } else {
            std::slice::from_ref(&model)
        };
        let runs = models
            .iter()
            .map(|m| (figure.report, *m))
            .chain(figure.extra.iter().map(|r| (*r, model)));
        for run in runs {
            if !out.contains(&run) {
                out.push(run);
            }
        }
    }
    out
}

/// Runs the reports `figures` need under `params.model`, all at once.
pub async fn load(
    client: &clickhouse::Client,
    figures: &[&FigureSpec],
    params: &ReportParams,
) -> Result<Tables, WarehouseError> {
    run_all(client, &queries(figures, params.model), params).await
}

/// Whether a report's answer depends on the model (path-length and lifecycle do not).
pub fn uses_model(report: &str) -> bool {
    reports::by_name(report).is_none_or(|r| r.sql.contains("{model:"))
}

/// Runs `runs` (report, model) over `params`' period, all at once, and waits for every answer
/// (the first error stops the rest).
pub async fn run_all(
    client: &clickhouse::Client,
    runs: &[(&'static str, AttributionModel)],
    params: &ReportParams,
) -> Result<Tables, WarehouseError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, model) in runs {
        let report =
            reports::by_name(name).ok_or_else(|| WarehouseError::UnknownReport((*name).into()))?;
        let client = client.clone();
        let params = ReportParams {
            model: *model,
            ..params.clone()
        };
        tasks.spawn(async move {
            let answer = reports::run(&client, report, &params).await;
            (report.name, params.model, answer)
        });
    }
    let mut tables = Tables::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, model, answer)) => tables.insert(name, model, answer?),
            Err(e) => {
                return Err(WarehouseError::UnreadableReport {
                    report: "(page)".into(),
                    reason: format!("a report task failed: {e}"),
                });
            }
        }
    }
    Ok(tables)
}

/// Builds `spec` from loaded tables; an error says which report or column is missing.
pub fn build(spec: &FigureSpec, tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    (spec.build)(tables, params)
}

// ------------------------------------------------------------------------------ the figures

/// Rows shown in a bar chart of networks or posts (the CSV has every row).
const TOP_ROWS: usize = 12;
const TOP_POSTS: usize = 10;
/// Networks in the models-side-by-side chart.
const TOP_NETWORKS: usize = 6;
const TOUCH_BUCKETS: [&str; 7] = ["0", "1", "2", "3", "4-6", "7-13", "14+"];
const DAY_BUCKETS: [&str; 6] = ["0-1", "1-3", "3-7", "7-14", "14-30", "30+"];

fn source_of_sale(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("source-of-sale", params.model)?;
    let c = Columns::of("source-of-sale", table)?;
    let (channel, source, network) = (c.at("channel")?, c.at("source")?, c.at("social_network")?);
    let (sales, micro, revenue) = (
        c.at("sales")?,
        c.at("micro_conversions")?,
        c.at("revenue_minor")?,
    );
    let rows: Vec<&Vec<String>> = table.rows.iter().take(TOP_ROWS).collect();
    let categories: Vec<Category> = rows
        .iter()
        .map(|r| Category {
            key: format!("{}|{}|{}", r[channel], r[source], r[network]),
            label: channel_label(&r[channel], &r[source], &r[network]),
            colour: Some(palette::network(network_or_channel(
                &r[network],
                &r[channel],
            ))),
        })
        .collect();
    let currencies = currencies(tables, params);
    Ok(Figure {
        id: "source-of-sale",
        title: "Source of sale".into(),
        description: "Conversions and revenue credited to each channel and social network under \
                      the chosen model: purchases (dark) and micro-conversions, signups and \
                      downloads (light)."
            .into(),
        subtitle: subtitle(params, true),
        panels: vec![
            Panel {
                title: "Conversions credited".into(),
                kind: Kind::HorizontalBars,
                stacked: true,
                unit: Unit::Count,
                value_axis: "conversions".into(),
                category_axis: "channel / network".into(),
                categories: categories.clone(),
                series: vec![
                    series("sales", Some(palette::SALES), &rows, sales, 1.0),
                    series("micro-conversions", Some(palette::MICRO), &rows, micro, 1.0),
                ],
                band: None,
            },
            revenue_panel("channel / network", categories, &rows, revenue, &currencies),
        ],
        notes: left_out(table.rows.len(), rows.len(), "rows, by revenue"),
        table: table.clone(),
    })
}

fn models(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    // Revenue (minor units) per network or channel, per model: sums of report rows.
    let mut revenue: BTreeMap<String, [f64; 6]> = BTreeMap::new();
    let mut social = [0.0; 6];
    let mut total = [0.0; 6];
    for (m, model) in AttributionModel::ALL.iter().enumerate() {
        let table = tables.get("source-of-sale", *model)?;
        let c = Columns::of("source-of-sale", table)?;
        let (channel, network, minor) = (
            c.at("channel")?,
            c.at("social_network")?,
            c.at("revenue_minor")?,
        );
        for row in &table.rows {
            let value = number(&row[minor]).unwrap_or(0.0);
            let key = network_or_channel(&row[network], &row[channel]).to_string();
            revenue.entry(key).or_insert([0.0; 6])[m] += value;
            total[m] += value;
            if !row[network].is_empty() {
                social[m] += value;
            }
        }
    }
    let mut ranked: Vec<(&String, &[f64; 6])> = revenue.iter().collect();
    ranked.sort_by(|a, b| {
        let (sa, sb) = (a.1.iter().sum::<f64>(), b.1.iter().sum::<f64>());
        sb.total_cmp(&sa).then_with(|| a.0.cmp(b.0))
    });
    let top = &ranked[..ranked.len().min(TOP_NETWORKS)];
    let categories = AttributionModel::ALL
        .iter()
        .map(|m| Category {
            key: m.as_str().into(),
            label: model_label(*m).into(),
            colour: None,
        })
        .collect();
    let series = top
        .iter()
        .map(|(name, values)| Series {
            name: (*name).clone(),
            colour: Some(palette::network(name)),
            values: values.iter().map(|v| Some(v / 100.0)).collect(),
        })
        .collect();
    let mut columns = vec!["network".to_string()];
    columns.extend(AttributionModel::ALL.iter().map(|m| m.as_str().to_string()));
    let rows = ranked
        .iter()
        .map(|(name, values)| {
            std::iter::once((*name).clone())
                .chain(values.iter().map(|v| format!("{v}")))
                .collect()
        })
        .collect();
    let share = |m: usize| (total[m] > 0.0).then(|| 100.0 * social[m] / total[m]);
    let mut notes = Vec::new();
    let (first, last) = (0, 1);
    if let (Some(f), Some(l)) = (share(first), share(last)) {
        notes.push(format!(
            "Social networks get {} of the revenue under first touch and {} under last touch.",
            crate::chart::format_value(f, Unit::Percent),
            crate::chart::format_value(l, Unit::Percent)
        ));
    }
    if ranked.len() > top.len() {
        notes.push(format!(
            "The {} networks and channels with the most revenue across the models; the CSV has all {}.",
            top.len(),
            ranked.len()
        ));
    }
    let currencies = currencies(tables, params);
    Ok(Figure {
        id: "models",
        title: "Six models side by side".into(),
        description: "The same purchases credited under each attribution model to the top \
                      networks and channels. Last touch gives the sale to whatever came last \
                      (often search, e-mail or direct); first touch and the multi-touch models \
                      show what the social networks started."
            .into(),
        subtitle: subtitle(params, false),
        panels: vec![Panel {
            title: "Revenue credited, per model".into(),
            kind: Kind::VerticalBars,
            stacked: false,
            unit: Unit::Money,
            value_axis: revenue_axis(&currencies),
            category_axis: "attribution model".into(),
            categories,
            series,
            band: None,
        }],
        table: ReportTable { columns, rows },
        notes,
    })
}

fn micro_macro(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("social-micro-macro", params.model)?;
    let c = Columns::of("social-micro-macro", table)?;
    let (network, micro, macro_, ratio) = (
        c.at("social_network")?,
        c.at("micro_conversions")?,
        c.at("macro_conversions")?,
        c.at("micro_per_macro")?,
    );
    let rows: Vec<&Vec<String>> = table.rows.iter().take(TOP_ROWS).collect();
    let mut notes = left_out(table.rows.len(), rows.len(), "networks");
    let ratios: Vec<String> = rows
        .iter()
        .filter(|r| !r[ratio].is_empty())
        .take(4)
        .map(|r| format!("{} {}", r[network], r[ratio]))
        .collect();
    if !ratios.is_empty() {
        notes.insert(
            0,
            format!("Micro-conversions per purchase: {}.", ratios.join(", ")),
        );
    }
    Ok(Figure {
        id: "social-micro-macro",
        title: "Followers are not customers".into(),
        description: "Micro-conversions (signups, downloads) against macro-conversions \
                      (purchases) credited to each social network: a network with long light \
                      bars and short dark ones fills the top of the funnel but does not close."
            .into(),
        subtitle: subtitle(params, true),
        panels: vec![Panel {
            title: "Conversions credited per social network".into(),
            kind: Kind::HorizontalBars,
            stacked: false,
            unit: Unit::Count,
            value_axis: "conversions".into(),
            category_axis: "social network".into(),
            categories: network_categories(&rows, network),
            series: vec![
                series("micro-conversions", Some(palette::MICRO), &rows, micro, 1.0),
                series("purchases", Some(palette::SALES), &rows, macro_, 1.0),
            ],
            band: None,
        }],
        table: table.clone(),
        notes,
    })
}

fn posts(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("posts", params.model)?;
    let c = Columns::of("posts", table)?;
    let (content, source, network, campaign) = (
        c.at("content")?,
        c.at("source")?,
        c.at("social_network")?,
        c.at("campaign")?,
    );
    let (conversions, revenue) = (c.at("conversions")?, c.at("revenue_minor")?);
    // The report ranks by revenue; the top posts by conversions and by revenue are its first
    // rows.
    let rows: Vec<&Vec<String>> = table.rows.iter().take(TOP_POSTS).collect();
    let repeated = |text: &str| rows.iter().filter(|r| r[content] == text).count() > 1;
    let categories: Vec<Category> = rows
        .iter()
        .map(|r| Category {
            key: format!(
                "{}|{}|{}|{}",
                r[content], r[source], r[network], r[campaign]
            ),
            label: if repeated(&r[content]) {
                format!("{} · {}", r[content], r[source])
            } else {
                r[content].clone()
            },
            colour: Some(palette::network(network_or_channel(
                &r[network],
                &r[source],
            ))),
        })
        .collect();
    let currencies = currencies(tables, params);
    Ok(Figure {
        id: "posts",
        title: "Top posts".into(),
        description: "The posts (utm_content of the touch) with the most revenue credited to \
                      them, and the conversions they are credited with; the colour is the \
                      network the post was on."
            .into(),
        subtitle: subtitle(params, true),
        panels: vec![
            Panel {
                title: "Conversions credited".into(),
                kind: Kind::HorizontalBars,
                stacked: false,
                unit: Unit::Count,
                value_axis: "conversions".into(),
                category_axis: "post".into(),
                categories: categories.clone(),
                series: vec![series("conversions", None, &rows, conversions, 1.0)],
                band: None,
            },
            revenue_panel("post", categories, &rows, revenue, &currencies),
        ],
        notes: left_out(table.rows.len(), rows.len(), "posts, by revenue"),
        table: table.clone(),
    })
}

fn path_length(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("path-length", params.model)?;
    let c = Columns::of("path-length", table)?;
    let (measure, bucket, purchases, micro) = (
        c.at("measure")?,
        c.at("bucket")?,
        c.at("purchases")?,
        c.at("micro_conversions")?,
    );
    let histogram = |name: &str, buckets: &[&str]| {
        let mut order: Vec<String> = buckets.iter().map(|b| b.to_string()).collect();
        for row in table.rows.iter().filter(|r| r[measure] == name) {
            if !order.contains(&row[bucket]) {
                order.push(row[bucket].clone());
            }
        }
        let value = |b: &str, column: usize| {
            Some(
                table
                    .rows
                    .iter()
                    .find(|r| r[measure] == name && r[bucket] == b)
                    .and_then(|r| number(&r[column]))
                    .unwrap_or(0.0),
            )
        };
        let series = vec![
            Series {
                name: "purchases".into(),
                colour: Some(palette::SALES),
                values: order.iter().map(|b| value(b, purchases)).collect(),
            },
            Series {
                name: "micro-conversions".into(),
                colour: Some(palette::MICRO),
                values: order.iter().map(|b| value(b, micro)).collect(),
            },
        ];
        let categories = order
            .iter()
            .map(|b| Category {
                key: b.clone(),
                label: b.clone(),
                colour: None,
            })
            .collect();
        (order, categories, series)
    };
    let (touch_order, touch_categories, touch_series) = histogram("touches", &TOUCH_BUCKETS);
    let (_, day_categories, day_series) = histogram("days", &DAY_BUCKETS);
    let band = touch_order.iter().position(|b| b == "7-13").map(|i| Band {
        first: i,
        last: i,
        label: "7–13 touches".into(),
    });
    let purchases_by_bucket: Vec<f64> = touch_series[0].values.iter().flatten().copied().collect();
    let all: f64 = purchases_by_bucket.iter().sum();
    let long: f64 = touch_order
        .iter()
        .zip(&purchases_by_bucket)
        .filter(|(b, _)| matches!(b.as_str(), "7-13" | "14+"))
        .map(|(_, v)| v)
        .sum();
    let mut notes = Vec::new();
    if all > 0.0 {
        notes.push(format!(
            "{} of the purchases took 7 touches or more.",
            crate::chart::format_value(100.0 * long / all, Unit::Percent)
        ));
    }
    Ok(Figure {
        id: "path-length",
        title: "Path length".into(),
        description: "How many touches, and how many days from the first credited touch, the \
                      conversions of the period took (day buckets are half-open: 1-3 is 1 day \
                      up to 3). A sale typically takes 7 to 13 touches: the marked band."
            .into(),
        subtitle: subtitle(params, false),
        panels: vec![
            Panel {
                title: "Touches to conversion".into(),
                kind: Kind::VerticalBars,
                stacked: true,
                unit: Unit::Count,
                value_axis: "conversions".into(),
                category_axis: "touches before converting".into(),
                categories: touch_categories,
                series: touch_series,
                band,
            },
            Panel {
                title: "Days to conversion".into(),
                kind: Kind::VerticalBars,
                stacked: true,
                unit: Unit::Count,
                value_axis: "conversions".into(),
                category_axis: "days from the first touch".into(),
                categories: day_categories,
                series: day_series,
                band: None,
            },
        ],
        table: table.clone(),
        notes,
    })
}

fn lifecycle(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("lifecycle", params.model)?;
    let c = Columns::of("lifecycle", table)?;
    let network = c.at("first_touch_network")?;
    let stages = [
        ("visitors", c.at("visitors")?),
        ("customers", c.at("customers")?),
        ("clients", c.at("clients")?),
        ("repeat clients", c.at("repeat_clients")?),
    ];
    let rows: Vec<&Vec<String>> = table.rows.iter().take(TOP_ROWS).collect();
    Ok(Figure {
        id: "lifecycle",
        title: "Lifecycle by first touch".into(),
        description: "The visitors whose first touch was in the period, by the network (or \
                      channel) of that touch, and how many of them became customers (any \
                      conversion), clients (a purchase) and repeat clients (two or more), to \
                      date."
            .into(),
        subtitle: subtitle(params, false),
        panels: vec![Panel {
            title: "Visitors → customers → clients → repeat clients".into(),
            kind: Kind::HorizontalBars,
            stacked: false,
            unit: Unit::Count,
            value_axis: "identities".into(),
            category_axis: "first-touch network".into(),
            categories: network_categories(&rows, network),
            series: stages
                .iter()
                .zip(palette::STAGES)
                .map(|((name, column), colour)| series(name, Some(colour), &rows, *column, 1.0))
                .collect(),
            band: None,
        }],
        notes: left_out(table.rows.len(), rows.len(), "networks, by visitors"),
        table: table.clone(),
    })
}

fn channel_share_weekly(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("channel-share-weekly", params.model)?;
    let c = Columns::of("channel-share-weekly", table)?;
    let (week, group, pct) = (
        c.at("week")?,
        c.at("channel_group")?,
        c.at("conversions_pct")?,
    );
    let mut weeks = mondays(params.from, params.to);
    for row in &table.rows {
        if !weeks.contains(&row[week]) {
            weeks.push(row[week].clone());
        }
    }
    weeks.sort();
    let groups = ["social", "search", "other"];
    let series = groups
        .iter()
        .map(|g| Series {
            name: (*g).into(),
            colour: Some(palette::group(g)),
            values: weeks
                .iter()
                .map(|w| {
                    let in_week: Vec<&Vec<String>> =
                        table.rows.iter().filter(|r| &r[week] == w).collect();
                    if in_week.is_empty() {
                        return None;
                    }
                    Some(
                        in_week
                            .iter()
                            .find(|r| r[group] == *g)
                            .and_then(|r| number(&r[pct]))
                            .unwrap_or(0.0),
                    )
                })
                .collect(),
        })
        .collect();
    let categories = weeks
        .iter()
        .map(|w| Category {
            key: w.clone(),
            label: short_date(w),
            colour: None,
        })
        .collect();
    Ok(Figure {
        id: "channel-share-weekly",
        title: "Social, search and the rest, week by week".into(),
        description: "Each week's share of the conversions credited to social networks, to \
                      search and to everything else (e-mail, direct, referrals, AI assistants) \
                      under the chosen model. Weeks start on Monday (UTC); the first and last \
                      may be partial, a week without conversions has no point."
            .into(),
        subtitle: subtitle(params, true),
        panels: vec![Panel {
            title: "Share of conversions".into(),
            kind: Kind::Line,
            stacked: false,
            unit: Unit::Percent,
            value_axis: "% of the week's conversions".into(),
            category_axis: "week starting".into(),
            categories,
            series,
            band: None,
        }],
        table: table.clone(),
        notes: Vec::new(),
    })
}

fn channel_share(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("channel-share", params.model)?;
    let c = Columns::of("channel-share", table)?;
    let (group, conversions, sales) = (
        c.at("channel_group")?,
        c.at("conversions_pct")?,
        c.at("sales_pct")?,
    );
    let rows: Vec<&Vec<String>> = table.rows.iter().collect();
    let categories: Vec<Category> = rows
        .iter()
        .map(|r| Category {
            key: r[group].clone(),
            label: r[group].clone(),
            colour: Some(palette::group(&r[group])),
        })
        .collect();
    Ok(Figure {
        id: "channel-share",
        title: "Social, search and the rest".into(),
        description: "The share of the period's conversions and sales credited to social \
                      networks, search and everything else."
            .into(),
        subtitle: subtitle(params, true),
        panels: vec![
            Panel {
                title: "Share of conversions".into(),
                kind: Kind::HorizontalBars,
                stacked: false,
                unit: Unit::Percent,
                value_axis: "% of conversions".into(),
                category_axis: "channel group".into(),
                categories: categories.clone(),
                series: vec![series("conversions", None, &rows, conversions, 1.0)],
                band: None,
            },
            Panel {
                title: "Share of sales".into(),
                kind: Kind::HorizontalBars,
                stacked: false,
                unit: Unit::Percent,
                value_axis: "% of sales".into(),
                category_axis: "channel group".into(),
                categories,
                series: vec![series("sales", None, &rows, sales, 1.0)],
                band: None,
            },
        ],
        table: table.clone(),
        notes: Vec::new(),
    })
}

fn funnel(tables: &Tables, params: &ReportParams) -> Result<Figure, String> {
    let table = tables.get("funnel", params.model)?;
    let c = Columns::of("funnel", table)?;
    let source = c.at("source")?;
    let stages = [
        ("clicked", c.at("clicked")?),
        ("signed up", c.at("signed_up")?),
        ("downloaded", c.at("downloaded")?),
        ("purchased", c.at("purchased")?),
    ];
    let rows: Vec<&Vec<String>> = table.rows.iter().take(TOP_ROWS).collect();
    Ok(Figure {
        id: "funnel",
        title: "Funnel per source".into(),
        description: "Identities that arrived through each source in the period, and how many \
                      of them signed up, downloaded and purchased (each stage counted on its own)."
            .into(),
        subtitle: subtitle(params, false),
        panels: vec![Panel {
            title: "Identities per stage".into(),
            kind: Kind::HorizontalBars,
            stacked: false,
            unit: Unit::Count,
            value_axis: "identities".into(),
            category_axis: "source".into(),
            categories: rows
                .iter()
                .map(|r| Category {
                    key: r[source].clone(),
                    label: r[source].clone(),
                    colour: None,
                })
                .collect(),
            series: stages
                .iter()
                .zip(palette::STAGES)
                .map(|((name, column), colour)| series(name, Some(colour), &rows, *column, 1.0))
                .collect(),
            band: None,
        }],
        notes: left_out(table.rows.len(), rows.len(), "sources, by clicks"),
        table: table.clone(),
    })
}

// --------------------------------------------------------------------------------- helpers

/// Column positions of a report answer, by name.
struct Columns<'a> {
    report: &'static str,
    table: &'a ReportTable,
}

impl<'a> Columns<'a> {
    fn of(report: &'static str, table: &'a ReportTable) -> Result<Self, String> {
        if let Some(row) = table.rows.iter().find(|r| r.len() != table.columns.len()) {
            return Err(format!(
                "report {report}: a row of {} values for {} columns",
                row.len(),
                table.columns.len()
            ));
        }
        Ok(Self { report, table })
    }

    fn at(&self, name: &str) -> Result<usize, String> {
        self.table
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| {
                format!(
                    "report {} has no column {name} (it has {})",
                    self.report,
                    self.table.columns.join(", ")
                )
            })
    }
}

/// A report value as a number; NULL (empty) or not a number is `None`.
fn number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// One series from one column of `rows`, times `factor` (0.01: minor to major units).
fn series(
    name: &str,
    colour: Option<&'static str>,
    rows: &[&Vec<String>],
    column: usize,
    factor: f64,
) -> Series {
    Series {
        name: name.into(),
        colour,
        values: rows
            .iter()
            .map(|r| number(&r[column]).map(|v| v * factor))
            .collect(),
    }
}

fn network_categories(rows: &[&Vec<String>], column: usize) -> Vec<Category> {
    rows.iter()
        .map(|r| Category {
            key: r[column].clone(),
            label: r[column].clone(),
            colour: Some(palette::network(&r[column])),
        })
        .collect()
}

/// The social network when there is one, else the channel: what a colour belongs to.
fn network_or_channel<'a>(network: &'a str, channel: &'a str) -> &'a str {
    if network.is_empty() { channel } else { network }
}

/// `facebook · Paid Social`, `google · Organic Search`, `Direct`.
fn channel_label(channel: &str, source: &str, network: &str) -> String {
    if !network.is_empty() {
        format!("{network} · {channel}")
    } else if source.is_empty() || source == "(direct)" {
        channel.to_string()
    } else {
        format!("{source} · {channel}")
    }
}

fn left_out(all: usize, shown: usize, what: &str) -> Vec<String> {
    if all > shown {
        vec![format!(
            "The top {shown} of {all} {what}; the CSV has them all."
        )]
    } else {
        Vec::new()
    }
}

/// The currencies of the period's revenue, when the source-of-sale answer is at hand.
fn currencies(tables: &Tables, params: &ReportParams) -> Vec<String> {
    let Ok(table) = tables.get("source-of-sale", params.model) else {
        return Vec::new();
    };
    let Some(column) = table.columns.iter().position(|c| c == "currencies") else {
        return Vec::new();
    };
    let mut out: Vec<String> = table
        .rows
        .iter()
        .flat_map(|r| r[column].split(','))
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The horizontal bars of the revenue credited to each category (minor units shown in major).
fn revenue_panel(
    category_axis: &str,
    categories: Vec<Category>,
    rows: &[&Vec<String>],
    revenue: usize,
    currencies: &[String],
) -> Panel {
    Panel {
        title: "Revenue credited".into(),
        kind: Kind::HorizontalBars,
        stacked: false,
        unit: Unit::Money,
        value_axis: revenue_axis(currencies),
        category_axis: category_axis.into(),
        categories,
        series: vec![series("revenue", None, rows, revenue, 0.01)],
        band: None,
    }
}

fn revenue_axis(currencies: &[String]) -> String {
    match currencies {
        [] => "revenue credited (major currency units)".into(),
        [one] => format!("revenue credited, {one}"),
        many => format!("revenue credited, {} (not converted)", many.join(" + ")),
    }
}

pub fn model_label(model: AttributionModel) -> &'static str {
    match model {
        AttributionModel::FirstTouch => "First touch",
        AttributionModel::LastTouch => "Last touch",
        AttributionModel::LastNonDirect => "Last non-direct",
        AttributionModel::Linear => "Linear",
        AttributionModel::PositionBased => "Position-based",
        AttributionModel::TimeDecay => "Time decay",
    }
}

/// `Linear · 2026-01-01 to 2026-01-31`; `with_model: false` for figures the model does not
/// change.
pub fn subtitle(params: &ReportParams, with_model: bool) -> String {
    let period = period(params);
    if with_model {
        format!("{} model · {period}", model_label(params.model))
    } else {
        period
    }
}

/// The period as people say it: whole days as dates (the end date included), else times.
pub fn period(params: &ReportParams) -> String {
    let whole_days = params.from.time() == Time::MIDNIGHT && params.to.time() == Time::MIDNIGHT;
    if whole_days {
        let last = (params.to - Duration::days(1)).date();
        format!("{} to {last}", params.from.date())
    } else {
        let show = |t: OffsetDateTime| {
            let t = t.to_offset(time::UtcOffset::UTC);
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_else(|_| t.to_string())
        };
        format!("{} to {} (exclusive)", show(params.from), show(params.to))
    }
}

/// The Mondays (UTC) of the weeks that overlap [from, to), as `YYYY-MM-DD`.
fn mondays(from: OffsetDateTime, to: OffsetDateTime) -> Vec<String> {
    let from = from.to_offset(time::UtcOffset::UTC).date();
    let mut monday = from - Duration::days(i64::from(from.weekday().number_days_from_monday()));
    let mut out = Vec::new();
    // At most ten years of weeks: a wider range gets its weeks from the answer alone.
    while monday.midnight().assume_utc() < to && out.len() < 520 {
        out.push(monday.to_string());
        monday += Duration::days(7);
    }
    out
}

/// `2026-01-05` → `Jan 5`; anything else unchanged.
fn short_date(date: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = date.split('-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(m), Some(d)) => match (m.parse::<usize>(), d.parse::<u32>()) {
            (Ok(m @ 1..=12), Ok(d)) => format!("{} {d}", MONTHS[m - 1]),
            _ => date.to_string(),
        },
        _ => date.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use time::macros::datetime;

    use super::*;

    fn params(model: AttributionModel) -> ReportParams {
        ReportParams {
            site: "default".into(),
            from: datetime!(2026-01-01 00:00 UTC),
            to: datetime!(2026-02-01 00:00 UTC),
            model,
        }
    }

    fn table(columns: &[&str], rows: &[&[&str]]) -> ReportTable {
        ReportTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.to_string()).collect())
                .collect(),
        }
    }

    const SOS: [&str; 7] = [
        "channel",
        "source",
        "social_network",
        "sales",
        "micro_conversions",
        "revenue_minor",
        "currencies",
    ];

    fn source_of_sale_tables() -> Tables {
        let mut tables = Tables::default();
        for (i, model) in AttributionModel::ALL.iter().enumerate() {
            // Social grows from last touch (i = 1) to first touch (i = 0).
            let fb = if i == 0 { "30000" } else { "10000" };
            tables.insert(
                "source-of-sale",
                *model,
                table(
                    &SOS,
                    &[
                        &[
                            "Organic Social",
                            "facebook",
                            "facebook",
                            "2",
                            "9",
                            fb,
                            "EUR",
                        ],
                        &[
                            "Paid Social",
                            "facebook",
                            "facebook",
                            "1",
                            "0",
                            "5000",
                            "EUR",
                        ],
                        &["Organic Search", "google", "", "1", "1", "10000", "EUR"],
                        &["Direct", "(direct)", "", "0.5", "0", "0", ""],
                    ],
                ),
            );
        }
        tables
    }

    #[test]
    fn the_source_of_sale_plots_every_report_row_as_given() {
        let tables = source_of_sale_tables();
        let figure = build(
            by_id("source-of-sale").unwrap(),
            &tables,
            &params(AttributionModel::LastNonDirect),
        )
        .unwrap();
        let [conversions, revenue] = &figure.panels[..] else {
            panic!("two panels");
        };
        let labels: Vec<&str> = conversions
            .categories
            .iter()
            .map(|c| c.label.as_str())
            .collect();
        assert_eq!(
            labels,
            [
                "facebook · Organic Social",
                "facebook · Paid Social",
                "google · Organic Search",
                "Direct"
            ]
        );
        assert_eq!(
            conversions.categories[0].colour, conversions.categories[1].colour,
            "one network, one colour"
        );
        assert_eq!(conversions.series[0].values[3], Some(0.5));
        assert_eq!(conversions.series[1].values[0], Some(9.0));
        assert_eq!(revenue.series[0].values[2], Some(100.0));
        assert_eq!(revenue.value_axis, "revenue credited, EUR");
        assert_eq!(
            figure.table,
            *tables
                .get("source-of-sale", AttributionModel::LastNonDirect)
                .unwrap()
        );
    }

    #[test]
    fn the_models_chart_sums_the_report_rows_per_network() {
        let figure = build(
            by_id("models").unwrap(),
            &source_of_sale_tables(),
            &params(AttributionModel::Linear),
        )
        .unwrap();
        let panel = &figure.panels[0];
        assert_eq!(panel.categories.len(), 6);
        let names: Vec<&str> = panel.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["facebook", "Organic Search", "Direct"]);
        // facebook: organic + paid, in major units.
        assert_eq!(panel.series[0].values[0], Some(350.0));
        assert_eq!(panel.series[0].values[1], Some(150.0));
        assert_eq!(figure.table.rows[0][1], "35000");
        // 35000 of 45000 under first touch, 15000 of 25000 under last touch.
        assert!(
            figure.notes[0].contains("77.8%") && figure.notes[0].contains("60%"),
            "{:?}",
            figure.notes
        );
    }

    #[test]
    fn histograms_have_every_bucket_and_mark_seven_to_thirteen_touches() {
        let mut tables = Tables::default();
        tables.insert(
            "path-length",
            AttributionModel::Linear,
            table(
                &[
                    "measure",
                    "bucket",
                    "conversions",
                    "purchases",
                    "micro_conversions",
                ],
                &[
                    &["touches", "2", "3", "1", "2"],
                    &["touches", "7-13", "5", "3", "2"],
                    &["days", "1-3", "8", "4", "4"],
                ],
            ),
        );
        let figure = build(
            by_id("path-length").unwrap(),
            &tables,
            &params(AttributionModel::Linear),
        )
        .unwrap();
        let touches = &figure.panels[0];
        assert_eq!(touches.categories.len(), 7);
        assert_eq!(figure.panels[1].categories.len(), 6);
        let band = touches.band.as_ref().unwrap();
        assert_eq!(touches.categories[band.first].key, "7-13");
        assert_eq!(touches.series[0].values[5], Some(3.0));
        assert_eq!(touches.series[1].values[0], Some(0.0));
        assert_eq!(
            figure.notes,
            ["75% of the purchases took 7 touches or more."]
        );
    }

    #[test]
    fn weeks_without_conversions_are_gaps_and_missing_groups_zero() {
        let mut tables = Tables::default();
        tables.insert(
            "channel-share-weekly",
            AttributionModel::Linear,
            table(
                &[
                    "week",
                    "channel_group",
                    "conversions",
                    "conversions_pct",
                    "sales",
                    "revenue_minor",
                ],
                &[
                    &["2026-01-05", "social", "3", "75", "1", "100"],
                    &["2026-01-05", "other", "1", "25", "0", "0"],
                    &["2026-01-19", "search", "2", "100", "0", "0"],
                ],
            ),
        );
        let figure = build(
            by_id("channel-share-weekly").unwrap(),
            &tables,
            &params(AttributionModel::Linear),
        )
        .unwrap();
        let panel = &figure.panels[0];
        // 2025-12-29 (the week of Jan 1) to 2026-01-26.
        let weeks: Vec<&str> = panel.categories.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            weeks,
            [
                "2025-12-29",
                "2026-01-05",
                "2026-01-12",
                "2026-01-19",
                "2026-01-26"
            ]
        );
        assert_eq!(panel.categories[1].label, "Jan 5");
        let social = &panel.series[0];
        assert_eq!(social.values, [None, Some(75.0), None, Some(0.0), None]);
        assert_eq!(panel.series[1].values[3], Some(100.0));
    }

    #[test]
    fn a_report_without_a_column_is_a_clear_error() {
        let mut tables = Tables::default();
        tables.insert(
            "lifecycle",
            AttributionModel::Linear,
            table(&["first_touch_network", "visitors"], &[&["x", "1"]]),
        );
        let e = build(
            by_id("lifecycle").unwrap(),
            &tables,
            &params(AttributionModel::Linear),
        )
        .unwrap_err();
        assert!(e.contains("no column customers"), "{e}");
        let e = build(
            by_id("posts").unwrap(),
            &tables,
            &params(AttributionModel::Linear),
        )
        .unwrap_err();
        assert!(e.contains("not loaded"), "{e}");
    }

    #[test]
    fn every_report_has_a_figure_and_the_page_needs_eleven_runs() {
        assert!(uses_model("posts") && !uses_model("path-length") && !uses_model("lifecycle"));
        for report in reports::all() {
            assert!(!for_report(report.name).is_empty(), "{}", report.name);
        }
        let runs = queries(&on_page(), AttributionModel::Linear);
        assert_eq!(runs.len(), 11, "{runs:?}");
        assert_eq!(
            period(&params(AttributionModel::Linear)),
            "2026-01-01 to 2026-01-31"
        );
        let times = ReportParams {
            from: datetime!(2026-01-01 10:20:45.123 +02:00),
            ..params(AttributionModel::Linear)
        };
        assert_eq!(
            period(&times),
            "2026-01-01 08:20 UTC to 2026-02-01 00:00 UTC (exclusive)"
        );
    }
}
