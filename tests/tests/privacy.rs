//! Erasure and retention against the real broker, server and binaries.
//!
//! - `touchstream forget --user-id`: a two-device person with conversions and another person
//!   go through the pipeline; the first is forgotten: no table holds a row of theirs, the other
//!   person's credits and report lines are unchanged, a restarted enricher (state restored from
//!   the changelogs) does not bring them back (a later event of their device starts a fresh
//!   visitor), the DLQ tools hide the records naming them, and an unknown id is "0 rows".
//! - `touchstream retention apply`: rows in partitions older than the retention are dropped,
//!   recent ones kept.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use touchstream_avro::{DlqRecord, SourcePosition, Stage};
use touchstream_model::time::now_ms;
use touchstream_tests::{
    KAFKA_BROKERS, Pipeline, ScratchDatabase, TestTopics, binary_path, eventually,
    produce_payloads, unique,
};

/// Runs the `touchstream` CLI with the sink's environment; returns (success, stdout, stderr).
fn cli(pipeline: &Pipeline, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary_path("touchstream"))
        .args(args)
        .envs(pipeline.sink_env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The default site with one key of each kind.
const SITES: &str = r#"
[[sites]]
id = "default"
hosts = ["shop.example"]
write_keys = ["client-key"]
server_write_keys = ["server-key"]
secret_keys = ["secret-key"]
"#;

/// `POST /v1/forget` with `auth` as the Authorization header; returns (status, answer).
async fn forget_over_http(pipeline: &Pipeline, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/forget", pipeline.producer_url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn basic(key: &str) -> String {
    use std::io::Write;
    let mut enc = Vec::new();
    let raw = format!("{key}:");
    // Base64 by hand: the test crate has no base64 dependency.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                enc.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                enc.push(b'=');
            }
        }
    }
    let mut out = Vec::new();
    write!(out, "Basic {}", String::from_utf8(enc).unwrap()).unwrap();
    String::from_utf8(out).unwrap()
}

fn forget(pipeline: &Pipeline, args: &[&str]) -> Value {
    let mut all = vec!["forget", "--json", "--timeout-secs", "240"];
    all.extend_from_slice(args);
    let (ok, out, err) = cli(pipeline, &all);
    assert!(ok, "touchstream forget failed:\n{out}\n{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn event(kind: &str, device: &str, user: Option<&str>, url: &str, referrer: Option<&str>) -> Value {
    let mut e = json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "event_type": kind, "anonymous_id": device,
        "page_url": url, "referrer": referrer,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
    });
    if let Some(u) = user {
        e["user_id"] = json!(u);
    }
    match kind {
        "purchase" => {
            e["order_id"] = json!(uuid::Uuid::new_v4().to_string());
            e["revenue"] = json!(4999);
            e["currency"] = json!("EUR");
        }
        "signup" => e["signup_kind"] = json!("account"),
        _ => {}
    }
    e
}

