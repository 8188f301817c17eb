//! The sink against the real server: ClickHouse vanishing (through a proxy the test cuts)
//! means retries with consumption paused, then it resumes by itself; a full replay from the
//! beginning of the topic lands every row again and still counts each event once. A row
//! ClickHouse refuses goes to the DLQ and the rest of its batch lands; missing tables or a
//! table that refuses every row stall the sink instead, with nothing dead-lettered.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use touchstream_avro::DlqRecord;
use touchstream_model::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, EventType, LifecycleStage,
    RawEvent, TouchFields,
};
use touchstream_tests::{
    FlakyProxy, ScratchDatabase, Service, TestTopics, eventually, free_port, metric_sum,
    produce_payloads, read_committed_all, unique, wait_ready,
};
use touchstream_warehouse::WarehouseConfig;

fn attributed(i: usize) -> AttributedEvent {
    let purchase = i % 10 == 9;
    let t = touchstream_model::time::now_ms() - 3_600_000 + i as i64;
    let event = RawEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_type: if purchase {
            EventType::Purchase
        } else {
            EventType::Click
        },
        anonymous_id: format!("s-{}", i / 10),
        user_id: None,
        occurred_at: t,
        sent_at: None,
        received_at: t,
        event_time: t,
        page_url: "https://shop.example/".into(),
        referrer: Some("https://t.co/x".into()),
        user_agent: None,
        ip: None,
        properties: BTreeMap::new(),
        target_url: None,
        element: None,
        signup_kind: None,
        method: None,
        asset_id: None,
        asset_kind: None,
        order_id: purchase.then(|| format!("o-{i}")),
        revenue: purchase.then_some(1000),
        currency: purchase.then(|| "EUR".into()),
        site_id: touchstream_model::DEFAULT_SITE.into(),
        event_name: None,
        clock_correction_ms: 0,
        received_via: touchstream_model::received_via::EVENTS.into(),
    };
    let touch = TouchFields {
        channel: "Organic Social".into(),
        source: "x".into(),
        medium: "referral".into(),
        social_network: Some("x".into()),
        ..TouchFields::direct()
    };
    let conversion = purchase.then(|| ConversionCredits {
        touches_to_conversion: 1,
        days_to_conversion: 0.0,
        credits: AttributionModel::ALL
            .iter()
            .map(|m| Credit {
                model: *m,
                touch_event_id: format!("touch-{i}"),
                touch_time: t - 1000,
                channel: "Organic Social".into(),
                source: "x".into(),
                social_network: Some("x".into()),
                campaign: None,
                content: None,
                weight: 1.0,
                revenue_credit: 1000.0,
                retracted: false,
            })
            .collect(),
    });
    AttributedEvent {
        session_id: format!("s-{}:0", i / 10),
        identity_id: format!("s-{}", i / 10),
        lifecycle_stage: if purchase {
            LifecycleStage::Client
        } else {
            LifecycleStage::Visitor
        },
        purchase_count: i32::from(purchase),
        opens_touch: !purchase,
        touch,
        conversion,
        event,
        revision: 0,
        session: Default::default(),
        is_late: false,
    }
}

async fn produce(topic: &str, events: &[AttributedEvent]) {
    produce_payloads(topic, &records(events)).await;
}

fn start_sink(
    topics: &TestTopics,
    db: &ScratchDatabase,
    clickhouse_port: u16,
    group: &str,
) -> (Service, String) {
    start_sink_with(topics, db, clickhouse_port, group, &[])
}

