//! The warehouse against the real local ClickHouse 18.16 (`deploy/services.sh start clickhouse`)
//! and, through chdb, current ClickHouse. Each test works in its own scratch database
//! `ts_test_<random>`, dropped when the test ends, so the tests run in parallel.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use time::macros::datetime;
use touchstream_model::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, EventType, LifecycleStage,
    RawEvent, TouchFields,
};
use touchstream_warehouse::reports::{self, ReportParams, ReportTable};
use touchstream_warehouse::{
    CreditRow, EventRow, WarehouseConfig, WarehouseError, client, insert, migrate, rows_of,
};

const URL: &str = "http://127.0.0.1:8123";

/// A database of its own for one test; dropped (from a helper thread) when it goes out of scope,
/// also when the test panics.
struct ScratchDb {
    cfg: WarehouseConfig,
}

impl ScratchDb {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            cfg: WarehouseConfig {
                url: URL.into(),
                database: format!("ts_test_{}", &id[..12]),
                ..WarehouseConfig::default()
            },
        }
    }

    /// The same database as another user.
    fn as_user(&self, user: &str, password: &str) -> WarehouseConfig {
        WarehouseConfig {
            user: user.into(),
            password: password.into(),
            ..self.cfg.clone()
        }
    }

    async fn migrated() -> Self {
        let db = Self::new();
        migrate(&db.cfg).await.unwrap();
        db
    }

    fn client(&self) -> clickhouse::Client {
        client(&self.cfg)
    }

    async fn count(&self, sql: &str) -> u64 {
        self.client().query(sql).fetch_one::<u64>().await.unwrap()
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let cfg = self.cfg.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                clickhouse::Client::default()
                    .with_url(cfg.url)
                    .with_validation(false)
                    .query("DROP DATABASE IF EXISTS ?")
                    .bind(clickhouse::sql::Identifier(&cfg.database))
                    .execute()
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop scratch database {}: {dropped:?}",
                self.cfg.database
            );
        }
    }
}

// ------------------------------------------------------------------------------------ fixture
//
// January 2026, times relative to T0 = 2026-01-10 00:00 UTC.
//   alice (anon-alice, later user-alice): c1 instagram reel-1 (T0), c2 google (T0+1d),
//     s1 signup (T0+1d1h, 2 touches), p1 purchase 100.00 EUR (T0+3d, 2 touches),
//     c3 facebook paid ad-7 (T0+4d), p2 purchase 40.00 EUR (T0+5d, 3 touches)
//   bob (anon-bob): c4 facebook organic post-42 (T0+2d), d1 download (T0+2d30m, 1 touch)
//   carol (anon-carol): c5 direct (T0+6d), c6 internal click (T0+6d1m, opens no touch)
//   dave (anon-dave): c7 bot click from x (T0+6d)
//   eve (anon-eve), December 2025, outside the period: c8 tiktok, p3 purchase 9.99 USD
// Credits under last_non_direct and linear (the fixture does not need the other models).

const T0: i64 = 1_768_003_200_000; // 2026-01-10T00:00:00Z in ms
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

struct Touch {
    event: u32,
    time: i64,
    channel: &'static str,
    source: &'static str,
    social: Option<&'static str>,
    campaign: Option<&'static str>,
    content: Option<&'static str>,
}

const C1: Touch = Touch {
    event: 1,
    time: T0,
    channel: "Organic Social",
    source: "instagram",
    social: Some("instagram"),
    campaign: Some("spring"),
    content: Some("reel-1"),
};
const C2: Touch = Touch {
    event: 2,
    time: T0 + DAY,
    channel: "Organic Search",
    source: "google",
    social: None,
    campaign: None,
    content: None,
};
const C3: Touch = Touch {
    event: 3,
    time: T0 + 4 * DAY,
    channel: "Paid Social",
    source: "facebook",
    social: Some("facebook"),
    campaign: Some("retarget"),
    content: Some("ad-7"),
};
const C4: Touch = Touch {
    event: 4,
    time: T0 + 2 * DAY,
    channel: "Organic Social",
    source: "facebook",
    social: Some("facebook"),
    campaign: None,
    content: Some("post-42"),
};
const C5: Touch = Touch {
    event: 5,
    time: T0 + 6 * DAY,
    channel: "Direct",
    source: "(direct)",
    social: None,
    campaign: None,
    content: None,
};
const C7: Touch = Touch {
    event: 7,
    time: T0 + 6 * DAY,
    channel: "Organic Social",
    source: "x",
    social: Some("x"),
    campaign: None,
    content: None,
};
const C8: Touch = Touch {
    event: 8,
    time: T0 - 26 * DAY,
    channel: "Organic Social",
    source: "tiktok",
    social: Some("tiktok"),
    campaign: None,
    content: None,
};

