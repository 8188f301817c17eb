//! The browser tracker end to end: Debian's Chromium, driven by playwright-core
//! (`tests/browser/tracker.mjs`), follows a post on X (t.co) and Facebook's link shim to a shop
//! that installs `/t.js` from the real collector, browses, signs up and buys. The events must
//! come out of ClickHouse with the touch the browser really arrived through.
//!
//! Chromium, node and playwright-core come from `deploy/services.sh install-test-tools`; when
//! one is missing this test fails and says so (it never skips).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use touchstream_tests::{Pipeline, ScratchDatabase, TestTopics, eventually};

const INSTALL: &str = "run `deploy/services.sh install-test-tools` (or `make test-tools`)";
const CHROMIUM: &str = "/usr/bin/chromium";
/// What the tracker may weigh on the wire.
const MAX_TRACKER_GZIP_BYTES: usize = 3_000;
const MODELS: [&str; 6] = [
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "position_based",
    "time_decay",
];

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Fails with what to run when a tool is missing.
fn require_tools() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {INSTALL}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed: {INSTALL}"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules/playwright-core is missing: {INSTALL}"
    );
}

/// Runs the browser journeys against `collector` and returns their summary.
async fn run_browser(collector: &str, order_id: &str) -> Value {
    run_script(
        "tracker.mjs",
        &[
            ("TOUCHSTREAM_COLLECTOR_URL", collector),
            ("TOUCHSTREAM_ORDER_ID", order_id),
        ],
    )
    .await
}

/// Runs `tests/browser/<script>` with `env` and returns the JSON summary it prints last.
async fn run_script(script: &str, env: &[(&str, &str)]) -> Value {
    let arg = script.to_string();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(arg)
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
        "tests/browser/{script} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script} printed no JSON summary ({e}):\n{stdout}\n{stderr}"))
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap().len()
}

/// One row of a `FORMAT JSONEachRow` answer, every value as text (ClickHouse quotes 64-bit
/// integers in JSON; nulls become "-").
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

const EVENT_COLUMNS: &str = "toString(event_id) AS event_id, event_type, anonymous_id, user_id, \
     page_url, referrer, user_agent, target_url, element, signup_kind, method, asset_id, asset_kind, \
     order_id, revenue, currency, property_keys, property_values, channel, source, social_network, \
     click_id_kind, is_internal, is_bot, opens_touch, occurred_at_ms, sent_at_ms, session_channel, \
     session_source, session_social_network";

async fn events_of(db: &ScratchDatabase, anonymous_id: &str, at_least: usize) -> Vec<Row> {
    eventually(
        &format!("{at_least} events of {anonymous_id} in ClickHouse"),
        Duration::from_secs(60),
        || async {
            let text = db
                .query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events FINAL WHERE anonymous_id = '{anonymous_id}' \
                     ORDER BY event_time_ms, event_type FORMAT JSONEachRow"
                ))
                .await;
            let found = rows(&text);
            (found.len() >= at_least).then_some(found)
        },
    )
    .await
}

