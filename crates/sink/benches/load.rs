//! Rows per second from Kafka into ClickHouse: the sink, beside two baselines measured in the
//! same run on the same rows and the same table shape:
//!
//! - the ceiling: `clickhouse-client` inserting the rows from a file (Native format);
//! - for context, the same rows as a RowBinary file POSTed over HTTP: the sink's wire format
//!   with no Kafka and no decoding. On 18.16 the server parses RowBinary several times slower
//!   than Native, which bounds any RowBinary loader well below the Native ceiling;
//! - ClickHouse's own Kafka table engine loading the same events from a topic. ClickHouse
//!   18.16 cannot read Avro single-object encoding, so its topic carries the same rows as
//!   JSONEachRow.
//!
//! `cargo bench -p sink --bench load` (or `make bench`); needs `make services`. Prints a table
//! and writes `bench-results/sink.json`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sink::{Application, SinkConfig};
use touchstream_kafka::{KafkaConfig, Topics, ensure_topics};
use touchstream_model::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, EventType, LifecycleStage,
    RawEvent, TouchFields,
};
use touchstream_runtime::Shutdown;
use touchstream_warehouse::WarehouseConfig;

const EVENTS: usize = 200_000;
const LIMIT: Duration = Duration::from_secs(300);

fn event(i: usize, now: i64) -> AttributedEvent {
    let purchase = i % 20 == 19;
    let t = now - 86_400_000 + (i as i64 % 86_400_000);
    let visitor = format!("bench-{:06}", i / 12);
    let networks = ["facebook", "instagram", "x", "linkedin", "tiktok"];
    let network = networks[i % networks.len()];
    AttributedEvent {
        event: RawEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: if purchase {
                EventType::Purchase
            } else {
                EventType::Click
            },
            anonymous_id: visitor.clone(),
            user_id: None,
            occurred_at: t,
            sent_at: Some(t),
            received_at: t,
            event_time: t,
            page_url: format!(
                "https://shop.example/blog/post-{}?utm_source={network}&utm_medium=social",
                i % 40
            ),
            referrer: Some(format!("https://{network}.com/")),
            user_agent: Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0".into(),
            ),
            ip: Some("203.0.113.0".into()),
            properties: BTreeMap::new(),
            target_url: None,
            element: None,
            signup_kind: None,
            method: None,
            asset_id: None,
            asset_kind: None,
            order_id: purchase.then(|| format!("o-{i}")),
            revenue: purchase.then_some(4900),
            currency: purchase.then(|| "EUR".into()),
            site_id: touchstream_model::DEFAULT_SITE.into(),
            event_name: None,
            clock_correction_ms: 0,
            received_via: touchstream_model::received_via::EVENTS.into(),
        },
        touch: TouchFields {
            channel: "Organic Social".into(),
            source: network.into(),
            medium: "social".into(),
            social_network: Some(network.into()),
            content: Some(format!("post-{}", i % 40)),
            ..TouchFields::direct()
        },
        opens_touch: !purchase,
        session_id: format!("{visitor}:0"),
        identity_id: visitor,
        lifecycle_stage: if purchase {
            LifecycleStage::Client
        } else {
            LifecycleStage::Visitor
        },
        purchase_count: i32::from(purchase),
        conversion: purchase.then(|| ConversionCredits {
            touches_to_conversion: 3,
            days_to_conversion: 2.5,
            credits: AttributionModel::ALL
                .iter()
                .map(|m| Credit {
                    model: *m,
                    touch_event_id: format!("t-{i}"),
                    touch_time: t - 1000,
                    channel: "Organic Social".into(),
                    source: network.into(),
                    social_network: Some(network.into()),
                    campaign: None,
                    content: None,
                    weight: 1.0,
                    revenue_credit: 4900.0,
                    retracted: false,
                })
                .collect(),
        }),
        revision: 0,
        session: Default::default(),
        is_late: false,
    }
}

fn clickhouse(query: &str, stdin: Option<&std::path::Path>, stdout: Option<&std::path::Path>) {
    let mut c = Command::new("clickhouse-client");
    c.arg("--query").arg(query);
    if let Some(p) = stdin {
        c.stdin(std::fs::File::open(p).unwrap());
    }
    if let Some(p) = stdout {
        c.stdout(std::fs::File::create(p).unwrap());
    } else {
        c.stdout(Stdio::null());
    }
    let status = c
        .status()
        .unwrap_or_else(|e| panic!("clickhouse-client: {e}"));
    assert!(status.success(), "clickhouse-client failed on {query}");
}

