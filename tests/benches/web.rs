//! The web report's speed: how long `touchstream serve` takes to answer the data of its page
//! (every report the page draws: source-of-sale under the six models, social-micro-macro,
//! posts, path-length, lifecycle, channel-share-weekly) over 1 million events, beside the same
//! SQL sent straight to ClickHouse in the same run. The goal (issue 15) is under 1 s.
//!
//! The dataset is generated inside ClickHouse (`INSERT … SELECT … FROM numbers(…)`) into a
//! scratch database: 1 000 000 events of 100 000 visitors over January 2026 (88 % clicks, a
//! third of them touches; 12 % signups, downloads and purchases), and the conversion credits of
//! 120 000 conversions of 1 to 13 touches under the six models (about 2.9 million rows). The
//! release binary serves it with its cache off, so every request runs the queries.
//!
//! Measured `RUNS` times after a warm-up, one after the other within each round (median and
//! fastest):
//! - raw SQL, concurrent: the page's 11 queries sent to ClickHouse at once, as the server
//!   sends them, by the same report code (`reports::run`) without the server (the baseline);
//! - raw SQL, one after the other (for context);
//! - `GET /site/default/data.json`: the page's data (the goal), under the default model
//!   (last_non_direct: one credit row per conversion) and under linear (one per touch);
//! - `GET /site/default`: the whole page, charts drawn;
//! - the page again with the server's cache on (a reload), and for each other model (only the
//!   reports the model changes run).
//!
//! The machine is shared: the load average is printed with the results.
//!
//! `cargo build --release --bins && cargo bench -p touchstream-tests --bench web` (or
//! `make bench`). Prints a table, writes `bench-results/web.json`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use touchstream_tests::{
    CLICKHOUSE_URL, ScratchDatabase, Service, binary_path, clickhouse_query, free_port, wait_ready,
};
use touchstream_warehouse::reports::{self, ReportParams};
use touchstream_warehouse::{WarehouseConfig, migrate};

const RUNS: usize = 7;
const EVENTS: u64 = 1_000_000;
const CONVERSIONS: u64 = 120_000;
const GOAL: Duration = Duration::from_secs(1);
/// January 2026, the generated month.
const FROM: i64 = 1_767_225_600;
const TO: i64 = FROM + 31 * 86_400;
const QUERY: &str = "model=last_non_direct&from=2026-01-01&to=2026-01-31";
const MODELS: [&str; 6] = [
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "position_based",
    "time_decay",
];

/// Touch kinds by index 1–8: five social networks, search, e-mail, direct.
const TOUCHES: &str = "['facebook', 'instagram', 'x', 'linkedin', 'tiktok', 'google', 'newsletter', '(direct)'] AS sources, \
     ['Organic Social', 'Organic Social', 'Organic Social', 'Organic Social', 'Paid Social', 'Organic Search', 'Email', 'Direct'] AS channels";

fn events_sql() -> String {
    format!(
        "INSERT INTO events (site_id, event_id, event_type, event_time, event_time_ms, occurred_at_ms, \
         received_at, received_at_ms, ingested_at, ingested_at_ms, anonymous_id, identity_id, \
         session_id, page_url, property_keys, property_values, order_id, revenue, currency, \
         channel, source, medium, campaign, content, social_network, is_internal, is_bot, \
         is_spam_referrer, opens_touch, lifecycle_stage, purchase_count, touches_to_conversion, \
         days_to_conversion) \
         SELECT '{site}', \
           toUUID(concat(toString(10000000 + intHash32(number) % 90000000), '-0000-4000-a000-', toString(100000000000 + number))), \
           CAST(kind AS Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4)), \
           toDateTime(t), t * 1000, t * 1000, toDateTime(t), t * 1000, toDateTime(t + 1), \
           (t + 1) * 1000, concat('v', toString(v)), concat('v', toString(v)), \
           concat('s', toString(intDiv(number, 5))), 'https://shop.example/', [], [], \
           if(kind = 'purchase', concat('o', toString(number)), NULL), \
           if(kind = 'purchase', toInt64(1000 + (number % 50) * 100), NULL), \
           if(kind = 'purchase', 'EUR', NULL), \
           if(kind = 'click', channels[i], 'Direct'), if(kind = 'click', sources[i], '(direct)'), \
           if(kind = 'click' AND i <= 5, 'social', '(none)'), \
           if(kind = 'click' AND i <= 5, 'spring', NULL), \
           if(kind = 'click' AND i <= 5, concat('post-', toString(v % 40)), NULL), \
           if(kind = 'click' AND i <= 5, sources[i], NULL), \
           0, 0, 0, if(kind = 'click' AND number % 3 = 0, 1, 0), \
           CAST(if(kind = 'purchase', 'client', if(kind = 'click', 'visitor', 'customer')) \
             AS Enum8('visitor' = 1, 'customer' = 2, 'client' = 3)), \
           if(kind = 'purchase', 1, 0), \
           if(kind = 'click', NULL, toInt32(1 + number % 13)), \
           if(kind = 'click', NULL, toFloat64(number % 400) / 10) \
         FROM ( \
           SELECT number, number % 100000 AS v, \
             toUInt32({FROM} + intDiv(number * {span}, {EVENTS})) AS t, \
             multiIf(number % 50 = 0, 'purchase', number % 50 < 3, 'download', \
               number % 50 < 6, 'signup', 'click') AS kind, \
             toUInt64(1 + (v + intDiv(number, 100000)) % 8) AS i, {TOUCHES} \
           FROM numbers({EVENTS}))",
        span = TO - FROM - 86_400,
        site = touchstream_model::DEFAULT_SITE,
    )
}