fn raw(
    n: u32,
    event_type: EventType,
    anonymous_id: &str,
    user_id: Option<&str>,
    time: i64,
) -> RawEvent {
    RawEvent {
        event_id: id(n),
        event_type,
        anonymous_id: anonymous_id.into(),
        user_id: user_id.map(Into::into),
        occurred_at: time - 40,
        sent_at: Some(time + 10),
        received_at: time + 120,
        event_time: time,
        page_url: "https://shop.example/".into(),
        referrer: None,
        user_agent: Some("Mozilla/5.0".into()),
        ip: Some("203.0.113.0".into()),
        properties: BTreeMap::from([("plan".into(), "pro".into())]),
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

fn touch_fields(t: &Touch) -> TouchFields {
    TouchFields {
        channel: t.channel.into(),
        source: t.source.into(),
        medium: "social".into(),
        campaign: t.campaign.map(Into::into),
        content: t.content.map(Into::into),
        term: None,
        campaign_id: None,
        click_id_kind: None,
        social_network: t.social.map(Into::into),
        is_internal: false,
        is_bot: false,
        is_spam_referrer: false,
    }
}

fn click(t: &Touch, anonymous_id: &str, identity: &str) -> AttributedEvent {
    let mut event = raw(t.event, EventType::Click, anonymous_id, None, t.time);
    event.target_url = Some("https://shop.example/p".into());
    AttributedEvent {
        event,
        touch: touch_fields(t),
        opens_touch: true,
        session_id: format!("session-{}", t.event),
        identity_id: identity.into(),
        lifecycle_stage: LifecycleStage::Visitor,
        purchase_count: 0,
        conversion: None,
        revision: 0,
        session: (&touch_fields(t)).into(),
        is_late: false,
    }
}

fn credit(model: AttributionModel, t: &Touch, weight: f64, revenue: i64) -> Credit {
    Credit {
        model,
        touch_event_id: id(t.event),
        touch_time: t.time,
        channel: t.channel.into(),
        source: t.source.into(),
        social_network: t.social.map(Into::into),
        campaign: t.campaign.map(Into::into),
        content: t.content.map(Into::into),
        weight,
        revenue_credit: weight * revenue as f64,
        retracted: false,
    }
}

/// A conversion credited to its last touch under last_non_direct and evenly under linear.
#[allow(clippy::too_many_arguments)]
fn conversion(
    mut event: RawEvent,
    identity: &str,
    stage: LifecycleStage,
    purchase_count: i32,
    touches: &[&Touch],
    days: f64,
    revenue: Option<(i64, &str)>,
) -> AttributedEvent {
    if let Some((minor, currency)) = revenue {
        event.revenue = Some(minor);
        event.currency = Some(currency.into());
        event.order_id = Some(format!("order-{}", event.event_id));
    }
    let minor = revenue.map_or(0, |(minor, _)| minor);
    let last = touches[touches.len() - 1];
    let mut credits = vec![credit(AttributionModel::LastNonDirect, last, 1.0, minor)];
    for t in touches {
        credits.push(credit(
            AttributionModel::Linear,
            t,
            1.0 / touches.len() as f64,
            minor,
        ));
    }
    AttributedEvent {
        event,
        touch: TouchFields::direct(),
        opens_touch: false,
        session_id: "session-conversion".into(),
        identity_id: identity.into(),
        lifecycle_stage: stage,
        purchase_count,
        conversion: Some(ConversionCredits {
            touches_to_conversion: touches.len() as i32,
            days_to_conversion: days,
            credits,
        }),
        revision: 0,
        session: Default::default(),
        is_late: false,
    }
}

fn fixture() -> Vec<AttributedEvent> {
    use EventType::*;
    use LifecycleStage::*;
    let alice = "anon-alice";
    let mut signup = raw(11, Signup, alice, Some("user-alice"), T0 + DAY + HOUR);
    signup.signup_kind = Some("newsletter".into());
    let mut download = raw(14, Download, "anon-bob", None, T0 + 2 * DAY + HOUR / 2);
    download.asset_id = Some("checklist-1".into());
    let mut internal = click(&C5, "anon-carol", "anon-carol");
    internal.event.event_id = id(6);
    internal.event.event_time += 60_000;
    internal.touch = TouchFields {
        is_internal: true,
        ..TouchFields::direct()
    };
    internal.opens_touch = false;
    let mut bot = click(&C7, "anon-dave", "anon-dave");
    bot.touch.is_bot = true;
    vec![
        click(&C1, alice, alice),
        click(&C2, alice, alice),
        conversion(
            signup,
            "user-alice",
            Customer,
            0,
            &[&C1, &C2],
            25.0 / 24.0,
            None,
        ),
        conversion(
            raw(12, Purchase, alice, Some("user-alice"), T0 + 3 * DAY),
            "user-alice",
            Client,
            1,
            &[&C1, &C2],
            3.0,
            Some((10_000, "EUR")),
        ),
        click(&C3, alice, "user-alice"),
        conversion(
            raw(13, Purchase, alice, Some("user-alice"), T0 + 5 * DAY),
            "user-alice",
            Client,
            2,
            &[&C1, &C2, &C3],
            5.0,
            Some((4_000, "EUR")),
        ),
        click(&C4, "anon-bob", "anon-bob"),
        conversion(download, "anon-bob", Customer, 0, &[&C4], 1.0 / 48.0, None),
        click(&C5, "anon-carol", "anon-carol"),
        internal,
        bot,
        click(&C8, "anon-eve", "anon-eve"),
        conversion(
            raw(15, Purchase, "anon-eve", None, T0 - 25 * DAY),
            "anon-eve",
            Client,
            1,
            &[&C8],
            1.0,
            Some((999, "USD")),
        ),
    ]
}

fn fixture_rows() -> (Vec<EventRow>, Vec<CreditRow>) {
    let mut events = Vec::new();
    let mut credits = Vec::new();
    for (i, event) in fixture().iter().enumerate() {
        let (row, rows) = rows_of(event, T0 + 30 * DAY + i as i64);
        events.push(row);
        credits.extend(rows);
    }
    (events, credits)
}

fn january(model: AttributionModel) -> ReportParams {
    ReportParams {
        site: "default".into(),
        from: datetime!(2026-01-01 00:00 UTC),
        to: datetime!(2026-02-01 00:00 UTC),
        model,
    }
}

async fn report(client: &clickhouse::Client, name: &str, params: &ReportParams) -> ReportTable {
    let report = reports::by_name(name).unwrap();
    reports::run(client, report, params)
        .await
        .unwrap_or_else(|e| panic!("report {name}: {e}"))
}

/// Compares a report with the expected header and rows; numbers compare as numbers.
fn assert_table(name: &str, table: &ReportTable, columns: &[&str], rows: &[&[&str]]) {
    assert_eq!(table.columns, columns, "{name}: columns");
    assert_eq!(
        table.rows.len(),
        rows.len(),
        "{name}: rows {:?}",
        table.rows
    );
    for (got, want) in table.rows.iter().zip(rows) {
        let same = got.len() == want.len()
            && got.iter().zip(want.iter()).all(|(g, w)| {
                match (g.parse::<f64>(), w.parse::<f64>()) {
                    (Ok(g), Ok(w)) => (g - w).abs() < 1e-9,
                    _ => g == w,
                }
            });
        assert!(
            same,
            "{name}: got {got:?}, expected {want:?}\nall rows: {:?}",
            table.rows
        );
    }
}

/// Every report over the January fixture, with the numbers worked out by hand from the
/// fixture above (see the comments for the arithmetic).
async fn assert_reports(client: &clickhouse::Client) {
    use AttributionModel::{LastNonDirect, Linear};

    // last_non_direct: s1 and p1 → google, p2 → facebook paid (c3), d1 → facebook organic (c4).
    // Eve's December purchase is outside the period.
    let t = report(client, "source-of-sale", &january(LastNonDirect)).await;
    let columns = [
        "channel",
        "source",
        "social_network",
        "sales",
        "micro_conversions",
        "revenue_minor",
        "currencies",
    ];
    assert_table(
        "source-of-sale",
        &t,
        &columns,
        &[
            &["Organic Search", "google", "", "1", "1", "10000", "EUR"],
            &[
                "Paid Social",
                "facebook",
                "facebook",
                "1",
                "0",
                "4000",
                "EUR",
            ],
            &["Organic Social", "facebook", "facebook", "0", "1", "0", ""],
        ],
    );
    // linear: s1 ½ c1 ½ c2; p1 ½ ½ of 10000; p2 ⅓ each of c1, c2, c3 of 4000; d1 all c4.
    // c1 and c2 each: sales ½ + ⅓ = 0.83, micro ½, revenue 5000 + 1333.33 = 6333.
    let t = report(client, "source-of-sale", &january(Linear)).await;
    assert_table(
        "source-of-sale linear",
        &t,
        &columns,
        &[
            &["Organic Search", "google", "", "0.83", "0.5", "6333", "EUR"],
            &[
                "Organic Social",
                "instagram",
                "instagram",
                "0.83",
                "0.5",
                "6333",
                "EUR",
            ],
            &[
                "Paid Social",
                "facebook",
                "facebook",
                "0.33",
                "0",
                "1333",
                "EUR",
            ],
            &["Organic Social", "facebook", "facebook", "0", "1", "0", ""],
        ],
    );

    // Only facebook has social credits under last_non_direct: d1 (download) and p2.
    let columns = [
        "social_network",
        "signups",
        "downloads",
        "micro_conversions",
        "macro_conversions",
        "revenue_minor",
        "micro_per_macro",
    ];
    let t = report(client, "social-micro-macro", &january(LastNonDirect)).await;
    assert_table(
        "social-micro-macro",
        &t,
        &columns,
        &[&["facebook", "0", "1", "1", "1", "4000", "1"]],
    );
    // linear: instagram (c1) signups ½, purchases ½ + ⅓; facebook c4 download 1, c3 ⅓ of p2.
    let t = report(client, "social-micro-macro", &january(Linear)).await;
    assert_table(
        "social-micro-macro linear",
        &t,
        &columns,
        &[
            &["instagram", "0.5", "0", "0.5", "0.83", "6333", "0.6"],
            &["facebook", "0", "1", "1", "0.33", "1333", "3"],
        ],
    );

    let columns = [
        "content",
        "source",
        "social_network",
        "campaign",
        "conversions",
        "sales",
        "revenue_minor",
        "conversions_touched",
    ];
    let t = report(client, "posts", &january(LastNonDirect)).await;
    assert_table(
        "posts",
        &t,
        &columns,
        &[
            &[
                "ad-7", "facebook", "facebook", "retarget", "1", "1", "4000", "1",
            ],
            &["post-42", "facebook", "facebook", "", "1", "0", "0", "1"],
        ],
    );
    // reel-1 (c1) is in s1, p1, p2: ½ + ½ + ⅓ = 1.33 conversions, ½ + ⅓ sales.
    let t = report(client, "posts", &january(Linear)).await;
    assert_table(
        "posts linear",
        &t,
        &columns,
        &[
            &[
                "reel-1",
                "instagram",
                "instagram",
                "spring",
                "1.33",
                "0.83",
                "6333",
                "3",
            ],
            &[
                "ad-7", "facebook", "facebook", "retarget", "0.33", "0.33", "1333", "1",
            ],
            &["post-42", "facebook", "facebook", "", "1", "0", "0", "1"],
        ],
    );

    // s1: 2 touches, 1.04 days; p1: 2, 3.0; p2: 3, 5.0; d1: 1, 0.02 (p3 is December).
    let t = report(client, "path-length", &january(LastNonDirect)).await;
    assert_table(
        "path-length",
        &t,
        &[
            "measure",
            "bucket",
            "conversions",
            "purchases",
            "micro_conversions",
        ],
        &[
            &["touches", "1", "1", "0", "1"],
            &["touches", "2", "2", "1", "1"],
            &["touches", "3", "1", "1", "0"],
            &["days", "0-1", "1", "0", "1"],
            &["days", "1-3", "1", "0", "1"],
            &["days", "3-7", "2", "2", "0"],
        ],
    );

    // anon-alice resolves to user-alice (her latest identity), so her pre-signup clicks on
    // instagram and google join her signup and purchases. The internal click and the bot's
    // click open no counted touch.
    let t = report(client, "funnel", &january(LastNonDirect)).await;
    assert_table(
        "funnel",
        &t,
        &[
            "source",
            "clicked",
            "signed_up",
            "downloaded",
            "purchased",
            "click_to_purchase_pct",
        ],
        &[
            &["facebook", "2", "1", "1", "1", "50"],
            &["google", "1", "1", "0", "1", "100"],
            &["instagram", "1", "1", "0", "1", "100"],
            &["(direct)", "1", "0", "0", "0", "0"],
        ],
    );

    // First touches in January: alice instagram (3 conversions, 2 purchases), bob facebook
    // (1 download), carol Direct (none). Eve's first touch is in December; dave is a bot.
    let t = report(client, "lifecycle", &january(LastNonDirect)).await;
    assert_table(
        "lifecycle",
        &t,
        &[
            "first_touch_network",
            "visitors",
            "customers",
            "clients",
            "repeat_clients",
        ],
        &[
            &["instagram", "1", "1", "1", "1"],
            &["Direct", "1", "0", "0", "0"],
            &["facebook", "1", "1", "0", "0"],
        ],
    );

    // last_non_direct: search = s1 + p1 (2 of 4 conversions, 1 of 2 sales), social = p2 + d1.
    let columns = [
        "channel_group",
        "conversions",
        "conversions_pct",
        "sales",
        "sales_pct",
        "revenue_minor",
    ];
    let t = report(client, "channel-share", &january(LastNonDirect)).await;
    assert_table(
        "channel-share",
        &t,
        &columns,
        &[
            &["search", "2", "50", "1", "50", "10000"],
            &["social", "2", "50", "1", "50", "4000"],
        ],
    );
    // linear: search = c2 = ½ + ½ + ⅓ = 1.33 (33.3 %), sales ½ + ⅓ = 0.83 (41.7 %), 6333;
    // social = c1 + c3 + c4 = 1.33 + 0.33 + 1 = 2.67, sales 0.83 + 0.33 = 1.17, 7667.
    let t = report(client, "channel-share", &january(Linear)).await;
    assert_table(
        "channel-share linear",
        &t,
        &columns,
        &[
            &["social", "2.67", "66.7", "1.17", "58.3", "7667"],
            &["search", "1.33", "33.3", "0.83", "41.7", "6333"],
        ],
    );
}

// -------------------------------------------------------------------------------------- tests

/// An upgrade from a release before migration 0003: rows written into the tables 0001 and 0002
/// created are copied into the rebuilt tables (site `default`, revision 0, their old sources in
/// both the event- and session-scoped columns), the reports read them, and the old tables are
/// kept because they held rows. On a new database (every other test here) they are dropped.
#[tokio::test]
async fn migrating_a_database_written_before_sites_keeps_its_rows() {
    let db = ScratchDb::new();
    touchstream_warehouse::migrate::migrate_up_to(&db.cfg, 2)
        .await
        .unwrap();
    let old_click = "00000000-0000-4000-8000-00000000c001";
    let old_purchase = "00000000-0000-4000-8000-00000000b001";
    for sql in [
        format!(
            "INSERT INTO events (event_id, event_type, event_time, event_time_ms, occurred_at_ms,
                received_at, received_at_ms, ingested_at, ingested_at_ms, anonymous_id, identity_id,
                session_id, page_url, channel, source, medium, social_network, opens_touch,
                lifecycle_stage, purchase_count)
             VALUES ('{old_click}', 'click', toDateTime('2026-01-10 00:00:00', 'UTC'), 1768003200000,
                1768003200000, toDateTime('2026-01-10 00:00:00', 'UTC'), 1768003200000,
                toDateTime('2026-01-10 00:00:00', 'UTC'), 1768003200000, 'anon-old', 'anon-old', 's',
                'https://shop.example/', 'Organic Social', 'linkedin', 'referral', 'linkedin', 1,
                'visitor', 0)"
        ),
        format!(
            "INSERT INTO events (event_id, event_type, event_time, event_time_ms, occurred_at_ms,
                received_at, received_at_ms, ingested_at, ingested_at_ms, anonymous_id, identity_id,
                session_id, page_url, order_id, revenue, currency, channel, source, medium,
                social_network, opens_touch, lifecycle_stage, purchase_count, touches_to_conversion,
                days_to_conversion)
             VALUES ('{old_purchase}', 'purchase', toDateTime('2026-01-11 00:00:00', 'UTC'),
                1768089600000, 1768089600000, toDateTime('2026-01-11 00:00:00', 'UTC'), 1768089600000,
                toDateTime('2026-01-11 00:00:00', 'UTC'), 1768089600000, 'anon-old', 'anon-old', 's',
                'https://shop.example/thanks', 'o-old', 2500, 'EUR', 'Organic Social', 'linkedin',
                'referral', 'linkedin', 0, 'client', 1, 1, 1.0)"
        ),
        format!(
            "INSERT INTO conversion_credits (conversion_event_id, conversion_type, conversion_time,
                conversion_time_ms, identity_id, model, touch_event_id, touch_time, touch_time_ms,
                channel, source, social_network, weight, revenue, revenue_credit, currency,
                touches_to_conversion, days_to_conversion, ingested_at, ingested_at_ms)
             VALUES ('{old_purchase}', 'purchase', toDateTime('2026-01-11 00:00:00', 'UTC'),
                1768089600000, 'anon-old', 'last_non_direct', '{old_click}',
                toDateTime('2026-01-10 00:00:00', 'UTC'), 1768003200000, 'Organic Social', 'linkedin',
                'linkedin', 1.0, 2500, 2500.0, 'EUR', 1, 1.0, toDateTime('2026-01-11 00:00:00', 'UTC'),
                1768089600000)"
        ),
    ] {
        db.client().query(&sql).execute().await.unwrap();
    }

    let applied = migrate(&db.cfg).await.unwrap();
    assert_eq!(applied, ["0003_sites_and_revisions"]);
    let copied = db
        .client()
        .query(
            "SELECT toString(event_id), site_id, revision, channel, session_source, clock_correction_ms
             FROM events FINAL ORDER BY event_time_ms",
        )
        .fetch_all::<(String, String, u32, String, String, i64)>()
        .await
        .unwrap();
    assert_eq!(
        copied,
        [
            (
                old_click.into(),
                "default".into(),
                0,
                "Organic Social".into(),
                "linkedin".into(),
                0
            ),
            (
                old_purchase.into(),
                "default".into(),
                0,
                "Organic Social".into(),
                "linkedin".into(),
                0
            ),
        ]
    );
    let credit = db
        .client()
        .query("SELECT anonymous_id, site_id, weight, retracted FROM conversion_credits FINAL")
        .fetch_all::<(String, String, f64, u8)>()
        .await
        .unwrap();
    assert_eq!(credit, [("anon-old".into(), "default".into(), 1.0, 0)]);
    let table = report(
        &db.client(),
        "source-of-sale",
        &january(AttributionModel::LastNonDirect),
    )
    .await;
    assert_eq!(
        table.rows,
        [[
            "Organic Social",
            "linkedin",
            "linkedin",
            "1",
            "0",
            "2500",
            "EUR"
        ]]
    );

    let tables = db
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&db.cfg.database)
        .fetch_all::<String>()
        .await
        .unwrap();
    assert_eq!(
        tables,
        [
            "conversion_credits",
            "conversion_credits_0002",
            "events",
            "events_0002",
            "schema_migrations"
        ]
    );
    assert_eq!(migrate(&db.cfg).await.unwrap(), Vec::<String>::new());
}

