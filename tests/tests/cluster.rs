//! The cluster tables against the real local cluster (`deploy/services.sh start cluster`: 2
//! shards × 2 replicas of ClickHouse 18.16, cluster `touchstream`), started here if it is not
//! up. Each test works in a database of its own on every server, dropped at the end. The tests
//! take turns (one of them stops a server, and `ON CLUSTER` DDL waits for every server).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use touchstream_model::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, EventType, LifecycleStage,
    RawEvent, TouchFields,
};
use touchstream_tests::cluster::{self, CLUSTER};
use touchstream_tests::{
    CLICKHOUSE_URL as SINGLE_NODE, Service, TestTopics, eventually, free_port, produce_payloads,
    unique, wait_ready,
};
use touchstream_warehouse::reports::{self, ReportParams};
use touchstream_warehouse::{
    CreditRow, EventRow, ShardedWriter, Warehouse, WarehouseConfig, client, insert, migrate,
    rows_of,
};

/// (node, HTTP URL, native address), in the order of `system.clusters`.
const NODES: [(&str, &str, &str); 4] = cluster::CLICKHOUSE;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static CLUSTER_UP: std::sync::Once = std::sync::Once::new();

fn services(args: &[&str]) {
    cluster::services(args);
}

/// Starts the cluster unless it answers already (about a second then).
fn cluster_up() {
    CLUSTER_UP.call_once(|| services(&["start", "cluster"]));
}

/// A query over one server's HTTP interface as `default`; panics with ClickHouse's message.
async fn query(url: &str, database: Option<&str>, sql: &str) -> String {
    let mut request = reqwest::Client::new().post(url).body(sql.to_string());
    if let Some(db) = database {
        request = request.query(&[("database", db)]);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url} is not answering: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{url} refused {sql:?}: {text}");
    text
}

/// A database of its own on the cluster (and, for comparisons, one on the single node).
struct ScratchCluster {
    cfg: WarehouseConfig,
    single: WarehouseConfig,
}

impl ScratchCluster {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("ts_cluster_{}", &id[..12]);
        Self {
            cfg: WarehouseConfig {
                url: NODES[0].1.into(),
                database: database.clone(),
                cluster: Some(CLUSTER.into()),
                replica_urls: NODES
                    .iter()
                    .map(|(_, http, native)| (native.to_string(), http.to_string()))
                    .collect(),
                ..WarehouseConfig::default()
            },
            single: WarehouseConfig {
                url: SINGLE_NODE.into(),
                database,
                ..WarehouseConfig::default()
            },
        }
    }

    async fn migrated() -> Self {
        let db = Self::new();
        migrate(&db.cfg).await.unwrap();
        db
    }

    fn name(&self) -> &str {
        &self.cfg.database
    }

    /// The sink's user on the cluster.
    fn sink_cfg(&self) -> WarehouseConfig {
        WarehouseConfig {
            user: "touchstream_sink".into(),
            password: "touchstream_sink".into(),
            ..self.cfg.clone()
        }
    }

    async fn on(&self, node: usize, sql: &str) -> String {
        query(NODES[node].1, Some(self.name()), sql).await
    }

    async fn number(&self, node: usize, sql: &str) -> u64 {
        self.on(node, sql).await.trim().parse().unwrap()
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let name = self.name().to_string();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut failures = Vec::new();
                for url in NODES.iter().map(|n| n.1).chain([SINGLE_NODE]) {
                    let sent = reqwest::Client::new()
                        .post(url)
                        .body(format!("DROP DATABASE IF EXISTS {name}"))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {}
                        other => failures.push(format!("{url}: {other:?}")),
                    }
                }
                failures
            })
        })
        .join();
        if !matches!(&dropped, Ok(f) if f.is_empty()) {
            eprintln!(
                "could not drop scratch database {}: {dropped:?}",
                self.name()
            );
        }
    }
}

// ------------------------------------------------------------------------------------ fixture
//
// A generated January 2026: 48 people on one site, a third of them on two devices, most of
// them signing in at some point (a device's rows before its first sign-in carry the device's id,
// later ones the user's); clicks from a handful of sources; signups, downloads and purchases
// credited under three models to the touches before them on the person's devices; some
// conversions re-credited by a later revision (another credit set, retracted rows, a late
// sign-in moving the conversion to the user); and a second site that every report filters out.

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z in ms
const HOUR: i64 = 3_600_000;
const MODELS: [AttributionModel; 3] = [
    AttributionModel::LastNonDirect,
    AttributionModel::Linear,
    AttributionModel::FirstTouch,
];

/// xorshift64*: the same fixture on every run.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone)]
struct Touch {
    id: String,
    time: i64,
    fields: TouchFields,
}

