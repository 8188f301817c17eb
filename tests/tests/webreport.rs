//! `touchstream serve`, the web report, against the real ClickHouse: the page, its JSON, CSV
//! and SVG over a fixture whose numbers are worked out below by hand, the same numbers as
//! `touchstream report`, an empty database, ClickHouse going away, the password; and the page
//! in Debian's Chromium (playwright-core, `tests/browser/webreport.mjs`), which switches model
//! and period, reads every chart back and saves screenshots under
//! `target/tmp/webreport-browser/`.
//!
//! The binaries come from `cargo build --workspace --bins` (make test builds them first).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use touchstream_model::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, EventType, LifecycleStage,
    RawEvent, TouchFields,
};
use touchstream_tests::{FlakyProxy, ScratchDatabase, Service, binary_path, free_port, wait_ready};
use touchstream_warehouse::{WarehouseConfig, insert, migrate, rows_of};

// ------------------------------------------------------------------------------------ fixture
//
// January 2026 (days of January; `at(day, minutes)`), credited under all six models:
//
//   ana:  t1 facebook reel-a (Jan 3), t2 instagram story-b (Jan 4), t3 facebook (Jan 5),
//         t4 e-mail (Jan 6), t5 facebook (Jan 7), t6 linkedin carousel-c (Jan 8),
//         t7 instagram (Jan 9), t8 direct (Jan 10), t9 google (Jan 11), t10 google (Jan 12)
//         S1 signup Jan 4 01:00 after t1, t2 (2 touches, 1.04 days); she is user-ana from then
//         P1 purchase 200.00 EUR Jan 12 01:00 after t1..t10 (10 touches, 9.04 days)
//   ben:  b1 facebook reel-a Jan 13, D1 download 30 min later (1 touch, 0.02 days)
//   cleo: k1 linkedin carousel-c Jan 14, k2 direct Jan 15, P2 purchase 50.00 EUR Jan 15 02:00
//         (2 touches, 1.08 days)
//   dan:  d1 instagram story-b Jan 20, S2 signup 10 min later (1 touch)
//   eve:  e1 google Jan 21, nothing else
//   fay:  December 2025, outside the period: f1 tiktok, P3 purchase 9.99 USD
//
// Last non-direct: S1 → t2 instagram, P1 → t10 google, D1 → facebook, P2 → k1 linkedin,
// S2 → instagram. First touch: S1, P1 → t1 facebook. Last touch: P2 → k2 direct.

const JAN1: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;
const DAY: i64 = 1_440 * MINUTE;
const PERIOD: (&str, &str) = ("2026-01-01", "2026-01-31");

fn at(day: i64, minutes: i64) -> i64 {
    JAN1 + (day - 1) * DAY + minutes * MINUTE
}

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[derive(Clone, Copy)]
struct Touch {
    n: u32,
    time: i64,
    via: &'static str,
}

fn touch_fields(via: &str) -> TouchFields {
    let social = |network: &str, campaign: &str, content: &str| TouchFields {
        channel: "Organic Social".into(),
        source: network.into(),
        medium: "social".into(),
        campaign: Some(campaign.into()),
        content: Some(content.into()),
        social_network: Some(network.into()),
        ..TouchFields::direct()
    };
    match via {
        "facebook" => social("facebook", "spring", "reel-a"),
        "instagram" => social("instagram", "spring", "story-b"),
        "linkedin" => social("linkedin", "b2b", "carousel-c"),
        "tiktok" => social("tiktok", "launch", "clip-d"),
        "google" => TouchFields {
            channel: "Organic Search".into(),
            source: "google".into(),
            medium: "organic".into(),
            ..TouchFields::direct()
        },
        "email" => TouchFields {
            channel: "Email".into(),
            source: "newsletter".into(),
            medium: "email".into(),
            campaign: Some("weekly".into()),
            ..TouchFields::direct()
        },
        _ => TouchFields::direct(),
    }
}

fn raw(
    n: u32,
    event_type: EventType,
    anonymous_id: &str,
    user: Option<&str>,
    time: i64,
) -> RawEvent {
    RawEvent {
        event_id: id(n),
        event_type,
        anonymous_id: anonymous_id.into(),
        user_id: user.map(Into::into),
        occurred_at: time,
        sent_at: Some(time),
        received_at: time,
        event_time: time,
        page_url: "https://shop.example/".into(),
        referrer: None,
        user_agent: Some("Mozilla/5.0".into()),
        ip: Some("203.0.113.0".into()),
        properties: BTreeMap::new(),
        target_url: None,
        element: None,
        signup_kind: None,
        method: None,
        asset_id: None,
        asset_kind: None,
        order_id: None,
        revenue: None,
        currency: None,
        site_id: touchstream_model::DEFAULT_SITE.into(),
        event_name: None,
        clock_correction_ms: 0,
        received_via: touchstream_model::received_via::EVENTS.into(),
    }
}

fn click(t: Touch, anonymous_id: &str, user: Option<&str>) -> AttributedEvent {
    AttributedEvent {
        event: raw(t.n, EventType::Click, anonymous_id, user, t.time),
        touch: touch_fields(t.via),
        opens_touch: true,
        session_id: format!("session-{}", t.n),
        identity_id: user.unwrap_or(anonymous_id).into(),
        lifecycle_stage: LifecycleStage::Visitor,
        purchase_count: 0,
        conversion: None,
        revision: 0,
        session: (&touch_fields(t.via)).into(),
        is_late: false,
    }
}