fn credits_sql() -> String {
    format!(
        "INSERT INTO conversion_credits (site_id, conversion_event_id, conversion_type, conversion_time, \
         conversion_time_ms, identity_id, model, touch_event_id, touch_time, touch_time_ms, \
         channel, source, social_network, campaign, content, weight, revenue, revenue_credit, \
         currency, touches_to_conversion, days_to_conversion, ingested_at, ingested_at_ms) \
         SELECT '{site}', \
           toUUID(concat(toString(10000000 + intHash32(c) % 90000000), '-0000-4000-8000-', toString(100000000000 + c))), \
           CAST(kind AS Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4)), \
           toDateTime(ct), ct * 1000, concat('v', toString(c % 100000)), \
           CAST(model_name AS Enum8('first_touch' = 1, 'last_touch' = 2, 'last_non_direct' = 3, \
             'linear' = 4, 'position_based' = 5, 'time_decay' = 6)), \
           toUUID(concat(toString(10000000 + intHash32(c * 16 + k) % 90000000), '-0000-4000-9000-', toString(100000000000 + c * 16 + k))), \
           toDateTime(ct - (n - k) * 43200), (ct - (n - k) * 43200) * 1000, \
           channels[i], sources[i], if(i <= 5, sources[i], NULL), \
           if(i <= 5, 'spring', NULL), \
           if(i <= 5, concat('post-', toString((c + k) % 40)), NULL), \
           weight, revenue, weight * revenue, if(revenue > 0, 'EUR', NULL), \
           toInt32(n), (n - k) / 2, toDateTime(ct + 1), (ct + 1) * 1000 \
         FROM ( \
           SELECT c, n, ct, kind, revenue, model_index, k, \
             ['first_touch', 'last_touch', 'last_non_direct', 'linear', 'position_based', \
              'time_decay'][model_index + 1] AS model_name, \
             toUInt64(1 + (c + k) % 8) AS i, \
             multiIf(model_index < 3, 1.0, model_index = 3, 1.0 / n, \
               model_index = 4, if(n = 1, 1.0, if(n = 2, 0.5, \
                 if(k = 0 OR k = n - 1, 0.4, 0.2 / (n - 2)))), \
               pow(2, k) / (pow(2, n) - 1)) AS weight, \
             {TOUCHES} \
           FROM ( \
             SELECT c, n, ct, kind, revenue, model_index, \
               arrayJoin(multiIf(model_index = 0, [toUInt64(0)], model_index < 3, \
                 [toUInt64(n - 1)], range(n))) AS k \
             FROM ( \
               SELECT number AS c, toUInt64(1 + number % 13) AS n, \
                 toUInt32({FROM} + 86400 + intDiv(number * {span}, {CONVERSIONS})) AS ct, \
                 multiIf(number % 6 = 0, 'purchase', number % 6 < 3, 'download', 'signup') AS kind, \
                 if(number % 6 = 0, 1000 + (number % 50) * 100, 0) AS revenue, \
                 arrayJoin(range(6)) AS model_index \
               FROM numbers({CONVERSIONS}))))",
        span = TO - FROM - 2 * 86_400,
        site = touchstream_model::DEFAULT_SITE,
    )
}

/// The page's report runs: (report, model).
fn page_queries() -> Vec<(&'static str, &'static str)> {
    let mut runs: Vec<(&str, &str)> = MODELS.iter().map(|m| ("source-of-sale", *m)).collect();
    for report in [
        "social-micro-macro",
        "posts",
        "path-length",
        "lifecycle",
        "channel-share-weekly",
    ] {
        runs.push((report, "last_non_direct"));
    }
    runs
}

/// A report run as the server runs it (`reports::run`: its placeholders bound by the same
/// code), with the parameters of the page the bench asks for.
fn report_run(report: &str, model: &str) -> (&'static reports::Report, ReportParams) {
    let at = |t| time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    let params = ReportParams {
        site: touchstream_model::DEFAULT_SITE.into(),
        from: at(FROM),
        to: at(TO),
        model: model.parse().unwrap(),
    };
    (reports::by_name(report).unwrap(), params)
}