fn start_sink_with(
    topics: &TestTopics,
    db: &ScratchDatabase,
    clickhouse_port: u16,
    group: &str,
    extra: &[(&str, &str)],
) -> (Service, String) {
    let ops = free_port();
    let mut env = topics.env("sink");
    env.extend([
        (
            "TOUCHSTREAM_SINK__CLICKHOUSE__DATABASE".into(),
            db.name.clone(),
        ),
        (
            "TOUCHSTREAM_SINK__CLICKHOUSE__URL".into(),
            format!("http://127.0.0.1:{clickhouse_port}"),
        ),
        ("TOUCHSTREAM_SINK__GROUP_ID".into(), group.to_string()),
        (
            "TOUCHSTREAM_SINK__OPS__LISTEN".into(),
            format!("127.0.0.1:{ops}"),
        ),
        ("TOUCHSTREAM_SINK__BATCH__MAX_WAIT_MS".into(), "200".into()),
        ("TOUCHSTREAM_SINK__BATCH__MAX_ROWS".into(), "100".into()),
        ("TOUCHSTREAM_SINK__RETRY__INITIAL_MS".into(), "100".into()),
        ("TOUCHSTREAM_SINK__RETRY__MAX_MS".into(), "1000".into()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    (
        Service::spawn("sink", &[], &env),
        format!("http://127.0.0.1:{ops}"),
    )
}

async fn count(db: &ScratchDatabase, sql: &str) -> u64 {
    db.query(sql).await.trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_outage_pauses_and_resumes_and_a_full_replay_counts_each_event_once() {
    let topics = TestTopics::create(2).await;
    let db = ScratchDatabase::new();
    let proxy = FlakyProxy::start("127.0.0.1:8123").await;
    let (mut sink, ops) = start_sink(&topics, &db, proxy.port, &unique("sink-"));
    wait_ready(&format!("{ops}/readyz"), &sink).await;

    let events: Vec<AttributedEvent> = (0..600).map(attributed).collect();
    produce(&topics.topics.attributed, &events[..300]).await;
    eventually("the first 300 events", Duration::from_secs(60), || async {
        (count(&db, "SELECT count() FROM events").await == 300).then_some(())
    })
    .await;

    // ClickHouse gone: the sink retries with backoff, reports not ready, inserts nothing.
    proxy.cut();
    produce(&topics.topics.attributed, &events[300..]).await;
    eventually("insert retries", Duration::from_secs(30), || async {
        (metric_sum(&ops, "touchstream_sink_insert_retries_total", "").await >= 3.0).then_some(())
    })
    .await;
    let ready = reqwest::get(format!("{ops}/readyz")).await.unwrap();
    assert_eq!(
        ready.status(),
        503,
        "not ready while ClickHouse is unreachable"
    );
    assert!(ready.text().await.unwrap().contains("clickhouse"));
    assert_eq!(count(&db, "SELECT count() FROM events").await, 300);

    // Back: it resumes by itself and loads the rest.
    proxy.restore();
    eventually("all 600 events", Duration::from_secs(60), || async {
        (count(&db, "SELECT count() FROM events FINAL").await == 600).then_some(())
    })
    .await;
    assert_eq!(
        count(&db, "SELECT count() FROM conversion_credits FINAL").await,
        60 * 6
    );
    assert!(
        sink.terminate(),
        "sink did not drain and exit 0:\n{}",
        sink.log_text()
    );

    // A replay of the whole topic (a new group) lands every row a second time…
    let (mut replay, ops) = start_sink(&topics, &db, 8123, &unique("sink-replay-"));
    wait_ready(&format!("{ops}/readyz"), &replay).await;
    eventually("the replayed rows", Duration::from_secs(60), || async {
        (metric_sum(
            &ops,
            "touchstream_sink_rows_inserted_total{table=\"events\"}",
            "",
        )
        .await
            >= 600.0)
            .then_some(())
    })
    .await;
    // …and the deduplicated views of it still count each event and credit once.
    assert_eq!(count(&db, "SELECT count() FROM events FINAL").await, 600);
    assert_eq!(
        count(&db, "SELECT uniqExact(event_id) FROM events").await,
        600
    );
    assert_eq!(
        count(&db, "SELECT count() FROM conversion_credits FINAL").await,
        60 * 6
    );
    let revenue = db
        .query(
            "SELECT sum(revenue_credit) FROM conversion_credits FINAL WHERE model = 'last_touch'",
        )
        .await;
    assert_eq!(revenue.trim(), "60000");
    assert!(replay.terminate());
}

fn visitor(mut e: AttributedEvent, id: &str) -> AttributedEvent {
    e.event.anonymous_id = id.into();
    e.identity_id = id.into();
    e
}

fn records(events: &[AttributedEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| {
            (
                e.event.anonymous_id.clone(),
                touchstream_avro::encode(e).unwrap(),
            )
        })
        .collect()
}

async fn dlq(topics: &TestTopics) -> Vec<DlqRecord> {
    read_committed_all(&topics.topics.dlq)
        .await
        .iter()
        .map(|m| {
            use rdkafka::Message;
            touchstream_avro::decode(m.payload().unwrap()).unwrap()
        })
        .collect()
}

async fn readyz(ops: &str) -> u16 {
    reqwest::get(format!("{ops}/readyz"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits for `n` more insert retries than `before`, and checks the sink says it is not ready.
async fn stalled(ops: &str, before: f64) -> f64 {
    let retries = eventually("insert retries", Duration::from_secs(30), || async {
        let r = metric_sum(ops, "touchstream_sink_insert_retries_total", "").await;
        (r >= before + 2.0).then_some(r)
    })
    .await;
    assert_eq!(readyz(ops).await, 503, "not ready while stalled");
    retries
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_rows_go_to_the_dlq_but_missing_or_unfitting_tables_stall_the_sink() {
    let topics = TestTopics::create(1).await;
    let db = ScratchDatabase::new();
    let attributed_topic = topics.topics.attributed.clone();
    let (mut sink, ops) = start_sink_with(
        &topics,
        &db,
        8123,
        &unique("sink-"),
        &[("TOUCHSTREAM_SINK__MIGRATE_ON_START", "false")],
    );
    wait_ready(&format!("{ops}/readyz"), &sink).await;

    // 1. No tables yet (migrations off): the sink waits for them instead of dead-lettering.
    let first: Vec<AttributedEvent> = (0..100).map(attributed).collect();
    produce(&attributed_topic, &first).await;
    let retries = stalled(&ops, 0.0).await;
    touchstream_warehouse::migrate(&WarehouseConfig {
        database: db.name.clone(),
        ..WarehouseConfig::default()
    })
    .await
    .unwrap();
    eventually(
        "the first 100 rows once the tables exist",
        Duration::from_secs(60),
        || async { (count(&db, "SELECT count() FROM events").await == 100).then_some(()) },
    )
    .await;
    assert_eq!(readyz(&ops).await, 200);

    // 2. A guard column refuses one visitor's rows (what a CHECK constraint does on current
    // ClickHouse; 18.16 has none). That row and an undecodable record go to the DLQ with their
    // reasons and offsets; the rows around them land.
    db.query(
        "ALTER TABLE events ADD COLUMN guard UInt8 MATERIALIZED throwIf(anonymous_id = 'poison')",
    )
    .await;
    let mut second = records(&(100..150).map(attributed).collect::<Vec<_>>());
    second.extend(records(&[visitor(attributed(150), "poison")]));
    second.push(("junk".into(), b"not an attributed event".to_vec()));
    second.extend(records(&(151..200).map(attributed).collect::<Vec<_>>()));
    let offsets = produce_payloads(&attributed_topic, &second).await;
    eventually(
        "the 99 good rows of the second lot",
        Duration::from_secs(60),
        || async { (count(&db, "SELECT count() FROM events FINAL").await == 199).then_some(()) },
    )
    .await;
    let dead = eventually("two DLQ records", Duration::from_secs(30), || async {
        let d = dlq(&topics).await;
        (d.len() >= 2).then_some(d)
    })
    .await;
    assert_eq!(dead.len(), 2, "{dead:#?}");
    let refused = dead
        .iter()
        .find(|r| r.reason.contains("clickhouse rejected the row"))
        .unwrap_or_else(|| panic!("no refused row in {dead:#?}"));
    assert!(refused.reason.contains("throwIf"), "{}", refused.reason);
    assert_eq!(refused.source_offset, Some(offsets[50].1));
    // The refused row is kept as the attributed event the sink read (its Avro bytes, with its
    // key), so it can be replayed to the topic; not as a printout of the row.
    let original: touchstream_model::AttributedEvent =
        touchstream_avro::decode(&refused.payload).unwrap();
    assert_eq!(original.event.anonymous_id, "poison");
    assert_eq!(refused.payload, second[50].1);
    assert_eq!(refused.source_key.as_deref(), Some(second[50].0.as_bytes()));
    let undecodable = dead
        .iter()
        .find(|r| r.reason.contains("undecodable attributed event"))
        .unwrap_or_else(|| panic!("no undecodable record in {dead:#?}"));
    assert_eq!(undecodable.source_offset, Some(offsets[51].1));
    assert_eq!(undecodable.payload, b"not an attributed event");
    assert_eq!(
        count(
            &db,
            "SELECT count() FROM events WHERE anonymous_id = 'poison'"
        )
        .await,
        0
    );
    // The refused row and the undecodable record: every dead letter is counted.
    assert_eq!(
        metric_sum(&ops, "touchstream_sink_dlq_rows_total", "").await,
        2.0
    );

    // 3. A guard that refuses every row of a batch: no row is at fault, so none is
    // dead-lettered; the sink stalls until the table is fixed, then loads them.
    db.query(
        "ALTER TABLE events ADD COLUMN guard2 UInt8 MATERIALIZED throwIf(startsWith(anonymous_id, 'stall-'))",
    )
    .await;
    let third: Vec<AttributedEvent> = (200..220)
        .map(|i| visitor(attributed(i), &format!("stall-{}", i % 3)))
        .collect();
    produce(&attributed_topic, &third).await;
    stalled(&ops, retries).await;
    assert_eq!(count(&db, "SELECT count() FROM events FINAL").await, 199);
    assert_eq!(dlq(&topics).await.len(), 2, "nothing more dead-lettered");
    db.query("ALTER TABLE events DROP COLUMN guard2").await;
    eventually(
        "the stalled rows after the fix",
        Duration::from_secs(60),
        || async { (count(&db, "SELECT count() FROM events FINAL").await == 219).then_some(()) },
    )
    .await;
    assert_eq!(readyz(&ops).await, 200);
    assert!(sink.terminate(), "{}", sink.log_text());
}