fn only<'a>(rows: &'a [Row], what: &str, pred: impl Fn(&Row) -> bool) -> &'a Row {
    let found: Vec<&Row> = rows.iter().filter(|r| pred(r)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} expected in {rows:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_arriving_from_social_posts_is_attributed_to_them() {
    require_tools();
    let topics = TestTopics::create(2).await;
    let db = ScratchDatabase::new();
    let pipeline = Pipeline::start(&topics, &db).await;
    let collector = pipeline.producer_url.clone();

    // The tracker as served stays small.
    let tracker = reqwest::get(format!("{collector}/t.js")).await.unwrap();
    assert!(tracker.status().is_success());
    let tracker = tracker.bytes().await.unwrap();
    let gzipped = gzip_len(&tracker);
    eprintln!(
        "t.js: {} bytes, {gzipped} bytes gzipped (-9)",
        tracker.len()
    );
    assert!(
        gzipped < MAX_TRACKER_GZIP_BYTES,
        "t.js is {gzipped} bytes gzipped, over the {MAX_TRACKER_GZIP_BYTES} budget"
    );

    let order_id = format!("o-{}", uuid::Uuid::new_v4());
    let summary = run_browser(&collector, &order_id).await;
    eprintln!("browser summary: {summary:#}");
    let port = summary["port"].as_u64().unwrap();
    let user_id = summary["user_id"].as_str().unwrap();
    assert_eq!(
        summary["page_errors"],
        Value::Array(vec![]),
        "the tracker must not break the page nor be rejected"
    );
    assert_eq!(
        summary["accepted_by_collector"], summary["expected_events"],
        "events the collector accepted"
    );

    // The visitor ids: first-party, UUIDs, distinct per browser, kept 2 years, SameSite=Lax.
    let x = &summary["journeys"]["x"];
    let fb = &summary["journeys"]["facebook"];
    let (x_id, fb_id) = (x["id"].as_str().unwrap(), fb["id"].as_str().unwrap());
    for j in [x, fb] {
        let id = j["id"].as_str().unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(id).map(|u| u.get_version_num()).ok(),
            Some(4),
            "{id}"
        );
        assert_eq!(j["sameSite"], "Lax");
        let days = (j["expires"].as_f64().unwrap()
            - std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64())
            / 86_400.0;
        // The tracker asks for 2 years; Chromium caps any cookie at 400 days.
        assert!((399.0..=731.0).contains(&days), "cookie kept {days} days");
    }
    assert_ne!(x_id, fb_id);
    assert_eq!(x["referrer"], format!("http://t.co:{port}/"));
    assert_eq!(x["fetch"]["status"], 200, "{x}");
    let beacon_events =
        x["beacon_events"].as_u64().unwrap() + fb["beacon_events"].as_u64().unwrap();
    assert!(beacon_events >= 1, "no event left by sendBeacon: {summary}");

    // Journey 1, in event-time order: landing (the touch), the link click and the next page
    // (internal), the download queued before t.js loaded, signup, purchase.
    let shop = format!("http://shop.example:{port}");
    let landing_url = format!("{shop}/landing?post=42");
    let events = events_of(&db, x_id, 6).await;
    assert_eq!(events.len(), 6, "{events:#?}");
    // Sent by a browser, not a bot, each with its own id and its client times.
    for e in &events {
        assert_eq!(e["is_bot"], "0", "{e:#?}");
        assert!(e["user_agent"].contains("Chrome"), "{e:#?}");
        let (occurred, sent): (i64, i64) = (
            e["occurred_at_ms"].parse().unwrap(),
            e["sent_at_ms"].parse().unwrap(),
        );
        assert!(
            occurred > 0 && sent >= occurred,
            "occurred_at {occurred}, sent_at {sent}"
        );
    }
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e["event_id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own event_id");
    let touches: Vec<&Row> = events.iter().filter(|r| r["opens_touch"] == "1").collect();
    assert_eq!(
        touches.len(),
        1,
        "only the landing opens a touch: {events:#?}"
    );
    let landing = touches[0];
    assert_eq!(landing["event_type"], "click");
    assert_eq!(landing["page_url"], landing_url);
    assert_eq!(landing["referrer"], format!("http://t.co:{port}/"));
    assert_eq!(
        (
            landing["source"].as_str(),
            landing["social_network"].as_str(),
            landing["channel"].as_str(),
            landing["is_internal"].as_str()
        ),
        ("x", "x", "Organic Social", "0"),
        "{landing:#?}"
    );
    let link = only(&events, "link click", |r| r["target_url"] != "-");
    assert_eq!(link["target_url"], format!("{shop}/products"));
    assert_eq!(link["element"], "#menu a.nav.products");
    assert_eq!(link["referrer"], landing_url);
    assert_eq!(
        (link["is_internal"].as_str(), link["opens_touch"].as_str()),
        ("1", "0"),
        "{link:#?}"
    );
    let next_page = only(&events, "products page view", |r| {
        r["event_type"] == "click" && r["page_url"] == format!("{shop}/products")
    });
    assert_eq!(next_page["referrer"], landing_url);
    assert_eq!(
        (
            next_page["is_internal"].as_str(),
            next_page["opens_touch"].as_str()
        ),
        ("1", "0")
    );

    let download = only(&events, "download", |r| r["event_type"] == "download");
    assert_eq!(
        (
            download["asset_id"].as_str(),
            download["asset_kind"].as_str()
        ),
        ("price-list", "pdf")
    );
    let signup = only(&events, "signup", |r| r["event_type"] == "signup");
    assert_eq!(
        (signup["signup_kind"].as_str(), signup["method"].as_str()),
        ("newsletter", "email")
    );
    assert_eq!(
        (
            signup["property_keys"].as_str(),
            signup["property_values"].as_str()
        ),
        (r#"["form"]"#, r#"["footer"]"#)
    );
    let purchase = only(&events, "purchase", |r| r["event_type"] == "purchase");
    assert_eq!(
        (
            purchase["order_id"].as_str(),
            purchase["revenue"].as_str(),
            purchase["currency"].as_str()
        ),
        (order_id.as_str(), "4999", "EUR")
    );
    assert_eq!(
        purchase["user_id"], user_id,
        "identify() sets user_id on later events"
    );
    assert_eq!(
        (
            purchase["property_keys"].as_str(),
            purchase["property_values"].as_str()
        ),
        (r#"["items"]"#, r#"["2"]"#)
    );
    for conversion in [download, signup, purchase] {
        // Session-scoped: the t.co touch that opened the session brought the conversion.
        assert_eq!(
            (
                conversion["session_source"].as_str(),
                conversion["session_social_network"].as_str(),
                conversion["session_channel"].as_str()
            ),
            ("x", "x", "Organic Social"),
            "a conversion's session carries the touch that brought the visitor: {conversion:#?}"
        );
        // Event-scoped: the conversion's own hit, from a page of the site itself.
        assert_eq!(
            (
                conversion["channel"].as_str(),
                conversion["is_internal"].as_str()
            ),
            ("Direct", "1"),
            "{conversion:#?}"
        );
    }

    // The purchase is credited to the t.co touch under every model.
    let purchase_id = purchase["event_id"].clone();
    let credits = eventually("the purchase's credits", Duration::from_secs(60), || async {
        let text = db
            .query(&format!(
                "SELECT model, toString(touch_event_id) AS touch, source, social_network, channel, weight, \
                 revenue_credit, currency FROM conversion_credits FINAL \
                 WHERE conversion_event_id = '{purchase_id}' ORDER BY model FORMAT JSONEachRow"
            ))
            .await;
        let found = rows(&text);
        (found.len() >= MODELS.len()).then_some(found)
    })
    .await;
    let models: Vec<&str> = credits.iter().map(|c| c["model"].as_str()).collect();
    assert_eq!(models, MODELS, "{credits:#?}");
    for c in &credits {
        assert_eq!(c["touch"], landing["event_id"], "{c:#?}");
        assert_eq!(
            (
                c["source"].as_str(),
                c["social_network"].as_str(),
                c["channel"].as_str(),
                c["weight"].as_str(),
                c["revenue_credit"].as_str(),
                c["currency"].as_str()
            ),
            ("x", "x", "Organic Social", "1", "4999", "EUR"),
            "{c:#?}"
        );
    }

    // Journey 2: Facebook's link shim, with fbclid on the landing URL (not paid).
    let fb_events = events_of(&db, fb_id, 1).await;
    assert_eq!(fb_events.len(), 1, "{fb_events:#?}");
    let fb_landing = &fb_events[0];
    assert_eq!(
        fb_landing["page_url"],
        format!("{shop}/blog/post-1?fbclid=IwAR0browser")
    );
    assert_eq!(
        fb_landing["referrer"],
        format!("http://l.facebook.com:{port}/")
    );
    assert_eq!(
        (
            fb_landing["source"].as_str(),
            fb_landing["social_network"].as_str(),
            fb_landing["channel"].as_str(),
            fb_landing["click_id_kind"].as_str(),
            fb_landing["opens_touch"].as_str()
        ),
        ("facebook", "facebook", "Organic Social", "fbclid", "1"),
        "{fb_landing:#?}"
    );
}

fn uuid_version(id: &str) -> Option<usize> {
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id)
        .map(|u| u.get_version_num())
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().or_else(|| c["name"].as_str()).unwrap())
        .collect()
}

