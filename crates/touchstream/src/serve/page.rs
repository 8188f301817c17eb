//! The HTML of the page: server-rendered, charts inlined as SVG, so it reads without
//! JavaScript; `assets/app.js` only submits the model picker on change and redraws the charts
//! for the width of the screen.

use std::collections::HashMap;
use std::fmt::Write;

use axum::http::header;
use time::{Date, Duration, Time};
use touchstream_model::AttributionModel;
use touchstream_warehouse::reports::ReportParams;
use touchstream_warehouse::{WarehouseConfig, WarehouseError};

use crate::chart::{self, Figure, escape};
use crate::figures::{self, model_label};

/// The width charts are first drawn at: the page's column at 1280 px. The script redraws them
/// when the screen is narrower or wider.
pub const FIRST_WIDTH: u32 = 1040;

pub struct View<'a> {
    pub site: &'a str,
    pub sites: &'a [String],
    /// `None` when the query string could not be read (the form shows what was sent).
    pub params: Option<&'a ReportParams>,
    pub raw_query: &'a HashMap<String, String>,
    pub today: Date,
    pub clickhouse: &'a WarehouseConfig,
    pub banner: Option<Banner>,
    pub empty: Option<Empty>,
    pub figures: Vec<Result<Figure, (&'static str, String)>>,
}

/// Something went wrong: said at the top of the page, in words.
pub struct Banner {
    pub title: String,
    pub detail: String,
}

impl Banner {
    pub fn bad_request(reason: &str) -> Self {
        Self {
            title: "That period or model cannot be shown".into(),
            detail: format!("{reason}. Pick a model and dates below."),
        }
    }

    pub fn warehouse(error: &WarehouseError, cfg: &WarehouseConfig) -> Self {
        let title = if error.is_retryable() {
            "ClickHouse is not answering"
        } else {
            "ClickHouse refused the report queries"
        };
        Self {
            title: title.into(),
            detail: format!(
                "The reports are read from {} (database {}, user {}). {error}. Reload the page \
                 once it answers; `touchstream report source-of-sale` tells the same from a \
                 terminal.",
                cfg.url, cfg.database, cfg.user
            ),
        }
    }
}

/// Nothing to chart.
pub enum Empty {
    /// The reports answered without a row; `extent`: first day, last day and count of the
    /// events there are, if any.
    NoRows {
        extent: Option<(String, String, u64)>,
    },
    /// The database or its tables are missing (the reason as ClickHouse gave it).
    NotMigrated(String),
}

pub fn html_headers() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
    ]
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head><body>",
        escape(title)
    );
}

/// A page with a title and a sentence (not found, password needed).
pub fn message_page(title: &str, text: &str) -> String {
    let mut out = String::new();
    head(&mut out, &format!("{title} · touchstream"));
    let _ = write!(
        out,
        "<header class=\"top\"><div class=\"wrap\"><a class=\"brand\" href=\"/\">touchstream</a></div></header>\
         <main class=\"wrap\"><h1>{}</h1><p class=\"lede\">{}</p></main></body></html>",
        escape(title),
        escape(text)
    );
    out
}