/// The weights of `touches` under `model` (simple stand-ins for the engine's rules: the report
/// queries only sum what is stored).
fn weights(model: AttributionModel, touches: &[Touch]) -> Vec<f64> {
    let n = touches.len();
    let one_hot = |i: usize| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect();
    match model {
        AttributionModel::FirstTouch => one_hot(0),
        AttributionModel::LastTouch => one_hot(n - 1),
        AttributionModel::LastNonDirect => one_hot(
            touches
                .iter()
                .rposition(|t| t.via != "direct")
                .unwrap_or(n - 1),
        ),
        AttributionModel::Linear => vec![1.0 / n as f64; n],
        AttributionModel::PositionBased => match n {
            1 => vec![1.0],
            2 => vec![0.5, 0.5],
            _ => (0..n)
                .map(|i| {
                    if i == 0 || i == n - 1 {
                        0.4
                    } else {
                        0.2 / (n - 2) as f64
                    }
                })
                .collect(),
        },
        AttributionModel::TimeDecay => {
            let raw: Vec<f64> = (0..n).map(|i| 2f64.powi(i as i32)).collect();
            let sum: f64 = raw.iter().sum();
            raw.iter().map(|w| w / sum).collect()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn conversion(
    n: u32,
    event_type: EventType,
    anonymous_id: &str,
    user: Option<&str>,
    time: i64,
    touches: &[Touch],
    revenue: Option<(i64, &str)>,
    stage: LifecycleStage,
    purchase_count: i32,
) -> AttributedEvent {
    let mut event = raw(n, event_type, anonymous_id, user, time);
    if let Some((minor, currency)) = revenue {
        event.revenue = Some(minor);
        event.currency = Some(currency.into());
        event.order_id = Some(format!("order-{n}"));
    }
    let minor = revenue.map_or(0, |(m, _)| m) as f64;
    let mut credits = Vec::new();
    for model in AttributionModel::ALL {
        for (t, w) in touches.iter().zip(weights(model, touches)) {
            if w == 0.0 {
                continue;
            }
            let f = touch_fields(t.via);
            credits.push(Credit {
                model,
                touch_event_id: id(t.n),
                touch_time: t.time,
                channel: f.channel,
                source: f.source,
                social_network: f.social_network,
                campaign: f.campaign,
                content: f.content,
                weight: w,
                revenue_credit: w * minor,
                retracted: false,
            });
        }
    }
    AttributedEvent {
        event,
        touch: TouchFields::direct(),
        opens_touch: false,
        session_id: format!("session-{n}"),
        identity_id: user.unwrap_or(anonymous_id).into(),
        lifecycle_stage: stage,
        purchase_count,
        conversion: Some(ConversionCredits {
            touches_to_conversion: touches.len() as i32,
            days_to_conversion: (time - touches[0].time) as f64 / DAY as f64,
            credits,
        }),
        revision: 0,
        session: Default::default(),
        is_late: false,
    }
}

fn fixture() -> Vec<AttributedEvent> {
    use EventType::{Download, Purchase, Signup};
    use LifecycleStage::{Client, Customer};
    let ana_vias = [
        "facebook",
        "instagram",
        "facebook",
        "email",
        "facebook",
        "linkedin",
        "instagram",
        "direct",
        "google",
        "google",
    ];
    let ana: Vec<Touch> = ana_vias
        .iter()
        .enumerate()
        .map(|(i, via)| Touch {
            n: 1 + i as u32,
            time: at(3 + i as i64, 0),
            via,
        })
        .collect();
    let (ana_id, ana_user) = ("anon-ana", Some("user-ana"));
    let mut events: Vec<AttributedEvent> = ana
        .iter()
        .enumerate()
        .map(|(i, t)| click(*t, ana_id, if i < 2 { None } else { ana_user }))
        .collect();
    events.push(conversion(
        11,
        Signup,
        ana_id,
        ana_user,
        at(4, 60),
        &ana[..2],
        None,
        Customer,
        0,
    ));
    events.push(conversion(
        12,
        Purchase,
        ana_id,
        ana_user,
        at(12, 60),
        &ana,
        Some((20_000, "EUR")),
        Client,
        1,
    ));

    let b1 = Touch {
        n: 21,
        time: at(13, 0),
        via: "facebook",
    };
    events.push(click(b1, "anon-ben", None));
    events.push(conversion(
        22,
        Download,
        "anon-ben",
        None,
        at(13, 30),
        &[b1],
        None,
        Customer,
        0,
    ));

    let k1 = Touch {
        n: 31,
        time: at(14, 0),
        via: "linkedin",
    };
    let k2 = Touch {
        n: 32,
        time: at(15, 0),
        via: "direct",
    };
    events.push(click(k1, "anon-cleo", None));
    events.push(click(k2, "anon-cleo", None));
    events.push(conversion(
        33,
        Purchase,
        "anon-cleo",
        None,
        at(15, 120),
        &[k1, k2],
        Some((5_000, "EUR")),
        Client,
        1,
    ));

    let d1 = Touch {
        n: 41,
        time: at(20, 0),
        via: "instagram",
    };
    events.push(click(d1, "anon-dan", None));
    events.push(conversion(
        42,
        Signup,
        "anon-dan",
        None,
        at(20, 10),
        &[d1],
        None,
        Customer,
        0,
    ));

    events.push(click(
        Touch {
            n: 51,
            time: at(21, 0),
            via: "google",
        },
        "anon-eve",
        None,
    ));

    let f1 = Touch {
        n: 61,
        time: at(-11, 0),
        via: "tiktok",
    };
    events.push(click(f1, "anon-fay", None));
    events.push(conversion(
        62,
        Purchase,
        "anon-fay",
        None,
        at(-10, 0),
        &[f1],
        Some((999, "USD")),
        Client,
        1,
    ));
    events
}

fn cfg(db: &ScratchDatabase) -> WarehouseConfig {
    WarehouseConfig {
        url: touchstream_tests::CLICKHOUSE_URL.into(),
        database: db.name.clone(),
        ..WarehouseConfig::default()
    }
}

/// A migrated scratch database holding the fixture.
async fn fixture_database() -> ScratchDatabase {
    let db = ScratchDatabase::new();
    migrate(&cfg(&db)).await.unwrap();
    let mut events = Vec::new();
    let mut credits = Vec::new();
    for (i, event) in fixture().iter().enumerate() {
        let (row, rows) = rows_of(event, at(40, i as i64));
        events.push(row);
        credits.extend(rows);
    }
    insert(&touchstream_warehouse::client(&cfg(&db)), &events, &credits)
        .await
        .unwrap();
    db
}

// ------------------------------------------------------------------------------------ helpers

/// `touchstream serve` on a port of its own.
struct Server {
    url: String,
    service: Service,
}

impl Server {
    async fn start(database: &str, clickhouse_url: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut environment = vec![
            (
                "TOUCHSTREAM_SERVE__LOG__FORMAT".to_string(),
                "text".to_string(),
            ),
            (
                "TOUCHSTREAM_SERVE__CACHE_SECONDS".to_string(),
                "0".to_string(),
            ),
        ];
        environment.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let service = Service::spawn(
            "touchstream",
            &[
                "serve",
                "--listen",
                &listen,
                "--database",
                database,
                "--clickhouse-url",
                clickhouse_url,
            ],
            &environment,
        );
        let url = format!("http://{listen}");
        wait_ready(&format!("{url}/healthz"), &service).await;
        Self { url, service }
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        // The timeout only keeps a hung server from hanging the test.
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.service.log_text()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = self.get(path).await;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"));
        (status, json)
    }
}

fn query(model: &str, (from, to): (&str, &str)) -> String {
    format!("model={model}&from={from}&to={to}")
}

/// `touchstream report <name> --format <format>` as a person would run it (the reader user).
fn cli(database: &str, name: &str, model: &str, (from, to): (&str, &str), format: &str) -> String {
    let out = Command::new(binary_path("touchstream"))
        .args([
            "report",
            name,
            "--database",
            database,
            "--model",
            model,
            "--from",
            from,
            "--to",
            to,
            "--format",
            format,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "touchstream report {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A report as the CLI prints it in JSON: its columns and rows of strings.
#[derive(Clone, Debug, PartialEq)]
struct CliTable {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl CliTable {
    fn value(&self, row: &[String], column: &str) -> f64 {
        let i = self.columns.iter().position(|c| c == column).unwrap();
        row[i].parse().unwrap_or(0.0)
    }

    fn text<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        let i = self.columns.iter().position(|c| c == column).unwrap();
        &row[i]
    }
}

fn cli_table(database: &str, name: &str, model: &str, period: (&str, &str)) -> CliTable {
    let json: Value = serde_json::from_str(&cli(database, name, model, period, "json")).unwrap();
    let columns: Vec<String> = json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let rows = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r[c].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    CliTable { columns, rows }
}

/// A bar or point: (series, category) → value.
type Marks = BTreeMap<(String, String), f64>;

/// Per figure: the table under the chart and its marks.
type Expected = BTreeMap<&'static str, (CliTable, Marks)>;

const MODELS: [&str; 6] = [
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "position_based",
    "time_decay",
];

/// What each figure of the page must show for `model` and `period`, worked out from the CLI's
/// answers: the table under the chart (the report as the CLI prints it) and every bar or
/// point. The figure rules (top 12 rows, 6 networks, every histogram bucket, a point per group
/// in each week with conversions) are restated here, independently of the server's code.
fn expected(database: &str, model: &str, period: (&str, &str)) -> Expected {
    let mut out = BTreeMap::new();
    let key = |parts: &[&str]| parts.join("|");

    let t = cli_table(database, "source-of-sale", model, period);
    let mut marks = Marks::new();
    for row in t.rows.iter().take(12) {
        let k = key(&[
            t.text(row, "channel"),
            t.text(row, "source"),
            t.text(row, "social_network"),
        ]);
        marks.insert(("sales".into(), k.clone()), t.value(row, "sales"));
        marks.insert(
            ("micro-conversions".into(), k.clone()),
            t.value(row, "micro_conversions"),
        );
        marks.insert(("revenue".into(), k), t.value(row, "revenue_minor") / 100.0);
    }
    out.insert("source-of-sale", (t, marks));

    let mut by_network: BTreeMap<String, [f64; 6]> = BTreeMap::new();
    for (m, name) in MODELS.iter().enumerate() {
        let t = cli_table(database, "source-of-sale", name, period);
        for row in &t.rows {
            let network = match t.text(row, "social_network") {
                "" => t.text(row, "channel"),
                n => n,
            };
            by_network.entry(network.into()).or_insert([0.0; 6])[m] +=
                t.value(row, "revenue_minor");
        }
    }
    let mut ranked: Vec<(&String, &[f64; 6])> = by_network.iter().collect();
    ranked.sort_by(|a, b| {
        b.1.iter()
            .sum::<f64>()
            .total_cmp(&a.1.iter().sum::<f64>())
            .then(a.0.cmp(b.0))
    });
    let mut marks = Marks::new();
    for (network, values) in ranked.iter().take(6) {
        for (m, name) in MODELS.iter().enumerate() {
            marks.insert(((*network).clone(), name.to_string()), values[m] / 100.0);
        }
    }
    let mut columns = vec!["network".to_string()];
    columns.extend(MODELS.iter().map(|m| m.to_string()));
    let rows = ranked
        .iter()
        .map(|(n, v)| {
            std::iter::once((*n).clone())
                .chain(v.iter().map(|x| x.to_string()))
                .collect()
        })
        .collect();
    out.insert("models", (CliTable { columns, rows }, marks));

    let t = cli_table(database, "social-micro-macro", model, period);
    let mut marks = Marks::new();
    for row in t.rows.iter().take(12) {
        let k = t.text(row, "social_network").to_string();
        marks.insert(
            ("micro-conversions".into(), k.clone()),
            t.value(row, "micro_conversions"),
        );
        marks.insert(("purchases".into(), k), t.value(row, "macro_conversions"));
    }
    out.insert("social-micro-macro", (t, marks));

    let t = cli_table(database, "posts", model, period);
    let mut marks = Marks::new();
    for row in t.rows.iter().take(10) {
        let k = key(&[
            t.text(row, "content"),
            t.text(row, "source"),
            t.text(row, "social_network"),
            t.text(row, "campaign"),
        ]);
        marks.insert(
            ("conversions".into(), k.clone()),
            t.value(row, "conversions"),
        );
        marks.insert(("revenue".into(), k), t.value(row, "revenue_minor") / 100.0);
    }
    out.insert("posts", (t, marks));

    let t = cli_table(database, "path-length", model, period);
    let mut marks = Marks::new();
    for (measure, buckets) in [
        ("touches", &["0", "1", "2", "3", "4-6", "7-13", "14+"][..]),
        ("days", &["0-1", "1-3", "3-7", "7-14", "14-30", "30+"][..]),
    ] {
        for bucket in buckets {
            let row = t
                .rows
                .iter()
                .find(|r| t.text(r, "measure") == measure && t.text(r, "bucket") == *bucket);
            let value = |c: &str| row.map_or(0.0, |r| t.value(r, c));
            marks.insert(("purchases".into(), bucket.to_string()), value("purchases"));
            marks.insert(
                ("micro-conversions".into(), bucket.to_string()),
                value("micro_conversions"),
            );
        }
    }
    out.insert("path-length", (t, marks));

    let t = cli_table(database, "lifecycle", model, period);
    let mut marks = Marks::new();
    for row in t.rows.iter().take(12) {
        let k = t.text(row, "first_touch_network").to_string();
        for (series, column) in [
            ("visitors", "visitors"),
            ("customers", "customers"),
            ("clients", "clients"),
            ("repeat clients", "repeat_clients"),
        ] {
            marks.insert((series.into(), k.clone()), t.value(row, column));
        }
    }
    out.insert("lifecycle", (t, marks));

    let t = cli_table(database, "channel-share-weekly", model, period);
    let mut marks = Marks::new();
    for row in &t.rows {
        let week = t.text(row, "week").to_string();
        for group in ["social", "search", "other"] {
            marks.entry((group.into(), week.clone())).or_insert(0.0);
        }
        marks.insert(
            (t.text(row, "channel_group").into(), week),
            t.value(row, "conversions_pct"),
        );
    }
    out.insert("channel-share-weekly", (t, marks));
    out
}

/// The marks of a figure in the page's JSON (data.json).
fn json_marks(figure: &Value) -> Marks {
    let mut marks = Marks::new();
    for panel in figure["panels"].as_array().unwrap() {
        let categories: Vec<&str> = panel["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"].as_str().unwrap())
            .collect();
        for series in panel["series"].as_array().unwrap() {
            for (i, v) in series["values"].as_array().unwrap().iter().enumerate() {
                if let Some(v) = v.as_f64() {
                    let key = (
                        series["name"].as_str().unwrap().to_string(),
                        categories[i].to_string(),
                    );
                    assert!(marks.insert(key.clone(), v).is_none(), "{key:?} twice");
                }
            }
        }
    }
    marks
}

fn json_table(figure: &Value) -> CliTable {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    CliTable {
        columns: strings(&figure["table"]["columns"]),
        rows: figure["table"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(strings)
            .collect(),
    }
}

fn assert_marks(what: &str, got: &Marks, want: &Marks) {
    let (g, w): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(g, w, "{what}: which bars/points");
    for (k, v) in want {
        assert!(
            (got[k] - v).abs() < 1e-9,
            "{what}: {k:?} is {}, the report says {v}",
            got[k]
        );
    }
}

fn figure<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no figure {id} in {data:#}"))
}

fn mark(marks: &Marks, series: &str, category: &str) -> f64 {
    *marks
        .get(&(series.to_string(), category.to_string()))
        .unwrap_or_else(|| panic!("no mark {series} / {category} in {marks:?}"))
}

// -------------------------------------------------------------------------------------- tests

/// The JSON, HTML, CSV and SVG of the fixture: the hand-worked numbers, and exactly what
/// `touchstream report` gives for the same model and period (SVG byte for byte).
#[tokio::test]
async fn the_page_shows_the_report_numbers() {
    let db = fixture_database().await;
    let server = Server::start(&db.name, touchstream_tests::CLICKHOUSE_URL, &[]).await;

    let (status, data) = server
        .json(&format!(
            "/site/default/data.json?{}",
            query("last_non_direct", PERIOD)
        ))
        .await;
    assert_eq!(status, 200, "{data:#}");
    assert_eq!(data["empty"], false);
    assert_eq!(data["period"], "2026-01-01 to 2026-01-31");
    let ids: Vec<&str> = data["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "source-of-sale",
            "models",
            "social-micro-macro",
            "posts",
            "path-length",
            "lifecycle",
            "channel-share-weekly"
        ]
    );

    // By hand, last non-direct: P1 → google 200.00, P2 → linkedin 50.00, S1 and S2 →
    // instagram, D1 → facebook; four rows, each a sales, a micro and a revenue bar.
    let sos = json_marks(figure(&data, "source-of-sale"));
    assert_eq!(sos.len(), 12, "{sos:?}");
    assert_eq!(mark(&sos, "revenue", "Organic Search|google|"), 200.0);
    assert_eq!(mark(&sos, "sales", "Organic Social|linkedin|linkedin"), 1.0);
    assert_eq!(
        mark(&sos, "revenue", "Organic Social|linkedin|linkedin"),
        50.0
    );
    assert_eq!(
        mark(
            &sos,
            "micro-conversions",
            "Organic Social|instagram|instagram"
        ),
        2.0
    );
    assert_eq!(
        mark(
            &sos,
            "micro-conversions",
            "Organic Social|facebook|facebook"
        ),
        1.0
    );

    // Models: first touch gives P1 to facebook (t1); last touch gives it to google and P2 to
    // direct. Linear: facebook t1, t3, t5 = 3/10 of 200.00.
    let models = json_marks(figure(&data, "models"));
    assert_eq!(mark(&models, "facebook", "first_touch"), 200.0);
    assert_eq!(mark(&models, "facebook", "last_touch"), 0.0);
    assert_eq!(mark(&models, "Organic Search", "last_touch"), 200.0);
    assert_eq!(mark(&models, "Direct", "last_touch"), 50.0);
    assert!((mark(&models, "facebook", "linear") - 60.0).abs() < 1e-9);
    let notes = figure(&data, "models")["notes"].to_string();
    assert!(
        notes.contains("100% of the revenue under first touch and 0% under last touch"),
        "{notes}"
    );

    // Social micro/macro: instagram S1 + S2, facebook D1, linkedin P2.
    let mm = json_marks(figure(&data, "social-micro-macro"));
    assert_eq!(mm.len(), 6);
    assert_eq!(mark(&mm, "micro-conversions", "instagram"), 2.0);
    assert_eq!(mark(&mm, "purchases", "linkedin"), 1.0);
    assert_eq!(mark(&mm, "purchases", "facebook"), 0.0);

    // Posts: carousel-c (P2, 50.00), story-b (S1, S2), reel-a (D1); P1's google touch has none.
    let posts = json_marks(figure(&data, "posts"));
    assert_eq!(posts.len(), 6);
    assert_eq!(
        mark(&posts, "revenue", "carousel-c|linkedin|linkedin|b2b"),
        50.0
    );
    assert_eq!(
        mark(&posts, "conversions", "story-b|instagram|instagram|spring"),
        2.0
    );

    // Path length: D1, S2 one touch; S1, P2 two; P1 ten (the 7–13 band). Days: D1, S2 under
    // one, S1, P2 one to three, P1 nine. Every bucket has its two bars.
    let paths = figure(&data, "path-length");
    let pl = json_marks(paths);
    assert_eq!(pl.len(), 26);
    assert_eq!(mark(&pl, "micro-conversions", "1"), 2.0);
    assert_eq!(mark(&pl, "purchases", "2"), 1.0);
    assert_eq!(mark(&pl, "micro-conversions", "2"), 1.0);
    assert_eq!(mark(&pl, "purchases", "7-13"), 1.0);
    assert_eq!(mark(&pl, "purchases", "4-6"), 0.0);
    assert_eq!(mark(&pl, "purchases", "7-14"), 1.0);
    assert_eq!(mark(&pl, "micro-conversions", "0-1"), 2.0);
    assert_eq!(paths["panels"][0]["band"]["label"], "7–13 touches");
    assert!(
        paths["notes"]
            .to_string()
            .contains("50% of the purchases took 7 touches or more")
    );

    // Lifecycle: ana (user-ana) and ben first came from facebook, cleo linkedin, dan
    // instagram, eve search; fay is December's.
    let lc = json_marks(figure(&data, "lifecycle"));
    assert_eq!(lc.len(), 16);
    assert_eq!(mark(&lc, "visitors", "facebook"), 2.0);
    assert_eq!(mark(&lc, "customers", "facebook"), 2.0);
    assert_eq!(mark(&lc, "clients", "facebook"), 1.0);
    assert_eq!(mark(&lc, "clients", "linkedin"), 1.0);
    assert_eq!(mark(&lc, "customers", "Organic Search"), 0.0);

    // Weeks: Dec 29 (S1, instagram), Jan 12 (P1 google, D1 facebook, P2 linkedin), Jan 19
    // (S2); the weeks of Jan 5 and Jan 26 have no conversion, so no point.
    let weekly = figure(&data, "channel-share-weekly");
    let ws = json_marks(weekly);
    assert_eq!(ws.len(), 9, "{ws:?}");
    assert_eq!(mark(&ws, "social", "2025-12-29"), 100.0);
    assert_eq!(mark(&ws, "social", "2026-01-12"), 66.7);
    assert_eq!(mark(&ws, "search", "2026-01-12"), 33.3);
    assert_eq!(mark(&ws, "other", "2026-01-19"), 0.0);
    assert_eq!(
        weekly["panels"][0]["categories"].as_array().unwrap().len(),
        5
    );

    // Everything, under every model, equals what the CLI says.
    for model in MODELS {
        let (status, data) = server
            .json(&format!("/site/default/data.json?{}", query(model, PERIOD)))
            .await;
        assert_eq!(status, 200);
        for (id, (table, marks)) in expected(&db.name, model, PERIOD) {
            let f = figure(&data, id);
            assert_eq!(
                json_table(f),
                table,
                "{model} {id}: the table is the report's"
            );
            assert_marks(&format!("{model} {id}"), &json_marks(f), &marks);
        }
    }

    // The HTML: every figure with its bars and numbers, nothing from elsewhere.
    let (status, headers, html) = server
        .get(&format!("/site/default?{}", query("linear", PERIOD)))
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let want = expected(&db.name, "linear", PERIOD);
    for (id, (table, marks)) in &want {
        let start = html
            .find(&format!("<section class=\"figure\" id=\"{id}\""))
            .unwrap_or_else(|| panic!("no section {id}"));
        let end = html[start + 1..]
            .find("<section")
            .map_or(html.len(), |e| start + 1 + e);
        let section = &html[start..end];
        let shown =
            section.matches("class=\"bar\"").count() + section.matches("class=\"point\"").count();
        assert_eq!(shown, marks.len(), "{id}: bars and points in the page");
        assert_eq!(
            section.matches("<tr><td").count(),
            table.rows.len(),
            "{id}: table rows"
        );
        assert!(section.contains(&format!(
            "/site/default/chart/{id}.csv?model=linear&amp;from=2026-01-01&amp;to=2026-01-31"
        )));
        assert!(
            section.contains("class=\"axis-label\""),
            "{id} has axis labels"
        );
    }
    for attribute in ["src=\"", "href=\""] {
        for at in html.match_indices(attribute) {
            let value = &html[at.0 + attribute.len()..];
            assert!(
                value.starts_with('/') || value.starts_with('#') || value.starts_with("data:"),
                "a reference out of the server: {}",
                &value[..value.len().min(80)]
            );
        }
    }
    assert!(html.contains("<option value=\"linear\" selected>"));
    let (status, _, css) = server.get("/assets/app.css").await;
    assert!(status == 200 && css.contains(".chart"));
    let (status, _, js) = server.get("/assets/app.js").await;
    assert!(status == 200 && js.contains("data-src"));
    assert!(
        !css.contains("http") && !js.contains("http"),
        "assets fetch nothing else"
    );

    // CSV: the report's rows; SVG: the CLI's drawing, byte for byte.
    let (status, headers, csv) = server
        .get(&format!(
            "/site/default/chart/posts.csv?{}",
            query("linear", PERIOD)
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"default-posts-linear-2026-01-01-2026-01-31.csv\""
    );
    assert_eq!(csv, cli(&db.name, "posts", "linear", PERIOD, "csv"));
    for (id, report) in [
        ("source-of-sale", "source-of-sale"),
        ("social-micro-macro", "social-micro-macro"),
        ("posts", "posts"),
        ("path-length", "path-length"),
        ("lifecycle", "lifecycle"),
        ("channel-share-weekly", "channel-share-weekly"),
    ] {
        let (status, headers, svg) = server
            .get(&format!(
                "/site/default/chart/{id}.svg?{}",
                query("linear", PERIOD)
            ))
            .await;
        assert_eq!(status, 200, "{id}: {svg}");
        assert_eq!(headers["content-type"], "image/svg+xml");
        let from_cli = cli(&db.name, report, "linear", PERIOD, "svg");
        assert_eq!(
            format!("{svg}\n"),
            from_cli,
            "{id}: the page's SVG and the CLI's"
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }
    let out = Command::new(binary_path("touchstream"))
        .args([
            "report",
            "source-of-sale",
            "--database",
            &db.name,
            "--model",
            "linear",
            "--from",
            PERIOD.0,
            "--to",
            PERIOD.1,
            "--format",
            "svg",
            "--chart",
            "models",
        ])
        .output()
        .unwrap();
    let (_, _, svg) = server
        .get(&format!(
            "/site/default/chart/models.svg?{}",
            query("linear", PERIOD)
        ))
        .await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{svg}\n"));
    let (status, _, inline) = server
        .get(&format!(
            "/site/default/chart/models.svg?{}&inline=1&width=390",
            query("linear", PERIOD)
        ))
        .await;
    assert_eq!(status, 200);
    assert!(inline.contains("data-width=\"390\"") && inline.contains("width=\"100%\""));
}

/// A database without rows, and one without tables, say what to do instead of showing
/// empty charts.
#[tokio::test]
async fn an_empty_database_says_how_to_fill_it() {
    let db = ScratchDatabase::new();
    migrate(&cfg(&db)).await.unwrap();
    let server = Server::start(&db.name, touchstream_tests::CLICKHOUSE_URL, &[]).await;
    let (status, _, html) = server.get("/site/default").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("No conversions or touches in this period"),
        "{html}"
    );
    assert!(html.contains("has no events yet") && html.contains("make demo"));
    assert!(!html.contains("class=\"figure\""), "no empty charts");
    assert!(
        html.contains("<form class=\"controls\""),
        "the period can still be changed"
    );
    let (status, data) = server.json("/site/default/data.json").await;
    assert_eq!(status, 200);
    assert_eq!(data["empty"], true);
    let (status, _, svg) = server.get("/site/default/chart/posts.svg").await;
    assert_eq!(status, 200);
    assert!(svg.contains("No data for this period"));

    // Events outside the period: the page offers the period that has them.
    let old = click(
        Touch {
            n: 1,
            time: at(-300, 0),
            via: "facebook",
        },
        "anon-old",
        None,
    );
    let (row, _) = rows_of(&old, at(-300, 1));
    insert(&touchstream_warehouse::client(&cfg(&db)), &[row], &[])
        .await
        .unwrap();
    let (status, _, html) = server
        .get(&format!("/site/default?{}", query("linear", PERIOD)))
        .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("holds 1 event from 2025-03-06 to 2025-03-06")
            && html.contains("/site/default?model=linear&amp;from=2025-03-06&amp;to=2025-03-06"),
        "{html}"
    );

    // A database the sink has not created yet.
    let missing = ScratchDatabase::new();
    let server = Server::start(&missing.name, touchstream_tests::CLICKHOUSE_URL, &[]).await;
    let (status, _, html) = server.get("/site/default").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("No data yet") && html.contains("sink migrate"),
        "{html}"
    );
}

/// ClickHouse away: a page with a banner that says so (503), JSON errors for the data, and the
/// charts again once it is back.
#[tokio::test]
async fn clickhouse_down_is_a_banner_not_a_blank_page() {
    let db = fixture_database().await;
    let proxy = FlakyProxy::start("127.0.0.1:8123").await;
    let server = Server::start(&db.name, &format!("http://127.0.0.1:{}", proxy.port), &[]).await;
    let page = format!("/site/default?{}", query("linear", PERIOD));
    let (status, _, html) = server.get(&page).await;
    assert_eq!(status, 200);
    assert!(html.contains("class=\"figure\""));

    proxy.cut();
    let (status, headers, html) = server.get(&page).await;
    assert_eq!(status, 503, "{html}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        html.contains("role=\"alert\"") && html.contains("ClickHouse is not answering"),
        "{html}"
    );
    assert!(html.contains(&format!("database {}", db.name)));
    assert!(html.contains("<form class=\"controls\""));
    assert!(!html.contains("class=\"figure\""));
    assert!(!html.to_lowercase().contains("panicked"));
    let (status, data) = server
        .json(&format!(
            "/site/default/data.json?{}",
            query("linear", PERIOD)
        ))
        .await;
    assert_eq!(status, 503);
    assert!(
        data["error"].as_str().unwrap().contains("unavailable"),
        "{data}"
    );
    let (status, data) = server
        .json(&format!(
            "/site/default/chart/posts.svg?{}",
            query("linear", PERIOD)
        ))
        .await;
    assert_eq!(status, 503, "{data}");

    proxy.restore();
    let (status, _, html) = server.get(&page).await;
    assert_eq!(status, 200);
    assert!(html.contains("class=\"figure\"") && !html.contains("role=\"alert\""));

    // Nothing listening at all.
    let server = Server::start(&db.name, &format!("http://127.0.0.1:{}", free_port()), &[]).await;
    let (status, _, html) = server.get("/site/default").await;
    assert_eq!(status, 503);
    assert!(html.contains("ClickHouse is not answering"));

    // A server that takes the connection and never answers: the page gives up in time.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let server = Server::start(
        &db.name,
        &format!("http://127.0.0.1:{silent_port}"),
        &[("TOUCHSTREAM_SERVE__TIMEOUT_SECONDS", "1")],
    )
    .await;
    let (status, _, html) = server.get("/site/default").await;
    assert_eq!(status, 503);
    assert!(html.contains("no answer within 1 s"), "{html}");
    hold.abort();
}

/// With a password, everything but /healthz asks for it.
#[tokio::test]
async fn a_password_closes_the_page() {
    let db = fixture_database().await;
    let server = Server::start(
        &db.name,
        touchstream_tests::CLICKHOUSE_URL,
        &[
            ("TOUCHSTREAM_SERVE__AUTH__PASSWORD", "s3cret"),
            ("TOUCHSTREAM_SERVE__AUTH__USER", "ana"),
        ],
    )
    .await;
    for path in [
        "/",
        "/site/default",
        "/site/default/data.json",
        "/assets/app.js",
        "/nope",
    ] {
        let (status, headers, _) = server.get(path).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(
            headers["www-authenticate"],
            "Basic realm=\"touchstream\", charset=\"UTF-8\""
        );
    }
    let client = reqwest::Client::new();
    let url = format!("{}/site/default?{}", server.url, query("linear", PERIOD));
    let ok = client
        .get(&url)
        .basic_auth("ana", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("class=\"figure\""));
    let wrong = client
        .get(&url)
        .basic_auth("ana", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let (status, _, body) = server.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// Wrong input is a page that says what is wrong, not a stack trace.
#[tokio::test]
async fn bad_requests_get_pages_that_explain() {
    let db = fixture_database().await;
    let server = Server::start(&db.name, touchstream_tests::CLICKHOUSE_URL, &[]).await;
    let (status, _, html) = server.get("/site/default?model=u-shaped").await;
    assert_eq!(status, 400);
    assert!(
        html.contains("unknown model") && html.contains("position_based"),
        "{html}"
    );
    assert!(html.contains("<form class=\"controls\""));
    let (status, _, html) = server
        .get("/site/default?from=2026-02-01&to=2026-01-01")
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("must be before"), "{html}");
    let (status, data) = server.json("/site/default/data.json?from=someday").await;
    assert_eq!(status, 400);
    assert!(data["error"].as_str().unwrap().contains("from"));
    let (status, _, html) = server.get("/site/elsewhere").await;
    assert_eq!(status, 404);
    assert!(
        html.contains("no site \"elsewhere\"") || html.contains("There is no site"),
        "{html}"
    );
    let (status, _, _) = server.get("/site/default/chart/nope.svg").await;
    assert_eq!(status, 404);
    let (status, headers, _) = server.get("/?model=linear").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/site/default?model=linear");
}

// -------------------------------------------------------------------------------- in Chromium

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL: &str = "run `deploy/services.sh install-test-tools` (or `make test-tools`)";

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn require_tools() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {INSTALL}"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules/playwright-core is missing: {INSTALL}"
    );
}

/// The marks the browser read from one figure.
fn dom_marks(figure: &Value) -> Marks {
    let mut marks = Marks::new();
    for m in figure["marks"].as_array().unwrap() {
        let key = (
            m["series"].as_str().unwrap().to_string(),
            m["category"].as_str().unwrap().to_string(),
        );
        assert!(
            marks
                .insert(key.clone(), m["value"].as_f64().unwrap())
                .is_none(),
            "{key:?} drawn twice"
        );
    }
    marks
}

fn dom_table(figure: &Value) -> CliTable {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    CliTable {
        columns: strings(&figure["table"]["columns"]),
        rows: figure["table"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(strings)
            .collect(),
    }
}

/// The fill of the bars of `series` in `figure` whose category matches.
fn fill_of(figure: &Value, series: &str, category: impl Fn(&str) -> bool) -> String {
    figure["marks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["series"] == series && category(m["category"].as_str().unwrap()))
        .map(|m| m["fill"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no {series} bar found in {figure}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_in_chromium_matches_the_report_command() {
    require_tools();
    let db = fixture_database().await;
    let empty = ScratchDatabase::new();
    migrate(&cfg(&empty)).await.unwrap();
    // The page's own cache on, as deployed.
    let cache = [("TOUCHSTREAM_SERVE__CACHE_SECONDS", "30")];
    let server = Server::start(&db.name, touchstream_tests::CLICKHOUSE_URL, &cache).await;
    let empty_server = Server::start(&empty.name, touchstream_tests::CLICKHOUSE_URL, &[]).await;
    let down = Server::start(&db.name, &format!("http://127.0.0.1:{}", free_port()), &[]).await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("webreport-browser");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let (url, empty_url, down_url, dir) = (
        server.url.clone(),
        empty_server.url.clone(),
        down.url.clone(),
        shots.clone(),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("webreport.mjs")
            .current_dir(browser_dir())
            .env("TOUCHSTREAM_PAGE_URL", url)
            .env("TOUCHSTREAM_EMPTY_URL", empty_url)
            .env("TOUCHSTREAM_DOWN_URL", down_url)
            .env("TOUCHSTREAM_SCREENSHOTS", dir)
            .env("CHROMIUM_PATH", CHROMIUM)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("could not run node: {e}; {INSTALL}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/webreport.mjs failed ({}):\n{stderr}\n{stdout}\nserver log:\n{}",
        out.status,
        server.service.log_text()
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!("webreport.mjs printed no JSON summary ({e}):\n{stdout}\n{stderr}")
        });
    eprintln!("screenshots: {}", shots.display());

    assert_eq!(
        summary["foreign_requests"],
        Value::Array(vec![]),
        "the page fetched from elsewhere"
    );
    assert_eq!(
        summary["page_errors"],
        Value::Array(vec![]),
        "errors in the page"
    );

    // Each state of the page against the CLI for the same model and period.
    let states = [
        ("initial", "last_non_direct", PERIOD),
        ("first_touch", "first_touch", PERIOD),
        ("from_jan_10", "first_touch", ("2026-01-10", "2026-01-31")),
        ("phone", "last_non_direct", PERIOD),
    ];
    let mut cache: HashMap<(String, (String, String)), Expected> = HashMap::new();
    for (state, model, period) in states {
        let page = &summary["states"][state];
        assert_eq!(page["model"], model, "{state}: the picker shows the model");
        assert_eq!(
            (page["from"].as_str().unwrap(), page["to"].as_str().unwrap()),
            period,
            "{state}"
        );
        assert!(page["banner"].is_null(), "{state}: {}", page["banner"]);
        let want = cache
            .entry((
                model.to_string(),
                (period.0.to_string(), period.1.to_string()),
            ))
            .or_insert_with(|| expected(&db.name, model, period));
        for (id, (table, marks)) in want.iter() {
            let f = &page["figures"][id];
            assert!(!f.is_null(), "{state}: no figure {id}");
            assert_marks(&format!("{state} {id} in Chromium"), &dom_marks(f), marks);
            assert_eq!(
                dom_table(f),
                *table,
                "{state} {id}: the numbers shown are the report's"
            );
            assert!(
                f["axis_labels"].as_u64().unwrap() >= 1,
                "{state} {id}: axis labels"
            );
            assert!(
                f["rendered_width"].as_f64().unwrap() > 200.0,
                "{state} {id} is drawn"
            );
        }
        for id in [
            "source-of-sale",
            "models",
            "social-micro-macro",
            "path-length",
            "lifecycle",
            "channel-share-weekly",
        ] {
            assert!(
                page["figures"][id]["legend"].as_u64().unwrap() >= 2,
                "{state} {id}: a legend"
            );
        }
        assert_eq!(
            page["figures"]["path-length"]["band"], 1,
            "{state}: the 7–13 band"
        );
        assert_eq!(page["figures"]["path-length"]["band_label"], "7–13 touches");
    }
    // The date range changed the numbers: from Jan 10, S1 (Jan 4) is out.
    let initial = &summary["states"]["first_touch"]["figures"]["path-length"];
    let later = &summary["states"]["from_jan_10"]["figures"]["path-length"];
    assert_ne!(dom_marks(initial), dom_marks(later));

    // One colour per network across charts.
    let desktop = &summary["states"]["initial"]["figures"];
    let fb_sale = fill_of(&desktop["source-of-sale"], "revenue", |c| {
        c.ends_with("|facebook")
    });
    let fb_post = fill_of(&desktop["posts"], "revenue", |c| c.starts_with("reel-a|"));
    let fb_model = fill_of(&desktop["models"], "facebook", |_| true);
    assert_eq!(
        (&fb_sale, &fb_post),
        (&fb_model, &fb_model),
        "facebook's colour"
    );
    let ig_sale = fill_of(&desktop["source-of-sale"], "revenue", |c| {
        c.ends_with("|instagram")
    });
    assert_ne!(ig_sale, fb_sale);

    // At 1280 px the charts fill the column; on a phone they are redrawn for its width and
    // nothing sticks out sideways.
    let width = |state: &str, id: &str| {
        summary["states"][state]["figures"][id]["svg_width"]
            .as_f64()
            .unwrap()
    };
    let phone = &summary["states"]["phone"];
    for id in [
        "source-of-sale",
        "posts",
        "path-length",
        "channel-share-weekly",
    ] {
        assert!(
            width("initial", id) > 900.0,
            "{id} at 1280 px: {}",
            width("initial", id)
        );
        assert!(
            width("phone", id) < 400.0,
            "{id} on a phone: {}",
            width("phone", id)
        );
        let rendered = phone["figures"][id]["rendered_width"].as_f64().unwrap();
        assert!(
            (rendered - width("phone", id)).abs() < 2.0,
            "{id} drawn at its width on the phone"
        );
    }
    assert!(
        phone["scroll_width"].as_f64().unwrap() <= phone["inner_width"].as_f64().unwrap(),
        "the phone page scrolls sideways: {} > {}",
        phone["scroll_width"],
        phone["inner_width"]
    );

    // The CSV link downloads the report's rows.
    let csv = summary["csv"].as_str().unwrap();
    assert_eq!(
        csv,
        cli(
            &db.name,
            "source-of-sale",
            "first_touch",
            ("2026-01-10", "2026-01-31"),
            "csv"
        )
    );

    // Empty database and ClickHouse down: words, not a blank page.
    let empty_state = summary["empty"]["empty_state"].as_str().unwrap();
    assert!(
        empty_state.contains("No conversions or touches in this period"),
        "{empty_state}"
    );
    assert_eq!(summary["down"]["status"], 503);
    let banner = summary["down"]["banner"].as_str().unwrap();
    assert!(banner.contains("ClickHouse is not answering"), "{banner}");
    assert_eq!(summary["down"]["has_form"], true);

    let screenshots = summary["screenshots"].as_array().unwrap();
    assert!(screenshots.len() >= 6);
    for shot in screenshots {
        let path = Path::new(shot.as_str().unwrap());
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            path.display()
        );
    }
}