/// One report straight to ClickHouse, as the reader user, without the server.
/// Returns the number of rows.
async fn query(
    clickhouse: &clickhouse::Client,
    (report, params): &(&reports::Report, ReportParams),
) -> usize {
    reports::run(clickhouse, report, params)
        .await
        .unwrap()
        .rows
        .len()
}

async fn get(client: &reqwest::Client, url: &str) -> usize {
    let response = client.get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.unwrap().len()
}

/// Median and fastest of `RUNS` timed runs of `f`.
async fn time<F, Fut>(mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        f().await;
        times.push(start.elapsed());
    }
    times.sort();
    (times[RUNS / 2], times[0])
}

fn serve(database: &str, cache_seconds: &str) -> (Service, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let service = Service::spawn(
        "touchstream",
        &["serve", "--listen", &listen, "--database", database],
        &[
            (
                "TOUCHSTREAM_SERVE__CACHE_SECONDS".into(),
                cache_seconds.into(),
            ),
            ("TOUCHSTREAM_SERVE__LOG__FORMAT".into(), "text".into()),
        ],
    );
    (service, format!("http://{listen}"))
}

/// The bench's database, by name.
struct Db {
    name: String,
}

impl Db {
    async fn query(&self, sql: &str) -> String {
        clickhouse_query(Some(&self.name), sql).await
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(binary_path("touchstream").exists());
        // WEB_BENCH_DATABASE=name keeps the generated data there (and reuses it), to look at
        // the queries afterwards; otherwise a scratch database, dropped at the end.
        let kept = std::env::var("WEB_BENCH_DATABASE").ok();
        let scratch = kept.is_none().then(ScratchDatabase::new);
        let name = kept
            .clone()
            .or_else(|| scratch.as_ref().map(|s| s.name.clone()))
            .unwrap();
        let db = Db { name };
        migrate(&WarehouseConfig {
            url: CLICKHOUSE_URL.into(),
            database: db.name.clone(),
            ..WarehouseConfig::default()
        })
        .await
        .unwrap();
        let count = |table: &'static str| {
            let name = db.name.clone();
            async move {
                clickhouse_query(Some(&name), &format!("SELECT count() FROM {table}"))
                    .await
                    .trim()
                    .to_string()
            }
        };
        if count("events").await != EVENTS.to_string() {
            eprintln!("generating {EVENTS} events and the credits of {CONVERSIONS} conversions …");
            let start = Instant::now();
            db.query("TRUNCATE TABLE events").await;
            db.query("TRUNCATE TABLE conversion_credits").await;
            db.query(&events_sql()).await;
            db.query(&credits_sql()).await;
            // Merged, as a table that has been loaded a while is; FINAL still runs.
            db.query("OPTIMIZE TABLE events FINAL").await;
            db.query("OPTIMIZE TABLE conversion_credits FINAL").await;
            eprintln!("generated in {:.1} s", start.elapsed().as_secs_f64());
        }
        let (events, credits) = (count("events").await, count("conversion_credits").await);
        eprintln!("{events} events, {credits} credit rows in {}", db.name);

        let (server, url) = serve(&db.name, "0");
        wait_ready(&format!("{url}/healthz"), &server).await;
        let (cached_server, cached_url) = serve(&db.name, "600");
        wait_ready(&format!("{cached_url}/healthz"), &cached_server).await;
        let client = reqwest::Client::new();
        let clickhouse = touchstream_warehouse::client(&WarehouseConfig {
            url: CLICKHOUSE_URL.into(),
            database: db.name.clone(),
            user: "touchstream_reader".into(),
            password: "touchstream_reader".into(),
            ..WarehouseConfig::default()
        });
        let queries: Vec<_> = page_queries()
            .iter()
            .map(|(report, model)| report_run(report, model))
            .collect();
        let data_url = format!("{url}/site/default/data.json?{QUERY}");
        let page_url = format!("{url}/site/default?{QUERY}");
        let cached_page_url = format!("{cached_url}/site/default?{QUERY}");

        // Warm-up: ClickHouse's caches, the server's connections.
        // The generated data is the page's site and month: a report that answers nothing
        // would measure nothing.
        for run in &queries {
            let rows = query(&clickhouse, run).await;
            assert!(rows > 0, "report {} answers no rows", run.0.name);
        }
        let bytes = get(&client, &data_url).await;
        let page_bytes = get(&client, &page_url).await;
        get(&client, &cached_page_url).await;