/// (a) Two migrations at once on a fresh database, then a third: every statement is safe to
/// repeat, nothing fails, and `schema_migrations` records each migration once.
#[tokio::test]
async fn migrations_run_twice_and_concurrently() {
    let db = ScratchDb::new();
    let (first, second) = tokio::join!(migrate(&db.cfg), migrate(&db.cfg));
    let (first, second) = (first.unwrap(), second.unwrap());
    let all: Vec<String> = touchstream_warehouse::migrate::MIGRATIONS
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert!(
        first == all || second == all,
        "one run applies everything: {first:?} {second:?}"
    );

    assert_eq!(
        migrate(&db.cfg).await.unwrap(),
        Vec::<String>::new(),
        "a third run has nothing to do"
    );

    let recorded = db
        .client()
        .query("SELECT name FROM schema_migrations FINAL ORDER BY name")
        .fetch_all::<String>()
        .await
        .unwrap();
    assert_eq!(recorded, all);
    let tables = db
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&db.cfg.database)
        .fetch_all::<String>()
        .await
        .unwrap();
    assert_eq!(
        tables,
        ["conversion_credits", "events", "schema_migrations"]
    );
}

/// The row structs match the tables column for column (inserts run without validation, so
/// this is what catches a mismatch): what goes in comes back equal.
#[tokio::test]
async fn rows_round_trip_through_the_tables() {
    let db = ScratchDb::migrated().await;
    let (events, credits) = fixture_rows();
    insert(&db.client(), &events, &credits).await.unwrap();

    let mut back = db
        .client()
        .query("SELECT ?fields FROM events ORDER BY event_id")
        .fetch_all::<EventRow>()
        .await
        .unwrap();
    let mut sent = events.clone();
    sent.sort_by_key(|e| e.event_id);
    back.sort_by_key(|e| e.event_id);
    assert_eq!(back, sent);

    let back = db
        .client()
        .query("SELECT ?fields FROM conversion_credits")
        .fetch_all::<CreditRow>()
        .await
        .unwrap();
    assert_eq!(back.len(), credits.len());
    for row in &credits {
        assert!(back.contains(row), "{row:?} did not come back");
    }
}

