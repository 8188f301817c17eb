//! The Segment tracking API, two ways.
//!
//! - With the real SDKs (`@segment/analytics-node`, `@rudderstack/rudder-sdk-node` and
//!   analytics.js from `@segment/analytics-next` in Debian's Chromium, all from npm, driven by
//!   `tests/browser/sdk-node.mjs` and `analytics-next.mjs`) against the whole pipeline on two
//!   sites: each journey (a page from a social post, a signup, an identify, an "Order
//!   Completed") must come out of ClickHouse attributed to its post's network with the right
//!   revenue, on its own site, even where two sites see the same visitor and user ids; a resend
//!   of a batch counts once.
//! - Against the collector alone, the contract: write keys (missing, unknown, another site's
//!   host), a batch with bad messages (answered 200, the bad ones in the DLQ with index, field
//!   and reason), unreadable and oversized requests, the byte cap instead of a message count,
//!   RudderStack's wire format, DNT per site, unknown routes counted, trusted proxies and
//!   `context.ip`, and `/v1/events` taking its site from a write key.
//!
//! node, Chromium and the npm packages come from `deploy/services.sh install-test-tools`; when
//! one is missing the SDK test fails and says so (it never skips).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use touchstream_avro::DlqRecord;
use touchstream_model::RawEvent;
use touchstream_tests::{
    KAFKA_BROKERS, Pipeline, ScratchDatabase, Service, TestTopics, eventually, free_port,
    metric_sum, read_topic, unique, wait_ready,
};

const INSTALL: &str = "run `deploy/services.sh install-test-tools` (or `make test-tools`)";
const CHROMIUM: &str = "/usr/bin/chromium";

const A_BROWSER: &str = "wk_shop_a_browser";
const A_SERVER: &str = "sk_shop_a_backend";
const B_BROWSER: &str = "wk_shop_b_browser";
const B_SERVER: &str = "sk_shop_b_backend";

/// Two sites in one deployment; the collector trusts no proxy unless `extra` says so.
fn config(extra_producer: &str) -> String {
    format!(
        r#"
[[sites]]
id = "shop-a"
hosts = ["shop-a.example"]
write_keys = ["{A_BROWSER}"]
server_write_keys = ["{A_SERVER}"]

[[sites]]
id = "shop-b"
hosts = ["shop-b.example"]
write_keys = ["{B_BROWSER}"]
server_write_keys = ["{B_SERVER}"]
honour_do_not_track = true
[sites.track."Quote Requested"]
event_type = "signup"
signup_kind = "quote"

[producer]
{extra_producer}
"#
    )
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn require_tools(chromium: bool) {
    assert!(
        !chromium || Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {INSTALL}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed: {INSTALL}"
    );
    for package in [
        "@segment/analytics-node",
        "@rudderstack/rudder-sdk-node",
        "@segment/analytics-next",
        "playwright-core",
    ] {
        assert!(
            browser_dir().join("node_modules").join(package).is_dir(),
            "tests/browser/node_modules/{package} is missing: {INSTALL}"
        );
    }
}

/// Runs a node script of `tests/browser` and returns the JSON summary it printed last.
async fn node(script: &str, env: Vec<(&'static str, String)>) -> Value {
    let script = script.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .current_dir(browser_dir())
            .envs(env)
            .env("CHROMIUM_PATH", CHROMIUM)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("could not run node: {e}; {INSTALL}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node script failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the script printed no JSON summary ({e}):\n{stdout}\n{stderr}"))
}

/// One row of a `FORMAT JSONEachRow` answer, every value as text.
type Row = BTreeMap<String, String>;

fn rows(text: &str) -> Vec<Row> {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => "-".into(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect()
        })
        .collect()
}

async fn query_rows(db: &ScratchDatabase, sql: &str) -> Vec<Row> {
    rows(&db.query(&format!("{sql} FORMAT JSONEachRow")).await)
}

