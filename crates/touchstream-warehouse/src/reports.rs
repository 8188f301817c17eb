//! The report queries of `schemas/clickhouse/reports/`, as `touchstream report` runs them.
//!
//! A report file is plain SQL with ClickHouse's query-parameter placeholders, `{site:String}`,
//! `{from:DateTime}`, `{to:DateTime}`, `{model:String}`, so current ClickHouse runs it as is (`clickhouse-client
//! --param_from=…`). ClickHouse 18.16 has no query parameters, so [`run`] turns each
//! placeholder into `CAST(? AS Type)` and binds the value with the client's escaping `bind()`;
//! values are never pasted into the text. Every query reads the de-duplicated tables (`FINAL`,
//! distinct ids), so the answer is right before merges.

use serde_json::Value;
use time::OffsetDateTime;
use touchstream_model::AttributionModel;

use crate::WarehouseError;

/// One named report.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// What `touchstream report <name>` takes, e.g. `source-of-sale`.
    pub name: &'static str,
    /// One line for the list of reports.
    pub title: &'static str,
    /// The query, with `{name:Type}` placeholders.
    pub sql: &'static str,
}

macro_rules! report {
    ($name:literal, $title:literal) => {
        Report {
            name: $name,
            title: $title,
            sql: include_str!(concat!(
                "../../../schemas/clickhouse/reports/",
                $name,
                ".sql"
            )),
        }
    };
}

const REPORTS: &[Report] = &[
    report!(
        "source-of-sale",
        "Conversions and revenue by channel, source and social network under one model"
    ),
    report!(
        "social-micro-macro",
        "Micro-conversions (signups, downloads) against macro-conversions (purchases) per social network"
    ),
    report!(
        "posts",
        "Posts (utm_content) ranked by the conversions and revenue credited to them"
    ),
    report!("path-length", "How many touches and days conversions took"),
    report!(
        "funnel",
        "Identities per source that clicked, signed up, downloaded and purchased"
    ),
    report!(
        "lifecycle",
        "Visitors, customers, clients and repeat clients per first-touch network"
    ),
    report!(
        "channel-share",
        "Share of conversions from social, search and everything else"
    ),
    report!(
        "channel-share-weekly",
        "The same shares week by week (weeks start on Monday, UTC)"
    ),
];

/// Every report, in the order `touchstream report` lists them.
pub fn all() -> &'static [Report] {
    REPORTS
}

pub fn by_name(name: &str) -> Option<&'static Report> {
    REPORTS.iter().find(|r| r.name == name)
}

/// The values a report's placeholders take.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportParams {
    /// `{site:String}`: every report reads one site.
    pub site: String,
    /// Start of the period, inclusive (`{from:DateTime}`).
    pub from: OffsetDateTime,
    /// End of the period, exclusive (`{to:DateTime}`).
    pub to: OffsetDateTime,
    /// `{model:String}`.
    pub model: AttributionModel,
}