/// (c) Every report, run with bound parameters, against numbers worked out from the fixture;
/// the rows are written by the sink's user.
#[tokio::test]
async fn reports_give_the_expected_numbers() {
    let db = ScratchDb::migrated().await;
    let (events, credits) = fixture_rows();
    let sink = client(&db.as_user("touchstream_sink", "touchstream_sink"));
    insert(&sink, &events, &credits).await.unwrap();
    assert_reports(&db.client()).await;
}

/// (b) The same batch inserted twice (as a retried sink batch would be) with merges stopped:
/// the duplicates are physically there, and every report still gives the de-duplicated answer.
#[tokio::test]
async fn replayed_batches_do_not_double_count_before_merges() {
    let db = ScratchDb::migrated().await;
    for table in ["events", "conversion_credits"] {
        db.client()
            .query("SYSTEM STOP MERGES ?")
            .bind(clickhouse::sql::Identifier(&format!(
                "{}.{table}",
                db.cfg.database
            )))
            .execute()
            .await
            .unwrap();
    }
    let (events, credits) = fixture_rows();
    insert(&db.client(), &events, &credits).await.unwrap();
    insert(&db.client(), &events, &credits).await.unwrap();

    assert_reports(&db.client()).await;

    // Still unmerged after the reports ran: they really read duplicates.
    let n = events.len() as u64;
    assert_eq!(db.count("SELECT count() FROM events").await, 2 * n);
    assert_eq!(db.count("SELECT count() FROM events FINAL").await, n);
    let c = credits.len() as u64;
    assert_eq!(
        db.count("SELECT count() FROM conversion_credits").await,
        2 * c
    );
}

