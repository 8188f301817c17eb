//! Collector throughput and latency against the real broker, beside the broker's own ceiling
//! measured in the same run with Kafka's `kafka-producer-perf-test` (ProducerPerformance from
//! the same Maven jars) at the same record size, acks=all and idempotence.
//!
//! The same events also go through the Segment route, `/v1/batch` (page calls and "Signed Up"
//! tracks, in batches of the same size), beside `/v1/events` in the same run.
//!
//! `cargo bench -p producer --bench collector` (or `make bench`). Prints a table, writes
//! `bench-results/producer.json`. Needs the local broker (`deploy/services.sh start kafka`).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use producer::{Application, ProducerConfig};
use serde_json::{Value, json};
use touchstream_kafka::Topics;
use touchstream_runtime::Shutdown;

const BATCH: usize = 100;
const CLIENTS: usize = 16;
const RUN: Duration = Duration::from_secs(15);
/// /v1/events and /v1/batch take turns, this many times, `RUN / SLICES` each.
const SLICES: u32 = 5;

fn event(i: usize) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "event_type": if i.is_multiple_of(20) { "signup" } else { "click" },
        "anonymous_id": format!("bench-visitor-{:06}", i % 50_000),
        "page_url": "https://shop.example/blog/7-touches?utm_source=linkedin&utm_medium=social&utm_campaign=b2b-guide&utm_content=post-42",
        "referrer": "https://www.linkedin.com/",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    })
}

/// The same event as a Segment call: a page view, or a "Signed Up" track.
fn segment_message(i: usize) -> Value {
    let page = "https://shop.example/blog/7-touches?utm_source=linkedin&utm_medium=social&utm_campaign=b2b-guide&utm_content=post-42";
    let context = json!({
        "page": {"url": page, "referrer": "https://www.linkedin.com/"},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "library": {"name": "bench", "version": "1"},
    });
    let id = format!("bench-{}", uuid::Uuid::new_v4());
    let anonymous_id = format!("bench-visitor-{:06}", i % 50_000);
    if i.is_multiple_of(20) {
        json!({"type": "track", "event": "Signed Up", "messageId": id, "anonymousId": anonymous_id, "context": context})
    } else {
        json!({"type": "page", "messageId": id, "anonymousId": anonymous_id, "context": context})
    }
}

const BENCH_KEY: &str = "bench-server-key";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Run {
    events_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    /// What the figures above were computed from, to merge runs.
    latencies: Vec<Duration>,
    elapsed: f64,
}

impl Run {
    /// Several runs of one load as one (the machine is shared: interleaving two loads in
    /// slices compares them under the same conditions).
    fn merge(runs: Vec<Run>) -> Run {
        let elapsed: f64 = runs.iter().map(|r| r.elapsed).sum();
        let errors = runs.iter().map(|r| r.errors).sum();
        let mut latencies: Vec<Duration> = runs.into_iter().flat_map(|r| r.latencies).collect();
        latencies.sort();
        Run {
            events_per_sec: (latencies.len() * BATCH) as f64 / elapsed,
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            errors,
            latencies,
            elapsed,
        }
    }
}

/// The bodies `/v1/events` gets: arrays of `BATCH` events.
fn event_bodies() -> Arc<Vec<String>> {
    Arc::new(
        (0..64)
            .map(|b| Value::Array((0..BATCH).map(|i| event(b * BATCH + i)).collect()).to_string())
            .collect(),
    )
}

/// The bodies `/v1/batch` gets: the same events as Segment batches of `BATCH` messages.
fn segment_bodies() -> Arc<Vec<String>> {
    Arc::new(
        (0..64)
            .map(|b| {
                let batch: Vec<Value> = (0..BATCH).map(|i| segment_message(b * BATCH + i)).collect();
                json!({"batch": batch, "sentAt": touchstream_model::time::format_rfc3339_ms(touchstream_model::time::now_ms())}).to_string()
            })
            .collect(),
    )
}

/// `CLIENTS` closed-loop clients, or an open loop at `rate` events/s when given; `key` is sent
/// as HTTP Basic (the Segment route).
async fn load(
    url: &str,
    rate: Option<f64>,
    bodies: Arc<Vec<String>>,
    key: Option<&str>,
    run: Duration,
) -> Run {
    let key = key.map(str::to_owned);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS * 2)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per_client_interval =
        rate.map(|r| Duration::from_secs_f64(CLIENTS as f64 * BATCH as f64 / r));
    for c in 0..CLIENTS {
        let (client, bodies, stop, errors, url, key) = (
            client.clone(),
            bodies.clone(),
            stop.clone(),
            errors.clone(),
            url.to_string(),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut next = Instant::now() + Duration::from_millis(c as u64 * 7);
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                if let Some(every) = per_client_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += every;
                }
                let t = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[n % bodies.len()].clone());
                if let Some(k) = &key {
                    req = req.basic_auth(k, Some(""));
                }
                let ok = req.send().await.is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                n += CLIENTS;
            }
            latencies
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    Run {
        events_per_sec: (latencies.len() * BATCH) as f64 / elapsed,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        errors: errors.load(Ordering::Relaxed),
        latencies,
        elapsed,
    }
}

