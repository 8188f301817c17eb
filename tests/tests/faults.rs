//! The fault test, on the local cluster (`deploy/services.sh start cluster`, started here when it
//! is not up): generated journeys (`tests/journeys/generate.py`: people on one or several
//! devices, shared devices, late touches, conversions and sign-ins) go over HTTP to two
//! collectors, through three enrichers and two sinks, into the cluster tables (2 shards × 2
//! replicas); topics have 6 partitions, 3 replicas, 2 in sync for a write. While it runs, at
//! random moments (the seed is printed; `TOUCHSTREAM_FAULTS_SEED` replays one): a broker is
//! killed (SIGKILL) and started again, an enricher and a sink are killed twice each and
//! restarted (once at once, once after their group's session timeout, so that their
//! partitions move to the others), and a ClickHouse replica is stopped for 20 s.
//!
//! Then: every event a collector acknowledged (2xx) is in ClickHouse exactly once after
//! deduplication and none is missing, every conversion's credits sum to 1 under each model,
//! and the source-of-sale report under each model equals the one of a single-node run of the
//! same input in the same test (the normal services on 9092/8123). Printed: what was killed
//! when, each fault's stall (from the fault to the next commit of every partition that had
//! records waiting, from the groups' committed offsets) and lag, what `/readyz` said, the
//! refused requests, and the duplicates the tables collapsed. Nothing about timing is
//! asserted.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use touchstream_model::AttributionModel;
use touchstream_model::time::{DAY_MS, HOUR_MS, now_ms};
use touchstream_tests::cluster::{
    self, CLICKHOUSE, ClusterDatabase, ClusterPipeline, ClusterTopics, Instances, KAFKA_NODES,
};
use touchstream_tests::traffic::{self, Journeys, Posted, Posting};
use touchstream_tests::watch::{self, ProgressWatch, Readiness, ReadinessWatch, RowsWatch};
use touchstream_tests::{Pipeline, ScratchDatabase, TestTopics, clickhouse_query};
use touchstream_warehouse::WarehouseConfig;
use touchstream_warehouse::reports::{self, ReportParams, ReportTable};

/// About 101 000 events of about 12 000 devices (11 500 people, some on two devices, 1 700
/// users).
const PEOPLE: usize = 11_500;
const JOURNEY_SEED: u64 = 14;
const PARTITIONS: i32 = 6;
const INSTANCES: Instances = Instances {
    producers: 2,
    enrichers: 3,
    sinks: 2,
};
/// The cluster run's posting is paced to last this long at most (longer than the faults take,
/// so that every fault meets records waiting), and goes at full speed once the faults are over.
const POSTING_SECS: f64 = 160.0;
const REPLICA_DOWN: Duration = Duration::from_secs(20);
const MODELS: [AttributionModel; 6] = [
    AttributionModel::FirstTouch,
    AttributionModel::LastTouch,
    AttributionModel::LastNonDirect,
    AttributionModel::Linear,
    AttributionModel::PositionBased,
    AttributionModel::TimeDecay,
];

#[derive(Clone, Debug)]
enum Kind {
    Broker,
    Enricher(usize),
    Sink(usize),
    Replica(usize),
}

/// One fault: what, when it struck (for a kill: when the process was gone; for a stop: when
/// the stop began) and when the victim was back (since the posting started).
#[derive(Clone, Debug)]
struct Fault {
    kind: Kind,
    what: String,
    at: Duration,
    back: Duration,
}