/// A conversion re-credited by a later revision (a late touch arrived) counts with its latest
/// credit set only, before merges, whatever order the revisions were inserted in: p1 (10 000
/// EUR, last_non_direct to google's c2) moves to a late linkedin touch c9, and c2's credit is
/// retracted.
#[tokio::test]
async fn a_re_credited_conversion_counts_with_its_latest_revision_only() {
    let db = ScratchDb::migrated().await;
    for table in ["events", "conversion_credits"] {
        db.client()
            .query("SYSTEM STOP MERGES ?")
            .bind(clickhouse::sql::Identifier(&format!(
                "{}.{table}",
                db.cfg.database
            )))
            .execute()
            .await
            .unwrap();
    }
    const C9: Touch = Touch {
        event: 9,
        time: T0 + 2 * DAY + HOUR,
        channel: "Organic Social",
        source: "linkedin",
        social: Some("linkedin"),
        campaign: None,
        content: None,
    };
    let p1 = fixture()
        .into_iter()
        .find(|e| e.event.event_id == id(12))
        .unwrap();
    let mut revised = conversion(
        p1.event.clone(),
        "user-alice",
        LifecycleStage::Client,
        1,
        &[&C1, &C2, &C9],
        3.0,
        Some((10_000, "EUR")),
    );
    revised.revision = 1;
    if let Some(c) = revised.conversion.as_mut() {
        c.credits.push(Credit {
            weight: 0.0,
            revenue_credit: 0.0,
            retracted: true,
            ..credit(AttributionModel::LastNonDirect, &C2, 0.0, 10_000)
        });
    }
    let (revised_row, revised_credits) = rows_of(&revised, T0 + 31 * DAY);
    let (events, credits) = fixture_rows();
    // The revision first, then the original twice: arrival order must not matter.
    insert(
        &db.client(),
        std::slice::from_ref(&revised_row),
        &revised_credits,
    )
    .await
    .unwrap();
    insert(&db.client(), &events, &credits).await.unwrap();
    insert(&db.client(), &events, &credits).await.unwrap();

    let t = report(
        &db.client(),
        "source-of-sale",
        &january(AttributionModel::LastNonDirect),
    )
    .await;
    assert_eq!(
        t.rows,
        [
            [
                "Organic Social",
                "linkedin",
                "linkedin",
                "1",
                "0",
                "10000",
                "EUR"
            ],
            [
                "Paid Social",
                "facebook",
                "facebook",
                "1",
                "0",
                "4000",
                "EUR"
            ],
            ["Organic Search", "google", "", "0", "1", "0", ""],
            ["Organic Social", "facebook", "facebook", "0", "1", "0", ""],
        ]
    );
    let t = report(
        &db.client(),
        "path-length",
        &january(AttributionModel::Linear),
    )
    .await;
    let touches: Vec<(String, String)> = t
        .rows
        .iter()
        .filter(|r| r[0] == "touches")
        .map(|r| (r[1].clone(), r[2].clone()))
        .collect();
    // s1 and p2 before: 2 and 3 touches; p1 now 3 (was 2); d1 1.
    assert_eq!(
        touches,
        [
            ("1".into(), "1".into()),
            ("2".into(), "1".into()),
            ("3".into(), "2".into())
        ]
    );
    let linear: f64 = db
        .client()
        .query(
            "SELECT sum(weight) FROM conversion_credits FINAL
             WHERE model = 'linear' AND conversion_event_id = toUUID(?)",
        )
        .bind(id(12))
        .fetch_one()
        .await
        .unwrap();
    assert!((linear - 1.0).abs() < 1e-9, "{linear}");
}

