//! Enricher throughput against the real broker, beside a plain rdkafka passthrough measured in
//! the same run on the same input: consume the raw topic and produce the same bytes to another
//! topic (no decode, no attribution, no transaction). That is the ceiling of any
//! consume → produce stage on this machine; the enricher's goal is ≥ 0.5 × it.
//!
//! Both are timed the same way, by a `read_committed` reader that already tails the output
//! topic when the stage starts: from the first output record visible to the last, so start-up
//! (group join, state restore) is left out of both.
//!
//! `cargo bench -p enricher --bench throughput` (or `make bench`). Prints a table, writes
//! `bench-results/enricher.json`. Needs the local broker (`deploy/services.sh start kafka`).
//! `TOUCHSTREAM_BENCH_EVENTS` changes the number of events (default 200 000).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use enricher::{Application, EnricherConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use touchstream_kafka::{KafkaConfig, Topics, ensure_topics};
use touchstream_model::time::{DAY_MS, MINUTE_MS, now_ms};
use touchstream_model::{EventType, RawEvent};
use touchstream_runtime::{OpsConfig, Shutdown};

const PARTITIONS: i32 = 4;
const VISITORS: u64 = 10_000;
const DEADLINE: Duration = Duration::from_secs(600);

const REFERRERS: &[Option<&str>] = &[
    Some("https://t.co/AbCdEf123"),
    Some("https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F"),
    Some("https://l.instagram.com/"),
    Some("https://www.linkedin.com/"),
    Some("https://www.google.com/"),
    Some("https://www.reddit.com/r/startups/comments/abc/"),
    Some("https://news.ycombinator.com/"),
    Some("https://shop.example/pricing"),
    Some("https://shop.example/blog/"),
    None,
];
const PAGES: &[&str] = &[
    "https://shop.example/",
    "https://shop.example/blog/7-touches",
    "https://shop.example/pricing",
    "https://shop.example/?utm_source=linkedin&utm_medium=social&utm_campaign=b2b-guide&utm_content=post-42",
    "https://shop.example/?utm_source=facebook&utm_medium=cpc&utm_campaign=spring",
    "https://shop.example/features?gclid=abc123",
];

/// SplitMix64: a deterministic stream, so every run measures the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` events of `VISITORS` visitors over the last 20 days, each visitor's in time order:
/// 85 % clicks, then signups, downloads and purchases.
fn events(n: usize) -> Vec<RawEvent> {
    let mut rng = Rng(7);
    let start = now_ms() - 20 * DAY_MS;
    let mut clock = vec![start; VISITORS as usize];
    (0..n)
        .map(|i| {
            let v = rng.below(VISITORS) as usize;
            clock[v] += (rng.below(3 * 24 * 60) as i64 + 1) * MINUTE_MS / 8;
            let t = clock[v];
            let roll = rng.below(100);
            let event_type = match roll {
                0..85 => EventType::Click,
                85..92 => EventType::Signup,
                92..96 => EventType::Download,
                _ => EventType::Purchase,
            };
            let purchase = event_type == EventType::Purchase;
            RawEvent {
                event_id: format!("bench-{i:08}-{:016x}", rng.next()),
                event_type,
                anonymous_id: format!("bench-visitor-{v:06}"),
                user_id: (event_type == EventType::Signup).then(|| format!("user-{v:06}")),
                occurred_at: t,
                sent_at: Some(t),
                received_at: t,
                event_time: t,
                page_url: PAGES[rng.below(PAGES.len() as u64) as usize].into(),
                referrer: REFERRERS[rng.below(REFERRERS.len() as u64) as usize].map(Into::into),
                user_agent: Some(
                    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
                        .into(),
                ),
                ip: Some("192.0.2.0".into()),
                properties: Default::default(),
                target_url: None,
                element: (event_type == EventType::Click).then(|| "a.cta".into()),
                signup_kind: (event_type == EventType::Signup).then(|| "newsletter".into()),
                method: None,
                asset_id: (event_type == EventType::Download).then(|| "checklist".into()),
                asset_kind: (event_type == EventType::Download).then(|| "checklist".into()),
                order_id: purchase.then(|| format!("order-{i}")),
                revenue: purchase.then_some(4999),
                currency: purchase.then(|| "EUR".into()),
                site_id: touchstream_model::DEFAULT_SITE.into(),
                event_name: None,
                clock_correction_ms: 0,
                received_via: touchstream_model::received_via::EVENTS.into(),
            }
        })
        .collect()
}

/// Sends, waiting for queue space when the local queue is full.
fn send(producer: &BaseProducer, topic: &str, key: &[u8], payload: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("cannot produce to {topic}: {e}"),
        }
    }
}