fn source(n: u64) -> TouchFields {
    let (channel, source, social, content) = match n {
        0 => (
            "Organic Social",
            "instagram",
            Some("instagram"),
            Some("reel-1"),
        ),
        1 => ("Organic Search", "google", None, None),
        2 => ("Paid Social", "facebook", Some("facebook"), Some("ad-7")),
        3 => (
            "Organic Social",
            "linkedin",
            Some("linkedin"),
            Some("post-42"),
        ),
        4 => ("Direct", "(direct)", None, None),
        _ => ("Organic Social", "tiktok", Some("tiktok"), Some("clip-3")),
    };
    TouchFields {
        channel: channel.into(),
        source: source.into(),
        medium: "social".into(),
        campaign: content.map(|c| format!("campaign-{c}")),
        content: content.map(Into::into),
        term: None,
        campaign_id: None,
        click_id_kind: None,
        social_network: social.map(Into::into),
        is_internal: false,
        is_bot: false,
        is_spam_referrer: false,
    }
}

fn raw(id: String, event_type: EventType, site: &str, device: &str, time: i64) -> RawEvent {
    RawEvent {
        event_id: id,
        event_type,
        anonymous_id: device.into(),
        user_id: None,
        occurred_at: time,
        sent_at: Some(time),
        received_at: time + 50,
        event_time: time,
        page_url: "https://shop.example/".into(),
        referrer: None,
        user_agent: None,
        ip: None,
        properties: BTreeMap::new(),
        target_url: None,
        element: None,
        signup_kind: None,
        method: None,
        asset_id: None,
        asset_kind: None,
        order_id: None,
        revenue: None,
        currency: None,
        site_id: site.into(),
        event_name: None,
        clock_correction_ms: 0,
        received_via: touchstream_model::received_via::EVENTS.into(),
    }
}

fn attributed(event: RawEvent, identity: &str, touch: TouchFields, opens: bool) -> AttributedEvent {
    AttributedEvent {
        session: (&touch).into(),
        event,
        touch,
        opens_touch: opens,
        session_id: "s".into(),
        identity_id: identity.into(),
        lifecycle_stage: LifecycleStage::Visitor,
        purchase_count: 0,
        conversion: None,
        revision: 0,
        is_late: false,
    }
}

fn credits(touches: &[Touch], revenue: i64, retract: &[Touch]) -> Vec<Credit> {
    let credit = |model, t: &Touch, weight: f64| Credit {
        model,
        touch_event_id: t.id.clone(),
        touch_time: t.time,
        channel: t.fields.channel.clone(),
        source: t.fields.source.clone(),
        social_network: t.fields.social_network.clone(),
        campaign: t.fields.campaign.clone(),
        content: t.fields.content.clone(),
        weight,
        revenue_credit: weight * revenue as f64,
        retracted: false,
    };
    let mut out = Vec::new();
    let non_direct = touches
        .iter()
        .rev()
        .find(|t| t.fields.channel != "Direct")
        .unwrap_or(&touches[touches.len() - 1]);
    out.push(credit(AttributionModel::LastNonDirect, non_direct, 1.0));
    out.push(credit(AttributionModel::FirstTouch, &touches[0], 1.0));
    for t in touches {
        out.push(credit(
            AttributionModel::Linear,
            t,
            1.0 / touches.len() as f64,
        ));
    }
    for t in retract {
        for model in MODELS {
            out.push(Credit {
                retracted: true,
                ..credit(model, t, 0.0)
            });
        }
    }
    out
}