/// (e) The reader user can run reports but cannot write or change the schema.
#[tokio::test]
async fn the_reader_user_cannot_insert_or_create() {
    let db = ScratchDb::migrated().await;
    let reader = client(&db.as_user("touchstream_reader", "touchstream_reader"));

    let (events, credits) = fixture_rows();
    let error = insert(&reader, &events, &credits).await.unwrap_err();
    assert!(
        matches!(error, WarehouseError::Misconfigured { .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert_eq!(error.server_code(), Some(164), "READONLY: {error}");

    let created = reader
        .query("CREATE TABLE IF NOT EXISTS reader_was_here (x UInt8) ENGINE = Memory")
        .execute()
        .await;
    assert!(created.is_err(), "the reader created a table");

    let t = reports::run(
        &reader,
        reports::by_name("source-of-sale").unwrap(),
        &january(AttributionModel::LastNonDirect),
    )
    .await
    .unwrap();
    assert!(t.rows.is_empty(), "nothing was inserted");
    assert_eq!(db.count("SELECT count() FROM events").await, 0);
}

/// An unreachable server is a retryable error; rows the table cannot take are not.
#[tokio::test]
async fn outages_are_retryable_and_malformed_data_is_not() {
    let (events, credits) = fixture_rows();
    let down = WarehouseConfig {
        url: "http://127.0.0.1:1".into(),
        ..WarehouseConfig::default()
    };
    let error = insert(&client(&down), &events, &credits).await.unwrap_err();
    assert!(
        matches!(error, WarehouseError::Unavailable { .. }),
        "{error}"
    );
    assert!(error.is_retryable());

    // A database whose tables do not have the sink's columns: ClickHouse refuses the rows.
    let db = ScratchDb::new();
    for sql in [
        format!("CREATE DATABASE {}", db.cfg.database),
        format!(
            "CREATE TABLE {}.events (event_id UUID) ENGINE = Memory",
            db.cfg.database
        ),
    ] {
        clickhouse::Client::default()
            .with_url(URL)
            .query(&sql)
            .execute()
            .await
            .unwrap();
    }
    let error = insert(&db.client(), &events, &[]).await.unwrap_err();
    assert!(matches!(error, WarehouseError::Rejected { .. }), "{error}");
    assert!(!error.is_retryable());
}

/// (d) Every migration and report query on current ClickHouse (chdb, embedded).
#[test]
fn migrations_and_reports_run_on_current_clickhouse() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let python = touchstream_tests::services_dir().join("python/bin/python");
    let python = python.display().to_string();
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run `deploy/services.sh install-test-tools` (it installs chdb from \
         tests/python-requirements.txt)"
    );
    let out = Command::new(&python)
        .arg("tests/chdb/check_sql.py")
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_sql.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}