/// The events of one device of one site, once there are `at_least`.
async fn events_of(
    db: &ScratchDatabase,
    site: &str,
    anonymous_id: &str,
    at_least: usize,
) -> Vec<Row> {
    eventually(
        &format!("{at_least} events of {site}/{anonymous_id} in ClickHouse"),
        Duration::from_secs(90),
        || async {
            let found = query_rows(
                db,
                &format!(
                    "SELECT toString(event_id) AS id, event_type, event_name, site_id, anonymous_id, user_id, \
                     page_url, referrer, revenue, currency, order_id, signup_kind, method, opens_touch, source, \
                     social_network, session_source, received_via, ip, property_keys \
                     FROM events FINAL WHERE site_id = '{site}' AND anonymous_id = '{anonymous_id}' \
                     ORDER BY event_time_ms, event_type"
                ),
            )
            .await;
            (found.len() >= at_least).then_some(found)
        },
    )
    .await
}

/// The purchase of `order_id` on `site` and its live credits, once its last-non-direct credit
/// names `source` (a cross-device purchase may first be credited before the link arrives) or
/// 90 s have passed.
async fn purchase_credit(
    db: &ScratchDatabase,
    site: &str,
    order_id: &str,
    source: &str,
) -> (Row, Vec<Row>) {
    let purchase = eventually(
        &format!("purchase {order_id} on {site}"),
        Duration::from_secs(90),
        || async {
            query_rows(
                db,
                &format!(
                    "SELECT toString(event_id) AS id, site_id, anonymous_id, user_id, revenue, currency, \
                     identity_id, page_url, event_name FROM events FINAL \
                     WHERE site_id = '{site}' AND event_type = 'purchase' AND order_id = '{order_id}'"
                ),
            )
            .await
            .into_iter()
            .next()
        },
    )
    .await;
    let id = purchase["id"].clone();
    let until = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let credits = query_rows(
            db,
            &format!(
                "SELECT model, source, social_network, channel, campaign, content, weight, revenue_credit, \
                 currency, site_id FROM conversion_credits FINAL \
                 WHERE conversion_event_id = '{id}' AND retracted = 0 ORDER BY model"
            ),
        )
        .await;
        let settled = credits.len() == 6
            && credits
                .iter()
                .any(|c| c["model"] == "last_non_direct" && c["source"] == source);
        if settled || std::time::Instant::now() > until {
            // The caller's assertions show what was found.
            return (purchase, credits);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn model<'a>(credits: &'a [Row], name: &str) -> &'a Row {
    credits
        .iter()
        .find(|c| c["model"] == name)
        .unwrap_or_else(|| panic!("no {name} credit in {credits:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_sdks_journeys_land_attributed_to_their_posts_on_their_own_sites() {
    require_tools(true);
    let topics = TestTopics::create(2).await;
    let db = ScratchDatabase::new();
    let pipeline = Pipeline::start_with_config(&topics, &db, &config("")).await;
    let collector = pipeline.producer_url.clone();
    let enricher_ops = pipeline.ops[1].clone();
    // The same visitor and user ids on both sites: nothing may mix.
    let anonymous_id = unique("anon-");
    let user_id = unique("user-");
    let order_a = unique("order-a-");
    let order_b = unique("order-b-");

    // Segment's Node SDK, site A's backend: a LinkedIn post's landing page with its UTMs.
    let landing_a = "https://shop-a.example/spring?utm_source=linkedin&utm_medium=social&utm_campaign=spring&utm_content=post-42";
    let segment = node(
        "sdk-node.mjs",
        vec![
            ("SDK", "segment".into()),
            ("TOUCHSTREAM_COLLECTOR_URL", collector.clone()),
            ("WRITE_KEY", A_SERVER.into()),
            ("ANONYMOUS_ID", anonymous_id.clone()),
            ("USER_ID", user_id.clone()),
            ("ORDER_ID", order_a.clone()),
            ("LANDING_URL", landing_a.into()),
            ("REFERRER", "https://www.linkedin.com/".into()),
            ("REVENUE", "19.99".into()),
        ],
    )
    .await;
    eprintln!("segment: {segment}");
    assert_eq!(segment["errors"], json!([]), "{segment}");
    assert!(
        segment["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == 200),
        "{segment}"
    );
    let sent = &segment["requests"][0];
    // What the SDK really sends: a batch with its write key and sentAt, messageIds that are
    // not UUIDs, and a timestamp on each message.
    assert_eq!(sent["writeKey"], A_SERVER);
    assert!(sent["sentAt"].is_string());
    let first = &sent["batch"][0];
    assert!(
        first["messageId"]
            .as_str()
            .unwrap()
            .starts_with("node-next-"),
        "{first}"
    );
    assert!(first["timestamp"].is_string());

    // RudderStack's Node SDK, site B's backend, the same ids: an Instagram reel; the caller
    // parsed the UTMs into context.campaign, the page URL has none. It gzips a JSON body sent as
    // application/x-www-form-urlencoded, with originalTimestamp and sentAt only.
    let rudder = node(
        "sdk-node.mjs",
        vec![
            ("SDK", "rudder".into()),
            ("TOUCHSTREAM_COLLECTOR_URL", collector.clone()),
            ("WRITE_KEY", B_SERVER.into()),
            ("ANONYMOUS_ID", anonymous_id.clone()),
            ("USER_ID", user_id.clone()),
            ("ORDER_ID", order_b.clone()),
            ("LANDING_URL", "https://shop-b.example/spring".into()),
            ("REFERRER", "https://l.instagram.com/".into()),
            (
                "CAMPAIGN",
                json!({"source": "instagram", "medium": "social", "name": "spring", "content": "reel-3"})
                    .to_string(),
            ),
            ("REVENUE", "42.1".into()),
        ],
    )
    .await;
    eprintln!("rudder: {rudder}");
    assert_eq!(rudder["errors"], json!([]), "{rudder}");
    assert!(
        rudder["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["gzip"] == true),
        "{rudder}"
    );
    assert!(
        !rudder["statuses"].as_array().unwrap().is_empty()
            && rudder["statuses"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s == 200),
        "{rudder}"
    );

    // analytics.js in Chromium on a page of site B, from a Facebook post.
    let order_browser = unique("order-browser-");
    let browser = node(
        "analytics-next.mjs",
        vec![
            ("TOUCHSTREAM_COLLECTOR_URL", collector.clone()),
            ("WRITE_KEY", B_BROWSER.into()),
            ("OTHER_WRITE_KEY", A_BROWSER.into()),
            ("ORDER_ID", order_browser.clone()),
            ("REVENUE", "24.5".into()),
        ],
    )
    .await;
    eprintln!("analytics.js: {browser}");
    assert_eq!(browser["errors"], json!([]), "{browser}");
    assert_eq!(browser["failed"], 0, "{browser}");
    let posts: Vec<&Value> = browser["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 4, "one request per call: {browser}");
    assert!(posts.iter().all(|a| a["status"] == 200), "{browser}");
    let paths: Vec<&str> = posts.iter().map(|a| a["url"].as_str().unwrap()).collect();
    for p in ["/v1/p", "/v1/t", "/v1/i"] {
        assert!(paths.contains(&p), "analytics.js posts to {p}: {paths:?}");
    }

    // t.js with data-write-key: site B's key on site B's page is taken (and the page view lands
    // on site B), site A's key on site B's page is refused.
    let own = &browser["tjs"]["own"];
    assert_eq!(own["status"], 200, "{browser}");
    assert_eq!(
        own["url"],
        format!("/v1/events?write_key={B_BROWSER}"),
        "{browser}"
    );
    let other = &browser["tjs"]["other"];
    assert_eq!(other["status"], 403, "{browser}");
    assert!(
        other["body"]["error"].as_str().unwrap().contains("shop-a"),
        "{browser}"
    );
    let tjs_events = events_of(&db, "shop-b", own["id"].as_str().unwrap(), 1).await;
    assert_eq!(
        (
            tjs_events[0]["event_type"].as_str(),
            tjs_events[0]["received_via"].as_str()
        ),
        ("click", "events"),
        "{tjs_events:#?}"
    );

    // Site A: the Segment journey, credited to the LinkedIn post, 19.99 EUR as 1999 cents.
    let a_events = events_of(&db, "shop-a", &anonymous_id, 3).await;
    assert_eq!(a_events.len(), 3, "page, signup, identify: {a_events:#?}");
    let landing = &a_events[0];
    assert_eq!(
        (
            landing["event_type"].as_str(),
            landing["source"].as_str(),
            landing["social_network"].as_str(),
            landing["opens_touch"].as_str(),
            landing["received_via"].as_str(),
            landing["event_name"].as_str()
        ),
        ("click", "linkedin", "linkedin", "1", "segment", "Landing"),
        "{landing:#?}"
    );
    let signup = a_events
        .iter()
        .find(|e| e["event_type"] == "signup")
        .unwrap();
    assert_eq!(
        (
            signup["signup_kind"].as_str(),
            signup["method"].as_str(),
            signup["session_source"].as_str()
        ),
        ("account", "email", "linkedin"),
        "{signup:#?}"
    );
    let (purchase_a, credits_a) = purchase_credit(&db, "shop-a", &order_a, "linkedin").await;
    assert_eq!(
        (
            purchase_a["revenue"].as_str(),
            purchase_a["currency"].as_str(),
            purchase_a["user_id"].as_str(),
            purchase_a["page_url"].as_str(),
            purchase_a["identity_id"].as_str()
        ),
        ("1999", "EUR", user_id.as_str(), "", user_id.as_str()),
        "a backend purchase without a page: {purchase_a:#?}"
    );
    let lnd = model(&credits_a, "last_non_direct");
    assert_eq!(
        (
            lnd["source"].as_str(),
            lnd["social_network"].as_str(),
            lnd["content"].as_str(),
            lnd["weight"].as_str(),
            lnd["revenue_credit"].as_str(),
            lnd["site_id"].as_str()
        ),
        ("linkedin", "linkedin", "post-42", "1", "1999", "shop-a"),
        "{credits_a:#?}"
    );
    // The backend's context.ip is believed (server-side key), truncated.
    let ip = query_rows(
        &db,
        &format!("SELECT ip FROM events FINAL WHERE order_id = '{order_a}'"),
    )
    .await;
    assert_eq!(ip[0]["ip"], "203.0.113.0", "{ip:#?}");

    // Site B: the RudderStack journey with the same ids, credited to Instagram only.
    let b_events = events_of(&db, "shop-b", &anonymous_id, 3).await;
    assert_eq!(b_events.len(), 3, "{b_events:#?}");
    assert_eq!(
        (
            b_events[0]["source"].as_str(),
            b_events[0]["opens_touch"].as_str()
        ),
        ("instagram", "1"),
        "context.campaign reaches the classifier: {b_events:#?}"
    );
    let (purchase_b, credits_b) = purchase_credit(&db, "shop-b", &order_b, "instagram").await;
    assert_eq!(purchase_b["revenue"], "4210", "{purchase_b:#?}");
    for c in &credits_b {
        assert_eq!(
            (c["source"].as_str(), c["site_id"].as_str()),
            ("instagram", "shop-b"),
            "site B's purchase is credited to site B's touch only: {credits_b:#?}"
        );
    }
    for c in &credits_a {
        assert_eq!(c["source"], "linkedin", "{credits_a:#?}");
    }

    // analytics.js on site B: the Facebook post, 24.50 EUR.
    let browser_id = browser["anonymousId"].as_str().unwrap();
    let browser_events = events_of(&db, "shop-b", browser_id, 4).await;
    let landing = &browser_events[0];
    assert_eq!(
        (
            landing["event_type"].as_str(),
            landing["source"].as_str(),
            landing["social_network"].as_str(),
            landing["opens_touch"].as_str()
        ),
        ("click", "facebook", "facebook", "1"),
        "{browser_events:#?}"
    );
    assert_eq!(landing["referrer"], browser["referrer"].as_str().unwrap());
    let (purchase_browser, credits_browser) =
        purchase_credit(&db, "shop-b", &order_browser, "facebook").await;
    assert_eq!(
        (
            purchase_browser["revenue"].as_str(),
            purchase_browser["user_id"].as_str()
        ),
        ("2450", "u-browser-b"),
        "{purchase_browser:#?}"
    );
    let lnd = model(&credits_browser, "last_non_direct");
    assert_eq!(
        (
            lnd["source"].as_str(),
            lnd["content"].as_str(),
            lnd["revenue_credit"].as_str()
        ),
        ("facebook", "post-9", "2450"),
        "{credits_browser:#?}"
    );

    // A resend of the same batch (what an SDK does when an answer is lost) counts once: the
    // events get the ids of the first send, and nothing is stored or credited twice.
    let count_sql = format!(
        "SELECT count() AS n, uniqExact(event_id) AS ids FROM events FINAL \
         WHERE site_id = 'shop-a' AND (anonymous_id = '{anonymous_id}' OR anonymous_id = '{user_id}')"
    );
    let credit_sql = format!(
        "SELECT count() AS n, sum(revenue_credit) AS revenue FROM conversion_credits FINAL \
         WHERE site_id = 'shop-a' AND model = 'linear' AND retracted = 0 AND conversion_type = 'purchase' \
         AND conversion_event_id = '{}'",
        purchase_a["id"]
    );
    let before = (
        query_rows(&db, &count_sql).await,
        query_rows(&db, &credit_sql).await,
    );
    let duplicates_before = metric_sum(
        &enricher_ops,
        "touchstream_enricher_duplicate_events_total",
        "",
    )
    .await;
    let resend = reqwest::Client::new()
        .post(format!("{collector}/v1/batch"))
        .basic_auth(A_SERVER, Some(""))
        .json(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), StatusCode::OK);
    let resent = sent["batch"].as_array().unwrap().len() as f64;
    eventually(
        "the enricher to drop the resend",
        Duration::from_secs(60),
        || async {
            let now = metric_sum(
                &enricher_ops,
                "touchstream_enricher_duplicate_events_total",
                "",
            )
            .await;
            (now - duplicates_before >= resent).then_some(())
        },
    )
    .await;
    // Give the sink a flush interval more to show anything it would have written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = (
        query_rows(&db, &count_sql).await,
        query_rows(&db, &credit_sql).await,
    );
    assert_eq!(before, after, "a resent batch changes nothing");
    assert_eq!(
        after.0[0]["n"], "4",
        "page, signup, identify, purchase: {after:?}"
    );
}

async fn start_producer(topics: &TestTopics, config: &str) -> (Service, String, PathBuf) {
    let port = free_port();
    let file = std::env::temp_dir().join(format!("{}.toml", unique("ts-segment-")));
    std::fs::write(&file, config).unwrap();
    let mut env = topics.env("producer");
    env.push((
        "TOUCHSTREAM_PRODUCER__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    env.push((
        "TOUCHSTREAM_PRODUCER__KAFKA__BROKERS".into(),
        KAFKA_BROKERS.into(),
    ));
    let producer = Service::spawn("producer", &["--config", file.to_str().unwrap()], &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/readyz"), &producer).await;
    (producer, url, file)
}

struct Post<'a> {
    path: &'a str,
    key: Option<&'a str>,
    headers: Vec<(&'a str, String)>,
    body: Vec<u8>,
}

impl<'a> Post<'a> {
    fn json(path: &'a str, key: Option<&'a str>, body: &Value) -> Self {
        Post {
            path,
            key,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    fn header(mut self, k: &'a str, v: &str) -> Self {
        self.headers.push((k, v.to_string()));
        self
    }

    async fn send(self, url: &str) -> (StatusCode, Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{url}{}", self.path))
            .body(self.body);
        if let Some(k) = self.key {
            req = req.basic_auth(k, Some(""));
        }
        for (k, v) in self.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A day ago, as a backend would stamp an event it sends late.
fn yesterday() -> &'static str {
    static AT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AT.get_or_init(|| {
        touchstream_model::time::format_rfc3339_ms(
            touchstream_model::time::now_ms() - touchstream_model::time::DAY_MS,
        )
    })
}

fn track(anonymous_id: &str, message_id: &str, event: &str, properties: Value) -> Value {
    json!({"type": "track", "messageId": message_id, "anonymousId": anonymous_id, "event": event,
           "properties": properties, "timestamp": yesterday()})
}

async fn raw_events(topic: &str, n: usize) -> Vec<RawEvent> {
    read_topic(KAFKA_BROKERS, topic, Duration::from_secs(30), |r| {
        r.len() >= n
    })
    .await
    .iter()
    .map(|m| touchstream_avro::decode(m.payload().unwrap()).unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_collector_keeps_segments_contract() {
    let topics = TestTopics::create(1).await;
    let (_producer, url, file) =
        start_producer(&topics, &config(r#"trusted_proxies = ["127.0.0.1"]"#)).await;
    let now = touchstream_model::time::format_rfc3339_ms(touchstream_model::time::now_ms());
    let anon = unique("a-");

    // Write keys: missing, unknown, another site's browser key from this site's page.
    let batch = json!({"batch": [track(&anon, "m-0", "Signed Up", json!({}))]});
    let (status, body) = Post::json("/v1/batch", None, &batch).send(&url).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing write key"),
        "{body}"
    );
    let (status, body) = Post::json("/v1/batch", Some("wk_nobody"), &batch)
        .send(&url)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown write key"),
        "{body}"
    );
    let (status, body) = Post::json("/v1/batch", Some(A_BROWSER), &batch)
        .header("origin", "https://shop-b.example")
        .send(&url)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("shop-a"), "{body}");
    // writeKey in the body is a key too.
    let with_key = json!({"writeKey": A_BROWSER, "batch": [track(&anon, "m-0", "Signed Up", json!({"method": "email"}))], "sentAt": now});
    let (status, body) = Post::json("/v1/batch", None, &with_key)
        .header("origin", "https://www.shop-a.example")
        .send(&url)
        .await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );

    // A batch with bad messages: 200, the good one stored, each bad one named and dead-lettered.
    let big = "x".repeat(40_000);
    let mixed = json!({"batch": [
        track(&anon, "m-1", "Order Completed", json!({"order_id": "o-1", "revenue": 19.99, "currency": "EUR"})),
        track(&anon, "m-2", "Order Completed", json!({"order_id": "o-2"})),
        track(&anon, "m-3", "Video Played", json!({"blob": big})),
        {"type": "poke", "anonymousId": anon},
        {"type": "group", "anonymousId": anon, "groupId": "acme", "messageId": "m-5"},
    ], "context": {"library": {"name": "test"}}});
    let (status, body) = Post::json("/v1/batch", Some(A_SERVER), &mixed)
        .send(&url)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].clone(), body["rejected"].clone()),
        (json!(2), json!(3)),
        "{body}"
    );
    let named: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        [
            (1, "properties.revenue|properties.total|properties.value"),
            (2, "(message)"),
            (3, "type")
        ],
        "{body}"
    );
    let dlq = read_topic(
        KAFKA_BROKERS,
        &topics.topics.dlq,
        Duration::from_secs(30),
        |r| r.len() >= 3,
    )
    .await;
    let reasons: Vec<String> = dlq
        .iter()
        .map(|r| {
            touchstream_avro::decode::<DlqRecord>(r.payload().unwrap())
                .unwrap()
                .reason
        })
        .collect();
    for expected in [
        "batch[1].properties.revenue",
        "batch[2].(message): 4",
        "batch[3].type",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(expected)),
            "{expected} in {reasons:#?}"
        );
    }

    // Single calls: a bad one is refused with its field; group is acknowledged and stored.
    let (status, body) = Post::json(
        "/v1/track",
        Some(A_SERVER),
        &json!({"anonymousId": anon, "event": "Order Completed", "properties": {"revenue": 5}}),
    )
    .send(&url)
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "properties.order_id", "{body}");
    let (status, _) = Post::json(
        "/v1/alias",
        Some(A_SERVER),
        &json!({"previousId": anon, "userId": "u-1", "messageId": "m-6"}),
    )
    .send(&url)
    .await;
    assert_eq!(status, StatusCode::OK);

    // Unreadable requests are 400s; the size limit is Segment's, by bytes and not by count.
    let (status, body) = Post {
        path: "/v1/batch",
        key: Some(A_SERVER),
        headers: vec![],
        body: b"{\"batch\": [".to_vec(),
    }
    .send(&url)
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a JSON object"),
        "{body}"
    );
    // Kept in the DLQ as received (after the three bad messages and the bad single call).
    let dlq = read_topic(
        KAFKA_BROKERS,
        &topics.topics.dlq,
        Duration::from_secs(30),
        |r| r.len() >= 5,
    )
    .await;
    let unreadable = touchstream_avro::decode::<DlqRecord>(dlq[4].payload().unwrap()).unwrap();
    assert_eq!(unreadable.payload, b"{\"batch\": [");
    assert!(
        unreadable.reason.contains("not a JSON object"),
        "{}",
        unreadable.reason
    );
    let over: Vec<Value> = (0..60)
        .map(|i| {
            track(
                &anon,
                &format!("big-{i}"),
                "Video Played",
                json!({"b": "y".repeat(9_000)}),
            )
        })
        .collect();
    let (status, body) = Post::json("/v1/batch", Some(A_SERVER), &json!({"batch": over}))
        .send(&url)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("500 KB"), "{body}");
    // 2 000 small messages, about 300 KB: more than any event count limit, within the bytes.
    let many: Vec<Value> = (0..2_000)
        .map(|i| json!({"type": "page", "messageId": format!("many-{i}"), "anonymousId": format!("{anon}-{}", i % 50),
                        "properties": {"url": "https://shop-a.example/p"}, "timestamp": now}))
        .collect();
    let (status, body) = Post::json("/v1/batch", Some(A_SERVER), &json!({"batch": many}))
        .send(&url)
        .await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(2000)),
        "{body}"
    );

    // RudderStack's wire format: gzip JSON declared as a form.
    let rudder = json!({"batch": [{"type": "track", "event": "Quote Requested", "anonymousId": format!("{anon}-r"),
        "messageId": "r-1", "originalTimestamp": now, "sentAt": now, "channel": "server",
        "_metadata": {"nodeVersion": "20"}, "properties": {"plan": "pro"}}], "sentAt": now, "timestamp": now});
    let (status, body) = Post {
        path: "/v1/batch",
        key: Some(B_SERVER),
        headers: vec![
            ("content-type", "application/x-www-form-urlencoded".into()),
            ("content-encoding", "gzip".into()),
        ],
        body: gzip(rudder.to_string().as_bytes()),
    }
    .send(&url)
    .await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );

    // Site B honours Do Not Track: answered, not collected.
    let (status, body) = Post::json(
        "/v1/batch",
        Some(B_SERVER),
        &json!({"batch": [track(&anon, "dnt-1", "Signed Up", json!({}))]}),
    )
    .header("dnt", "1")
    .send(&url)
    .await;
    assert_eq!(
        (status, body["ignored"].clone(), body["accepted"].clone()),
        (StatusCode::OK, json!(1), json!(0)),
        "{body}"
    );

    // /v1/events takes its site from ?write_key= (what t.js sends with data-write-key), and the
    // client address from the trusted proxy's X-Forwarded-For.
    let click = json!({"event_type": "click", "anonymous_id": format!("{anon}-e"), "page_url": "https://shop-b.example/"});
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/events?write_key={B_BROWSER}"))
        .header("origin", "https://shop-b.example")
        .header("x-forwarded-for", "198.51.100.23, 127.0.0.1")
        .json(&click)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/events?write_key={B_BROWSER}"))
        .header("origin", "https://shop-a.example")
        .json(&click)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "site B's key from site A's page"
    );
    // A browser's context.ip is not believed.
    let (status, _) = Post::json(
        "/v1/identify",
        Some(A_BROWSER),
        &json!({"anonymousId": format!("{anon}-i"), "userId": "u-9", "messageId": "i-1", "context": {"ip": "192.0.2.99"}}),
    )
    .header("x-forwarded-for", "198.51.100.77")
    .send(&url)
    .await;
    assert_eq!(status, StatusCode::OK);

    // Misdirected traffic is counted.
    let (status, _) = Post::json("/v2/batch", Some(A_SERVER), &json!({}))
        .send(&url)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        metric_sum(
            &url,
            "touchstream_producer_requests_total",
            r#"route="(unknown)""#
        )
        .await,
        1.0
    );
    assert!(
        metric_sum(
            &url,
            "touchstream_producer_requests_total",
            r#"route="/v1/batch",status="200""#
        )
        .await
            >= 5.0
    );

    // What reached the raw topic: 1 + 2 + 2000 + 1 (rudder) + 1 (events) + 1 (alias) + 1 (identify).
    let raw = raw_events(&topics.topics.raw, 2_007).await;
    assert_eq!(raw.len(), 2_007);
    let by_name = |n: &str| {
        raw.iter()
            .filter(|e| e.event_name.as_deref() == Some(n))
            .collect::<Vec<_>>()
    };
    let purchase = by_name("Order Completed");
    assert_eq!(purchase.len(), 1);
    assert_eq!(
        (
            purchase[0].revenue,
            purchase[0].currency.as_deref(),
            purchase[0].site_id.as_str()
        ),
        (Some(1999), Some("EUR"), "shop-a")
    );
    // Server-side timestamp: the event time as sent.
    assert_eq!(
        purchase[0].event_time,
        touchstream_model::time::parse_rfc3339_ms(yesterday()).unwrap()
    );
    assert_eq!(
        purchase[0].event_id,
        producer::segment::event_id("shop-a", "m-1"),
        "the event id is derived from site and messageId"
    );
    let group = by_name("group");
    assert_eq!(
        group[0].properties.get("group_id").map(String::as_str),
        Some("acme")
    );
    assert_eq!(group[0].event_type, touchstream_model::EventType::Custom);
    let quote = by_name("Quote Requested");
    assert_eq!(
        (
            quote[0].event_type,
            quote[0].signup_kind.as_deref(),
            quote[0].site_id.as_str()
        ),
        (
            touchstream_model::EventType::Signup,
            Some("quote"),
            "shop-b"
        ),
        "site B's own track rule"
    );
    let events = raw
        .iter()
        .find(|e| e.anonymous_id == format!("{anon}-e"))
        .unwrap();
    assert_eq!(
        (events.site_id.as_str(), events.ip.as_deref()),
        ("shop-b", Some("198.51.100.0"))
    );
    let identify = raw
        .iter()
        .find(|e| e.anonymous_id == format!("{anon}-i"))
        .unwrap();
    assert_eq!(
        identify.ip.as_deref(),
        Some("198.51.100.0"),
        "the browser's context.ip is ignored"
    );
    let alias = raw
        .iter()
        .find(|e| e.event_id == producer::segment::event_id("shop-a", "m-6"))
        .unwrap();
    assert_eq!(
        (
            alias.event_type,
            alias.anonymous_id.as_str(),
            alias.user_id.as_deref()
        ),
        (
            touchstream_model::EventType::Identify,
            anon.as_str(),
            Some("u-1")
        )
    );
    assert!(
        raw.iter()
            .all(|e| e.received_via == "segment" || e.anonymous_id.ends_with("-e"))
    );
    let _ = std::fs::remove_file(file);
}
