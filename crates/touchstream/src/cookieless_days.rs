//! What cookieless mode costs attribution, measured on `touchstream generate`'s traffic with the
//! attribution crate, in process: every visitor is credited twice, once as one person (a stored
//! visitor id) and once with an id that changes at 00:00 UTC (cookieless: a visitor is one
//! person per UTC day). The README's "Consent and cookieless modes" quotes what this prints:
//!
//!   cargo test -p touchstream cookieless_days -- --nocapture

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use touchstream_attribution::{
    AttributionModel, Catalogue, Classifier, Conversion, CreditConfig, Hit, TouchRecord, credit,
};

use crate::generate::{GenerateArgs, traffic};

const DAY_MS: i64 = 86_400_000;

/// One conversion as seen by one way of keying visitors.
struct Credited {
    /// UTC days its credited touches and the conversion itself fall on.
    days: usize,
    /// The channel each model credits (first_touch, last_touch, last_non_direct).
    channels: [String; 3],
    /// Whether no touch was found (credited to the synthetic Direct touch).
    touchless: bool,
}

const MODELS: [AttributionModel; 3] = [
    AttributionModel::FirstTouch,
    AttributionModel::LastTouch,
    AttributionModel::LastNonDirect,
];

struct Measured {
    /// Conversion event id → how it is credited, with stored ids and cookieless.
    stored: BTreeMap<String, Credited>,
    cookieless: BTreeMap<String, Credited>,
    /// Conversion event id → its event type.
    kinds: HashMap<String, String>,
}

fn measure(events: &[Value]) -> Measured {
    let classifier = Classifier::new(Catalogue::builtin().clone(), vec!["shop.example".into()]);
    let config = CreditConfig::default();
    let mut touches: HashMap<(String, i64), Vec<TouchRecord>> = HashMap::new();
    let mut by_visitor: HashMap<String, Vec<TouchRecord>> = HashMap::new();
    let mut conversions = Vec::new();
    let mut kinds = HashMap::new();
    for e in events {
        let (id, kind) = (e["event_id"].as_str(), e["event_type"].as_str());
        let (Some(id), Some(kind)) = (id, kind) else {
            continue;
        };
        let visitor = e["anonymous_id"].as_str().unwrap_or_default().to_string();
        let time = e["occurred_at"].as_i64().unwrap_or_default();
        if kind == "click" {
            let touch = classifier.classify(&Hit {
                page_url: e["page_url"].as_str().unwrap_or_default(),
                referrer: e["referrer"].as_str(),
                user_agent: e["user_agent"].as_str(),
            });
            if touch.opens_touch() && !touch.is_bot {
                let record = TouchRecord::new(id, time, &touch);
                by_visitor
                    .entry(visitor.clone())
                    .or_default()
                    .push(record.clone());
                touches
                    .entry((visitor, time.div_euclid(DAY_MS)))
                    .or_default()
                    .push(record);
            }
        } else {
            let revenue = e["revenue"].as_f64().unwrap_or(0.0);
            kinds.insert(id.to_string(), kind.to_string());
            conversions.push((visitor, id.to_string(), time, revenue));
        }
    }
    let credited = |history: &[TouchRecord], id: &str, time: i64, revenue: f64| {
        let conversion = Conversion {
            event_id: id.to_string(),
            time_ms: time,
            revenue,
        };
        let c = credit(history, &conversion, &config);
        let mut days: BTreeSet<i64> = c
            .credits
            .iter()
            .map(|k| k.touch_time_ms.div_euclid(DAY_MS))
            .collect();
        days.insert(time.div_euclid(DAY_MS));
        let channel = |m: AttributionModel| {
            c.credits
                .iter()
                .find(|k| k.model == m)
                .map(|k| k.channel.to_string())
                .unwrap_or_default()
        };
        Credited {
            days: days.len(),
            channels: MODELS.map(channel),
            touchless: c.touches_to_conversion == 0,
        }
    };
    let mut stored = BTreeMap::new();
    let mut cookieless = BTreeMap::new();
    for (visitor, id, time, revenue) in &conversions {
        let all = by_visitor.get(visitor).map(Vec::as_slice).unwrap_or(&[]);
        stored.insert(id.clone(), credited(all, id, *time, *revenue));
        let today = touches
            .get(&(visitor.clone(), time.div_euclid(DAY_MS)))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        cookieless.insert(id.clone(), credited(today, id, *time, *revenue));
    }
    Measured {
        stored,
        cookieless,
        kinds,
    }
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// Channel → share (%) of `ids` credited to it under model `m` (an index into [`MODELS`]).
fn shares(
    credits: &BTreeMap<String, Credited>,
    ids: &[&String],
    m: usize,
) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in ids {
        *counts.entry(credits[*id].channels[m].clone()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, n)| (k, pct(n, ids.len())))
        .collect()
}