/// Posts events stamped `gaps_s` seconds before now (in order) in one batch.
async fn post(pipeline: &Pipeline, mut events: Vec<(i64, Value)>) {
    let sent = now_ms();
    let batch: Vec<Value> = events
        .drain(..)
        .map(|(ago_s, mut e)| {
            e["occurred_at"] = json!(sent - ago_s * 1000);
            e["sent_at"] = json!(sent);
            e
        })
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/events", pipeline.producer_url))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Rows naming any of `ids` (as anonymous, user or identity id) in every table of the
/// database that has such columns.
async fn rows_naming(db: &ScratchDatabase, ids: &[&str]) -> Vec<(String, u64)> {
    let tables = db
        .query(&format!(
            "SELECT table, groupArray(name) FROM system.columns WHERE database = '{}' \
             AND name IN ('anonymous_id', 'user_id', 'identity_id') GROUP BY table ORDER BY table FORMAT TSV",
            db.name
        ))
        .await;
    let list = ids
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    for line in tables.lines() {
        let (table, columns) = line.split_once('\t').unwrap();
        let cond = ["anonymous_id", "user_id", "identity_id"]
            .iter()
            .filter(|c| columns.contains(&format!("'{c}'")))
            .map(|c| format!("{c} IN ({list})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let n: u64 = db
            .query(&format!("SELECT count() FROM {table} WHERE {cond}"))
            .await
            .trim()
            .parse()
            .unwrap();
        out.push((table.to_owned(), n));
    }
    out
}

async fn credits_of(db: &ScratchDatabase, identity: &str) -> String {
    db.query(&format!(
        "SELECT conversion_event_id, model, touch_event_id, channel, source, weight, revenue_credit \
         FROM conversion_credits FINAL WHERE identity_id = '{identity}' AND retracted = 0 \
         ORDER BY conversion_event_id, model, touch_event_id FORMAT TSV"
    ))
    .await
}

fn report(pipeline: &Pipeline, db: &ScratchDatabase) -> Value {
    let (ok, out, err) = cli(
        pipeline,
        &[
            "report",
            "source-of-sale",
            "--format",
            "json",
            "--database",
            &db.name,
            "--user",
            "default",
            "--password=",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
        ],
    );
    assert!(ok, "report failed:\n{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["rows"].clone()
}

fn dlq_record(payload: &[u8], key: &str) -> Vec<u8> {
    let record = DlqRecord::from_source(
        Stage::Enricher,
        payload,
        "a test record",
        SourcePosition {
            topic: "raw",
            partition: 0,
            offset: 1,
            key: Some(key.as_bytes()),
        },
        now_ms(),
    );
    touchstream_avro::encode(&record).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn forgetting_a_person_removes_them_everywhere_and_nobody_else() {
    let topics = TestTopics::create(3).await;
    let db = ScratchDatabase::new();
    let mut pipeline = Pipeline::start_with_config(&topics, &db, SITES).await;
    let (p, q) = (unique("p-"), unique("q-"));
    let (a1, a2, b1) = (unique("a1-"), unique("a2-"), unique("b1-"));
    let shop = "https://shop.example/";
    post(
        &pipeline,
        vec![
            (
                60,
                event("click", &a1, None, shop, Some("https://t.co/AbC")),
            ),
            (
                50,
                event("signup", &a1, Some(&p), "https://shop.example/signup", None),
            ),
            (
                45,
                event(
                    "click",
                    &b1,
                    None,
                    "https://shop.example/?utm_source=LinkedIn&utm_medium=social",
                    None,
                ),
            ),
            (
                40,
                event(
                    "click",
                    &a2,
                    None,
                    shop,
                    Some("https://l.facebook.com/l.php"),
                ),
            ),
            (
                30,
                event(
                    "purchase",
                    &a2,
                    Some(&p),
                    "https://shop.example/thanks",
                    None,
                ),
            ),
            (
                20,
                event(
                    "purchase",
                    &b1,
                    Some(&q),
                    "https://shop.example/thanks",
                    None,
                ),
            ),
        ],
    )
    .await;
    eventually(
        "every event and credit in ClickHouse",
        Duration::from_secs(120),
        || async {
            let events: u64 = db
                .query("SELECT count() FROM events FINAL")
                .await
                .trim()
                .parse()
                .unwrap_or(0);
            let conversions: u64 = db
                .query("SELECT uniqExact(conversion_event_id) FROM conversion_credits FINAL")
                .await
                .trim()
                .parse()
                .unwrap_or(0);
            (events == 6 && conversions == 3).then_some(())
        },
    )
    .await;
    let q_credits = credits_of(&db, &q).await;
    assert!(!q_credits.is_empty(), "Q's purchase has credits");
    assert!(
        credits_of(&db, &p).await.lines().count() > 0,
        "P has credits"
    );
    let report_before = report(&pipeline, &db);
    assert!(
        rows_naming(&db, &[&p, &a1, &a2])
            .await
            .iter()
            .any(|(_, n)| *n > 0),
        "P's rows are there before"
    );

    // DLQ records: one names P's device, one names nobody we forget.
    let dlq_p = dlq_record(format!("{{\"anonymous_id\":\"{a1}\"}}").as_bytes(), "k");
    let dlq_other = dlq_record(b"{\"anonymous_id\":\"someone-else\"}", "k");
    produce_payloads(
        &topics.topics.dlq,
        &[("x".into(), dlq_p), ("y".into(), dlq_other)],
    )
    .await;

    let answer = forget(&pipeline, &["--user-id", &p]);
    assert_eq!(answer["state_removed"]["devices"], 2, "{answer}");
    assert_eq!(answer["state_removed"]["persons"], 1, "{answer}");
    assert_eq!(answer["state_removed"]["conversions"], 2, "{answer}");
    // Rows, not events: a re-credited conversion has a row per revision until a merge.
    assert!(
        answer["rows_deleted"]["events"].as_u64().unwrap() >= 4,
        "{answer}"
    );
    assert!(
        answer["rows_deleted"]["conversion_credits"]
            .as_u64()
            .unwrap()
            > 0,
        "{answer}"
    );
    assert_eq!(answer["rows_left"]["events"], 0, "{answer}");
    assert_eq!(answer["rows_left"]["conversion_credits"], 0, "{answer}");

    for (table, n) in rows_naming(&db, &[&p, &a1, &a2]).await {
        assert_eq!(n, 0, "{table} still holds rows of the forgotten person");
    }
    let b1_rows: u64 = db
        .query(&format!(
            "SELECT count() FROM events FINAL WHERE anonymous_id = '{b1}'"
        ))
        .await
        .trim()
        .parse()
        .unwrap();
    assert_eq!(b1_rows, 2, "the other person's events are all there");
    assert_eq!(
        credits_of(&db, &q).await,
        q_credits,
        "the other person's credits"
    );
    // The report no longer counts P: what is left is exactly Q's line.
    let report_after = report(&pipeline, &db);
    let before: Vec<&Value> = report_before.as_array().unwrap().iter().collect();
    let after: Vec<&Value> = report_after.as_array().unwrap().iter().collect();
    assert!(
        after.len() < before.len(),
        "{report_before} → {report_after}"
    );
    for row in &after {
        assert!(before.contains(row), "a line changed: {row}");
        assert_ne!(row["source"], "x", "{row}");
        assert_ne!(row["source"], "facebook", "{row}");
    }

    // The DLQ tools hide the record naming P, and only it.
    let (ok, listed, err) = cli(
        &pipeline,
        &[
            "dlq",
            "list",
            "--json",
            "--brokers",
            KAFKA_BROKERS,
            "--topic",
            &topics.topics.dlq,
            "--forgotten-topic",
            &topics.topics.forgotten,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(listed.lines().count(), 1, "{listed}");

    // A restart restores the state from the changelogs: P's devices are not in it, so a later
    // event of A2 starts a fresh visitor (its own identity and lifecycle).
    pipeline.restart_enricher().await;
    post(
        &pipeline,
        vec![(
            5,
            event("purchase", &a2, None, "https://shop.example/thanks", None),
        )],
    )
    .await;
    let fresh = eventually(
        "the later event of A2",
        Duration::from_secs(120),
        || async {
            let text = db
            .query(&format!(
                "SELECT identity_id, session_id, lifecycle_stage, purchase_count FROM events FINAL \
                 WHERE anonymous_id = '{a2}' FORMAT TSV"
            ))
            .await;
            (!text.trim().is_empty()).then_some(text)
        },
    )
    .await;
    assert_eq!(
        fresh.trim(),
        format!("{a2}\t{a2}:0\tclient\t1"),
        "A2 after the erasure is a new visitor"
    );

    // An unknown id is not an error: nothing removed.
    let none = forget(&pipeline, &["--anonymous-id", &unique("nobody-")]);
    assert_eq!(none["state_removed"]["devices"], 0, "{none}");
    assert_eq!(none["rows_deleted"]["events"], 0, "{none}");
    assert_eq!(none["rows_deleted"]["conversion_credits"], 0, "{none}");

    // The collector's endpoint: only a secret key may erase; bad requests say why.
    let body = format!("{{\"anonymous_id\":\"{b1}\"}}");
    let (status, answer) = forget_over_http(&pipeline, None, &body).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = forget_over_http(&pipeline, Some(&basic("client-key")), &body).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("client-side write key cannot erase"),
        "{answer}"
    );
    let (status, answer) = forget_over_http(&pipeline, Some("Bearer server-key"), &body).await;
    assert_eq!(status, 403, "{answer}");
    for (bad, field) in [
        ("[1]", "body"),
        ("{\"usr\":\"x\"}", "body"),
        ("{}", "user_id"),
        ("{\"user_id\":\"a\",\"anonymous_id\":\"b\"}", "user_id"),
        ("{\"anonymous_id\":\"\"}", "anonymous_id"),
    ] {
        let (status, answer) = forget_over_http(&pipeline, Some("Bearer secret-key"), bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["field"], field, "{bad}: {answer}");
    }
    // B1 forgotten over HTTP: the sink deletes its rows once the enricher's markers reach it.
    let (status, answer) = forget_over_http(&pipeline, Some("Bearer secret-key"), &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["site_id"], "default", "{answer}");
    eventually("B1's rows deleted", Duration::from_secs(120), || async {
        let left: u64 = rows_naming(&db, &[&b1]).await.iter().map(|(_, n)| n).sum();
        (left == 0).then_some(())
    })
    .await;
    // A sent event with the secret key is refused: it only erases.
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v1/events?write_key=secret-key",
            pipeline.producer_url
        ))
        .json(&event("click", &b1, None, shop, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // A request that names no one, or both ids, is refused before anything is sent.
    let (ok, _, err) = cli(&pipeline, &["forget", "--site", "default"]);
    assert!(!ok && err.contains("--user-id"), "{err}");
    let (ok, _, err) = cli(&pipeline, &["forget", "--user-id", " "]);
    assert!(!ok && err.contains("user_id: must not be empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_old_monthly_partitions_and_keeps_recent_ones() {
    let topics = TestTopics::create(1).await;
    let db = ScratchDatabase::new();
    let pipeline = Pipeline::start(&topics, &db).await;
    // Rows of three months, written as the sink writes them (same tables and partitioning).
    let columns =
        "event_id, event_type, site_id, event_time, event_time_ms, anonymous_id, identity_id";
    let row = |day: &str| {
        format!(
            "SELECT generateUUIDv4(), 'click', 'default', toDateTime('{day} 12:00:00', 'UTC'), \
             toInt64(toUnixTimestamp(toDateTime('{day} 12:00:00', 'UTC'))) * 1000, 'v', 'v'"
        )
    };
    for day in [
        "2026-01-15",
        "2026-01-20",
        "2026-05-03",
        "2026-06-30",
        "2026-07-01",
    ] {
        db.query(&format!("INSERT INTO events ({columns}) {}", row(day)))
            .await;
    }
    let count = || async {
        db.query("SELECT toYYYYMM(event_time) AS m, count() FROM events GROUP BY m ORDER BY m FORMAT TSV")
            .await
    };
    assert_eq!(
        count().await,
        "202601\t2\n202605\t1\n202606\t1\n202607\t1\n"
    );
    // In July 2026 with 2 months kept: May and June and July stay, January goes.
    let mut env = pipeline.sink_env.clone();
    env.push((
        "TOUCHSTREAM_SINK__RETENTION__RETENTION_MONTHS".into(),
        "{events=2}".into(),
    ));
    let out = Command::new(binary_path("touchstream"))
        .args(["retention", "apply", "--month", "202607"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("events: kept from 202605 on; dropped 1 partition(s) [202601], 2 rows"),
        "{text}"
    );
    assert_eq!(count().await, "202605\t1\n202606\t1\n202607\t1\n");
    // A month later, May goes too; applying again in the same month drops nothing more.
    let out = Command::new(binary_path("touchstream"))
        .args(["retention", "apply", "--month", "202608"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(count().await, "202606\t1\n202607\t1\n");
    // An unknown table is refused with its name.
    let mut bad = pipeline.sink_env.clone();
    bad.push((
        "TOUCHSTREAM_SINK__RETENTION__RETENTION_MONTHS".into(),
        "{evnts=2}".into(),
    ));
    let out = Command::new(binary_path("touchstream"))
        .args(["retention", "apply"])
        .envs(bad.iter().cloned())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("evnts: no such table"),
        "{err}"
    );
}
