//! The collector against the real broker: precise errors for every kind of bad request, valid
//! events of a mixed batch still accepted, rejected input in the DLQ with its reason, replay,
//! and a broker outage that turns into 503s and back without losing an acknowledged event.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use touchstream_avro::DlqRecord;
use touchstream_model::RawEvent;
use touchstream_tests::{
    KAFKA_BROKERS, PrivateBroker, Service, TestTopics, eventually, free_port, metric_sum,
    read_topic, unique, wait_ready,
};

fn click(anonymous_id: &str) -> Value {
    json!({ "event_id": uuid::Uuid::new_v4().to_string(), "event_type": "click", "anonymous_id": anonymous_id,
            "page_url": "https://shop.example/?utm_source=fb", "referrer": "https://l.facebook.com/" })
}

async fn start_producer(
    topics: &TestTopics,
    brokers: &str,
    extra: &[(&str, &str)],
) -> (Service, String) {
    let port = free_port();
    let mut env = topics.env("producer");
    env.push((
        "TOUCHSTREAM_PRODUCER__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    env.push((
        "TOUCHSTREAM_PRODUCER__KAFKA__BROKERS".into(),
        brokers.into(),
    ));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| (format!("TOUCHSTREAM_PRODUCER__{k}"), v.to_string())),
    );
    let producer = Service::spawn("producer", &[], &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/readyz"), &producer).await;
    (producer, url)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = http
        .post(format!("{url}/v1/events"))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_gets_a_precise_answer_and_valid_events_still_go_through() {
    let topics = TestTopics::create(2).await;
    let limits = [
        ("MAX_BODY_BYTES", "20000"),
        ("MAX_DECOMPRESSED_BYTES", "100000"),
        ("MAX_BATCH_EVENTS", "50"),
    ];
    let (_producer, url) = start_producer(&topics, KAFKA_BROKERS, &limits).await;
    let http = reqwest::Client::new();
    let json_post = |body: Value| {
        post(
            &http,
            &url,
            "application/json",
            &[],
            body.to_string().into_bytes(),
        )
    };

    // A mixed batch: the two valid events are accepted, the bad one is named by index and field.
    let (good1, good2) = (click("c-1"), click("c-2"));
    let (status, body) = json_post(
        json!([good1, { "event_type": "click", "page_url": "https://shop.example/" }, good2]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "anonymous_id");

    // (what, expected status, text the answer must contain, body, headers)
    type Case<'a> = (
        &'a str,
        StatusCode,
        &'a str,
        Vec<u8>,
        Vec<(&'a str, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        ("unknown event type", StatusCode::BAD_REQUEST, "event_type", json!({"event_type": "like", "anonymous_id": "a", "page_url": "https://x.example/"}).to_string().into_bytes(), vec![]),
        ("a year in the future", StatusCode::BAD_REQUEST, "future", json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "occurred_at": "2099-01-01T00:00:00Z"}).to_string().into_bytes(), vec![]),
        ("not JSON", StatusCode::BAD_REQUEST, "not valid JSON", b"{\"event_type\":".to_vec(), vec![]),
        ("not UTF-8", StatusCode::BAD_REQUEST, "UTF-8", b"{\"event_type\":\"\xff\"}".to_vec(), vec![]),
        ("empty batch", StatusCode::BAD_REQUEST, "empty", b"[]".to_vec(), vec![]),
        ("too many events", StatusCode::PAYLOAD_TOO_LARGE, "limit is 50", json!(vec![click("many"); 51]).to_string().into_bytes(), vec![]),
        ("body too large", StatusCode::PAYLOAD_TOO_LARGE, "larger than 20000", vec![b' '; 30_000], vec![]),
        ("gzip bomb", StatusCode::PAYLOAD_TOO_LARGE, "decompresses to more than", gzip(&vec![b' '; 5_000_000]), vec![("content-encoding", "gzip")]),
        ("brotli", StatusCode::UNSUPPORTED_MEDIA_TYPE, "content encoding", b"{}".to_vec(), vec![("content-encoding", "br")]),
    ];
    for (what, want_status, want_text, body, headers) in cases {
        let (status, answer) = post(&http, &url, "application/json", &headers, body).await;
        assert_eq!(status, want_status, "{what}: {answer}");
        assert!(
            answer.to_string().contains(want_text),
            "{what}: {answer} should mention {want_text:?}"
        );
    }
    let (status, answer) = post(&http, &url, "application/xml", &[], b"<event/>".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");

    // gzip and sendBeacon's text/plain are fine.
    let (status, body) = post(
        &http,
        &url,
        "application/json",
        &[("content-encoding", "gzip")],
        gzip(json!([click("c-gz")]).to_string().as_bytes()),
    )
    .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let (status, _) = post(
        &http,
        &url,
        "text/plain;charset=UTF-8",
        &[],
        json!(click("c-beacon")).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The pixel answers a GIF.
    let pixel = http
        .get(format!("{url}/v1/p.gif?event_type=click&anonymous_id=c-pixel&page_url=https%3A%2F%2Fshop.example%2Fnews&p.mail=weekly"))
        .send()
        .await
        .unwrap();
    assert_eq!(pixel.status(), StatusCode::OK);
    assert_eq!(pixel.headers()["content-type"], "image/gif");
    assert_eq!(&pixel.bytes().await.unwrap()[..6], b"GIF89a");

    // CORS preflight from a site, and the tracker script.
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{url}/v1/events"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let tracker = http.get(format!("{url}/t.js")).send().await.unwrap();
    assert!(
        tracker.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );

    // Kafka has exactly the accepted events, keyed by anonymous_id, with the IP truncated.
    let wanted: HashSet<&str> = ["c-1", "c-2", "c-gz", "c-beacon", "c-pixel"].into();
    let records = read_topic(
        KAFKA_BROKERS,
        &topics.topics.raw,
        Duration::from_secs(30),
        |r| r.len() >= wanted.len(),
    )
    .await;
    let mut seen = HashSet::new();
    for r in &records {
        let e: RawEvent = touchstream_avro::decode(r.payload().unwrap()).unwrap();
        assert_eq!(r.key().unwrap(), e.anonymous_id.as_bytes());
        assert_eq!(e.ip.as_deref(), Some("127.0.0.0"));
        if e.anonymous_id == "c-pixel" {
            assert_eq!(e.properties.get("mail").map(String::as_str), Some("weekly"));
        }
        seen.insert(e.anonymous_id);
    }
    assert_eq!(seen, wanted.iter().map(|s| s.to_string()).collect());
    assert_eq!(records.len(), wanted.len(), "no event twice");

    // Everything rejected that was read is in the DLQ with its reason (8 records: bodies refused
    // before reading, by size or content type, have no payload to keep).
    let dlq = read_topic(
        KAFKA_BROKERS,
        &topics.topics.dlq,
        Duration::from_secs(30),
        |r| r.len() >= 8,
    )
    .await;
    let reasons: Vec<String> = dlq
        .iter()
        .map(|r| touchstream_avro::decode::<DlqRecord>(r.payload().unwrap()).unwrap())
        .inspect(|d| assert_eq!(d.stage, "producer"))
        .map(|d| d.reason)
        .collect();
    for needle in [
        "anonymous_id",
        "event_type",
        "future",
        "not valid JSON",
        "UTF-8",
        "empty",
        "limit is 50",
        "decompresses",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no DLQ record mentions {needle:?}: {reasons:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_backfills_a_file_through_the_same_validation() {
    let topics = TestTopics::create(1).await;
    let file = std::env::temp_dir().join(format!("{}.ndjson", unique("replay-")));
    // A replay is history: every line keeps its own occurred_at, 90 days back here (older
    // than a live event may be), and the event time is exactly that.
    let old = touchstream_model::time::now_ms() - 90 * touchstream_model::time::DAY_MS;
    let at = |mut v: Value, i: i64| {
        v["occurred_at"] = json!(old + i);
        v.to_string()
    };
    let lines = [
        at(click("r-1"), 1),
        at(click("r-2"), 2),
        "{\"event_type\": \"click\"}".into(),
        String::new(),
        at(click("r-3"), 3),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut env = topics.env("producer");
    env.push((
        "TOUCHSTREAM_PRODUCER__KAFKA__BROKERS".into(),
        KAFKA_BROKERS.into(),
    ));
    let output = std::process::Command::new(touchstream_tests::binary_path("producer"))
        .arg("replay")
        .arg(&file)
        .envs(env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sent 3, rejected 1, to DLQ 1"), "{stdout}");
    let raw = read_topic(
        KAFKA_BROKERS,
        &topics.topics.raw,
        Duration::from_secs(30),
        |r| r.len() >= 3,
    )
    .await;
    assert_eq!(raw.len(), 3);
    let mut times: Vec<(i64, String)> = raw
        .iter()
        .map(|m| {
            let e: touchstream_model::RawEvent =
                touchstream_avro::decode(m.payload().unwrap()).unwrap();
            (e.event_time - old, e.received_via)
        })
        .collect();
    times.sort();
    assert_eq!(
        times,
        [
            (1, "replay".into()),
            (2, "replay".into()),
            (3, "replay".into())
        ]
    );
    let dlq = read_topic(
        KAFKA_BROKERS,
        &topics.topics.dlq,
        Duration::from_secs(30),
        |r| !r.is_empty(),
    )
    .await;
    let record: DlqRecord = touchstream_avro::decode(dlq[0].payload().unwrap()).unwrap();
    assert!(record.reason.starts_with("line 3:"), "{}", record.reason);
    let _ = std::fs::remove_file(file);
}

/// Stops the (private) broker mid-stream: the collector answers 503 with Retry-After instead of
/// buffering, recovers when the broker is back, and every event it acknowledged with a 2xx is
/// in the topic.
#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_gives_503s_then_recovers_and_loses_no_acknowledged_event() {
    let mut broker = PrivateBroker::start();
    let mut topics = TestTopics {
        topics: touchstream_kafka::Topics::with_prefix(&unique("outage.")),
    };
    topics.topics.partitions = 1;
    let settings = [
        ("PRODUCE_TIMEOUT_MS", "1500"),
        ("MAX_IN_FLIGHT_EVENTS", "500"),
        ("MAX_BATCH_EVENTS", "100"),
    ];
    let (_producer, url) = start_producer(&topics, &broker.brokers(), &settings).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let mut acknowledged: Vec<String> = Vec::new();
    let mut unavailable = 0;
    let mut saw_retry_after = false;
    let send = |n: usize| {
        let batch: Vec<Value> = (0..10).map(|i| click(&format!("o-{n}-{i}"))).collect();
        let ids: Vec<String> = batch
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        let req = http.post(format!("{url}/v1/events")).json(&batch).send();
        async move { (ids, req.await) }
    };
    let mut n = 0;
    // Phase 1: healthy. Phase 2: broker gone. Phase 3: back.
    for phase in 0..3 {
        match phase {
            1 => broker.stop(),
            2 => broker.resume(),
            _ => {}
        }
        let mut ok_in_phase = 0;
        let deadline =
            std::time::Instant::now() + Duration::from_secs(if phase == 0 { 10 } else { 60 });
        while std::time::Instant::now() < deadline && !(phase != 1 && ok_in_phase >= 20) {
            n += 1;
            let (ids, resp) = send(n).await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    acknowledged.extend(ids);
                    ok_in_phase += 1;
                }
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    saw_retry_after |= r.headers().contains_key("retry-after");
                    unavailable += 1;
                    if phase == 1 && unavailable >= 3 {
                        break;
                    }
                }
                Ok(r) => panic!("unexpected {}: {}", r.status(), r.text().await.unwrap()),
                Err(e) => panic!("collector did not answer: {e}"),
            }
        }
        if phase == 1 {
            broker_down_checks(&http, &url).await;
        }
        if phase == 2 {
            eventually(
                "/readyz to be ready again once the broker is back",
                Duration::from_secs(60),
                || async {
                    let r = http.get(format!("{url}/readyz")).send().await.ok()?;
                    r.status().is_success().then_some(())
                },
            )
            .await;
            assert_eq!(
                metric_sum(&url, "touchstream_producer_ready", "").await,
                1.0,
                "the readiness gauge is back to 1 with /readyz"
            );
        }
        match phase {
            0 => assert!(
                ok_in_phase >= 20,
                "healthy phase accepted only {ok_in_phase} batches"
            ),
            1 => assert!(unavailable >= 3, "no 503 while the broker was down"),
            _ => assert!(
                ok_in_phase >= 20,
                "no recovery after the broker came back ({ok_in_phase} batches accepted)"
            ),
        }
    }
    assert!(saw_retry_after, "503s carry Retry-After");

    let wanted: HashSet<String> = acknowledged.into_iter().collect();
    let records = read_topic(
        &broker.brokers(),
        &topics.topics.raw,
        Duration::from_secs(60),
        |r| {
            let have: HashSet<String> = r
                .iter()
                .filter_map(|m| touchstream_avro::decode::<RawEvent>(m.payload()?).ok())
                .map(|e| e.event_id)
                .collect();
            wanted.is_subset(&have)
        },
    )
    .await;
    assert!(records.len() >= wanted.len());
}

/// The two time bases (attribution rules, section 2): `/v1/import` keeps each event's own
/// `occurred_at` as its event time, 60 days back included; `/v1/events` corrects the client's
/// clock with `sent_at` and stores the correction it applied, keeping a batch's order.
#[tokio::test(flavor = "multi_thread")]
async fn import_keeps_each_events_own_time_and_live_events_record_their_correction() {
    let topics = TestTopics::create(1).await;
    let (_producer, url) = start_producer(&topics, KAFKA_BROKERS, &[]).await;
    let http = reqwest::Client::new();
    let now = touchstream_model::time::now_ms();
    let day = touchstream_model::time::DAY_MS;
    let at = |id: &str, occurred: i64, sent: i64| {
        let mut v = click(id);
        v["occurred_at"] = json!(occurred);
        v["sent_at"] = json!(sent);
        v
    };
    // History: 60 and 59 days ago, sent (as recorded) a second later; kept as they happened.
    let history = json!([
        at("imp-1", now - 60 * day, now - 60 * day + 1_000),
        at("imp-2", now - 59 * day, now - 59 * day + 1_000)
    ]);
    let resp = http
        .post(format!("{url}/v1/import"))
        .json(&history)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // An import without its own time is refused, naming the field.
    let resp = http
        .post(format!("{url}/v1/import"))
        .json(&json!([click("imp-3")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "occurred_at", "{body}");
    // Live, from a client whose clock is 2 hours fast: two events 3 s and 1 s before sending.
    let fast = now + 2 * 3_600_000;
    let live = json!([
        at("live-1", fast - 3_000, fast),
        at("live-2", fast - 1_000, fast)
    ]);
    let (status, _) = post(
        &http,
        &url,
        "application/json",
        &[],
        live.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let raw = read_topic(
        KAFKA_BROKERS,
        &topics.topics.raw,
        Duration::from_secs(30),
        |r| r.len() >= 4,
    )
    .await;
    let events: Vec<RawEvent> = raw
        .iter()
        .map(|m| touchstream_avro::decode(m.payload().unwrap()).unwrap())
        .collect();
    let by = |id: &str| {
        events
            .iter()
            .find(|e| e.anonymous_id == id)
            .unwrap()
            .clone()
    };
    let imp = by("imp-1");
    assert_eq!(
        (imp.event_time, imp.clock_correction_ms),
        (now - 60 * day, 0)
    );
    assert_eq!(imp.received_via, "import");
    assert_eq!(by("imp-2").event_time, now - 59 * day);
    let (l1, l2) = (by("live-1"), by("live-2"));
    assert_eq!(l1.received_via, "events");
    assert_eq!(l2.event_time - l1.event_time, 2_000, "relative order kept");
    assert!(l1.event_time <= l1.received_at && l1.received_at - l1.event_time == 3_000);
    assert_eq!(l1.clock_correction_ms, l1.event_time - l1.occurred_at);
    assert!(
        l1.clock_correction_ms < -7_000_000,
        "{}",
        l1.clock_correction_ms
    );
    assert_eq!(l1.site_id, "default");
}

/// With the broker down: `/readyz` says so, and a batch of invalid events is answered (400,
/// every one named) once each of their DLQ writes has been accounted for, written or counted
/// as failed: none is left waiting unseen. The DLQ writes run together, bounded by one produce
/// timeout (see `Delivery::dead_letter_all`); this test makes no claim about how long that
/// takes, and the request's generous timeout only keeps a hang from blocking the suite.
async fn broker_down_checks(http: &reqwest::Client, url: &str) {
    let reason = eventually(
        "/readyz to report the broker unreachable",
        Duration::from_secs(30),
        || async {
            let r = http.get(format!("{url}/readyz")).send().await.ok()?;
            (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(r.text().await.ok()?)
        },
    )
    .await;
    assert!(reason.contains("kafka"), "{reason}");
    assert_eq!(
        metric_sum(url, "touchstream_producer_ready", "").await,
        0.0,
        "the readiness gauge says what /readyz says"
    );
    let dlq_accounted = || async {
        metric_sum(url, "touchstream_producer_dlq_records_total", "").await
            + metric_sum(url, "touchstream_producer_dlq_errors_total", "").await
    };
    let before = dlq_accounted().await;
    let bad: Vec<Value> = (0..20)
        .map(|i| json!({ "event_type": "click", "anonymous_id": format!("bad-{i}") }))
        .collect();
    let resp = http
        .post(format!("{url}/v1/events"))
        .timeout(Duration::from_secs(300))
        .json(&bad)
        .send()
        .await
        .unwrap_or_else(|e| panic!("20 invalid events with the broker down got no answer: {e}"));
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["rejected"], 20, "{body}");
    let after = dlq_accounted().await;
    assert_eq!(
        after - before,
        20.0,
        "each of the 20 rejects is written to the DLQ or counted as a failed DLQ write before the answer"
    );
    assert!(
        metric_sum(url, "touchstream_producer_dlq_errors_total", "").await > 0.0,
        "with the broker down the DLQ writes fail and are counted"
    );
}