/// `events.raw` for `faults.<run>.events.raw`.
fn short(topic: &str) -> String {
    let parts: Vec<&str> = topic.rsplit('.').take(2).collect();
    format!("{}.{}", parts[1], parts[0])
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Runs a blocking `deploy/services.sh cluster-node` off the async threads.
async fn cluster_node(action: &'static str, node: &'static str) {
    tokio::task::spawn_blocking(move || cluster::node(action, node))
        .await
        .unwrap();
}

async fn sleep_until(origin: Instant, at: Duration) {
    tokio::time::sleep_until((origin + at).into()).await;
}

/// The faults, at random moments one after the other. Returns them with their times.
async fn inflict(
    pipeline: &mut ClusterPipeline,
    rng: &mut StdRng,
    origin: Instant,
    done: &AtomicBool,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    let mut next = Duration::from_secs_f64(rng.random_range(8.0..14.0));
    let pause =
        |rng: &mut StdRng, lo: f64, hi: f64| Duration::from_secs_f64(rng.random_range(lo..hi));

    // A broker, SIGKILL, started again after a few seconds.
    let broker = KAFKA_NODES[rng.random_range(0..KAFKA_NODES.len())];
    sleep_until(origin, next).await;
    cluster_node("kill", broker).await;
    let at = origin.elapsed();
    eprintln!("[faults {}] killed {broker}", secs(at));
    tokio::time::sleep(pause(rng, 6.0, 10.0)).await;
    cluster_node("start", broker).await;
    let back = origin.elapsed();
    eprintln!("[faults {}] {broker} serves again", secs(back));
    faults.push(Fault {
        kind: Kind::Broker,
        what: format!("SIGKILL broker {broker}, started again"),
        at,
        back,
    });

    // Enricher and sink kills: the first ones restarted at once (a supervisor's restart), the
    // second ones only after the group's session timeout (15 s), so their partitions move to
    // the other instances first.
    let first_enricher = rng.random_range(0..pipeline.enrichers.len());
    let second_enricher =
        (first_enricher + rng.random_range(1..pipeline.enrichers.len())) % pipeline.enrichers.len();
    let first_sink = rng.random_range(0..pipeline.sinks.len());
    let second_sink = (first_sink + 1) % pipeline.sinks.len();
    let replica = rng.random_range(0..CLICKHOUSE.len());
    let plan = [
        (Kind::Enricher(first_enricher), 1.0),
        (Kind::Sink(first_sink), 1.0),
        (Kind::Replica(replica), 0.0),
        (Kind::Enricher(second_enricher), 18.0),
        (Kind::Sink(second_sink), 18.0),
    ];
    for (kind, restart_after) in plan {
        next = origin.elapsed() + pause(rng, 3.0, 6.0);
        sleep_until(origin, next).await;
        let mut at = origin.elapsed();
        let what = match &kind {
            Kind::Enricher(i) | Kind::Sink(i) => {
                let victim = match kind {
                    Kind::Enricher(_) => &mut pipeline.enrichers[*i],
                    _ => &mut pipeline.sinks[*i],
                };
                victim.kill();
                at = origin.elapsed();
                eprintln!("[faults {}] killed {}", secs(at), victim.label);
                tokio::time::sleep(Duration::from_secs_f64(restart_after)).await;
                victim.start().await;
                format!(
                    "SIGKILL {}, restarted {restart_after:.0} s later",
                    victim.label
                )
            }
            Kind::Replica(i) => {
                let node = CLICKHOUSE[*i].0;
                cluster_node("stop", node).await;
                eprintln!("[faults {}] stopped {node}", secs(at));
                tokio::time::sleep(REPLICA_DOWN).await;
                cluster_node("start", node).await;
                format!(
                    "stopped ClickHouse replica {node} for {}",
                    secs(REPLICA_DOWN)
                )
            }
            Kind::Broker => unreachable!(),
        };
        let back = origin.elapsed();
        eprintln!("[faults {}] back: {what}", secs(back));
        faults.push(Fault {
            kind,
            what,
            at,
            back,
        });
    }
    done.store(true, Ordering::SeqCst);
    faults
}

fn period(journeys: &Journeys, model: AttributionModel) -> ReportParams {
    let at = |ms: i64| OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap();
    ReportParams {
        site: "default".into(),
        from: at(journeys.now_ms - 62 * DAY_MS),
        to: at(journeys.now_ms + DAY_MS),
        model,
    }
}

async fn source_of_sale(
    url: &str,
    database: &str,
    journeys: &Journeys,
) -> BTreeMap<&'static str, ReportTable> {
    let client = touchstream_warehouse::client(&WarehouseConfig {
        url: url.into(),
        database: database.into(),
        ..WarehouseConfig::default()
    });
    let report = reports::by_name("source-of-sale").unwrap();
    let mut out = BTreeMap::new();
    for model in MODELS {
        let table = reports::run(&client, report, &period(journeys, model))
            .await
            .unwrap();
        out.insert(model.as_str(), table);
    }
    out
}