pub fn render(view: &View<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head(
        &mut out,
        &format!("Source of sale · {} · touchstream", view.site),
    );
    let _ = write!(
        out,
        "<header class=\"top\"><div class=\"wrap\"><a class=\"brand\" href=\"/\">touchstream</a>\
         <span class=\"site\">site <strong>{}</strong></span>",
        escape(view.site)
    );
    if view.sites.len() > 1 {
        out.push_str("<nav class=\"sites\">");
        for site in view.sites {
            let _ = write!(
                out,
                "<a href=\"/site/{}\">{}</a>",
                url_escape(site),
                escape(site)
            );
        }
        out.push_str("</nav>");
    }
    out.push_str("</div></header><main class=\"wrap\">");
    out.push_str("<h1>Which channel really sells</h1>");
    let period = view
        .params
        .map(figures::period)
        .unwrap_or_else(|| "—".into());
    let _ = write!(
        out,
        "<p class=\"lede\">Conversions of <span class=\"period\">{}</span> credited to the touches \
         that led to them. Followers are not customers: most conversions are signups and \
         downloads, and a sale usually takes 7 to 13 touches, so the model decides which \
         network gets the credit.</p>",
        escape(&period)
    );
    controls(&mut out, view);
    if let Some(banner) = &view.banner {
        let _ = write!(
            out,
            "<div class=\"banner error\" role=\"alert\"><strong>{}</strong><p>{}</p></div>",
            escape(&banner.title),
            escape(&banner.detail)
        );
    }
    if let Some(empty) = &view.empty {
        empty_state(&mut out, view, empty);
    }
    if !view.figures.is_empty() {
        out.push_str("<nav class=\"toc\" aria-label=\"Charts\">");
        for figure in &view.figures {
            let (id, title) = match figure {
                Ok(f) => (f.id, f.title.as_str()),
                Err((id, _)) => (*id, *id),
            };
            let _ = write!(out, "<a href=\"#{id}\">{}</a>", escape(title));
        }
        out.push_str("</nav>");
        let query = view.params.map(link_query).unwrap_or_default();
        for figure in &view.figures {
            section(&mut out, view.site, &query, figure);
        }
    }
    let _ = write!(
        out,
        "</main><footer class=\"wrap\"><p>Every number comes from the report queries that \
         <code>touchstream report &lt;name&gt;</code> runs; the CSV under each chart has them as \
         the report gives them. Read as {} from {}, database {}.</p></footer></body></html>",
        escape(&view.clickhouse.user),
        escape(&view.clickhouse.url),
        escape(&view.clickhouse.database)
    );
    out
}

fn controls(out: &mut String, view: &View<'_>) {
    let raw = |k: &str| view.raw_query.get(k).cloned().unwrap_or_default();
    let (model, from, to) = match view.params {
        Some(p) => (p.model.as_str().to_string(), from_value(p), to_value(p)),
        None => (raw("model"), raw("from"), raw("to")),
    };
    let _ = write!(
        out,
        "<form class=\"controls\" method=\"get\" action=\"/site/{}\">\
         <label>Model <select name=\"model\">",
        url_escape(view.site)
    );
    for m in AttributionModel::ALL {
        let _ = write!(
            out,
            "<option value=\"{}\"{}>{}</option>",
            m.as_str(),
            if m.as_str() == model { " selected" } else { "" },
            model_label(m)
        );
    }
    let _ = write!(
        out,
        "</select></label>\
         <label>From <input type=\"date\" name=\"from\" value=\"{}\"></label>\
         <label>To <input type=\"date\" name=\"to\" value=\"{}\"></label>\
         <button type=\"submit\">Show</button><span class=\"presets\">Last",
        escape(&from),
        escape(&to)
    );
    for days in [7, 30, 90, 365] {
        let first = view.today - Duration::days(days - 1);
        let _ = write!(
            out,
            " <a href=\"/site/{}?model={}&amp;from={first}&amp;to={}\">{days}</a>",
            url_escape(view.site),
            url_escape(&model),
            view.today
        );
    }
    out.push_str(" days</span></form>");
}

fn empty_state(out: &mut String, view: &View<'_>, empty: &Empty) {
    out.push_str("<section class=\"empty-state\" role=\"status\">");
    match empty {
        Empty::NoRows { extent } => {
            let _ = write!(
                out,
                "<h2>No conversions or touches in this period</h2><p>Site {} has nothing \
                 between {}.</p>",
                escape(view.site),
                escape(&view.params.map(figures::period).unwrap_or_default())
            );
            match extent {
                Some((first, last, events)) => {
                    let model = view.params.map_or("last_non_direct", |p| p.model.as_str());
                    let _ = write!(
                        out,
                        "<p>The database holds {} {} from {first} to {last}: \
                         <a class=\"extent\" href=\"/site/{}?model={model}&amp;from={first}&amp;to={last}\">show that period</a>.</p>",
                        chart::format_value(*events as f64, chart::Unit::Count),
                        if *events == 1 { "event" } else { "events" },
                        url_escape(view.site),
                    );
                }
                None => out.push_str(
                    "<p>The database has no events yet. Events arrive through the collector \
                     (<code>POST /v1/events</code>, or <code>t.js</code> on the site), the \
                     enricher and the sink; <code>make demo</code> fills a database with \
                     generated traffic, and <code>touchstream generate</code> sends some to a \
                     running collector.</p>",
                ),
            }
        }
        Empty::NotMigrated(reason) => {
            let _ = write!(
                out,
                "<h2>No data yet</h2><p>Database {} has no touchstream tables: the sink \
                 creates them when it starts (<code>sink migrate</code>), then loads the \
                 events. Is <code>serve</code> pointed at the right database \
                 (<code>--database</code>)?</p><p class=\"detail\">{}</p>",
                escape(&view.clickhouse.database),
                escape(reason)
            );
        }
    }
    out.push_str("</section>");
}