/// A report's answer, every value as text (NULL as an empty string).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReportTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Runs `report` with `params` bound and reads the whole answer.
pub async fn run(
    client: &clickhouse::Client,
    report: &Report,
    params: &ReportParams,
) -> Result<ReportTable, WarehouseError> {
    let template = template(report)?;
    let mut query = client.query(&template.sql);
    for name in &template.bindings {
        query = match *name {
            Param::From => query.bind(params.from.unix_timestamp()),
            Param::To => query.bind(params.to.unix_timestamp()),
            Param::Model => query.bind(params.model.as_str()),
            Param::Site => query.bind(params.site.as_str()),
        };
    }
    let what = || format!("report {}", report.name);
    let body = query
        .fetch_bytes("JSONCompact")
        .map_err(|e| WarehouseError::classify(what(), e))?
        .collect()
        .await
        .map_err(|e| WarehouseError::classify(what(), e))?;
    parse_json_compact(&body).map_err(|reason| WarehouseError::UnreadableReport {
        report: report.name.into(),
        reason,
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Param {
    From,
    To,
    Model,
    Site,
}

impl Param {
    fn parse(name: &str, ty: &str) -> Option<Self> {
        match (name, ty) {
            ("from", "DateTime") => Some(Self::From),
            ("to", "DateTime") => Some(Self::To),
            ("model", "String") => Some(Self::Model),
            ("site", "String") => Some(Self::Site),
            _ => None,
        }
    }
}

/// A report's SQL for the client's `?` binding, and which value each `?` takes.
#[derive(Debug, PartialEq)]
struct Template {
    sql: String,
    bindings: Vec<Param>,
}

fn template(report: &Report) -> Result<Template, WarehouseError> {
    let mut sql = String::with_capacity(report.sql.len());
    let mut bindings = Vec::new();
    let mut rest = report.sql;
    while let Some(open) = rest.find(['{', '?']) {
        let (before, at) = rest.split_at(open);
        sql.push_str(before);
        if let Some(after) = at.strip_prefix('?') {
            // A literal `?`: the client takes `??` for one.
            sql.push_str("??");
            rest = after;
            continue;
        }
        let placeholder = at.find('}').map(|close| (&at[1..close], &at[close + 1..]));
        let parsed = placeholder.and_then(|(inner, after)| {
            let (name, ty) = inner.split_once(':')?;
            Some((Param::parse(name.trim(), ty.trim())?, ty.trim(), after))
        });
        match parsed {
            Some((param, ty, after)) => {
                sql.push_str(&format!("CAST(? AS {ty})"));
                bindings.push(param);
                rest = after;
            }
            None if placeholder.is_some_and(|(inner, _)| inner.contains(':')) => {
                return Err(WarehouseError::UnreadableReport {
                    report: report.name.into(),
                    reason: format!(
                        "unknown placeholder {{{}}}; reports take {{site:String}}, \
                         {{from:DateTime}}, {{to:DateTime}} and {{model:String}}",
                        placeholder.map_or("", |(inner, _)| inner)
                    ),
                });
            }
            None => {
                sql.push('{');
                rest = &at[1..];
            }
        }
    }
    sql.push_str(rest);
    Ok(Template { sql, bindings })
}

/// Reads ClickHouse's `JSONCompact`: `{"meta": [{"name": …}], "data": [[…], …], …}`.
fn parse_json_compact(body: &[u8]) -> Result<ReportTable, String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let columns = json["meta"]
        .as_array()
        .ok_or("no \"meta\" array")?
        .iter()
        .map(|column| {
            column["name"]
                .as_str()
                .map(str::to_owned)
                .ok_or("a column without a name")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = json["data"]
        .as_array()
        .ok_or("no \"data\" array")?
        .iter()
        .map(|row| {
            row.as_array()
                .map(|values| values.iter().map(text).collect())
                .ok_or("a row that is not an array")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReportTable { columns, rows })
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn placeholders_become_bound_casts_in_order() {
        let report = Report {
            name: "t",
            title: "t",
            sql: "SELECT '?' WHERE t >= {from:DateTime} AND t < {to: DateTime} \
                  AND m = {model:String} AND x IN {1, 2} AND t < {to:DateTime}",
        };
        let template = template(&report).unwrap();
        assert_eq!(
            template.sql,
            "SELECT '??' WHERE t >= CAST(? AS DateTime) AND t < CAST(? AS DateTime) \
             AND m = CAST(? AS String) AND x IN {1, 2} AND t < CAST(? AS DateTime)"
        );
        assert_eq!(
            template.bindings,
            [Param::From, Param::To, Param::Model, Param::To]
        );
    }

    #[test]
    fn an_unknown_placeholder_is_an_error() {
        let report = Report {
            name: "t",
            title: "t",
            sql: "SELECT {limit:UInt32}",
        };
        assert!(template(&report).is_err());
    }

    #[test]
    fn every_report_uses_only_known_placeholders_and_the_period() {
        assert_eq!(all().len(), 8);
        for report in all() {
            let template = template(report).unwrap();
            assert!(template.bindings.contains(&Param::From), "{}", report.name);
            assert!(template.bindings.contains(&Param::To), "{}", report.name);
            assert!(template.bindings.contains(&Param::Site), "{}", report.name);
            assert!(by_name(report.name).is_some());
        }
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/clickhouse/reports"
        );
        let files = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(
            files,
            all().len(),
            "every file in {dir} is a report listed here"
        );
    }

    #[test]
    fn json_compact_values_become_text() {
        let body = br#"{"meta":[{"name":"a","type":"String"},{"name":"b","type":"UInt64"},{"name":"c","type":"Nullable(Float64)"}],
            "data":[["x","12",1.5],["y","0",null]],"rows":2}"#;
        let table = parse_json_compact(body).unwrap();
        assert_eq!(table.columns, ["a", "b", "c"]);
        assert_eq!(table.rows, [["x", "12", "1.5"], ["y", "0", ""]]);
    }
}