/// Where a run's tables are.
enum Tables<'a> {
    /// A database on the single node.
    Single(&'a str),
    Cluster(&'a ClusterDatabase),
}

impl Tables<'_> {
    /// A query (as `default`), the answer as tab-separated text.
    async fn query(&self, sql: &str) -> String {
        match self {
            Self::Single(db) => clickhouse_query(Some(db), sql).await,
            Self::Cluster(db) => db.query(sql).await,
        }
    }
}

/// Polls until every acknowledged event is in `events` and the row counts stopped moving
/// (re-credits of the person stage land after the events that caused them). Gives up (`Err`
/// with the last counts) only when the counts have not moved for `quiet` while events are
/// still missing, or after `guard` in all: a hang guard, never a claim about speed, since a
/// loaded machine may take long but keeps moving.
async fn wait_settled(
    tables: &Tables<'_>,
    expected: usize,
    quiet: Duration,
    guard: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    let mut moved = Instant::now();
    let mut stable = 0;
    loop {
        let now = tables
            .query(
                "SELECT (SELECT count() FROM events FINAL), (SELECT count() FROM events), \
                 (SELECT count() FROM conversion_credits)",
            )
            .await;
        let complete = now
            .split_whitespace()
            .next()
            .is_some_and(|n| n.parse::<usize>().ok() == Some(expected));
        if now == last {
            stable += 1;
            if complete && stable >= 3 {
                return Ok(());
            }
        } else {
            stable = 0;
            moved = Instant::now();
        }
        if moved.elapsed() > quiet || started.elapsed() > guard {
            return Err(format!(
                "not every acknowledged event arrived: nothing moved for {} (after {} in all); FINAL, raw events, raw credits: {}; {expected} expected",
                secs(moved.elapsed()),
                secs(started.elapsed()),
                now.trim()
            ));
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

/// What a stuck run needs explained: each group's lag per partition in the last sample, what
/// each instance's `/readyz` says now, and the warnings and errors of every log.
async fn stuck_report(samples: &[watch::Sample], pipeline: &ClusterPipeline) -> String {
    let mut out = String::new();
    if let Some(last) = samples.last() {
        out += &format!(
            "lag at {} (group topic/partition: committed of end):\n",
            secs(last.at)
        );
        for ((group, topic, p), committed) in &last.committed {
            let high = last.high.get(&(topic.clone(), *p)).copied().unwrap_or(-1);
            if *committed < high {
                let owner = last.owners.get(&(group.clone(), topic.clone(), *p));
                out += &format!(
                    "  {group} {}/{p}: {committed} of {high} (owner {owner:?})\n",
                    short(topic)
                );
            }
        }
    }
    let client = reqwest::Client::new();
    for (label, url) in pipeline.ops() {
        let body = match client.get(format!("{url}/readyz")).send().await {
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => format!("unreachable: {e}"),
        };
        out += &format!("{label} /readyz: {}\n", body.trim().replace('\n', " | "));
    }
    for instance in pipeline.enrichers.iter().chain(&pipeline.sinks) {
        for log in &instance.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let notable: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("restored"))
                .collect();
            out += &format!(
                "{} {} ({} lines, {} notable; the last 15):\n",
                instance.label,
                log.display(),
                text.lines().count(),
                notable.len()
            );
            for l in &notable[notable.len().saturating_sub(15)..] {
                out += &format!("    {}\n", l.chars().take(300).collect::<String>());
            }
        }
    }
    out
}

/// The checks both runs must pass; returns a line of what the tables collapsed.
async fn check_tables(tables: &Tables<'_>, acknowledged: &HashSet<String>, run: &str) -> String {
    // Every acknowledged event exactly once under FINAL, nothing else.
    let per_id = tables
        .query("SELECT event_id, count() FROM events FINAL GROUP BY event_id")
        .await;
    let mut seen = HashSet::new();
    let mut twice = Vec::new();
    for line in per_id.lines() {
        let (id, n) = line.split_once('\t').unwrap();
        if n != "1" {
            twice.push(format!("{id} ×{n}"));
        }
        seen.insert(id.to_string());
    }
    let missing: Vec<&String> = acknowledged.difference(&seen).take(10).collect();
    let extra: Vec<&String> = seen.difference(acknowledged).take(10).collect();
    assert!(
        twice.is_empty(),
        "{run}: events more than once after FINAL: {} (first: {:?})",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    assert!(
        missing.is_empty(),
        "{run}: {} acknowledged events are missing (first: {missing:?})",
        acknowledged.difference(&seen).count()
    );
    assert!(
        extra.is_empty(),
        "{run}: {} events that no collector acknowledged (first: {extra:?})",
        seen.difference(acknowledged).count()
    );

    // Every conversion credited under each model, its credits summing to 1.
    let conversions: u64 = tables
        .query(
            "SELECT count() FROM events FINAL WHERE event_type IN ('signup', 'download', 'purchase')",
        )
        .await
    .trim()
    .parse()
    .unwrap();
    let sums = tables
        .query(
            "SELECT count(), countIf(abs(w - 1) > 1e-6), min(w), max(w) FROM (SELECT \
             conversion_event_id, model, sum(weight) AS w FROM conversion_credits FINAL \
             GROUP BY conversion_event_id, model)",
        )
        .await;
    let sums: Vec<&str> = sums.split_whitespace().collect();
    assert_eq!(
        sums[0].parse::<u64>().unwrap(),
        conversions * MODELS.len() as u64,
        "{run}: every one of {conversions} conversions needs credits under {} models ({sums:?})",
        MODELS.len()
    );
    assert_eq!(
        sums[1], "0",
        "{run}: conversions whose credits do not sum to 1 (count, off, min, max: {sums:?})"
    );

    // What the tables collapse: exact copies (replays, retried batches) and revisions.
    let events = tables
        .query("SELECT count(), uniqExact(event_id, revision), uniqExact(event_id) FROM events")
        .await;
    let credits = tables
        .query(
            "SELECT count(), uniqExact(conversion_event_id, model, touch_event_id, revision), \
             uniqExact(conversion_event_id, model, touch_event_id) FROM conversion_credits",
        )
        .await;
    let n = |s: &str| -> Vec<u64> { s.split_whitespace().map(|x| x.parse().unwrap()).collect() };
    let (e, c) = (n(&events), n(&credits));
    format!(
        "{run}: {conversions} conversions, credits summing to 1 under {} models; unmerged rows: events {} raw = {} distinct + {} copies + {} superseded revisions; credits {} raw = {} distinct + {} copies + {} superseded revisions",
        MODELS.len(),
        e[0],
        e[2],
        e[0] - e[1],
        e[1] - e[2],
        c[0],
        c[2],
        c[0] - c[1],
        c[1] - c[2]
    )
}

/// Source of sale on the cluster against the single node, row by row (ordered by their keys:
/// equal revenue may come in another order), numbers within one unit of the last printed digit.
fn compare_reports(
    cluster: &BTreeMap<&'static str, ReportTable>,
    single: &BTreeMap<&'static str, ReportTable>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (model, want) in single {
        let got = &cluster[model];
        assert_eq!(got.columns, want.columns);
        assert!(
            !want.rows.is_empty(),
            "{model}: the single node has no rows"
        );
        let keyed = |t: &ReportTable| -> BTreeMap<Vec<String>, Vec<String>> {
            t.rows
                .iter()
                .map(|r| (r[..3].to_vec(), r[3..].to_vec()))
                .collect()
        };
        let (got, want) = (keyed(got), keyed(want));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{model}: the cluster's source-of-sale rows differ from the single node's"
        );
        let mut rounding = 0;
        for (key, want_row) in &want {
            for (g, w) in got[key].iter().zip(want_row) {
                if g == w {
                    continue;
                }
                let close = match (g.parse::<f64>(), w.parse::<f64>()) {
                    (Ok(a), Ok(b)) => (a - b).abs() <= 0.010_000_1,
                    _ => false,
                };
                assert!(
                    close,
                    "{model} {key:?}: cluster {:?}, single node {want_row:?}",
                    got[key]
                );
                rounding += 1;
            }
        }
        notes.push(format!(
            "{model}: {} rows equal{}",
            want.len(),
            if rounding > 0 {
                format!(" ({rounding} values differ by 0.01, the last printed digit)")
            } else {
                String::new()
            }
        ));
    }
    notes
}