        let linear_url = data_url.replace("last_non_direct", "linear");
        get(&client, &linear_url).await;
        // Round after round, each measurement once per round, so that the baseline and the
        // server meet the same load on this shared machine.
        let mut rounds: [Vec<Duration>; 5] = Default::default();
        for _ in 0..RUNS {
            let start = Instant::now();
            futures::future::join_all(queries.iter().map(|run| query(&clickhouse, run))).await;
            rounds[0].push(start.elapsed());
            let start = Instant::now();
            for run in &queries {
                query(&clickhouse, run).await;
            }
            rounds[1].push(start.elapsed());
            for (i, url) in [(2, &data_url), (3, &linear_url), (4, &page_url)] {
                let start = Instant::now();
                get(&client, url).await;
                rounds[i].push(start.elapsed());
            }
        }
        let [raw, sequential, data, linear, page] = rounds.map(|mut times| {
            times.sort();
            (times[RUNS / 2], times[0])
        });
        let ((raw, raw_best), (sequential, sequential_best)) = (raw, sequential);
        let ((data, data_best), (linear, linear_best), (page, page_best)) = (data, linear, page);
        let (cached, cached_best) = time(|| async {
            get(&client, &cached_page_url).await;
        })
        .await;
        // Switching the model on the cached page: only the reports the model changes run.
        let mut switches: Vec<Duration> = Vec::new();
        for model in MODELS.iter().filter(|m| **m != "last_non_direct") {
            let url = format!(
                "{cached_url}/site/default?{}",
                QUERY.replace("last_non_direct", model)
            );
            let start = Instant::now();
            get(&client, &url).await;
            switches.push(start.elapsed());
        }
        switches.sort();
        let (switch, switch_best) = (switches[switches.len() / 2], switches[0]);
        // Where the time goes: each query alone (median of 3).
        let mut alone = Vec::new();
        for ((report, model), run) in page_queries().iter().zip(&queries) {
            let mut times = Vec::new();
            for _ in 0..3 {
                let start = Instant::now();
                query(&clickhouse, run).await;
                times.push(start.elapsed());
            }
            times.sort();
            alone.push((format!("{report} ({model})"), times[1]));
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

        let ratio = |d: Duration| d.as_secs_f64() / raw.as_secs_f64();
        println!(
            "\n{} events, {} credit rows; the page's {} report queries; median (fastest) of {RUNS} runs",
            events, credits,
            queries.len()
        );
        println!("\n| what | ms | fastest ms | / raw SQL (concurrent) |");
        println!("| --- | ---: | ---: | ---: |");
        for (what, median, best) in [
            ("raw SQL, the 11 queries at once (baseline)", raw, raw_best),
            ("raw SQL, one after the other", sequential, sequential_best),
            ("GET data.json: the page's data", data, data_best),
            ("GET data.json, linear model (7x the credit rows)", linear, linear_best),
            ("GET the page (HTML, 7 charts drawn)", page, page_best),
            ("GET the page, server cache on (a reload)", cached, cached_best),
            ("GET the page for another model, cache on", switch, switch_best),
        ] {
            println!(
                "| {what} | {} | {} | {:.2} |",
                ms(median),
                ms(best),
                ratio(median)
            );
        }
        println!("\n| one query alone | ms |\n| --- | ---: |");
        for (what, t) in &alone {
            println!("| {what} | {} |", ms(*t));
        }
        println!(
            "\nload average (1, 5, 15 min) at the end: {} on {} cores",
            load.split_whitespace().take(3).collect::<Vec<_>>().join(", "),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let met = data < GOAL;
        println!(
            "\ngoal: the page's data under {} ms: {} (data.json {} bytes, page {} bytes)",
            GOAL.as_millis(),
            if met { "met" } else { "not met" },
            bytes,
            page_bytes
        );
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
        std::fs::create_dir_all(&out).unwrap();
        let results = json!({
            "events": events, "credit_rows": credits, "runs": RUNS,
            "raw_sql_concurrent_ms": raw.as_secs_f64() * 1e3,
            "raw_sql_sequential_ms": sequential.as_secs_f64() * 1e3,
            "data_json_ms": data.as_secs_f64() * 1e3,
            "data_json_linear_ms": linear.as_secs_f64() * 1e3,
            "page_ms": page.as_secs_f64() * 1e3,
            "page_cached_ms": cached.as_secs_f64() * 1e3,
            "page_other_model_cached_ms": switch.as_secs_f64() * 1e3,
            "load_average": load.trim(),
            "query_alone_ms": alone.iter().map(|(w, t)| (w.clone(), json!(t.as_secs_f64() * 1e3))).collect::<serde_json::Map<_, _>>(),
            "data_over_raw": ratio(data),
            "page_over_raw": ratio(page),
            "goal_ms": GOAL.as_millis(),
            "goal_met": met,
        });
        std::fs::write(
            out.join("web.json"),
            serde_json::to_string_pretty(&results).unwrap(),
        )
        .unwrap();
        drop(server);
        drop(cached_server);
        drop(scratch);
    });
}
