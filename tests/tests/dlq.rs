//! `touchstream dlq list|show|replay` against the real broker and a real collector: records of
//! every stage are listed and filtered, shown with their payload, and replayed; the fixed ones
//! land on their topic, the still-bad ones stay (a refused event is dead-lettered again with
//! its reason).

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use touchstream_avro::{DlqRecord, SourcePosition, Stage};
use touchstream_model::time::now_ms;
use touchstream_model::{EventType, RawEvent};
use touchstream_tests::{
    KAFKA_BROKERS, Service, TestTopics, binary_path, eventually, free_port, produce_payloads,
    raw_event, read_committed_all, wait_ready,
};

async fn start_producer(topics: &TestTopics, extra: &[(&str, &str)]) -> (Service, String) {
    let port = free_port();
    let mut env = topics.env("producer");
    env.push((
        "TOUCHSTREAM_PRODUCER__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    env.push((
        "TOUCHSTREAM_PRODUCER__KAFKA__BROKERS".into(),
        KAFKA_BROKERS.into(),
    ));
    for (k, v) in extra {
        env.push((format!("TOUCHSTREAM_PRODUCER__{k}"), v.to_string()));
    }
    let producer = Service::spawn("producer", &[], &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/readyz"), &producer).await;
    (producer, url)
}

fn click(anonymous_id: &str) -> Value {
    json!({ "event_id": uuid::Uuid::new_v4().to_string(), "event_type": "click",
            "anonymous_id": anonymous_id, "page_url": "https://shop.example/?utm_source=fb" })
}

/// Runs `touchstream dlq ARGS… --brokers … --topic DLQ`; returns (success, stdout, stderr).
fn dlq(topics: &TestTopics, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(binary_path("touchstream"))
        .arg("dlq")
        .args(args)
        .args(["--brokers", KAFKA_BROKERS, "--topic", &topics.topics.dlq])
        .output()
        .unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dlq_text(topics: &TestTopics, args: &[&str]) -> String {
    let (ok, stdout, stderr) = dlq(topics, args);
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(ok, "touchstream dlq {args:?} failed: {stderr}\n{stdout}");
    stdout
}

async fn dlq_records(topics: &TestTopics) -> Vec<DlqRecord> {
    read_committed_all(&topics.topics.dlq)
        .await
        .iter()
        .map(|m| touchstream_avro::decode(m.payload().unwrap()).unwrap())
        .collect()
}

async fn raw_ids(topics: &TestTopics) -> Vec<(String, Option<String>)> {
    read_committed_all(&topics.topics.raw)
        .await
        .iter()
        .map(|m| {
            let e: RawEvent = touchstream_avro::decode(m.payload().unwrap()).unwrap();
            (
                e.anonymous_id,
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_lists_shows_and_replays_fixed_input_to_its_topic_and_keeps_the_rest() {
    let topics = TestTopics::create(2).await;
    let http = reqwest::Client::new();
    let started = now_ms();

    // Collector A takes batches of at most 2 events.
    let (collector_a, url_a) = start_producer(&topics, &[("MAX_BATCH_EVENTS", "2")]).await;
    let batch = json!([click("d-1"), click("d-2"), click("d-3")]);
    let r = http
        .post(format!("{url_a}/v1/events"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad = json!({ "event_type": "purchase", "anonymous_id": "d-bad", "page_url": "https://shop.example/thanks",
                      "order_id": "o-1", "revenue": 100, "currency": "QQQ" });
    let r = http
        .post(format!("{url_a}/v1/events"))
        .json(&json!([click("d-4"), bad]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    drop(collector_a);

    // What the enricher and the sink dead-letter: the record as they read it, with its place.
    let good_raw = raw_event(
        EventType::Click,
        "d-5",
        now_ms(),
        "https://shop.example/",
        None,
    );
    let stage_records = [
        DlqRecord::from_source(
            Stage::Enricher,
            &touchstream_avro::encode(&good_raw).unwrap(),
            "undecodable raw event: written by a build this one did not know",
            SourcePosition {
                topic: &topics.topics.raw,
                partition: 0,
                offset: 17,
                key: Some(b"d-5"),
            },
            now_ms(),
        ),
        DlqRecord::from_source(
            Stage::Enricher,
            b"not avro at all",
            "undecodable raw event: payload is not Avro single-object encoded",
            SourcePosition {
                topic: &topics.topics.raw,
                partition: 1,
                offset: 3,
                key: Some(b"d-6"),
            },
            now_ms(),
        ),
        DlqRecord::from_source(
            Stage::Sink,
            b"\xc3\x01garbage!",
            "undecodable attributed event: too short",
            SourcePosition {
                topic: &topics.topics.attributed,
                partition: 0,
                offset: 9,
                key: Some(b"d-7"),
            },
            now_ms(),
        ),
    ];
    let encoded: Vec<(String, Vec<u8>)> = stage_records
        .iter()
        .map(|r| ("k".to_string(), touchstream_avro::encode(r).unwrap()))
        .collect();
    produce_payloads(&topics.topics.dlq, &encoded).await;
    eventually("5 DLQ records", Duration::from_secs(30), || async {
        (dlq_records(&topics).await.len() >= 5).then_some(())
    })
    .await;

    // list, and its filters.
    let all = dlq_text(&topics, &["list"]);
    assert!(all.contains("5 record(s)"), "{all}");
    let producer_only = dlq_text(&topics, &["list", "--stage", "producer"]);
    assert!(producer_only.contains("2 record(s)"), "{producer_only}");
    assert!(producer_only.contains("limit is 2"), "{producer_only}");
    let currency = dlq_text(&topics, &["list", "--reason", "iso 4217"]);
    assert!(currency.contains("1 record(s)"), "{currency}");
    let later = (now_ms() + 60_000).to_string();
    let none = dlq_text(&topics, &["list", "--since", &later]);
    assert!(none.contains("0 record(s)"), "{none}");
    let since = touchstream_model::time::format_rfc3339_ms(started - 1_000);
    let enricher = dlq_text(&topics, &["list", "--stage", "enricher", "--since", &since]);
    assert!(enricher.contains("2 record(s)"), "{enricher}");
    let (ok, _, err) = dlq(&topics, &["list", "--stage", "nowhere"]);
    assert!(!ok && err.contains("unknown stage"), "{err}");

    // show: the record in full, by the position list gives.
    let json_lines = dlq_text(&topics, &["list", "--json", "--reason", "ISO 4217"]);
    let line: Value = serde_json::from_str(json_lines.lines().next().unwrap()).unwrap();
    let position = line["position"].as_str().unwrap().to_string();
    let shown = dlq_text(&topics, &["show", &position]);
    assert!(shown.contains("stage:         producer"), "{shown}");
    assert!(shown.contains("QQQ"), "{shown}");
    let (ok, payload, _) = dlq(&topics, &["show", &position, "--payload"]);
    assert!(ok);
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["currency"], "QQQ");
    let enricher_json = dlq_text(
        &topics,
        &[
            "list",
            "--json",
            "--stage",
            "enricher",
            "--reason",
            "did not know",
        ],
    );
    let line: Value = serde_json::from_str(enricher_json.lines().next().unwrap()).unwrap();
    let shown = dlq_text(&topics, &["show", line["position"].as_str().unwrap()]);
    assert!(
        shown.contains("(Avro RawEvent)") && shown.contains("\"anonymous_id\": \"d-5\""),
        "{shown}"
    );

    // replay through collector B (default limits): the batch and the enricher's record land,
    // the QQQ event and the two undecodable records are still refused.
    let (_collector_b, url_b) = start_producer(&topics, &[]).await;
    let (ok, _, _) = dlq(&topics, &["replay", "--collector", &url_b, "--dry-run"]);
    assert!(ok);
    assert!(
        !raw_ids(&topics).await.iter().any(|(id, _)| id == "d-1"),
        "a dry run sends nothing"
    );
    let replayed = dlq_text(&topics, &["replay", "--collector", &url_b]);
    assert!(
        replayed.contains("replay: 2 landed, 3 still refused, 0 skipped, 0 failed"),
        "{replayed}"
    );
    assert!(replayed.contains("currency"), "{replayed}");
    assert!(replayed.contains("still does not decode"), "{replayed}");

    let raw = eventually(
        "the replayed events on the raw topic",
        Duration::from_secs(30),
        || async {
            let ids = raw_ids(&topics).await;
            ["d-1", "d-2", "d-3", "d-4", "d-5"]
                .iter()
                .all(|want| ids.iter().any(|(id, _)| id == want))
                .then_some(ids)
        },
    )
    .await;
    assert_eq!(raw.len(), 5, "nothing twice, nothing still bad: {raw:?}");
    let d5 = raw.iter().find(|(id, _)| id == "d-5").unwrap();
    assert_eq!(d5.1.as_deref(), Some("d-5"), "re-produced with its key");
    // The still-bad event was refused again by collector B, with its reason.
    let records = eventually(
        "the QQQ event dead-lettered again",
        Duration::from_secs(30),
        || async {
            let r = dlq_records(&topics).await;
            (r.iter().filter(|d| d.reason.contains("QQQ")).count() == 2).then_some(r)
        },
    )
    .await;
    assert_eq!(records.len(), 6, "{records:#?}");
}

/// A DLQ topic configured for records smaller than the constructors' cut: the writer cuts the
/// payload further until the broker takes it, keeping the input's size and digest.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_the_dlq_topic_is_kept_cut_not_dropped() {
    use rand::RngCore;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::FutureProducer;

    let topics = TestTopics::create(1).await;
    let small = format!("{}.small", topics.topics.dlq);
    let admin: AdminClient<DefaultClientContext> = touchstream_tests::kafka()
        .admin("touchstream-tests")
        .create()
        .unwrap();
    let topic =
        NewTopic::new(&small, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "20000");
    admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .unwrap();
    let producer: FutureProducer = touchstream_tests::kafka()
        .producer("touchstream-tests")
        .create()
        .unwrap();
    let writer = touchstream_kafka::DlqWriter::new(producer, small.clone());
    // Random bytes: compression cannot make them fit.
    let mut input = vec![0u8; 100_000];
    rand::rng().fill_bytes(&mut input);
    let record = DlqRecord::producer(&input, "too large for this topic", now_ms());
    assert!(record.is_whole());
    writer.send(None, &record).await.unwrap();
    let stored = read_committed_all(&small).await;
    let _ = admin.delete_topics(&[&small], &AdminOptions::new()).await;
    assert_eq!(stored.len(), 1);
    let kept: DlqRecord = touchstream_avro::decode(stored[0].payload().unwrap()).unwrap();
    assert!(kept.payload.len() < 20_000, "{}", kept.payload.len());
    assert_eq!(kept.payload[..], input[..kept.payload.len()]);
    assert_eq!(kept.original_size, Some(100_000));
    assert_eq!(
        kept.original_sha256.as_deref(),
        Some(touchstream_avro::sha256_hex(&input).as_str())
    );
}