fn section(
    out: &mut String,
    site: &str,
    query: &str,
    figure: &Result<Figure, (&'static str, String)>,
) {
    let figure = match figure {
        Ok(f) => f,
        Err((id, reason)) => {
            let _ = write!(
                out,
                "<section class=\"figure\" id=\"{id}\" data-figure=\"{id}\"><h2>{id}</h2>\
                 <div class=\"banner error\" role=\"alert\"><strong>This chart cannot be drawn</strong><p>{}</p></div></section>",
                escape(reason)
            );
            return;
        }
    };
    let base = format!("/site/{}/chart/{}", url_escape(site), figure.id);
    let _ = write!(
        out,
        "<section class=\"figure\" id=\"{id}\" data-figure=\"{id}\" data-empty=\"{empty}\">\
         <h2>{title}</h2><p class=\"subtitle\">{subtitle}</p><p class=\"description\">{description}</p>\
         <div class=\"chart\" data-src=\"{base}.svg?{query}&amp;inline=1\">{svg}</div>",
        id = figure.id,
        empty = figure.is_empty(),
        title = escape(&figure.title),
        subtitle = escape(&figure.subtitle),
        description = escape(&figure.description),
        svg = chart::render(
            figure,
            chart::Options {
                width: FIRST_WIDTH,
                standalone: false,
            }
        ),
    );
    if !figure.notes.is_empty() {
        out.push_str("<ul class=\"notes\">");
        for note in &figure.notes {
            let _ = write!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        "<p class=\"actions\"><a class=\"csv\" href=\"{base}.csv?{query}\" download>Download CSV</a>\
         <a class=\"svg\" href=\"{base}.svg?{query}\" download>SVG</a>\
         <a class=\"json\" href=\"{base}.json?{query}\">JSON</a></p>\
         <details class=\"numbers\"><summary>The numbers ({} rows)</summary><div class=\"table-wrap\"><table><thead><tr>",
        figure.table.rows.len()
    );
    for column in &figure.table.columns {
        let _ = write!(out, "<th>{}</th>", escape(column));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &figure.table.rows {
        out.push_str("<tr>");
        for value in row {
            let class = if value.parse::<f64>().is_ok() {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(value));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></details></section>");
}

/// `model=…&from=…&to=…` for the links of a page (HTML-escaped `&`).
fn link_query(params: &ReportParams) -> String {
    format!(
        "model={}&amp;from={}&amp;to={}",
        params.model.as_str(),
        url_escape(&from_value(params)),
        url_escape(&to_value(params))
    )
}

/// The form's `from`: a date when the period starts at midnight.
fn from_value(params: &ReportParams) -> String {
    if params.from.time() == Time::MIDNIGHT {
        params.from.date().to_string()
    } else {
        super::rfc3339(params.from)
    }
}

/// The form's `to`: the last day included when the period ends at midnight.
fn to_value(params: &ReportParams) -> String {
    if params.to.time() == Time::MIDNIGHT {
        (params.to - Duration::days(1)).date().to_string()
    } else {
        super::rfc3339(params.to)
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn links_keep_the_period_as_the_form_shows_it() {
        let params = ReportParams {
            site: "default".into(),
            from: datetime!(2026-01-01 00:00 UTC),
            to: datetime!(2026-02-01 00:00 UTC),
            model: AttributionModel::Linear,
        };
        assert_eq!(
            link_query(&params),
            "model=linear&amp;from=2026-01-01&amp;to=2026-01-31"
        );
        let params = ReportParams {
            to: datetime!(2026-02-01 12:30 UTC),
            ..params
        };
        assert_eq!(to_value(&params), "2026-02-01T12:30:00Z");
        assert_eq!(url_escape("a b&c/é"), "a%20b%26c%2F%C3%A9");
    }
}