/// Over HTTP: spawning clickhouse-client every poll would cost more CPU than the loaders.
async fn count(db: &str) -> u64 {
    let client = touchstream_warehouse::client(&WarehouseConfig {
        database: "default".into(),
        ..WarehouseConfig::default()
    });
    client
        .query(&format!("SELECT count() FROM {db}.events"))
        .fetch_one::<u64>()
        .await
        .unwrap_or(0)
}

/// Seconds until `db.events` holds `n` rows, or None after LIMIT.
async fn wait_rows(db: &str, n: u64, started: Instant) -> Option<f64> {
    let mut first = None;
    while started.elapsed() < LIMIT {
        let rows = count(db).await;
        if rows > 0 && first.is_none() {
            first = Some(started.elapsed());
            eprintln!("  first rows after {:?}", started.elapsed());
        }
        if rows >= n {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn produce(topic: &str, payloads: Vec<(String, Vec<u8>)>) {
    let mut cfg = KafkaConfig::default().producer("sink-bench");
    cfg.set("linger.ms", "20").set("batch.size", "1000000");
    let producer: FutureProducer = cfg.create().unwrap();
    for chunk in payloads.chunks(10_000) {
        let sends = chunk.iter().map(|(k, p)| {
            producer.send(
                FutureRecord::to(topic).key(k).payload(p),
                Duration::from_secs(30),
            )
        });
        for r in join_all(sends).await {
            r.unwrap();
        }
    }
}

async fn migrate(database: &str) {
    touchstream_warehouse::migrate(&WarehouseConfig {
        database: database.into(),
        ..WarehouseConfig::default()
    })
    .await
    .unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let id = std::process::id();
        let mut topics = Topics::with_prefix(&format!("touchstream.bench-sink-{id}"));
        topics.partitions = 4;
        let json_topic = format!("touchstream.bench-sink-{id}.json");
        ensure_topics(&KafkaConfig::default(), &[topics.spec(&topics.attributed), topics.spec(&topics.dlq), topics.spec(&json_topic)])
            .await
            .unwrap();
        let now = touchstream_model::time::now_ms();
        eprintln!("producing {EVENTS} attributed events …");
        let events: Vec<(String, Vec<u8>)> = (0..EVENTS)
            .map(|i| {
                let e = event(i, now);
                (e.event.anonymous_id.clone(), touchstream_avro::encode(&e).unwrap())
            })
            .collect();
        produce(&topics.attributed, events).await;

        // 1. The sink.
        let (sink_db, client_db, engine_db) = (format!("ts_bench_sink_{id}"), format!("ts_bench_client_{id}"), format!("ts_bench_kafka_{id}"));
        let config = SinkConfig {
            topics: topics.clone(),
            group_id: format!("bench-sink-{id}"),
            clickhouse: WarehouseConfig { database: sink_db.clone(), ..SinkConfig::default().clickhouse },
            ..SinkConfig::default()
        };
        let config = SinkConfig { ops: touchstream_runtime::OpsConfig { listen: "127.0.0.1:0".parse().unwrap() }, ..config };
        let app = Application::build(config).await.unwrap();
        eprintln!("sink loading …");
        let shutdown = Shutdown::new();
        let started = Instant::now();
        let task = tokio::spawn(app.run(shutdown.clone()));
        let sink_secs = wait_rows(&sink_db, EVENTS as u64, started).await.expect("sink did not load everything in time");
        shutdown.cancel();
        let _ = task.await;
        let credits = Command::new("clickhouse-client").arg("--query").arg(format!("SELECT count() FROM {sink_db}.conversion_credits")).output().unwrap();
        let credit_rows: u64 = String::from_utf8_lossy(&credits.stdout).trim().parse().unwrap_or(0);

        // 2. The ceiling: clickhouse-client inserting the same rows.
        let dir = std::env::temp_dir().join(format!("ts-bench-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let native = dir.join("events.native");
        clickhouse(&format!("SELECT * FROM {sink_db}.events FORMAT Native"), None, Some(&native));
        migrate(&client_db).await;
        eprintln!("clickhouse-client inserting the same rows …");
        let started = Instant::now();
        clickhouse(&format!("INSERT INTO {client_db}.events FORMAT Native"), Some(&native), None);
        let client_secs = started.elapsed().as_secs_f64();
        // The same rows in the sink's wire format: what the server's RowBinary parser allows.
        let rowbinary = dir.join("events.rowbinary");
        clickhouse(&format!("SELECT * FROM {sink_db}.events FORMAT RowBinary"), None, Some(&rowbinary));
        clickhouse(&format!("TRUNCATE TABLE {client_db}.events"), None, None);
        eprintln!("the same rows as RowBinary over HTTP …");
        let started = Instant::now();
        let status = Command::new("curl")
            .args(["-sf", "--data-binary"])
            .arg(format!("@{}", rowbinary.display()))
            .arg(format!("http://127.0.0.1:8123/?query=INSERT%20INTO%20{client_db}.events%20FORMAT%20RowBinary"))
            .status()
            .unwrap();
        assert!(status.success(), "RowBinary insert over HTTP failed");
        let rowbinary_secs = started.elapsed().as_secs_f64();

        // 3. ClickHouse's Kafka engine on the same rows as JSONEachRow.
        let jsonl = dir.join("events.jsonl");
        clickhouse(&format!("SELECT * FROM {sink_db}.events FORMAT JSONEachRow"), None, Some(&jsonl));
        let lines: Vec<(String, Vec<u8>)> =
            std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| (String::new(), l.as_bytes().to_vec())).collect();
        eprintln!("producing the same rows as JSONEachRow for the Kafka engine …");
        produce(&json_topic, lines).await;
        migrate(&engine_db).await;
        let columns = Command::new("clickhouse-client")
            .arg("--query")
            .arg(format!("SELECT name, type FROM system.columns WHERE database = '{engine_db}' AND table = 'events' FORMAT TabSeparatedRaw"))
            .output()
            .unwrap();
        let columns: Vec<String> = String::from_utf8_lossy(&columns.stdout)
            .lines()
            .map(|l| {
                let (n, t) = l.split_once('\t').unwrap();
                format!("{n} {t}")
            })
            .collect();
        clickhouse(
            &format!(
                "CREATE TABLE {engine_db}.queue ({}) ENGINE = Kafka('127.0.0.1:9092', '{json_topic}', 'bench-engine-{id}', 'JSONEachRow')",
                columns.join(", ")
            ),
            None,
            None,
        );
        eprintln!("Kafka engine loading …");
        let started = Instant::now();
        clickhouse(&format!("CREATE MATERIALIZED VIEW {engine_db}.load TO {engine_db}.events AS SELECT * FROM {engine_db}.queue"), None, None);
        let engine_secs = wait_rows(&engine_db, EVENTS as u64, started).await;
        clickhouse(&format!("DROP TABLE IF EXISTS {engine_db}.load"), None, None);
        clickhouse(&format!("DROP TABLE IF EXISTS {engine_db}.queue"), None, None);

        let rate = |secs: f64| EVENTS as f64 / secs;
        let (sink_rate, client_rate) = (rate(sink_secs), rate(client_secs));
        println!("\n| loader | events rows | seconds | rows/s |\n| --- | ---: | ---: | ---: |");
        println!("| clickhouse-client INSERT, Native (ceiling) | {EVENTS} | {client_secs:.2} | {client_rate:.0} |");
        println!("| RowBinary file over HTTP (the sink's format, no Kafka, no decoding) | {EVENTS} | {rowbinary_secs:.2} | {:.0} |", rate(rowbinary_secs));
        match engine_secs {
            Some(s) => println!("| ClickHouse Kafka engine | {EVENTS} | {s:.2} | {:.0} |", rate(s)),
            None => println!("| ClickHouse Kafka engine | did not finish in {LIMIT:?} | | |"),
        }
        println!("| touchstream sink (+ {credit_rows} credit rows) | {EVENTS} | {sink_secs:.2} | {sink_rate:.0} |");
        println!("\nsink / ceiling = {:.2} (goal ≥ 0.7)", sink_rate / client_rate);
        println!("sink / RowBinary over HTTP = {:.2}", sink_rate / rate(rowbinary_secs));
        if let Some(s) = engine_secs {
            println!("sink / Kafka engine = {:.2} (goal ≥ 1.0)", sink_rate / rate(s));
        }
        let results = json!({
            "events": EVENTS, "credit_rows": credit_rows,
            "sink_rows_per_sec": sink_rate, "clickhouse_client_rows_per_sec": client_rate,
            "kafka_engine_rows_per_sec": engine_secs.map(rate),
            "rowbinary_http_rows_per_sec": rate(rowbinary_secs),
            "sink_vs_ceiling": sink_rate / client_rate,
            "sink_vs_kafka_engine": engine_secs.map(|s| sink_rate / rate(s)),
        });
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("sink.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
        for db in [&sink_db, &client_db, &engine_db] {
            clickhouse(&format!("DROP DATABASE IF EXISTS {db}"), None, None);
        }
        let _ = std::fs::remove_dir_all(dir);
    });
}