fn describe_posted(run: &str, posted: &Posted) -> String {
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for r in &posted.refusals {
        let status = r.status.map_or("no answer".to_string(), |s| s.to_string());
        *refused
            .entry(format!("{status}: {}", r.body.trim()))
            .or_default() += 1;
    }
    format!(
        "{run}: {} events acknowledged in {} requests over {} (answers by status: {:?}){}",
        posted.acknowledged.len(),
        posted.requests,
        secs(posted.took),
        posted.statuses,
        refused
            .iter()
            .map(|(k, n)| format!("\n    {n} × {k}"))
            .collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_broker_enricher_sink_and_replica_faults() {
    let started = Instant::now();
    cluster::up();
    let fault_seed: u64 = std::env::var("TOUCHSTREAM_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let now = now_ms() / HOUR_MS * HOUR_MS;
    let journeys = Journeys::generate(JOURNEY_SEED, PEOPLE, now);
    let ids = journeys.ids();
    assert!(ids.len() >= 100_000, "only {} events generated", ids.len());
    let s = &journeys.summary;
    println!(
        "input: generate.py --seed {JOURNEY_SEED} --people {PEOPLE} --now {now}: {} events, {} people, {} devices, {} users, {} purchases ({} late deliveries); fault seed {fault_seed} (TOUCHSTREAM_FAULTS_SEED)",
        ids.len(),
        s["people"],
        s["devices"],
        s["users"],
        s["event_types"]["purchase"],
        s["late_deliveries"]
    );

    // The single node: the same input, one collector, enricher and sink, no faults.
    let single_topics = TestTopics::create(PARTITIONS).await;
    let single_db = ScratchDatabase::new();
    let single = Pipeline::start_with(&single_topics, &single_db, &[]).await;
    let posted = traffic::post(
        std::slice::from_ref(&single.producer_url),
        &journeys.events,
        &Posting {
            route: "/v1/import",
            lanes: 8,
            batch: 200,
            rate: None,
            unthrottle: None,
            give_up_after: Duration::from_secs(60),
        },
    )
    .await;
    println!("{}", describe_posted("single node", &posted));
    assert_eq!(posted.acknowledged, ids);
    let single_tables = Tables::Single(&single_db.name);
    if let Err(e) = wait_settled(
        &single_tables,
        ids.len(),
        Duration::from_secs(90),
        Duration::from_secs(600),
    )
    .await
    {
        panic!("single node: {e}");
    }
    println!(
        "{} (settled {} after the start)",
        check_tables(&single_tables, &ids, "single node").await,
        secs(started.elapsed())
    );
    let single_report = source_of_sale(
        touchstream_tests::CLICKHOUSE_URL,
        &single_db.name,
        &journeys,
    )
    .await;
    drop(single);

    // The cluster.
    let topics = ClusterTopics::create(PARTITIONS).await;
    let db = ClusterDatabase::new();
    let mut pipeline = ClusterPipeline::start(&topics, &db, INSTANCES, &[]).await;
    let origin = Instant::now();
    let t = &topics.topics;
    let progress = ProgressWatch::start(
        cluster::KAFKA,
        &[
            (
                pipeline.enricher_group.clone(),
                vec![t.raw.clone(), t.person.clone()],
            ),
            (pipeline.sink_group.clone(), vec![t.attributed.clone()]),
        ],
        PARTITIONS,
        Duration::from_millis(250),
        origin,
    );
    let readiness = ReadinessWatch::start(pipeline.ops(), Duration::from_millis(300), origin);
    let rows = RowsWatch::start(
        CLICKHOUSE
            .iter()
            .map(|(_, url, _)| url.to_string())
            .collect(),
        &db.name,
        "SELECT count() FROM events",
        Duration::from_millis(500),
        origin,
    );
    let faults_done = Arc::new(AtomicBool::new(false));
    let posting = Posting {
        route: "/v1/import",
        lanes: 8,
        batch: 200,
        rate: Some(ids.len() as f64 / POSTING_SECS),
        unthrottle: Some(faults_done.clone()),
        give_up_after: Duration::from_secs(90),
    };
    let collectors = pipeline.collectors();
    let mut rng = StdRng::seed_from_u64(fault_seed);
    let (posted, faults) = tokio::join!(
        traffic::post(&collectors, &journeys.events, &posting),
        inflict(&mut pipeline, &mut rng, origin, &faults_done)
    );
    println!("{}", describe_posted("cluster", &posted));
    let cluster_tables = Tables::Cluster(&db);
    if let Err(e) = wait_settled(
        &cluster_tables,
        posted.acknowledged.len(),
        // Longer than an enricher's watchdog (a stage stuck for 150 s ends its process, and
        // its partitions move on after the session timeout).
        Duration::from_secs(240),
        Duration::from_secs(900),
    )
    .await
    {
        panic!(
            "cluster: {e}\n{}",
            stuck_report(&progress.samples(), &pipeline).await
        );
    }
    let settled = origin.elapsed();
    // Each replica has fetched what its partner took meanwhile (the stopped one too).
    for node in 0..CLICKHOUSE.len() {
        for table in ["events_local", "conversion_credits_local"] {
            db.query_node(node, &format!("SYSTEM SYNC REPLICA {}.{table}", db.name))
                .await;
        }
    }
    readiness_report(&faults, &readiness.changes());
    let samples = progress.samples();
    let row_samples = rows.samples();
    drop((progress, readiness, rows));

    println!(
        "\ntimeline (since the posting started; settled at {}):",
        secs(settled)
    );
    for f in &faults {
        let (group, label) = match f.kind {
            Kind::Enricher(_) => (&pipeline.enricher_group, "enricher group"),
            Kind::Sink(_) | Kind::Replica(_) => (&pipeline.sink_group, "sink group"),
            Kind::Broker => (&pipeline.enricher_group, "enricher group"),
        };
        println!("  {} → {}: {}", secs(f.at), secs(f.back), f.what);
        println!(
            "      ClickHouse: the longest wait for new events rows within 60 s after it: {}",
            secs(watch::longest_pause(
                &row_samples,
                f.at,
                Duration::from_secs(60)
            ))
        );
        let mut groups = vec![(group, label)];
        if matches!(f.kind, Kind::Broker) {
            groups.push((&pipeline.sink_group, "sink group"));
        }
        for (group, label) in groups {
            let a = watch::after(&samples, group, f.at, Duration::from_secs(90));
            let stalled: Vec<String> = a
                .stalled(Duration::from_secs(1))
                .iter()
                .map(|((topic, p), d)| {
                    format!("{}/{p} {}", short(topic), d.map_or("never".into(), secs))
                })
                .collect();
            // The victim's own partitions, from the group's description just before the kill.
            let victim = match f.kind {
                Kind::Enricher(i) => pipeline.enrichers[i].instance_id.clone(),
                Kind::Sink(i) => pipeline.sinks[i].instance_id.clone(),
                _ => None,
            };
            if let Some(id) = victim {
                let owned = watch::owned(&samples, group, &format!("{id}-"), f.at);
                let waits: Vec<Duration> = owned
                    .iter()
                    .filter_map(|tp| a.first_advance.get(tp).copied().flatten())
                    .collect();
                let never = owned
                    .iter()
                    .filter(|tp| matches!(a.first_advance.get(*tp), Some(None)))
                    .count();
                println!(
                    "      the victim owned {} partitions ({}); {} of them had records waiting: their next commit came after {}{}",
                    owned.len(),
                    owned
                        .iter()
                        .map(|(t, p)| format!("{}/{p}", short(t)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    waits.len() + never,
                    waits
                        .iter()
                        .max()
                        .map_or("–".into(), |d| format!("at most {}", secs(*d))),
                    if never > 0 {
                        format!(", {never} not within 90 s")
                    } else {
                        String::new()
                    }
                );
            }
            println!(
                "      {label}: stall {} ({} partitions with records waiting; longer than 1 s: {}); lag {} before, at most {} ({} after), back by {}",
                a.stall().map_or("unbounded".into(), secs),
                a.first_advance.len(),
                if stalled.is_empty() {
                    "none".into()
                } else {
                    stalled.join(", ")
                },
                a.lag_before,
                a.lag_max.0,
                secs(a.lag_max.1),
                a.lag_recovered.map_or("not within 90 s".into(), secs)
            );
        }
    }

    assert!(
        posted.acknowledged.is_subset(&ids),
        "acknowledged ids that were never sent"
    );
    assert_eq!(
        posted.acknowledged.len(),
        ids.len(),
        "every request is retried until acknowledged"
    );
    println!(
        "{}",
        check_tables(&cluster_tables, &posted.acknowledged, "cluster").await
    );
    let cluster_report = source_of_sale(CLICKHOUSE[0].1, &db.name, &journeys).await;
    for note in compare_reports(&cluster_report, &single_report) {
        println!("source of sale, cluster = single node: {note}");
    }
    for e in &pipeline.enrichers {
        let log = e.log_text();
        let restored = log.lines().filter(|l| l.contains("state restored")).count();
        let restarts = log
            .lines()
            .filter(|l| l.contains("session failed, restarting"))
            .count();
        println!(
            "{}: {} incarnations, {restored} partition restores, {restarts} session restarts",
            e.label,
            e.logs.len()
        );
    }
    println!("logs:\n{}", pipeline.logs());
    let cleanup = Instant::now();
    let mut took = Vec::new();
    drop(pipeline);
    took.push(("services", cleanup.elapsed()));
    drop(db);
    took.push(("cluster database", cleanup.elapsed()));
    drop(topics);
    took.push(("cluster topics", cleanup.elapsed()));
    drop(single_db);
    took.push(("single-node database", cleanup.elapsed()));
    drop(single_topics);
    took.push(("single-node topics", cleanup.elapsed()));
    println!(
        "fault test took {} (cleanup, cumulative: {})",
        secs(started.elapsed()),
        took.iter()
            .map(|(what, d)| format!("{what} {}", secs(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Prints what every `/readyz` said from a little before each broker and replica fault until
/// a little after the victim was back.
fn readiness_report(faults: &[Fault], changes: &[Readiness]) {
    println!("\n/readyz answers that changed (service, status, body):");
    for f in faults
        .iter()
        .filter(|f| matches!(f.kind, Kind::Broker | Kind::Replica(_)))
    {
        println!("  during {} ({} → {}):", f.what, secs(f.at), secs(f.back));
        let window = f.at.saturating_sub(Duration::from_secs(1))..f.back + Duration::from_secs(15);
        let mut any = false;
        for c in changes.iter().filter(|c| window.contains(&c.at)) {
            any = true;
            println!("    {} {} {} {}", secs(c.at), c.service, c.status, c.body);
        }
        if !any {
            println!("    no change: every service answered as before");
        }
    }
    let per_service: BTreeSet<String> = changes
        .iter()
        .map(|c| format!("{} {}", c.status, c.body))
        .collect();
    println!("  every distinct answer of the run: {per_service:?}");
}