/// The fixture's events, in the order a stream would carry them; the revisions of re-credited
/// conversions come last.
fn fixture() -> Vec<AttributedEvent> {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut events = Vec::new();
    let mut revisions = Vec::new();
    let mut n = 0u64;
    let mut next_id = || {
        n += 1;
        format!("00000000-0000-4000-8000-{n:012}")
    };
    for person in 0..48u64 {
        let site = if person % 12 == 11 {
            "other"
        } else {
            "default"
        };
        let devices: Vec<String> = (0..if person % 3 == 0 { 2 } else { 1 })
            .map(|d| format!("dev-{person}-{d}"))
            .collect();
        let user = format!("user-{person}");
        let signs_in = person % 4 != 3;
        let mut touches: Vec<Touch> = Vec::new();
        let mut time = T0 + dice.below(72) as i64 * HOUR;
        let mut linked: BTreeSet<String> = BTreeSet::new();
        for step in 0..(3 + dice.below(6)) {
            let device = &devices[dice.below(devices.len() as u64) as usize];
            time += (1 + dice.below(30)) as i64 * HOUR;
            if signs_in && step >= 2 && dice.below(3) == 0 {
                linked.insert(device.clone());
            }
            let identity = if linked.contains(device) {
                &user
            } else {
                device
            };
            let roll = dice.below(10);
            if roll < 6 || touches.is_empty() {
                let fields = source(dice.below(6));
                let id = next_id();
                let mut click = attributed(
                    raw(id.clone(), EventType::Click, site, device, time),
                    identity,
                    fields.clone(),
                    true,
                );
                if roll == 5 {
                    click.touch.is_bot = true;
                    click.opens_touch = false;
                } else {
                    touches.push(Touch { id, time, fields });
                }
                events.push(click);
                continue;
            }
            let (event_type, revenue) = match roll {
                6 => (EventType::Signup, 0),
                7 => (EventType::Download, 0),
                _ => (EventType::Purchase, 1_000 + 250 * dice.below(40) as i64),
            };
            let mut event = raw(next_id(), event_type, site, device, time);
            if revenue > 0 {
                event.revenue = Some(revenue);
                event.currency = Some("EUR".into());
                event.order_id = Some(format!("order-{}", event.event_id));
            }
            let credited: Vec<Touch> = touches.iter().rev().take(4).rev().cloned().collect();
            let mut conversion = attributed(event, identity, TouchFields::direct(), false);
            conversion.lifecycle_stage = LifecycleStage::Customer;
            conversion.conversion = Some(ConversionCredits {
                touches_to_conversion: credited.len() as i32,
                days_to_conversion: (time - credited[0].time) as f64 / (24 * HOUR) as f64,
                credits: credits(&credited, revenue, &[]),
            });
            if dice.below(3) == 0 && credited.len() > 1 {
                // Re-credited: the first credited touch is dropped (a late correction), and a
                // late sign-in moves the conversion to the user.
                let mut revised = conversion.clone();
                revised.revision = 1;
                if signs_in {
                    revised.identity_id = user.clone();
                }
                let kept = &credited[1..];
                revised.conversion = Some(ConversionCredits {
                    touches_to_conversion: kept.len() as i32,
                    days_to_conversion: (time - kept[0].time) as f64 / (24 * HOUR) as f64,
                    credits: credits(kept, revenue, &credited[..1]),
                });
                revisions.push(revised);
            }
            events.push(conversion);
        }
    }
    events.extend(revisions);
    events
}

fn rows(events: &[AttributedEvent], ingested_at: i64) -> (Vec<EventRow>, Vec<CreditRow>) {
    let mut event_rows = Vec::new();
    let mut credit_rows = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let (row, credits) = rows_of(event, ingested_at + i as i64);
        event_rows.push(row);
        credit_rows.extend(credits);
    }
    (event_rows, credit_rows)
}

fn january(model: AttributionModel) -> ReportParams {
    ReportParams {
        site: "default".into(),
        from: datetime!(2026-01-01 00:00 UTC),
        to: datetime!(2026-02-01 00:00 UTC),
        model,
    }
}

fn sharded(warehouse: &Warehouse) -> &ShardedWriter {
    match warehouse {
        Warehouse::Sharded(writer) => writer,
        Warehouse::Single(_) => panic!("the cluster config gave a single-server warehouse"),
    }
}

async fn stop_merges(db: &ScratchCluster) {
    for node in 0..NODES.len() {
        for table in ["events_local", "conversion_credits_local"] {
            db.on(node, &format!("SYSTEM STOP MERGES {}.{table}", db.name()))
                .await;
        }
    }
}

/// Waits until `node`'s replicas have every part their shard's other replica has.
async fn sync_replicas(db: &ScratchCluster, node: usize) {
    for table in [
        "events_local",
        "conversion_credits_local",
        "schema_migrations",
    ] {
        db.on(node, &format!("SYSTEM SYNC REPLICA {}.{table}", db.name()))
            .await;
    }
}

// -------------------------------------------------------------------------------------- tests

