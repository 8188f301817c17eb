//! End to end: the three real binaries against the real broker and server. Events go in over
//! HTTP and must come out of ClickHouse attributed to the right social network.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use touchstream_tests::{Pipeline, ScratchDatabase, TestTopics, eventually};

fn click(anonymous_id: &str, page_url: &str, referrer: Option<&str>) -> Value {
    json!({ "event_id": uuid::Uuid::new_v4().to_string(), "event_type": "click", "anonymous_id": anonymous_id,
            "page_url": page_url, "referrer": referrer, "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0" })
}

#[tokio::test(flavor = "multi_thread")]
async fn events_posted_over_http_reach_clickhouse_attributed_to_their_network() {
    let topics = TestTopics::create(2).await;
    let db = ScratchDatabase::new();
    let mut pipeline = Pipeline::start(&topics, &db).await;
    let http = reqwest::Client::new();

    let purchase_id = uuid::Uuid::new_v4().to_string();
    let mut batch = json!([
        click("v-x", "https://shop.example/", Some("https://t.co/AbC123")),
        click("v-fb", "https://shop.example/blog/post-1", Some("https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F")),
        click("v-li", "https://shop.example/?utm_source=LinkedIn&utm_medium=social&utm_campaign=launch&utm_content=post-42", None),
        click("v-g", "https://shop.example/pricing", Some("https://www.google.de/")),
        click("v-d", "https://shop.example/", None),
        { "event_type": "signup", "anonymous_id": "v-fb", "page_url": "https://shop.example/newsletter", "signup_kind": "newsletter" },
        { "event_id": purchase_id, "event_type": "purchase", "anonymous_id": "v-x", "page_url": "https://shop.example/thanks",
          "order_id": "o-1", "revenue": 4999, "currency": "EUR" },
    ]);
    // Stamped as a tracker stamps them: a few milliseconds apart, sent together (events with
    // no time of their own would all take the arrival time, and ties are broken by event id).
    let sent = touchstream_model::time::now_ms();
    let events = batch.as_array_mut().unwrap();
    let n = events.len() as i64;
    for (i, e) in events.iter_mut().enumerate() {
        e["occurred_at"] = json!(sent - (n - i as i64) * 10);
        e["sent_at"] = json!(sent);
    }
    let resp = http
        .post(format!("{}/v1/events", pipeline.producer_url))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["accepted"], 7);

    // The session-scoped source: the conversions' sessions started with the touch from their
    // network (their own hits have no referrer: Direct, event-scoped).
    let rows = eventually("7 events in ClickHouse", Duration::from_secs(90), || async {
        let text = db
            .query("SELECT anonymous_id, event_type, session_source, ifNull(session_social_network, '-') FROM events FINAL ORDER BY anonymous_id, event_type FORMAT TSV")
            .await;
        let rows: Vec<String> = text.lines().map(str::to_string).collect();
        (rows.len() >= 7).then_some(rows)
    })
    .await;
    assert_eq!(
        rows,
        [
            "v-d\tclick\t(direct)\t-",
            "v-fb\tclick\tfacebook\tfacebook",
            "v-fb\tsignup\tfacebook\tfacebook",
            "v-g\tclick\tgoogle\t-",
            "v-li\tclick\tlinkedin\tlinkedin",
            "v-x\tclick\tx\tx",
            "v-x\tpurchase\tx\tx",
        ],
        "events as loaded"
    );

    // The purchase is credited to the t.co touch under every model.
    let credits = eventually("the purchase's credits", Duration::from_secs(30), || async {
        let text = db
            .query(&format!(
                "SELECT model, source, social_network, weight, revenue_credit FROM conversion_credits FINAL \
                 WHERE conversion_event_id = '{purchase_id}' ORDER BY model FORMAT TSV"
            ))
            .await;
        let rows: Vec<String> = text.lines().map(str::to_string).collect();
        (rows.len() >= 6).then_some(rows)
    })
    .await;
    assert_eq!(credits.len(), 6, "{credits:?}");
    for row in &credits {
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(&cols[1..], ["x", "x", "1", "4999"], "{row}");
    }

    // Every binary counted what went through it.
    for (url, metric) in pipeline.ops.iter().zip([
        "touchstream_producer_events_accepted_total",
        "touchstream_enricher_events_out_total",
        "touchstream_sink_rows_inserted_total",
    ]) {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains(metric),
            "{url}/metrics lacks {metric}:\n{text}"
        );
    }

    // Graceful shutdown: each drains and exits 0.
    for service in &mut pipeline.services {
        assert!(
            service.terminate(),
            "{} did not exit cleanly; log:\n{}",
            service.name,
            service.log_text()
        );
    }
}