/// Runs ProducerPerformance and returns its records/s.
fn kafka_ceiling(topic: &str, records: u64, record_size: usize) -> f64 {
    // Where deploy/services.sh installed Kafka (TOUCHSTREAM_SERVICES_DIR, as it reads it).
    let services = std::env::var_os("TOUCHSTREAM_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.services"));
    let lib = services.join("kafka/lib");
    let out = std::process::Command::new("java")
        .arg("-Xmx1g")
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args([
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--record-size",
            &record_size.to_string(),
        ])
        .args([
            "--throughput",
            "-1",
            "--producer-props",
            "bootstrap.servers=127.0.0.1:9092",
            "acks=all",
        ])
        .args([
            "enable.idempotence=true",
            "linger.ms=5",
            "compression.type=lz4",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Last line: "N records sent, X records/sec (Y MB/sec), ..."
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .unwrap_or_else(|| {
            panic!(
                "perf test said:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    last.split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let prefix = format!("touchstream.bench-{}", std::process::id());
        let mut topics = Topics::with_prefix(&prefix);
        topics.partitions = 4;
        let config = ProducerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            topics: topics.clone(),
            max_in_flight_events: 200_000,
            produce_timeout_ms: 8_000,
            sites: vec![touchstream_model::SiteConfig {
                id: "bench".into(),
                server_write_keys: vec![BENCH_KEY.into()],
                ..Default::default()
            }],
            ..ProducerConfig::default()
        };
        let shutdown = Shutdown::new();
        let served = Application::build(config).await.unwrap().start(shutdown.clone()).await.unwrap();
        let url = format!("http://{}/v1/events", served.addr);
        let segment_url = format!("http://{}/v1/batch", served.addr);

        // Record size on the wire, for the baseline.
        let ctx = touchstream_model::incoming::ServerContext { received_at: touchstream_model::time::now_ms(), ip: Some("127.0.0.0".into()), ..Default::default() };
        let raw = touchstream_model::incoming::validate(&event(1), &ctx, &Default::default(), || "x".into()).unwrap();
        let record_size = touchstream_avro::encode(&raw).unwrap().len();

        eprintln!("warm-up …");
        let _ = load(&url, None, event_bodies(), None, RUN / 3).await;
        let _ = load(&segment_url, None, segment_bodies(), Some(BENCH_KEY), RUN / 3).await;
        eprintln!("collector at full speed ({CLIENTS} clients, batches of {BATCH}, {RUN:?}), /v1/events and the same events through /v1/batch (Segment) in turns …");
        let (mut events_runs, mut segment_runs) = (Vec::new(), Vec::new());
        for _ in 0..SLICES {
            events_runs.push(load(&url, None, event_bodies(), None, RUN / SLICES).await);
            segment_runs.push(load(&segment_url, None, segment_bodies(), Some(BENCH_KEY), RUN / SLICES).await);
        }
        let (max, segment) = (Run::merge(events_runs), Run::merge(segment_runs));
        eprintln!("collector at half that rate …");
        let half = load(&url, Some(max.events_per_sec / 2.0), event_bodies(), None, RUN).await;
        shutdown.cancel();
        let _ = served.task.await;

        eprintln!("kafka-producer-perf-test, {record_size}-byte records, acks=all …");
        let baseline_topic = format!("{prefix}.perf");
        touchstream_kafka::ensure_topics(&touchstream_kafka::KafkaConfig::default(), &[topics.spec(&baseline_topic)]).await.unwrap();
        let ceiling = kafka_ceiling(&baseline_topic, (max.events_per_sec * RUN.as_secs_f64()) as u64, record_size);

        let ratio = max.events_per_sec / ceiling;
        println!("\n| run | events/s | p50 | p99 | errors |\n| --- | ---: | ---: | ---: | ---: |");
        println!("| kafka-producer-perf-test (ceiling) | {ceiling:.0} | | | |");
        println!("| collector, full speed | {:.0} | {:?} | {:?} | {} |", max.events_per_sec, max.p50, max.p99, max.errors);
        println!("| collector, half rate ({:.0}/s) | {:.0} | {:?} | {:?} | {} |", max.events_per_sec / 2.0, half.events_per_sec, half.p50, half.p99, half.errors);
        println!("| collector, /v1/batch (Segment), full speed | {:.0} | {:?} | {:?} | {} |", segment.events_per_sec, segment.p50, segment.p99, segment.errors);
        let segment_ratio = segment.events_per_sec / max.events_per_sec;
        println!("\nratio collector / ceiling = {ratio:.2} (goal ≥ 0.8); p99 at half rate = {:.1} ms (goal ≤ 10 ms)", half.p99.as_secs_f64() * 1e3);
        println!("ratio /v1/batch / /v1/events = {segment_ratio:.2} (goal ≥ 0.8)");
        let results = json!({
            "record_size_bytes": record_size, "ceiling_records_per_sec": ceiling,
            "collector_events_per_sec": max.events_per_sec, "ratio": ratio,
            "full_speed_p99_ms": max.p99.as_secs_f64() * 1e3, "half_rate_p99_ms": half.p99.as_secs_f64() * 1e3,
            "half_rate_p50_ms": half.p50.as_secs_f64() * 1e3,
            "segment_batch_events_per_sec": segment.events_per_sec, "segment_batch_p99_ms": segment.p99.as_secs_f64() * 1e3,
            "segment_to_events_ratio": segment_ratio,
        });
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("producer.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
    });
}
