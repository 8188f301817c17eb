//! Collector throughput and latency against the real broker, beside the broker's own ceiling
//! measured in the same run with Kafka's `kafka-producer-perf-test` (ProducerPerformance from
//! the same Maven jars) at the same record size, acks=all and idempotence.
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
}

/// `CLIENTS` closed-loop clients, or an open loop at `rate` events/s when given.
async fn load(url: &str, rate: Option<f64>) -> Run {
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..64)
            .map(|b| Value::Array((0..BATCH).map(|i| event(b * BATCH + i)).collect()).to_string())
            .collect(),
    );
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
        let (client, bodies, stop, errors, url) = (
            client.clone(),
            bodies.clone(),
            stop.clone(),
            errors.clone(),
            url.to_string(),
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
                let ok = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[n % bodies.len()].clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
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
    tokio::time::sleep(RUN).await;
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
    }
}

/// Runs ProducerPerformance and returns its records/s.
fn kafka_ceiling(topic: &str, records: u64, record_size: usize) -> f64 {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.services/kafka/lib");
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
            produce_timeout_ms: 10_000,
            ..ProducerConfig::default()
        };
        let shutdown = Shutdown::new();
        let served = Application::build(config).await.unwrap().start(shutdown.clone()).await.unwrap();
        let url = format!("http://{}/v1/events", served.addr);

        // Record size on the wire, for the baseline.
        let ctx = touchstream_model::incoming::ServerContext { received_at: touchstream_model::time::now_ms(), ip: Some("127.0.0.0".into()), ..Default::default() };
        let raw = touchstream_model::incoming::validate(&event(1), &ctx, &Default::default(), || "x".into()).unwrap();
        let record_size = touchstream_avro::encode(&raw).unwrap().len();

        eprintln!("warm-up …");
        let _ = load(&url, None).await;
        eprintln!("collector at full speed ({CLIENTS} clients, batches of {BATCH}, {RUN:?}) …");
        let max = load(&url, None).await;
        eprintln!("collector at half that rate …");
        let half = load(&url, Some(max.events_per_sec / 2.0)).await;
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
        println!("\nratio collector / ceiling = {ratio:.2} (goal ≥ 0.8); p99 at half rate = {:.1} ms (goal ≤ 10 ms)", half.p99.as_secs_f64() * 1e3);
        let results = json!({
            "record_size_bytes": record_size, "ceiling_records_per_sec": ceiling,
            "collector_events_per_sec": max.events_per_sec, "ratio": ratio,
            "full_speed_p99_ms": max.p99.as_secs_f64() * 1e3, "half_rate_p99_ms": half.p99.as_secs_f64() * 1e3,
            "half_rate_p50_ms": half.p50.as_secs_f64() * 1e3,
        });
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("producer.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
    });
}