#[test]
fn cookieless_days() {
    // `touchstream generate`'s defaults but for the number of visitors (many, for stable
    // shares); a fixed "now" so the numbers do not depend on the day the test runs.
    let args = GenerateArgs {
        url: String::new(),
        visitors: 20_000,
        batch: 100,
        seed: 7,
        days: 20,
    };
    let now = 1_795_600_800_000;
    let events = traffic(&args, now);
    let m = measure(&events);
    assert_eq!(m.stored.len(), m.cookieless.len());
    let people: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["anonymous_id"].as_str())
        .collect();
    let day_people: BTreeSet<(&str, i64)> = events
        .iter()
        .filter_map(|e| {
            Some((
                e["anonymous_id"].as_str()?,
                e["occurred_at"].as_i64()?.div_euclid(DAY_MS),
            ))
        })
        .collect();
    println!(
        "{} visitors with a stored id are {} cookieless visitors ({:.2} a visitor)",
        people.len(),
        day_people.len(),
        day_people.len() as f64 / people.len() as f64
    );
    assert!(day_people.len() > people.len());

    for (name, pick) in [("conversions", None), ("purchases", Some("purchase"))] {
        let ids: Vec<&String> = m
            .stored
            .keys()
            .filter(|id| pick.is_none_or(|k| m.kinds[*id] == k))
            .collect();
        let n = ids.len();
        assert!(n > 100, "too few {name} to measure: {n}");
        let cross_day = ids.iter().filter(|id| m.stored[**id].days > 1).count();
        let touchless_stored = ids.iter().filter(|id| m.stored[**id].touchless).count();
        let touchless_cookieless = ids.iter().filter(|id| m.cookieless[**id].touchless).count();
        println!(
            "{n} {name} of {} visitors: {:.1}% have touches on more than one UTC day; \
             with no touch found (credited to Direct): {:.1}% with a stored id, {:.1}% cookieless",
            args.visitors,
            pct(cross_day, n),
            pct(touchless_stored, n),
            pct(touchless_cookieless, n),
        );
        for (i, model) in MODELS.iter().enumerate() {
            let changed = ids
                .iter()
                .filter(|id| m.stored[**id].channels[i] != m.cookieless[**id].channels[i])
                .count();
            println!(
                "  {}: {:.1}% of {name} change channel",
                model.as_str(),
                pct(changed, n)
            );
            let (a, b) = (shares(&m.stored, &ids, i), shares(&m.cookieless, &ids, i));
            let channels: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for c in channels {
                let (x, y) = (
                    a.get(c).copied().unwrap_or(0.0),
                    b.get(c).copied().unwrap_or(0.0),
                );
                println!("    {c:<16} {x:5.1}% -> {y:5.1}% cookieless");
            }
        }

        // A journey within one UTC day is the same journey in both modes: same credits.
        for id in &ids {
            let (s, c) = (&m.stored[*id], &m.cookieless[*id]);
            if s.days == 1 {
                assert_eq!(s.channels, c.channels, "{id}: a one-day journey changed");
            }
            assert_eq!(c.days, 1, "{id}: a cookieless journey spans days");
        }
        // Cross-day journeys exist in the generated data, and cookieless mode loses touches:
        // the conversions found without any touch can only grow.
        assert!(cross_day > 0, "no cross-day journey in {n} {name}");
        assert!(touchless_cookieless >= touchless_stored);
        assert!(
            ids.iter()
                .all(|id| !m.stored[*id].touchless || m.cookieless[*id].touchless),
            "a conversion without touches found some in cookieless mode"
        );
        let direct = |credits: &BTreeMap<String, Credited>| {
            shares(credits, &ids, 0)
                .get("Direct")
                .copied()
                .unwrap_or(0.0)
        };
        assert!(
            direct(&m.cookieless) > direct(&m.stored),
            "cookieless mode should credit more {name} to Direct under first_touch"
        );
    }
}