/// Two migrators at once on a new cluster database, then a third run: nothing fails, every
/// server has the replicated local tables and the Distributed ones with exactly the columns of
/// the single-node tables, and every server holds the runner's records.
#[tokio::test]
async fn cluster_migrations_run_twice_and_concurrently() {
    cluster_up();
    let _turn = TURN.lock().await;
    let db = ScratchCluster::new();
    let (first, second) = tokio::join!(migrate(&db.cfg), migrate(&db.cfg));
    let (first, second) = (first.unwrap(), second.unwrap());
    let all: Vec<String> = touchstream_warehouse::migrate::MIGRATIONS
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert!(
        first == all || second == all,
        "one run applies everything: {first:?} {second:?}"
    );
    assert_eq!(migrate(&db.cfg).await.unwrap(), Vec::<String>::new());

    migrate(&db.single).await.unwrap();
    // name, type, default kind, default expression, comment; in the table's order.
    let describe = |table: &'static str| format!("DESCRIBE TABLE {table} FORMAT TSV");
    let single_events = query(SINGLE_NODE, Some(db.name()), &describe("events")).await;
    let single_credits = query(
        SINGLE_NODE,
        Some(db.name()),
        &describe("conversion_credits"),
    )
    .await;
    let without_comments = |tsv: &str| -> String {
        tsv.lines()
            .map(|l| format!("{}\t\n", l.rsplit_once('\t').unwrap().0))
            .collect()
    };
    for (node, (name, _, _)) in NODES.iter().enumerate() {
        let tables = db
            .on(
                node,
                "SELECT name, engine FROM system.tables WHERE database = currentDatabase() \
                 ORDER BY name FORMAT TSV",
            )
            .await;
        assert_eq!(
            tables,
            "conversion_credits\tDistributed\n\
             conversion_credits_local\tReplicatedReplacingMergeTree\n\
             events\tDistributed\n\
             events_local\tReplicatedReplacingMergeTree\n\
             schema_migrations\tReplicatedReplacingMergeTree\n",
            "{}",
            name
        );
        assert_eq!(db.on(node, &describe("events")).await, single_events);
        assert_eq!(
            db.on(node, &describe("conversion_credits")).await,
            single_credits
        );
        assert_eq!(
            db.on(node, &describe("events_local")).await,
            without_comments(&single_events)
        );
        assert_eq!(
            db.on(node, &describe("conversion_credits_local")).await,
            without_comments(&single_credits)
        );
        sync_replicas(&db, node).await;
        let recorded = db
            .on(
                node,
                "SELECT name FROM schema_migrations GROUP BY name ORDER BY name FORMAT TSV",
            )
            .await;
        assert_eq!(recorded, format!("{}\n", all.join("\n")), "{}", name);
    }
    let engine = db
        .on(
            0,
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() \
             AND name = 'events' FORMAT TSV",
        )
        .await;
    assert!(
        engine.contains("events_local, sipHash64(concat(site_id, \\'/\\', anonymous_id))"),
        "{engine}"
    );
}