/// The shop keeps nothing: no cookie, no localStorage or sessionStorage entry.
fn assert_nothing_stored(stored: &Value, when: &str) {
    assert!(
        names(&stored["cookies"]).is_empty()
            && names(&stored["local"]).is_empty()
            && names(&stored["session"]).is_empty(),
        "{when}: something was stored: {stored}"
    );
}

/// Rows of `events` whose page is under `http://shop.example:<port><prefix>`, at least
/// `at_least` of them.
async fn events_under(db: &ScratchDatabase, port: u64, prefix: &str, at_least: usize) -> Vec<Row> {
    eventually(
        &format!("{at_least} events under {prefix} in ClickHouse"),
        Duration::from_secs(60),
        || async {
            let text = db
                .query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events FINAL \
                     WHERE startsWith(page_url, 'http://shop.example:{port}{prefix}') \
                     ORDER BY event_time_ms, event_type FORMAT JSONEachRow"
                ))
                .await;
            let found = rows(&text);
            (found.len() >= at_least).then_some(found)
        },
    )
    .await
}

/// t.js's `data-consent="required"` and `"cookieless"` in Chromium (`tests/browser/privacy.mjs`):
/// nothing stored or sent before consent, held events sent on consent(true), everything
/// cleared on consent(false); cookieless visits store nothing and get the collector's daily id,
/// one per browser and UTC day, a new one after midnight (the collector's salt clock is moved
/// by the test-only `cookieless.test_clock_file`).
#[tokio::test(flavor = "multi_thread")]
async fn consent_and_cookieless_modes_store_nothing_they_should_not() {
    require_tools();
    let topics = TestTopics::create(2).await;
    let db = ScratchDatabase::new();
    let clock_file = std::env::temp_dir().join(touchstream_tests::unique("ts-cookieless-clock-"));
    let config = format!(
        "[producer.cookieless]\ntest_clock_file = {:?}\n",
        clock_file.display().to_string()
    );
    let pipeline = Pipeline::start_with_config(&topics, &db, &config).await;
    let collector = pipeline.producer_url.clone();

    // The collector's answers to a cookieless request it cannot take.
    let http = reqwest::Client::new();
    let click = serde_json::json!([{"event_type": "click", "page_url": "http://shop.example/x"}]);
    let r = http
        .post(format!("{collector}/v1/events?cookieless=yes"))
        .json(&click)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "cookieless", "{body}");
    let own_id = serde_json::json!([{"event_type": "click", "page_url": "http://shop.example/x",
        "anonymous_id": "0b7e3d8a-4f43-4c3e-9a43-8f0c5a1d2e3f"}]);
    let r = http
        .post(format!("{collector}/v1/events?cookieless=1"))
        .json(&own_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["accepted"], &body["errors"][0]["field"]),
        (&Value::from(0), &Value::from("anonymous_id")),
        "{body}"
    );

    let now_ms = touchstream_model::time::now_ms();
    let midnight = (now_ms / 86_400_000 + 1) * 86_400_000;
    let order_id = format!("o-{}", uuid::Uuid::new_v4());
    let summary = run_script(
        "privacy.mjs",
        &[
            ("TOUCHSTREAM_COLLECTOR_URL", &collector),
            ("TOUCHSTREAM_ORDER_ID", &order_id),
            ("TOUCHSTREAM_CLOCK_FILE", &clock_file.display().to_string()),
            ("TOUCHSTREAM_MIDNIGHT_MS", &midnight.to_string()),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&clock_file);
    eprintln!("privacy summary: {summary:#}");
    let port = summary["port"].as_u64().unwrap();
    assert_eq!(summary["page_errors"], Value::Array(vec![]), "{summary}");
    assert_eq!(
        summary["accepted_by_collector"], summary["expected_events"],
        "events the collector accepted"
    );

    // Consent required: nothing stored, nothing sent, until consent(true).
    let consent = &summary["consent"];
    assert_eq!(consent["before"]["requests"], 0, "sent before consent");
    assert_nothing_stored(&consent["before"]["stored"], "before consent");
    assert_eq!(
        summary["requests_from_consent_a"], 0,
        "left without consent"
    );
    let id = consent["consented"]["id"].as_str().unwrap();
    assert_eq!(uuid_version(id), Some(4), "{id}");
    assert_eq!(
        names(&consent["consented"]["stored"]["cookies"]),
        ["ts_aid"]
    );
    assert_eq!(consent["consented"]["answer"]["status"], 200);
    assert_eq!(
        consent["consented"]["answer"]["body"]["accepted"], 2,
        "the held landing and purchase leave on consent"
    );
    assert_eq!(
        consent["next_page"]["id"], id,
        "the stored id on the next page"
    );
    assert_eq!(
        consent["refused"]["requests"], 0,
        "sent after consent(false)"
    );
    assert_nothing_stored(&consent["refused"]["stored"], "after consent(false)");
    let again = consent["again"]["id"].as_str().unwrap();
    assert_eq!(uuid_version(again), Some(4));
    assert_ne!(again, id, "consent(false) cleared the visitor id");

    let ls = &summary["localstorage"];
    assert_nothing_stored(&ls["before"], "localStorage mode before consent");
    let ls_id = ls["id"].as_str().unwrap();
    assert_eq!(uuid_version(ls_id), Some(4));
    assert_eq!(names(&ls["consented"]["local"]), ["ts_aid"]);
    assert!(names(&ls["consented"]["cookies"]).is_empty());
    assert_nothing_stored(&ls["refused"], "localStorage mode after consent(false)");

    // In ClickHouse: the consented visitor's three events (the landing and purchase held before
    // consent, the next page), none of the page left without consent.
    let events = events_of(&db, id, 3).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let shop = format!("http://shop.example:{port}");
    let landing = only(&events, "held landing", |r| {
        r["opens_touch"] == "1" && r["page_url"].contains("utm_source")
    });
    assert_eq!(
        landing["page_url"],
        format!("{shop}/consent/b?utm_source=partner&utm_medium=referral")
    );
    let purchase = only(&events, "held purchase", |r| r["event_type"] == "purchase");
    assert_eq!(purchase["order_id"], order_id);
    assert_eq!(purchase["session_source"], "partner", "{purchase:#?}");
    assert_eq!(events_of(&db, again, 1).await.len(), 1);
    assert_eq!(events_of(&db, ls_id, 1).await.len(), 1);
    let left = events_under(&db, port, "/consent/", 5).await;
    assert_eq!(left.len(), 5, "{left:#?}");
    assert!(
        !left.iter().any(|r| r["page_url"].contains("/consent/a")),
        "the page left without consent sent nothing: {left:#?}"
    );

    // Cookieless: nothing stored, no id sent, the collector's id in ClickHouse.
    let cookieless = &summary["cookieless"];
    for s in cookieless["stored"].as_array().unwrap() {
        assert_nothing_stored(s, "cookieless");
    }
    let requests = cookieless["requests"].as_array().unwrap();
    assert!(requests.len() >= 4, "{cookieless}");
    for r in requests {
        assert!(r["url"].as_str().unwrap().contains("cookieless=1"), "{r}");
        assert!(
            r["anonymous_ids"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_null),
            "a cookieless request sent an id: {r}"
        );
    }
    for v in cookieless["visits"].as_array().unwrap() {
        assert_eq!(v["status"], 200, "{v}");
    }
    let events = events_under(&db, port, "/cookieless/", 5).await;
    assert_eq!(events.len(), 5, "{events:#?}");
    let id_of = |path: &str| -> String {
        let ids: std::collections::BTreeSet<&str> = events
            .iter()
            .filter(|r| r["page_url"] == format!("{shop}{path}"))
            .map(|r| r["anonymous_id"].as_str())
            .collect();
        assert_eq!(ids.len(), 1, "{path}: {events:#?}");
        ids.into_iter().next().unwrap().to_string()
    };
    let (one, two, three, four) = (
        id_of("/cookieless/1"),
        id_of("/cookieless/2"),
        id_of("/cookieless/3"),
        id_of("/cookieless/4"),
    );
    for id in [&one, &three] {
        assert_eq!(uuid_version(id), Some(8), "a cookieless id: {id}");
    }
    assert_eq!(one, two, "one browser, one UTC day: one visitor");
    assert_eq!(three, four, "after midnight, again one visitor");
    assert_ne!(one, three, "the id rotates at midnight UTC");
    // The signup of the first visit is that visitor's, credited to its landing's session.
    let signup = only(&events, "cookieless signup", |r| {
        r["event_type"] == "signup"
    });
    assert_eq!(signup["anonymous_id"], one);
}
