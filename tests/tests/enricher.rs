//! The enricher against the real broker: attribution of a whole journey, exactly-once output
//! across crashes (SIGKILL mid-transaction) and restarts, state hand-over on rebalance, and
//! poison records to the DLQ. Raw events are written straight to the raw topic (as the
//! collector would) and the attributed topic is read `read_committed`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use touchstream_avro::DlqRecord;
use touchstream_model::time::{DAY_MS, HOUR_MS, MINUTE_MS, now_ms};
use touchstream_model::{AttributedEvent, AttributionModel, EventType, LifecycleStage, RawEvent};
use touchstream_tests::{
    Service, TestTopics, decode_attributed, free_port, kafka, produce_payloads, produce_raw,
    raw_event, read_committed_all, read_uncommitted_all, unique, wait_ready,
};

const SITE: &str = "https://shop.example";

/// One enricher process on a test's topics.
async fn start_enricher(
    topics: &TestTopics,
    group: &str,
    transactional_id: &str,
    batch_max_records: usize,
) -> Service {
    let port = free_port();
    let mut env = topics.env("enricher");
    env.extend([
        ("TOUCHSTREAM_ENRICHER__GROUP_ID".into(), group.to_string()),
        (
            "TOUCHSTREAM_ENRICHER__TRANSACTIONAL_ID".into(),
            transactional_id.to_string(),
        ),
        (
            "TOUCHSTREAM_ENRICHER__OPS__LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ),
        (
            "TOUCHSTREAM_ENRICHER__SITE_HOSTS".into(),
            "[shop.example]".into(),
        ),
        (
            "TOUCHSTREAM_ENRICHER__BATCH_MAX_RECORDS".into(),
            batch_max_records.to_string(),
        ),
        ("TOUCHSTREAM_ENRICHER__BATCH_MAX_MS".into(), "100".into()),
    ]);
    let service = Service::spawn("enricher", &[], &env);
    wait_ready(&format!("http://127.0.0.1:{port}/readyz"), &service).await;
    service
}

/// The attributed events committed so far, by raw event id (several if duplicated).
async fn attributed_by_id(topic: &str) -> HashMap<String, Vec<AttributedEvent>> {
    let mut by_id: HashMap<String, Vec<AttributedEvent>> = HashMap::new();
    for a in decode_attributed(&read_committed_all(topic).await) {
        by_id.entry(a.event.event_id.clone()).or_default().push(a);
    }
    by_id
}

/// Polls until every one of `ids` has been attributed (committed), then returns them all.
async fn wait_attributed(
    topic: &str,
    ids: &[String],
    deadline: Duration,
    services: &[&Service],
) -> HashMap<String, Vec<AttributedEvent>> {
    let until = Instant::now() + deadline;
    loop {
        let by_id = attributed_by_id(topic).await;
        let missing = ids.iter().filter(|id| !by_id.contains_key(*id)).count();
        if missing == 0 {
            return by_id;
        }
        if Instant::now() >= until {
            let logs: Vec<String> = services.iter().map(|s| s.log_text()).collect();
            panic!(
                "{missing} of {} events not attributed within {deadline:?}; enricher logs:\n{}",
                ids.len(),
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Offsets of `topic` cheap enough to poll every few milliseconds while an enricher is busy:
/// high watermarks (records of open and aborted transactions and transaction markers
/// included) and last stable offsets (the end of what read_committed readers see).
struct Watermarks {
    /// read_uncommitted: its `latest` offset is the high watermark.
    high: BaseConsumer,
    /// read_committed: its `latest` offset is the last stable offset.
    stable: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl Watermarks {
    fn new(topic: &str, partitions: i32) -> Self {
        let mut cfg = kafka().consumer("touchstream-tests", &unique("watermarks-"));
        let stable: BaseConsumer = cfg.create().unwrap();
        cfg.set("isolation.level", "read_uncommitted");
        let high: BaseConsumer = cfg.create().unwrap();
        Self {
            high,
            stable,
            topic: topic.to_string(),
            partitions,
        }
    }

    fn latest(&self, consumer: &BaseConsumer, partition: i32) -> i64 {
        consumer
            .fetch_watermarks(&self.topic, partition, Duration::from_secs(5))
            .unwrap()
            .1
    }

    /// Sum of the high watermarks.
    fn total(&self) -> i64 {
        (0..self.partitions)
            .map(|p| self.latest(&self.high, p))
            .sum()
    }

    /// Whether records of a transaction not yet committed sit on some partition.
    fn open_transaction(&self) -> bool {
        (0..self.partitions).any(|p| self.latest(&self.stable, p) < self.latest(&self.high, p))
    }

    /// Returns once the topic has grown past `at_least` and, if `inside` is set, a transaction
    /// has records on the broker but no commit yet (polled every few ms, bounded).
    fn wait_past(&self, at_least: i64, inside: bool, service: &Service) {
        let until = Instant::now() + Duration::from_secs(90);
        while self.total() <= at_least || (inside && !self.open_transaction()) {
            assert!(
                Instant::now() < until,
                "{} did not grow past {at_least} records (inside a transaction: {inside}); enricher log:\n{}",
                self.topic,
                service.log_text()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn only(by_id: &HashMap<String, Vec<AttributedEvent>>, id: &str) -> AttributedEvent {
    let found = by_id
        .get(id)
        .unwrap_or_else(|| panic!("event {id} not attributed"));
    assert_eq!(
        found.len(),
        1,
        "event {id} attributed {} times",
        found.len()
    );
    found[0].clone()
}

fn weights(a: &AttributedEvent, model: AttributionModel) -> Vec<(String, f64)> {
    a.conversion
        .as_ref()
        .unwrap_or_else(|| panic!("{} has no conversion credits", a.event.event_id))
        .credits
        .iter()
        .filter(|c| c.model == model)
        .map(|c| (c.touch_event_id.clone(), c.weight))
        .collect()
}

fn assert_weights(a: &AttributedEvent, model: AttributionModel, expected: &[(String, f64)]) {
    let got = weights(a, model);
    assert_eq!(
        got.len(),
        expected.len(),
        "{model:?}: credited touches {got:?}, expected {expected:?}"
    );
    for ((id, w), (eid, ew)) in got.iter().zip(expected) {
        assert_eq!(id, eid, "{model:?}: touch order {got:?} vs {expected:?}");
        assert!(
            (w - ew).abs() < 1e-9,
            "{model:?}: weight of {id} is {w}, expected {ew}"
        );
    }
    let sum: f64 = got.iter().map(|(_, w)| w).sum();
    assert!((sum - 1.0).abs() < 1e-9, "{model:?} weights sum to {sum}");
}

fn click(anonymous_id: &str, t: i64, page: &str, referrer: Option<&str>) -> RawEvent {
    raw_event(
        EventType::Click,
        anonymous_id,
        t,
        &format!("{SITE}{page}"),
        referrer,
    )
}

fn conversion(event_type: EventType, anonymous_id: &str, t: i64) -> RawEvent {
    let mut e = raw_event(
        event_type,
        anonymous_id,
        t,
        &format!("{SITE}/{}", event_type.as_str()),
        Some(&format!("{SITE}/pricing")),
    );
    match event_type {
        EventType::Signup => e.signup_kind = Some("newsletter".into()),
        EventType::Download => {
            e.asset_id = Some("checklist-2026".into());
            e.asset_kind = Some("checklist".into());
        }
        EventType::Purchase => {
            e.order_id = Some(unique("order-"));
            e.revenue = Some(4999);
            e.currency = Some("EUR".into());
        }
        EventType::Click | EventType::Identify | EventType::Custom => {}
    }
    e
}

/// One visitor's 10 touches over 16 days from five networks, then signup, download, purchase
/// and a repeat purchase: every field the enricher derives is checked against values worked
/// out by hand from the rules in schemas/attribution-rules.md.
#[tokio::test(flavor = "multi_thread")]
async fn journey_of_ten_touches_is_credited_under_every_model() {
    let topics = TestTopics::create(2).await;
    let v = unique("visitor-");
    let user = unique("user-");
    let day0 = (now_ms() - 20 * DAY_MS) / DAY_MS * DAY_MS + 9 * HOUR_MS;
    let at = |day: i64, minutes: i64| day0 + day * DAY_MS + minutes * MINUTE_MS;

    let linkedin =
        "/?utm_source=LinkedIn&utm_medium=social&utm_campaign=launch&utm_content=post-42";
    let t1 = click(&v, at(0, 0), "/", Some("https://t.co/AbC123"));
    // Internal navigation 10 min later: same session, no touch.
    let internal = click(&v, at(0, 10), "/pricing", Some(&format!("{SITE}/")));
    let t3 = click(
        &v,
        at(2, 0),
        "/blog/post-1",
        Some("https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F"),
    );
    let t4 = click(&v, at(4, 0), linkedin, None);
    // 20 min later but another source: GA's campaign-change rule opens a new session.
    let t5 = click(&v, at(4, 20), "/pricing", Some("https://www.google.com/"));
    let t6 = click(&v, at(7, 0), "/", None);
    // Direct 25 min later: a touch, but the same session.
    let t7 = click(&v, at(7, 25), "/features", None);
    let t8 = click(&v, at(10, 0), "/", Some("https://t.co/XyZ987"));
    let t9 = click(&v, at(12, 0), "/", None);
    let t10 = click(
        &v,
        at(13, 0),
        "/blog/post-2",
        Some("https://l.facebook.com/l.php?u=x"),
    );
    let mut signup = conversion(EventType::Signup, &v, at(13, 5));
    signup.user_id = Some(user.clone());
    let t11 = click(&v, at(15, 0), "/", None);
    let download = conversion(EventType::Download, &v, at(15, 10));
    let purchase = conversion(EventType::Purchase, &v, at(16, 0));
    let repeat = conversion(EventType::Purchase, &v, at(18, 0));
    let events = vec![
        t1.clone(),
        internal.clone(),
        t3.clone(),
        t4.clone(),
        t5.clone(),
        t6.clone(),
        t7.clone(),
        t8.clone(),
        t9.clone(),
        t10.clone(),
        signup.clone(),
        t11.clone(),
        download.clone(),
        purchase.clone(),
        repeat.clone(),
    ];
    produce_raw(&topics.topics.raw, &events).await;
    let mut enricher = start_enricher(&topics, &unique("enricher-"), &unique("tx-"), 5000).await;
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let by_id = wait_attributed(
        &topics.topics.attributed,
        &ids,
        Duration::from_secs(60),
        &[&enricher],
    )
    .await;
    let got = |e: &RawEvent| only(&by_id, &e.event_id);

    // The touch each click carries.
    let expect_touch = [
        (&t1, "Organic Social", "x", Some("x")),
        (&t3, "Organic Social", "facebook", Some("facebook")),
        (&t4, "Organic Social", "linkedin", Some("linkedin")),
        (&t5, "Organic Search", "google", None),
        (&t6, "Direct", "(direct)", None),
        (&t7, "Direct", "(direct)", None),
        (&t8, "Organic Social", "x", Some("x")),
        (&t9, "Direct", "(direct)", None),
        (&t10, "Organic Social", "facebook", Some("facebook")),
        (&t11, "Direct", "(direct)", None),
    ];
    for (e, channel, source, network) in expect_touch {
        let a = got(e);
        assert!(a.opens_touch, "{} should open a touch", e.page_url);
        assert_eq!(
            (
                a.touch.channel.as_str(),
                a.touch.source.as_str(),
                a.touch.social_network.as_deref()
            ),
            (channel, source, network),
            "touch of {} / {:?}",
            e.page_url,
            e.referrer
        );
    }
    let li = got(&t4).touch;
    assert_eq!(
        (li.campaign.as_deref(), li.content.as_deref()),
        (Some("launch"), Some("post-42"))
    );
    let a_internal = got(&internal);
    assert!(!a_internal.opens_touch && a_internal.touch.is_internal);
    assert!(a_internal.conversion.is_none());

    // Sessions: > 30 min of inactivity or a new campaign source starts one; Direct does not.
    let expected_sessions = [
        (&t1, 0),
        (&internal, 0),
        (&t3, 1),
        (&t4, 2),
        (&t5, 3),
        (&t6, 4),
        (&t7, 4),
        (&t8, 5),
        (&t9, 6),
        (&t10, 7),
        (&signup, 7),
        (&t11, 8),
        (&download, 8),
        (&purchase, 9),
        (&repeat, 10),
    ];
    for (e, n) in expected_sessions {
        assert_eq!(
            got(e).session_id,
            format!("{v}:{n}"),
            "session of {:?} at {}",
            e.event_type,
            e.page_url
        );
    }

    // Identity: the anonymous id until the signup gives a user id, that user id from then on.
    // Lifecycle: visitor → customer (signup, download) → client (purchases, counted).
    for (e, identity, stage, purchases) in [
        (&t1, &v, LifecycleStage::Visitor, 0),
        (&t10, &v, LifecycleStage::Visitor, 0),
        (&signup, &user, LifecycleStage::Customer, 0),
        (&t11, &user, LifecycleStage::Customer, 0),
        (&download, &user, LifecycleStage::Customer, 0),
        (&purchase, &user, LifecycleStage::Client, 1),
        (&repeat, &user, LifecycleStage::Client, 2),
    ] {
        let a = got(e);
        assert_eq!(
            (&a.identity_id, a.lifecycle_stage, a.purchase_count),
            (identity, stage, purchases),
            "identity/lifecycle of the {:?} at {}",
            e.event_type,
            e.page_url
        );
    }
    // Session-scoped, a conversion carries the touch that opened its session (the signup's
    // came with t10 from Facebook; the purchase started a session of its own: Direct);
    // event-scoped, its own hit (a page of the site, reached from another: internal, Direct).
    assert_eq!(got(&signup).session.source, "facebook");
    assert_eq!(got(&purchase).session.source, "(direct)");
    assert_eq!(got(&signup).touch.source, "(direct)");
    assert!(got(&signup).touch.is_internal);
    assert!(!got(&signup).opens_touch);

    // The signup: 9 touches (t1, t3 … t10), no revenue.
    let touches_before_signup = [&t1, &t3, &t4, &t5, &t6, &t7, &t8, &t9, &t10];
    let s = got(&signup);
    let sc = s.conversion.as_ref().unwrap();
    assert_eq!(sc.touches_to_conversion, 9);
    assert!(
        (sc.days_to_conversion - (signup.event_time - t1.event_time) as f64 / DAY_MS as f64).abs()
            < 1e-9
    );
    assert!(sc.credits.iter().all(|c| c.revenue_credit == 0.0));
    assert_weights(
        &s,
        AttributionModel::FirstTouch,
        &[(t1.event_id.clone(), 1.0)],
    );
    assert_weights(
        &s,
        AttributionModel::LastTouch,
        &[(t10.event_id.clone(), 1.0)],
    );
    assert_weights(
        &s,
        AttributionModel::LastNonDirect,
        &[(t10.event_id.clone(), 1.0)],
    );
    let linear: Vec<_> = touches_before_signup
        .iter()
        .map(|t| (t.event_id.clone(), 1.0 / 9.0))
        .collect();
    assert_weights(&s, AttributionModel::Linear, &linear);

    // The purchase: 10 touches (t11 too), the last one Direct.
    let touches: Vec<&RawEvent> = touches_before_signup
        .iter()
        .copied()
        .chain([&t11])
        .collect();
    for conv in [&download, &purchase, &repeat] {
        let p = got(conv);
        let credits = p.conversion.as_ref().unwrap();
        assert_eq!(credits.touches_to_conversion, 10, "{:?}", conv.event_type);
        let days = (conv.event_time - t1.event_time) as f64 / DAY_MS as f64;
        assert!((credits.days_to_conversion - days).abs() < 1e-9);
        let revenue = conv.revenue.unwrap_or(0) as f64;

        assert_weights(
            &p,
            AttributionModel::FirstTouch,
            &[(t1.event_id.clone(), 1.0)],
        );
        assert_weights(
            &p,
            AttributionModel::LastTouch,
            &[(t11.event_id.clone(), 1.0)],
        );
        // The last touch is Direct: last non-direct is the facebook click before it.
        assert_weights(
            &p,
            AttributionModel::LastNonDirect,
            &[(t10.event_id.clone(), 1.0)],
        );
        let linear: Vec<_> = touches.iter().map(|t| (t.event_id.clone(), 0.1)).collect();
        assert_weights(&p, AttributionModel::Linear, &linear);
        // 40 % first, 40 % last, 20 % shared by the 8 between: 2.5 % each.
        let position: Vec<_> = touches
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let w = if i == 0 || i == 9 { 0.4 } else { 0.2 / 8.0 };
                (t.event_id.clone(), w)
            })
            .collect();
        assert_weights(&p, AttributionModel::PositionBased, &position);
        // Half-life 7 days: weight ∝ 2^(−age/7 d), normalised.
        let raw: Vec<f64> = touches
            .iter()
            .map(|t| (-((conv.event_time - t.event_time) as f64) / (7 * DAY_MS) as f64).exp2())
            .collect();
        let total: f64 = raw.iter().sum();
        let decay: Vec<_> = touches
            .iter()
            .zip(&raw)
            .map(|(t, r)| (t.event_id.clone(), r / total))
            .collect();
        assert_weights(&p, AttributionModel::TimeDecay, &decay);
        let tw = weights(&p, AttributionModel::TimeDecay);
        assert!(
            tw.windows(2).all(|w| w[0].1 < w[1].1),
            "time decay must grow towards the conversion: {tw:?}"
        );
        for model in AttributionModel::ALL {
            let credited: f64 = credits
                .credits
                .iter()
                .filter(|c| c.model == model)
                .map(|c| c.revenue_credit)
                .sum();
            assert!(
                (credited - revenue).abs() < 1e-6,
                "{model:?} credits {credited} of {revenue}"
            );
        }
    }
    let p = got(&purchase);
    let first = p
        .conversion
        .as_ref()
        .unwrap()
        .credits
        .iter()
        .find(|c| c.model == AttributionModel::FirstTouch)
        .unwrap()
        .clone();
    assert_eq!(
        (
            first.source.as_str(),
            first.social_network.as_deref(),
            first.revenue_credit
        ),
        ("x", Some("x"), 4999.0)
    );
    let pos_li = p
        .conversion
        .as_ref()
        .unwrap()
        .credits
        .iter()
        .find(|c| c.model == AttributionModel::PositionBased && c.touch_event_id == t4.event_id)
        .unwrap()
        .clone();
    assert_eq!(
        (pos_li.campaign.as_deref(), pos_li.content.as_deref()),
        (Some("launch"), Some("post-42"))
    );
    assert!((pos_li.revenue_credit - 4999.0 * 0.025).abs() < 1e-9);
    // Every attributed event carries the raw event unchanged.
    for e in &events {
        assert_eq!(&got(e).event, e);
    }
    assert!(enricher.terminate(), "{}", enricher.log_text());
}

/// A deterministic stream for `visitors` visitors, `per_visitor` events each, two hours apart
/// (so each event opens its own session), interleaved across visitors: clicks from five
/// sources, a signup with a user id, downloads, purchases.
fn stream(prefix: &str, visitors: usize, per_visitor: usize, start: i64) -> Vec<RawEvent> {
    let referrers = [
        Some("https://t.co/abc"),
        Some("https://l.facebook.com/l.php?u=x"),
        Some("https://www.google.com/"),
        None,
        Some("https://www.linkedin.com/feed/"),
    ];
    let mut out = Vec::with_capacity(visitors * per_visitor);
    for i in 0..per_visitor {
        for v in 0..visitors {
            let anon = format!("{prefix}-{v}");
            let t = start + (i as i64) * 2 * HOUR_MS + v as i64;
            let e = match (i + v) % 10 {
                3 => {
                    let mut e = conversion(EventType::Signup, &anon, t);
                    e.user_id = Some(format!("user-{anon}"));
                    e
                }
                6 => conversion(EventType::Download, &anon, t),
                9 => conversion(EventType::Purchase, &anon, t),
                k => click(&anon, t, "/", referrers[k % referrers.len()]),
            };
            out.push(e);
        }
    }
    out
}

/// What one uninterrupted run must give for each event of [`stream`], worked out from the
/// input alone: (session number, identity, stage, purchase count, touches before a conversion).
fn expected_state(events: &[RawEvent]) -> HashMap<String, (u64, String, LifecycleStage, i32, i32)> {
    #[derive(Default)]
    struct V {
        events: u64,
        user: Option<String>,
        stage: Option<LifecycleStage>,
        purchases: i32,
        touches: i32,
    }
    let mut visitors: HashMap<&str, V> = HashMap::new();
    let mut out = HashMap::new();
    for e in events {
        let v = visitors.entry(&e.anonymous_id).or_default();
        if let Some(u) = &e.user_id {
            v.user = Some(u.clone());
        }
        match e.event_type {
            EventType::Click => v.touches += 1,
            EventType::Signup | EventType::Download => {
                v.stage = Some(v.stage.unwrap_or(LifecycleStage::Customer));
            }
            EventType::Purchase => {
                v.purchases += 1;
                v.stage = Some(LifecycleStage::Client);
            }
            EventType::Identify | EventType::Custom => {}
        }
        out.insert(
            e.event_id.clone(),
            (
                v.events,
                v.user.clone().unwrap_or_else(|| e.anonymous_id.clone()),
                v.stage.unwrap_or(LifecycleStage::Visitor),
                v.purchases,
                v.touches,
            ),
        );
        v.events += 1;
    }
    out
}

/// Every input event exactly once, and each carries the state one uninterrupted run gives.
fn assert_exactly_once_with_state(
    events: &[RawEvent],
    by_id: &HashMap<String, Vec<AttributedEvent>>,
) {
    let expected = expected_state(events);
    let mut duplicated = Vec::new();
    for e in events {
        match by_id.get(&e.event_id).map(Vec::len) {
            Some(1) => {}
            Some(n) => duplicated.push((e.event_id.clone(), n)),
            None => panic!("event {} was lost", e.event_id),
        }
    }
    assert!(duplicated.is_empty(), "duplicated events: {duplicated:?}");
    assert_eq!(by_id.len(), events.len(), "events nobody produced appeared");
    let mut wrong = Vec::new();
    for e in events {
        let a = &by_id[&e.event_id][0];
        let (session, identity, stage, purchases, touches) = &expected[&e.event_id];
        let got = (
            a.session_id.clone(),
            a.identity_id.clone(),
            a.lifecycle_stage,
            a.purchase_count,
            a.conversion.as_ref().map(|c| c.touches_to_conversion),
        );
        let want = (
            format!("{}:{session}", e.anonymous_id),
            identity.clone(),
            *stage,
            *purchases,
            e.event_type.is_conversion().then_some(*touches),
        );
        if got != want || &a.event != e {
            wrong.push(format!("{}: got {got:?}, want {want:?}", e.event_id));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} events carry state an uninterrupted run would not give, e.g.:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
}

/// SIGKILL three times while the enricher is busy (at least twice verifiably inside a
/// transaction whose records are already on the broker), SIGTERM once (clean exit 0 after the
/// current transaction), restart with the same transactional id and group each time: every raw
/// event is attributed exactly once, and visitor state (sessions, stitching, lifecycle, touch
/// history) is what one uninterrupted run gives.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_inside_transactions_and_sigterm_lose_and_duplicate_nothing() {
    let topics = TestTopics::create(2).await;
    let prefix = unique("crash-");
    let events = stream(&prefix, 50, 40, now_ms() - 10 * DAY_MS);
    produce_raw(&topics.topics.raw, &events).await;
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let (group, tx) = (unique("enricher-"), unique("tx-"));
    let watermarks = Watermarks::new(&topics.topics.attributed, 2);

    let mut grown = 0;
    // Records written but never committed (read_uncommitted minus read_committed): growth after
    // a kill means the kill landed inside an open transaction.
    let mut uncommitted = 0;
    let mut killed_inside = 0;
    // The first two kills wait for a transaction with records on the broker; the third
    // lands wherever the loop happens to be.
    for (round, (grow_by, inside)) in [(200, true), (400, true), (400, false)]
        .into_iter()
        .enumerate()
    {
        let mut enricher = start_enricher(&topics, &group, &tx, 50).await;
        grown = grown.max(watermarks.total()) + grow_by;
        let w = &watermarks;
        tokio::task::block_in_place(|| w.wait_past(grown, inside, &enricher));
        enricher.kill();
        let all = read_uncommitted_all(&topics.topics.attributed).await.len();
        let committed = read_committed_all(&topics.topics.attributed).await.len();
        if all - committed > uncommitted {
            killed_inside += 1;
        }
        eprintln!(
            "crash round {round}: killed with {committed} records committed, {} of an open transaction",
            all - committed - uncommitted
        );
        uncommitted = all - committed;
    }
    assert!(
        killed_inside >= 2,
        "only {killed_inside} SIGKILLs landed inside a transaction: the test proved less than it claims"
    );
    // A graceful stop drains: exit 0.
    let mut enricher = start_enricher(&topics, &group, &tx, 50).await;
    grown = watermarks.total() + 200;
    let w = &watermarks;
    tokio::task::block_in_place(|| w.wait_past(grown, false, &enricher));
    assert!(
        enricher.terminate(),
        "SIGTERM must end in a clean exit; log:\n{}",
        enricher.log_text()
    );
    let committed = attributed_by_id(&topics.topics.attributed).await.len();
    assert!(
        committed < events.len(),
        "the stream should not be done yet"
    );

    let mut enricher = start_enricher(&topics, &group, &tx, 50).await;
    let by_id = wait_attributed(
        &topics.topics.attributed,
        &ids,
        Duration::from_secs(120),
        &[&enricher],
    )
    .await;
    assert!(enricher.terminate(), "{}", enricher.log_text());
    // Read again after the last instance stopped: nothing more may appear.
    let by_id_after = attributed_by_id(&topics.topics.attributed).await;
    assert_eq!(by_id.len(), by_id_after.len());
    assert_exactly_once_with_state(&events, &by_id_after);
}

/// Partitions (and thus visitor state) move between two instances: B joins mid-stream, then A
/// leaves mid-stream and B must restore A's partitions from the changelog. Exactly once, and
/// purchases credited by B include the touches A processed.
#[tokio::test(flavor = "multi_thread")]
async fn rebalance_hands_visitor_state_over_through_the_changelog() {
    let topics = TestTopics::create(4).await;
    let prefix = unique("rebalance-");
    let visitors = 40;
    let start = now_ms() - 10 * DAY_MS;
    // Phase by phase, each event of a visitor 2 h after the last.
    let phase = |from: usize, kinds: &[EventType]| -> Vec<RawEvent> {
        let refs = [
            Some("https://t.co/abc"),
            Some("https://l.facebook.com/l.php?u=x"),
            Some("https://www.google.com/"),
            None,
        ];
        let mut out = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            for v in 0..visitors {
                let anon = format!("{prefix}-{v}");
                let t = start + ((from + i) as i64) * 2 * HOUR_MS + v as i64;
                out.push(match kind {
                    EventType::Click => click(&anon, t, "/", refs[(i + v) % refs.len()]),
                    k => conversion(*k, &anon, t),
                });
            }
        }
        out
    };
    use EventType::{Click, Purchase, Signup};
    let phase1 = phase(0, &[Click, Click, Click, Click]);
    let phase2 = phase(4, &[Click, Click, Signup, Click, Click, Click]);
    let phase3 = phase(10, &[Click, Click, Purchase, Click, Click]);
    let phase4 = phase(15, &[Click, Purchase]);
    let ids = |events: &[RawEvent]| -> Vec<String> {
        events.iter().map(|e| e.event_id.clone()).collect()
    };
    let group = unique("enricher-");
    let attributed = &topics.topics.attributed;

    // Phase 1: A alone.
    let placed = produce_raw(&topics.topics.raw, &phase1).await;
    let partitions: BTreeSet<i32> = placed.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4, "visitors should cover all partitions");
    let mut a = start_enricher(&topics, &group, &unique("tx-a-"), 50).await;
    wait_attributed(attributed, &ids(&phase1), Duration::from_secs(60), &[&a]).await;

    // Phase 2: B joins while A is busy with it.
    produce_raw(&topics.topics.raw, &phase2).await;
    let mut b = start_enricher(&topics, &group, &unique("tx-b-"), 50).await;
    wait_attributed(
        attributed,
        &ids(&phase2),
        Duration::from_secs(90),
        &[&a, &b],
    )
    .await;

    // Phase 3: A leaves while there is work; then phase 4 is B's alone.
    produce_raw(&topics.topics.raw, &phase3).await;
    assert!(a.terminate(), "A must exit cleanly; log:\n{}", a.log_text());
    produce_raw(&topics.topics.raw, &phase4).await;
    let all: Vec<RawEvent> = [phase1.clone(), phase2, phase3, phase4.clone()].concat();
    wait_attributed(attributed, &ids(&all), Duration::from_secs(120), &[&a, &b]).await;
    assert!(b.terminate(), "B must exit cleanly; log:\n{}", b.log_text());

    let by_id = attributed_by_id(attributed).await;
    assert_exactly_once_with_state(&all, &by_id);

    // B restored every partition with A's visitors in it (2 on joining, 2 when A left).
    let restored: BTreeMap<i32, usize> = b
        .log_text()
        .lines()
        .filter(|l| l.contains("state restored") && l.contains("\"device\""))
        .filter_map(|l| Some((field(l, "partition")?, field(l, "states")? as usize)))
        .filter(|(_, visitors)| *visitors > 0)
        .collect();
    assert_eq!(
        restored.keys().copied().collect::<BTreeSet<i32>>(),
        partitions,
        "B should have restored non-empty state for every partition; log:\n{}",
        b.log_text()
    );
    // Reaching the end of a changelog partition is how a restore ends, not an error.
    assert!(
        !b.log_text().contains("PartitionEOF"),
        "a restore logged the end of a partition as an error; log:\n{}",
        b.log_text()
    );
    // Phase 4's purchases (only B was running) are credited to the touches of phase 1 (A's).
    for e in phase4.iter().filter(|e| e.event_type == Purchase) {
        let p = only(&by_id, &e.event_id);
        let first_click = phase1
            .iter()
            .find(|c| c.anonymous_id == e.anonymous_id)
            .unwrap();
        let first = weights(&p, AttributionModel::FirstTouch);
        assert_eq!(first, [(first_click.event_id.clone(), 1.0)]);
        // 4 + 5 + 4 + 1 clicks.
        assert_eq!(p.conversion.as_ref().unwrap().touches_to_conversion, 14);
        assert_eq!(
            (p.purchase_count, p.lifecycle_stage),
            (2, LifecycleStage::Client)
        );
        let linear = weights(&p, AttributionModel::Linear);
        let phase1_ids: BTreeSet<&str> = phase1
            .iter()
            .filter(|c| c.anonymous_id == e.anonymous_id)
            .map(|c| c.event_id.as_str())
            .collect();
        assert_eq!(
            linear
                .iter()
                .filter(|(id, _)| phase1_ids.contains(id.as_str()))
                .count(),
            4
        );
    }
}

/// A zombie: instance A freezes (SIGSTOP) while busy, most likely inside a transaction or its
/// commit; B takes A's partitions once A's session expires and restores their state; then A
/// wakes up (SIGCONT) and carries on with its open transaction. Whatever A still commits,
/// B's restored state and B's starting offsets must agree: exactly once, and the state of an
/// uninterrupted run. Repeated, since the dangerous window (between A's offsets and its
/// commit) is hit only part of the time.
#[tokio::test(flavor = "multi_thread")]
async fn frozen_instance_that_wakes_up_cannot_break_state_or_output() {
    let topics = TestTopics::create(2).await;
    let prefix = unique("zombie-");
    // Per-visitor order is the stream's order, so consecutive chunks keep it.
    let events = stream(&prefix, 100, 40, now_ms() - 10 * DAY_MS);
    let group = unique("enricher-");
    let watermarks = Watermarks::new(&topics.topics.attributed, 2);
    for (round, chunk) in events.chunks(2000).enumerate() {
        produce_raw(&topics.topics.raw, chunk).await;
        let chunk_ids: Vec<String> = chunk.iter().map(|e| e.event_id.clone()).collect();
        let mut a = start_enricher(&topics, &group, &unique("tx-a-"), 50).await;
        let past = watermarks.total() + 300;
        let w = &watermarks;
        tokio::task::block_in_place(|| w.wait_past(past, false, &a));
        a.pause();
        let mut b = start_enricher(&topics, &group, &unique("tx-b-"), 50).await;
        // B owns A's partitions once A's session (10 s) expired and B restored them; when A
        // froze inside a transaction, B first waits for the broker to abort it
        // (transaction.timeout.ms = 60 s), so allow for that.
        let until = Instant::now() + Duration::from_secs(150);
        // The device stage's restore of the raw partitions (the person stage restores its own).
        let restored_devices = |log: String| {
            log.lines()
                .any(|l| l.contains("state restored") && l.contains("\"device\""))
        };
        while !restored_devices(b.log_text()) {
            assert!(
                Instant::now() < until,
                "B never restored state; log:\n{}",
                b.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a.resume();
        eprintln!("zombie round {round}: A woke up after B restored");
        wait_attributed(
            &topics.topics.attributed,
            &chunk_ids,
            Duration::from_secs(180),
            &[&a, &b],
        )
        .await;
        assert!(a.terminate(), "A must exit cleanly; log:\n{}", a.log_text());
        assert!(b.terminate(), "B must exit cleanly; log:\n{}", b.log_text());
    }
    assert_exactly_once_with_state(&events, &attributed_by_id(&topics.topics.attributed).await);
}

/// The zombie race made deterministic: the "previous owner" is this test, holding a transaction
/// open that rewrites a visitor's state in the changelog and carries the group's offsets, while
/// the next enricher takes the partition over. The zombie commits only after the enricher could
/// have restored; the enricher must end up with the zombie's state, not the one before it
/// (its input offsets come after the zombie's batch either way).
#[tokio::test(flavor = "multi_thread")]
async fn restore_waits_for_a_previous_owners_open_transaction() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};

    let topics = TestTopics::create(1).await;
    let v = unique("visitor-");
    let t0 = now_ms() - DAY_MS;
    let before: Vec<RawEvent> = (0..3)
        .map(|i| click(&v, t0 + i * HOUR_MS, "/", Some("https://t.co/abc")))
        .collect();
    produce_raw(&topics.topics.raw, &before).await;
    let group = unique("enricher-");
    let mut a = start_enricher(&topics, &group, &unique("tx-a-"), 50).await;
    let ids: Vec<String> = before.iter().map(|e| e.event_id.clone()).collect();
    wait_attributed(
        &topics.topics.attributed,
        &ids,
        Duration::from_secs(60),
        &[&a],
    )
    .await;
    assert!(a.terminate(), "{}", a.log_text());

    // The zombie: a group member with a transaction that rewrites the device's state (a user
    // it links the device to) and re-commits the group's offset, left open.
    let key = touchstream_model::device_key(touchstream_model::DEFAULT_SITE, &v);
    let state = read_committed_all(&topics.topics.changelog)
        .await
        .into_iter()
        .rev()
        .find(|m| m.key() == Some(key.as_bytes()))
        .and_then(|m| m.payload().map(<[u8]>::to_vec))
        .expect("the device's state in the changelog");
    use enricher::state::Stored;
    let mut state = enricher::device::DeviceState::decode(&state).unwrap();
    state.links.push(enricher::device::DeviceLink {
        user_id: "zombie-user".into(),
        from: t0,
    });
    let state = state.encode().unwrap();
    let (raw, changelog) = (topics.topics.raw.clone(), topics.topics.changelog.clone());
    let zombie_group = group.clone();
    let zombie = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka()
            .consumer("touchstream-tests-zombie", &zombie_group)
            .create()
            .unwrap();
        consumer.subscribe(&[&raw]).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while consumer.assignment().unwrap().count() == 0 {
            assert!(Instant::now() < until, "the zombie never joined the group");
            consumer.poll(Duration::from_millis(100));
        }
        let producer: BaseProducer = kafka()
            .transactional_producer("touchstream-tests-zombie", &unique("tx-zombie-"))
            .create()
            .unwrap();
        producer.init_transactions(Duration::from_secs(30)).unwrap();
        producer.begin_transaction().unwrap();
        producer
            .send(
                BaseRecord::to(&changelog)
                    .key(key.as_bytes())
                    .payload(&state)
                    .partition(0),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&raw, 0, Offset::Offset(3))
            .unwrap();
        producer
            .send_offsets_to_transaction(
                &offsets,
                &consumer.group_metadata().unwrap(),
                Duration::from_secs(30),
            )
            .unwrap();
        // Leave the group with the transaction open.
        consumer.unsubscribe();
        drop(consumer);
        (producer, v)
    })
    .await
    .unwrap();
    let (producer, v) = zombie;

    let after = click(&v, t0 + 5 * HOUR_MS, "/", None);
    produce_raw(&topics.topics.raw, std::slice::from_ref(&after)).await;
    let b = start_enricher(&topics, &group, &unique("tx-b-"), 50).await;
    // Give B every chance to restore (it may not, while the transaction is open).
    let until = Instant::now() + Duration::from_secs(15);
    while !b
        .log_text()
        .lines()
        .any(|l| l.contains("state restored") && l.contains("\"device\""))
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(move || producer.commit_transaction(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    let by_id = wait_attributed(
        &topics.topics.attributed,
        std::slice::from_ref(&after.event_id),
        Duration::from_secs(60),
        &[&b],
    )
    .await;
    let got = only(&by_id, &after.event_id);
    assert_eq!(
        got.identity_id,
        "zombie-user",
        "B attributed from the state before the zombie's committed batch; log:\n{}",
        b.log_text()
    );
    assert_eq!(got.session_id, format!("{v}:3"));
}

/// `key=123` out of a text log line (ANSI colouring stripped).
fn field(line: &str, key: &str) -> Option<i32> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ … m`.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let line = plain.as_str();
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Garbage, a record with the right marker but an unknown schema fingerprint, and a truncated
/// record go to the DLQ with the reason and their source offset; the events around them are
/// attributed, and the visitor's state is untouched by the poison.
#[tokio::test(flavor = "multi_thread")]
async fn poison_records_go_to_the_dlq_and_processing_continues() {
    let topics = TestTopics::create(1).await;
    let v = unique("visitor-");
    let t0 = now_ms() - DAY_MS;
    let c1 = click(&v, t0, "/", Some("https://t.co/abc"));
    let c2 = click(
        &v,
        t0 + HOUR_MS,
        "/",
        Some("https://l.facebook.com/l.php?u=x"),
    );
    let purchase = conversion(EventType::Purchase, &v, t0 + 2 * HOUR_MS);
    let garbage = b"{\"event_type\":\"click\",\"this\":\"is json, not avro\"}".to_vec();
    let mut unknown_schema = vec![0xC3, 0x01, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33];
    unknown_schema.extend_from_slice(&touchstream_avro::encode(&c1).unwrap()[10..]);
    let valid = touchstream_avro::encode(&c2).unwrap();
    let truncated = valid[..valid.len() / 2].to_vec();
    let enc = |e: &RawEvent| touchstream_avro::encode(e).unwrap();
    let records: Vec<(String, Vec<u8>)> = vec![
        (v.clone(), enc(&c1)),
        (v.clone(), garbage.clone()),
        (v.clone(), unknown_schema.clone()),
        (v.clone(), enc(&c2)),
        (v.clone(), truncated.clone()),
        (v.clone(), Vec::new()),
        (v.clone(), enc(&purchase)),
    ];
    let placed = produce_payloads(&topics.topics.raw, &records).await;
    let mut enricher = start_enricher(&topics, &unique("enricher-"), &unique("tx-"), 5000).await;

    let ids = [
        c1.event_id.clone(),
        c2.event_id.clone(),
        purchase.event_id.clone(),
    ];
    let by_id = wait_attributed(
        &topics.topics.attributed,
        &ids,
        Duration::from_secs(60),
        &[&enricher],
    )
    .await;
    assert_eq!(by_id.len(), 3);
    let p = only(&by_id, &purchase.event_id);
    assert_eq!(p.conversion.as_ref().unwrap().touches_to_conversion, 2);
    assert_eq!(p.purchase_count, 1);

    let dlq: Vec<DlqRecord> = read_committed_all(&topics.topics.dlq)
        .await
        .iter()
        .map(|m| touchstream_avro::decode(m.payload().unwrap_or_default()).unwrap())
        .collect();
    let expected = [
        (1, garbage, "c3 01"),
        (2, unknown_schema, "fingerprint deadbeef00112233"),
        (4, truncated, "corrupt"),
        (5, Vec::new(), "too short"),
    ];
    assert_eq!(dlq.len(), expected.len(), "{dlq:#?}");
    for (record, (index, payload, reason)) in dlq.iter().zip(expected) {
        assert_eq!(record.stage, "enricher");
        assert!(
            record.reason.contains(reason),
            "reason {:?} should mention {reason:?}",
            record.reason
        );
        assert_eq!(record.payload, payload);
        assert_eq!(
            record.source_topic.as_deref(),
            Some(topics.topics.raw.as_str())
        );
        assert_eq!(record.source_partition, Some(placed[index].0));
        assert_eq!(record.source_offset, Some(placed[index].1));
        assert!(record.failed_at > 0);
    }
    assert!(enricher.terminate(), "{}", enricher.log_text());
}