/// The fixture written by the sharded writer (twice, as a replayed batch would be, plus the
/// revisions) gives every report the numbers the single node gives; the rows of one device
/// are all on one shard, where ClickHouse's own Distributed insert puts them too, and copies
/// and revisions collapse under FINAL.
#[tokio::test]
async fn reports_on_the_cluster_equal_the_single_node() {
    cluster_up();
    let _turn = TURN.lock().await;
    let db = ScratchCluster::migrated().await;
    migrate(&db.single).await.unwrap();
    stop_merges(&db).await;

    let fixture = fixture();
    let (events, credits) = rows(&fixture, T0 + 40 * 24 * HOUR);
    // A replay: the same events written again later (another ingested_at, so even the
    // replicated tables' block de-duplication does not drop them).
    let (replayed_events, replayed_credits) = rows(&fixture, T0 + 41 * 24 * HOUR);
    let warehouse = Warehouse::new(&db.sink_cfg());
    insert(&warehouse, &events, &credits).await.unwrap();
    insert(&warehouse, &replayed_events, &replayed_credits)
        .await
        .unwrap();
    let single = client(&WarehouseConfig {
        user: "touchstream_sink".into(),
        password: "touchstream_sink".into(),
        ..db.single.clone()
    });
    insert(&single, &events, &credits).await.unwrap();
    insert(&single, &replayed_events, &replayed_credits)
        .await
        .unwrap();

    // One person's devices on two shards, so the reports' people really span shards.
    let writer = sharded(&warehouse);
    let mut spans = 0;
    for person in (0..48).step_by(3) {
        let a = writer
            .shard_of("default", &format!("dev-{person}-0"))
            .await
            .unwrap();
        let b = writer
            .shard_of("default", &format!("dev-{person}-1"))
            .await
            .unwrap();
        spans += usize::from(a != b);
    }
    assert!(spans > 0, "no person has devices on two shards");

    let reader = client(&db.cfg);
    let single_reader = client(&db.single);
    let mut compared = 0;
    for report in reports::all() {
        for model in MODELS {
            let params = january(model);
            let on_cluster = reports::run(&reader, report, &params)
                .await
                .unwrap_or_else(|e| panic!("{} on the cluster: {e}", report.name));
            let on_single = reports::run(&single_reader, report, &params).await.unwrap();
            assert!(
                !on_single.rows.is_empty(),
                "{} {model:?}: the fixture gives it no rows",
                report.name
            );
            assert_eq!(
                on_cluster, on_single,
                "{} under {model:?}: cluster and single node differ",
                report.name
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 3 * reports::all().len());

    // The fixture does exercise people across shards: the funnel computed shard by shard (each
    // shard's local rows alone, then added up) counts some people twice, where the Distributed
    // tables count them once, like the single node.
    let funnel = reports::by_name("funnel").unwrap();
    let local = reports::Report {
        sql: Box::leak(
            funnel
                .sql
                .replace("FROM events", "FROM events_local")
                .into_boxed_str(),
        ),
        ..*funnel
    };
    let params = january(AttributionModel::LastNonDirect);
    let clicked = |table: &reports::ReportTable| -> BTreeMap<String, u64> {
        table
            .rows
            .iter()
            .map(|r| (r[0].clone(), r[1].parse().unwrap()))
            .collect()
    };
    let whole = clicked(&reports::run(&reader, funnel, &params).await.unwrap());
    let mut by_shard: BTreeMap<String, u64> = BTreeMap::new();
    for node in [0, 2] {
        let on_shard = client(&WarehouseConfig {
            url: NODES[node].1.into(),
            ..db.cfg.clone()
        });
        for (source, n) in clicked(&reports::run(&on_shard, &local, &params).await.unwrap()) {
            *by_shard.entry(source).or_default() += n;
        }
    }
    assert!(
        by_shard.iter().any(|(source, n)| *n > whole[source]),
        "no person spans shards in the funnel: {by_shard:?} vs {whole:?}"
    );

    // Every device's rows on exactly one shard: the writer's.
    let shards = writer.shards().await.unwrap();
    assert_eq!(shards.len(), 2);
    let mut seen: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (shard, replicas) in shards.iter().enumerate() {
        let node = NODES.iter().position(|n| n.1 == replicas[0]).unwrap();
        sync_replicas(&db, node).await;
        for table in ["events_local", "conversion_credits_local"] {
            let devices = db
                .on(
                    node,
                    &format!(
                        "SELECT DISTINCT concat(site_id, '/', anonymous_id) FROM {table} FORMAT TSV"
                    ),
                )
                .await;
            for device in devices.lines() {
                seen.entry(device.to_string()).or_default().insert(shard);
            }
        }
    }
    assert!(seen.len() > 60, "{} devices", seen.len());
    for (device, on) in &seen {
        let (site, anon) = device.split_once('/').unwrap();
        let expected = writer.shard_of(site, anon).await.unwrap();
        assert_eq!(on, &BTreeSet::from([expected]), "{device}");
    }
    assert!(
        seen.values().any(|s| s.contains(&0)) && seen.values().any(|s| s.contains(&1)),
        "both shards hold devices"
    );

    // ClickHouse's own routing agrees: the same rows under another site, inserted through
    // the Distributed table synchronously, land where the writer would put them.
    let routed: Vec<EventRow> = events
        .iter()
        .map(|e| EventRow {
            site_id: "routed".into(),
            ..e.clone()
        })
        .collect();
    let mut through = client(&db.cfg)
        .with_setting("insert_distributed_sync", "1")
        .insert::<EventRow>("events")
        .await
        .unwrap();
    for row in &routed {
        through.write(row).await.unwrap();
    }
    through.end().await.unwrap();
    for (shard, replicas) in shards.iter().enumerate() {
        let node = NODES.iter().position(|n| n.1 == replicas[0]).unwrap();
        // The Distributed table may have written to the shard's other replica.
        sync_replicas(&db, node).await;
        let landed = db
            .on(
                node,
                "SELECT DISTINCT anonymous_id FROM events_local WHERE site_id = 'routed' FORMAT TSV",
            )
            .await;
        let mut expected = BTreeSet::new();
        for row in &routed {
            if writer.shard_of("routed", &row.anonymous_id).await.unwrap() == shard {
                expected.insert(row.anonymous_id.clone());
            }
        }
        let landed: BTreeSet<String> = landed.lines().map(str::to_owned).collect();
        assert_eq!(landed, expected, "shard {}", shard + 1);
    }

    // Copies and revisions are physically there (merges are stopped) and collapse under FINAL,
    // on each shard and through the Distributed tables.
    let distinct_events: BTreeSet<_> = events.iter().map(|e| e.event_id).collect();
    let distinct_credits: BTreeSet<_> = credits
        .iter()
        .map(|c| {
            (
                c.site_id.clone(),
                c.model.as_str(),
                c.conversion_event_id,
                c.touch_event_id,
            )
        })
        .collect();
    let where_default = "WHERE site_id = 'default' OR site_id = 'other'";
    let all_rows = db
        .number(0, &format!("SELECT count() FROM events {where_default}"))
        .await;
    assert_eq!(all_rows, 2 * events.len() as u64);
    let final_rows = db
        .number(
            0,
            &format!("SELECT count() FROM events FINAL {where_default}"),
        )
        .await;
    assert_eq!(final_rows, distinct_events.len() as u64);
    assert!(
        final_rows < events.len() as u64,
        "the fixture has revisions"
    );
    let final_credits = db
        .number(0, "SELECT count() FROM conversion_credits FINAL")
        .await;
    assert_eq!(final_credits, distinct_credits.len() as u64);
    let latest_revision_rows = db
        .number(
            0,
            "SELECT count() FROM (SELECT conversion_event_id, revision FROM conversion_credits FINAL \
             GROUP BY conversion_event_id, revision) \
             WHERE (conversion_event_id, revision) NOT IN \
             (SELECT conversion_event_id, max(revision) FROM conversion_credits GROUP BY conversion_event_id)",
        )
        .await;
    assert_eq!(latest_revision_rows, 0, "FINAL kept an older revision");
}

/// Stops the replica of shard 1 the writer uses while batches are being inserted: the writer
/// moves to the other replica, every batch is acknowledged, and once the stopped server is
/// back it catches up; nothing is lost or counted twice.
#[tokio::test]
async fn a_stopped_replica_is_failed_over_and_catches_up() {
    cluster_up();
    let _turn = TURN.lock().await;
    let db = ScratchCluster::migrated().await;
    let warehouse = Arc::new(Warehouse::new(&db.sink_cfg()));
    let fixture = fixture();
    // 12 batches of whole events, each with its credits.
    let n = fixture.len();
    let batches: Vec<(Vec<EventRow>, Vec<CreditRow>)> = (0..12)
        .map(|i| {
            let chunk = &fixture[i * n / 12..(i + 1) * n / 12];
            rows(chunk, T0 + 40 * 24 * HOUR + i as i64 * 1_000)
        })
        .collect();
    insert(&*warehouse, &batches[0].0, &batches[0].1)
        .await
        .unwrap();
    let in_use = sharded(&warehouse).replicas_in_use()[0].clone();
    let stopped = NODES.iter().position(|n| n.1 == in_use).unwrap();
    let other = if stopped % 2 == 0 {
        stopped + 1
    } else {
        stopped - 1
    };

    /// Restarts the stopped server even when the test fails.
    struct Restart(&'static str, bool);
    impl Drop for Restart {
        fn drop(&mut self) {
            if !self.1 {
                services(&["cluster-node", "start", self.0]);
            }
        }
    }
    let mut restart = Restart(NODES[stopped].0, false);

    let write = |range: std::ops::Range<usize>| {
        let warehouse = warehouse.clone();
        let batches = &batches;
        async move {
            for (events, credits) in &batches[range] {
                insert(&*warehouse, events, credits).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    write(1..3).await;
    // Batches go on while the server stops ...
    let stopping =
        tokio::task::spawn_blocking(move || services(&["cluster-node", "stop", NODES[stopped].0]));
    write(3..7).await;
    stopping.await.unwrap();
    // ... and after it has stopped.
    write(7..10).await;
    assert_eq!(
        sharded(&warehouse).replicas_in_use()[0],
        NODES[other].1,
        "the writer moved to the other replica"
    );
    tokio::task::spawn_blocking(move || services(&["cluster-node", "start", NODES[stopped].0]))
        .await
        .unwrap();
    restart.1 = true;
    write(10..12).await;

    // The restarted replica catches up, and holds what its partner holds.
    sync_replicas(&db, stopped).await;
    for table in ["events_local", "conversion_credits_local"] {
        let sql = format!("SELECT count() FROM {table} FORMAT TSV");
        assert_eq!(
            db.on(stopped, &sql).await,
            db.on(other, &sql).await,
            "{table} on {} and {}",
            NODES[stopped].0,
            NODES[other].0
        );
    }
    // The Distributed read picks any replica of each shard: every replica must have fetched
    // what its partner took (replication is asynchronous), not only the restarted one.
    for node in 0..NODES.len() {
        sync_replicas(&db, node).await;
    }
    let all_events: Vec<&EventRow> = batches.iter().flat_map(|b| &b.0).collect();
    let distinct: BTreeSet<_> = all_events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        db.number(0, "SELECT count() FROM events FINAL").await,
        distinct.len() as u64,
        "nothing lost"
    );
    assert_eq!(
        db.number(0, "SELECT uniqExact(event_id, revision) FROM events")
            .await,
        all_events.len() as u64,
        "every event and revision once"
    );
    let credit_rows: usize = batches.iter().map(|b| b.1.len()).sum();
    assert_eq!(
        db.number(0, "SELECT uniqExact(conversion_event_id, model, touch_event_id, revision) FROM conversion_credits")
            .await,
        credit_rows as u64
    );
}

/// The sink binary configured with `clickhouse.cluster`: it migrates the cluster database
/// itself, writes the stream (with a replayed stretch) into the shards, commits its offsets once
/// the rows are in, and the reports read from the Distributed tables equal those of the same
/// events written into a single server.
#[tokio::test(flavor = "multi_thread")]
async fn the_sink_writes_the_stream_into_the_cluster() {
    cluster_up();
    let _turn = TURN.lock().await;
    let topics = TestTopics::create(2).await;
    let db = ScratchCluster::new();
    let fixture = fixture();
    let mut stream: Vec<(String, Vec<u8>)> = fixture
        .iter()
        .map(|e| {
            (
                e.event.anonymous_id.clone(),
                touchstream_avro::encode(e).unwrap(),
            )
        })
        .collect();
    // A replay of the first 40 records, as after a crash between insert and commit.
    stream.extend(stream[..40].to_vec());
    produce_payloads(&topics.topics.attributed, &stream).await;

    let replica_urls: String = NODES
        .iter()
        .map(|(_, http, native)| format!("\"{native}\" = \"{http}\"\n"))
        .collect();
    let config = std::env::temp_dir().join(format!("{}.toml", unique("sink-cluster-")));
    std::fs::write(
        &config,
        format!(
            "[sink.clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\ncluster = \"{CLUSTER}\"\n\
             [sink.clickhouse.replica_urls]\n{replica_urls}",
            NODES[0].1,
            db.name()
        ),
    )
    .unwrap();
    let group = unique("sink-");
    let ops = free_port();
    let mut env = topics.env("sink");
    env.extend([
        ("TOUCHSTREAM_CONFIG".into(), config.display().to_string()),
        ("TOUCHSTREAM_SINK__GROUP_ID".into(), group.clone()),
        (
            "TOUCHSTREAM_SINK__OPS__LISTEN".into(),
            format!("127.0.0.1:{ops}"),
        ),
        ("TOUCHSTREAM_SINK__BATCH__MAX_WAIT_MS".into(), "200".into()),
        ("TOUCHSTREAM_SINK__BATCH__MAX_ROWS".into(), "100".into()),
    ]);
    let sink = Service::spawn("sink", &[], &env);
    wait_ready(&format!("http://127.0.0.1:{ops}/readyz"), &sink).await;

    let distinct: BTreeSet<&str> = fixture.iter().map(|e| e.event.event_id.as_str()).collect();
    eventually(
        "every event in the cluster",
        Duration::from_secs(90),
        || async {
            let sql = "SELECT count() FROM events FINAL";
            (query(NODES[0].1, Some(db.name()), sql).await.trim() == distinct.len().to_string())
                .then_some(())
        },
    )
    .await;
    // Offsets are committed after the inserts: eventually all of them.
    let consumer: rdkafka::consumer::BaseConsumer = touchstream_tests::kafka()
        .consumer("touchstream-tests", &group)
        .create()
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        partitions.add_partition(&topics.topics.attributed, p);
    }
    let total = stream.len() as i64;
    eventually(
        "the sink's offsets committed",
        Duration::from_secs(30),
        || {
            let committed = rdkafka::consumer::Consumer::committed_offsets(
                &consumer,
                partitions.clone(),
                Duration::from_secs(5),
            )
            .unwrap();
            let sum: i64 = committed
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(n) => Some(n),
                    _ => None,
                })
                .sum();
            async move { (sum == total).then_some(()) }
        },
    )
    .await;
    for node in [0, 2] {
        let rows = db.number(node, "SELECT count() FROM events_local").await;
        assert!(rows > 0, "{} holds none of the rows", NODES[node].0);
    }

    migrate(&db.single).await.unwrap();
    let (events, credits) = rows(&fixture, T0 + 40 * 24 * HOUR);
    insert(&client(&db.single), &events, &credits)
        .await
        .unwrap();
    for report in reports::all() {
        for model in MODELS {
            let params = january(model);
            let on_cluster = reports::run(&client(&db.cfg), report, &params)
                .await
                .unwrap();
            let on_single = reports::run(&client(&db.single), report, &params)
                .await
                .unwrap();
            assert_eq!(on_cluster, on_single, "{} under {model:?}", report.name);
        }
    }
    let _ = std::fs::remove_file(&config);
}

/// Every statement of the cluster migrations parses on current ClickHouse (chdb has no
/// ZooKeeper to run them; the tests above run them on 18.16), and a broken one is caught.
#[test]
fn cluster_migrations_parse_on_current_clickhouse() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let python = touchstream_tests::services_dir().join("python/bin/python");
    let python = python.display().to_string();
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run `deploy/services.sh install-test-tools`"
    );
    let explain = |statements: &[String]| {
        let mut child = Command::new(&python)
            .arg("tests/chdb/explain.py")
            .current_dir(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let json = serde_json::to_vec(statements).unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &json).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let statements =
        touchstream_warehouse::migrate::cluster_statements("touchstream", CLUSTER).unwrap();
    assert!(statements.len() > 20, "{statements:?}");
    let (ok, out) = explain(&statements);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{} parsed, 0 failed", statements.len())),
        "{out}"
    );
    let (ok, out) = explain(&["CREATE TABLE x ON CLUSTER c (a String".to_string()]);
    assert!(!ok, "a broken statement passed: {out}");
}

