//! The sink against the real server: ClickHouse vanishing (through a proxy the test cuts)
//! means retries with consumption paused, then it resumes by itself; a full replay from the
//! beginning of the topic lands every row again and still counts each event once.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use touchstream_model::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, EventType, LifecycleStage,
    RawEvent, TouchFields,
};
use touchstream_tests::{
    FlakyProxy, ScratchDatabase, Service, TestTopics, eventually, free_port, kafka, unique,
    wait_ready,
};

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
    }
}

async fn produce(topic: &str, events: impl Iterator<Item = AttributedEvent>) {
    let producer: FutureProducer = kafka().producer("sink-test").create().unwrap();
    for e in events {
        let payload = touchstream_avro::encode(&e).unwrap();
        producer
            .send(
                FutureRecord::to(topic)
                    .key(e.event.anonymous_id.as_bytes())
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

fn start_sink(
    topics: &TestTopics,
    db: &ScratchDatabase,
    clickhouse_port: u16,
    group: &str,
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
    (
        Service::spawn("sink", &[], &env),
        format!("http://127.0.0.1:{ops}"),
    )
}

async fn count(db: &ScratchDatabase, sql: &str) -> u64 {
    db.query(sql).await.trim().parse().unwrap()
}

async fn metric(ops: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_outage_pauses_and_resumes_and_a_full_replay_counts_each_event_once() {
    let topics = TestTopics::create(2).await;
    let db = ScratchDatabase::new();
    let proxy = FlakyProxy::start("127.0.0.1:8123").await;
    let (mut sink, ops) = start_sink(&topics, &db, proxy.port, &unique("sink-"));
    wait_ready(&format!("{ops}/readyz"), &sink).await;

    let events: Vec<AttributedEvent> = (0..600).map(attributed).collect();
    produce(&topics.topics.attributed, events[..300].iter().cloned()).await;
    eventually("the first 300 events", Duration::from_secs(60), || async {
        (count(&db, "SELECT count() FROM events").await == 300).then_some(())
    })
    .await;

    // ClickHouse gone: the sink retries with backoff, reports not ready, inserts nothing.
    proxy.cut();
    produce(&topics.topics.attributed, events[300..].iter().cloned()).await;
    eventually("insert retries", Duration::from_secs(30), || async {
        (metric(&ops, "touchstream_sink_insert_retries_total").await >= 3.0).then_some(())
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
        (metric(
            &ops,
            "touchstream_sink_rows_inserted_total{table=\"events\"}",
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