/// Tails `topic` (`read_committed`) and times the first to the `n`-th record as they become
/// visible. Returns once it has read to the (empty) end of every partition, so the stage
/// under test is started only when the reader is already waiting for its output.
fn tail_output(kafka: &KafkaConfig, topic: &str, n: usize) -> std::thread::JoinHandle<Duration> {
    let mut cfg = kafka.consumer("touchstream-bench-reader", &format!("{topic}-reader"));
    cfg.set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10");
    let consumer: BaseConsumer = cfg.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let until = Instant::now() + DEADLINE;
    let mut at_end = std::collections::HashSet::new();
    while at_end.len() < PARTITIONS as usize {
        assert!(Instant::now() < until, "{topic} is not readable");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Ok(_)) => panic!("{topic} should be empty before the run"),
            _ => {}
        }
    }
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let mut first = None;
        let mut seen = 0;
        while seen < n {
            assert!(
                Instant::now() < until,
                "only {seen} of {n} records reached {topic} within {DEADLINE:?}"
            );
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(_)) => {
                    first.get_or_insert_with(Instant::now);
                    seen += 1;
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => eprintln!("reader: {e}"),
            }
        }
        first.map(|f| f.elapsed()).unwrap_or_default()
    })
}

/// Consume `from`, produce the same key and bytes to `to`, until `n` records are copied.
fn passthrough(kafka: &KafkaConfig, from: &str, to: &str, n: usize) {
    let consumer: BaseConsumer = kafka
        .consumer(
            "touchstream-bench-passthrough",
            &format!("{from}-passthrough"),
        )
        .create()
        .unwrap();
    consumer.subscribe(&[from]).unwrap();
    let producer: BaseProducer = kafka
        .producer("touchstream-bench-passthrough")
        .create()
        .unwrap();
    let until = Instant::now() + DEADLINE;
    let mut copied = 0;
    while copied < n {
        assert!(Instant::now() < until, "passthrough copied only {copied}");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                send(
                    &producer,
                    to,
                    m.key().unwrap_or_default(),
                    m.payload().unwrap_or_default(),
                );
                copied += 1;
                producer.poll(Duration::ZERO);
            }
            Some(Err(e)) => eprintln!("passthrough: {e}"),
            None => {}
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("TOUCHSTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let kafka = KafkaConfig::default();
    let prefix = format!("bench.enricher.{}", now_ms());
    let mut topics = Topics::with_prefix(&prefix);
    topics.partitions = PARTITIONS;
    let copy = format!("{prefix}.events.passthrough");
    let specs: Vec<_> = [
        &topics.raw,
        &topics.attributed,
        &topics.dlq,
        &topics.changelog,
        &copy,
    ]
    .iter()
    .map(|t| topics.spec(t))
    .collect();
    ensure_topics(&kafka, &specs).await.unwrap();

    eprintln!("preparing {n} raw events on {} …", topics.raw);
    let encoded: Vec<(String, Vec<u8>)> = events(n)
        .iter()
        .map(|e| (e.anonymous_id.clone(), touchstream_avro::encode(e).unwrap()))
        .collect();
    let bytes: usize = encoded.iter().map(|(_, p)| p.len()).sum();
    {
        let producer: BaseProducer = kafka.producer("touchstream-bench-loader").create().unwrap();
        for (key, payload) in &encoded {
            send(&producer, &topics.raw, key.as_bytes(), payload);
        }
        producer.flush(Duration::from_secs(120)).unwrap();
    }

    eprintln!("passthrough (consume → produce the same bytes) …");
    let reader = tail_output(&kafka, &copy, n);
    let (k, raw, out) = (kafka.clone(), topics.raw.clone(), copy.clone());
    let copier = std::thread::spawn(move || passthrough(&k, &raw, &out, n));
    let passthrough_took = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    copier.join().unwrap();

    eprintln!("enricher (attribute, changelog, one transaction per batch) …");
    let config = EnricherConfig {
        kafka: kafka.clone(),
        topics: topics.clone(),
        group_id: format!("{prefix}-enricher"),
        transactional_id: Some(format!("{prefix}-enricher")),
        site_hosts: vec!["shop.example".into()],
        ops: OpsConfig::on_port(0),
        ..EnricherConfig::default()
    };
    let (batch_max_records, batch_max_ms) = (config.batch_max_records, config.batch_max_ms);
    let shutdown = Shutdown::new();
    let reader = tail_output(&kafka, &topics.attributed, n);
    let app = Application::build(config).await.unwrap();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let enricher_took = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let (p, e) = (rate(n, passthrough_took), rate(n, enricher_took));
    let ratio = e / p;
    println!(
        "\n{n} events, {} visitors, {PARTITIONS} partitions, {:.0} bytes/event (Avro)\n",
        VISITORS,
        bytes as f64 / n as f64
    );
    println!("| run | seconds | events/s |\n| --- | ---: | ---: |");
    println!(
        "| rdkafka passthrough (ceiling) | {:.2} | {p:.0} |",
        passthrough_took.as_secs_f64()
    );
    println!(
        "| enricher (batch {batch_max_records} / {batch_max_ms} ms) | {:.2} | {e:.0} |",
        enricher_took.as_secs_f64()
    );
    println!("\nratio enricher / passthrough = {ratio:.2} (goal ≥ 0.5)");
    let results = json!({
        "events": n,
        "visitors": VISITORS,
        "partitions": PARTITIONS,
        "bytes_per_event": bytes as f64 / n as f64,
        "passthrough_events_per_sec": p,
        "enricher_events_per_sec": e,
        "ratio": ratio,
        "batch_max_records": batch_max_records,
        "batch_max_ms": batch_max_ms,
    });
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("enricher.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();

    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka.admin("touchstream-bench").create().unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let _ = admin
        .delete_topics(&names, &rdkafka::admin::AdminOptions::new())
        .await;
}