/// Erasure and retention on the cluster: the mutation and the partition drop run on each
/// shard's local table and reach both replicas; other people's rows stay.
#[tokio::test]
async fn erasure_and_retention_reach_every_shard_and_replica() {
    use touchstream_model::forget::Scope;
    use touchstream_warehouse::privacy;
    cluster_up();
    let _turn = TURN.lock().await;
    let db = ScratchCluster::migrated().await;
    let fixture = fixture();
    let (events, credits) = rows(&fixture, T0 + 40 * 24 * HOUR);
    let warehouse = Warehouse::new(&db.sink_cfg());
    insert(&warehouse, &events, &credits).await.unwrap();
    // Person 0's two devices, on two shards or one: either way every shard is asked.
    let scope = Scope {
        users: Vec::new(),
        devices: vec![
            (Some("default".into()), "dev-0-0".into()),
            (Some("default".into()), "dev-0-1".into()),
        ],
    };
    let devices = "anonymous_id IN ('dev-0-0', 'dev-0-1')";
    // Per node: (rows, rows of the two devices) of a local table.
    let per_node = |table: &'static str| {
        let db = &db;
        async move {
            let mut out = Vec::new();
            for node in 0..NODES.len() {
                let all = db
                    .number(node, &format!("SELECT count() FROM {table}_local"))
                    .await;
                let theirs = db
                    .number(
                        node,
                        &format!("SELECT count() FROM {table}_local WHERE {devices}"),
                    )
                    .await;
                out.push((all, theirs));
            }
            out
        }
    };
    // Both replicas of each shard (nodes 0 and 1, 2 and 3) hold the same rows first.
    let mut before = Vec::new();
    for table in ["events", "conversion_credits"] {
        before.push(
            eventually(
                "both replicas of each shard agree",
                Duration::from_secs(60),
                || async {
                    let n = per_node(table).await;
                    (n[0] == n[1] && n[2] == n[3] && n[0].0 > 0 && n[2].0 > 0).then_some(n)
                },
            )
            .await,
        );
    }
    let counts = privacy::delete(&db.cfg, &scope).await.unwrap();
    eventually(
        "the mutations done on every replica",
        Duration::from_secs(120),
        || async { (privacy::unfinished_mutations(&db.cfg).await.unwrap() == 0).then_some(()) },
    )
    .await;
    for (table, before) in ["events", "conversion_credits"].into_iter().zip(&before) {
        assert!(
            before[0].1 + before[2].1 > 0,
            "{table}: the devices have rows"
        );
        assert_eq!(
            counts[table],
            before[0].1 + before[2].1,
            "{table}: the count is of the rows of both shards"
        );
        let after = per_node(table).await;
        for node in 0..NODES.len() {
            // Every replica lost exactly the devices' rows, and nothing else.
            assert_eq!(
                after[node],
                (before[node].0 - before[node].1, 0),
                "{table} on {}",
                NODES[node].0
            );
        }
    }
    let total = |table: &'static str| {
        let db = &db;
        async move {
            let mut n = 0;
            for node in 0..NODES.len() {
                n += db
                    .number(node, &format!("SELECT count() FROM {table}_local"))
                    .await;
            }
            n
        }
    };

    // Retention: in March with one month kept, January (the whole fixture) goes everywhere.
    let mut retention = privacy::RetentionConfig::default();
    retention.retention_months.insert("events".into(), 1);
    let dropped = privacy::apply_retention(&db.cfg, &retention, 202603)
        .await
        .unwrap();
    assert_eq!(dropped[0].partitions, vec![202601], "{dropped:?}");
    eventually(
        "January dropped on every replica",
        Duration::from_secs(60),
        || async { (total("events").await == 0).then_some(()) },
    )
    .await;
    assert!(
        total("conversion_credits").await > 0,
        "a table without retention keeps its rows"
    );
}
