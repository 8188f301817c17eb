//! Property tests: crediting invariants, sessionisation (incremental = whole-history) and
//! classification never panicking.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use touchstream_attribution::{
    AttributionModel, Catalogue, Channel, Classifier, Conversion, CreditConfig, Hit, SessionConfig,
    SessionEvent, SessionState, Sessionizer, Touch, TouchRecord, credit, sessionize,
};

const DAY: i64 = 86_400_000;
const MINUTE: i64 = 60_000;

fn touch(channel_ix: usize, source_ix: usize, campaign: Option<u8>) -> Touch {
    let sources = ["(direct)", "facebook", "google", "linkedin", "newsletter"];
    Touch {
        channel: Channel::ALL[channel_ix % Channel::ALL.len()],
        source: sources[source_ix % sources.len()].to_owned(),
        medium: "referral".to_owned(),
        campaign: campaign.map(|c| format!("c{c}")),
        ..Touch::direct()
    }
}

prop_compose! {
    fn touch_records(max: usize)(raw in prop::collection::vec(
        (0i64..60 * DAY, 0usize..20, 0usize..5, prop::option::of(0u8..3), any::<bool>()), 0..max
    )) -> Vec<TouchRecord> {
        // Internal clicks never become touch records (the caller's job), so a few are left out.
        raw.into_iter().enumerate().filter(|(i, (.., internal))| !(*internal && i % 5 == 0)).map(|(i, (t, ch, src, camp, _))| {
            TouchRecord::new(format!("e{i}"), t, &touch(ch, src, camp))
        }).collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn credits_are_a_distribution_inside_the_window(
        touches in touch_records(40),
        conv_time in 0i64..60 * DAY,
        revenue in 0.0f64..1e7,
        lookback_days in 1i64..40,
        half_life_days in 1i64..14,
        shuffle_seed in any::<u64>(),
    ) {
        let config = CreditConfig { lookback_ms: lookback_days * DAY, time_decay_half_life_ms: half_life_days * DAY, max_touches: 64 };
        let conversion = Conversion { event_id: "conv".into(), time_ms: conv_time, revenue };
        let result = credit(&touches, &conversion, &config);

        for model in AttributionModel::ALL {
            let credits: Vec<_> = result.credits.iter().filter(|c| c.model == model).collect();
            prop_assert!(!credits.is_empty(), "{model} has no credit");
            let sum: f64 = credits.iter().map(|c| c.weight).sum();
            prop_assert!((sum - 1.0).abs() < 1e-9, "{model}: weights sum to {sum}");
            let revenue_sum: f64 = credits.iter().map(|c| c.revenue_credit).sum();
            prop_assert!((revenue_sum - revenue).abs() <= 1e-9 * revenue.max(1.0));
            for c in credits {
                prop_assert!(c.weight >= 0.0);
                prop_assert!(c.touch_time_ms <= conv_time, "credit after the conversion");
                prop_assert!(c.touch_time_ms >= conv_time - config.lookback_ms, "credit outside the lookback");
                if c.touch_event_id != "conv" {
                    prop_assert!(touches.iter().any(|t| t.event_id == c.touch_event_id), "an unknown touch credited");
                }
            }
        }
        let in_window = touches.iter().filter(|t| {
            t.time_ms <= conv_time && t.time_ms >= conv_time - config.lookback_ms
        }).count();
        prop_assert_eq!(result.touches_to_conversion as usize, in_window);
        prop_assert!(result.days_to_conversion >= 0.0 && result.days_to_conversion <= lookback_days as f64);

        // Independent of input order.
        let mut shuffled = touches.clone();
        let mut seed = shuffle_seed | 1;
        for i in (1..shuffled.len()).rev() {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            shuffled.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(credit(&shuffled, &conversion, &config), result);
    }

    #[test]
    fn classify_never_panics(page in ".{0,300}", referrer in prop::option::of(".{0,300}"), ua in prop::option::of(".{0,300}")) {
        let c = classifier();
        let t = c.classify(&Hit { page_url: &page, referrer: referrer.as_deref(), user_agent: ua.as_deref() });
        prop_assert!(!t.source.is_empty() && !t.medium.is_empty());
    }

    #[test]
    fn classify_never_panics_on_url_shaped_input(
        scheme in prop::sample::select(vec!["http://", "https://", "android-app://", "ios-app://", "", "ftp://", "HTTPS://"]),
        host in "[a-zA-Z0-9.\\-_%:@\\[\\]]{0,60}",
        path in "[ -~]{0,80}",
        query in prop::collection::vec(("(utm_source|utm_medium|utm_campaign|gclid|fbclid|ttclid|[a-z]{1,6})", "[ -~]{0,20}"), 0..6),
    ) {
        let c = classifier();
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("{scheme}{host}/{path}?{}", q.join("&"));
        let t = c.classify(&Hit { page_url: &url, referrer: Some(&url), user_agent: Some(&path) });
        prop_assert!(!t.source.is_empty());
        let t2 = c.classify(&Hit { page_url: &url, referrer: Some(&url), user_agent: Some(&path) });
        prop_assert_eq!(t, t2);
    }

    /// Events of one visitor arriving out of order, each at most `max_lateness` behind the
    /// newest event seen, end up in exactly the sessions the whole-history function gives.
    #[test]
    fn incremental_sessions_match_whole_history(
        raw in prop::collection::vec((0i64..240 * MINUTE, 0usize..6, 0i64..20 * MINUTE), 1..60),
    ) {
        let config = SessionConfig { max_lateness_ms: 20 * MINUTE, ..SessionConfig::default() };
        // Campaign sources 0..=2 are Direct, Organic Social/facebook, Organic Search/google …
        let touches: Vec<Option<Touch>> = raw.iter().map(|(_, kind, _)| match kind {
            0 => None,                                   // a conversion
            1 => Some(Touch::direct()),
            2 => Some(touch(9, 1, None)),
            3 => Some(touch(11, 2, None)),
            4 => Some(touch(9, 1, Some(1))),
            _ => Some(Touch { is_internal: true, ..touch(9, 3, None) }),
        }).collect();
        let ids: Vec<String> = (0..raw.len()).map(|i| format!("e{i:03}")).collect();
        let events: Vec<SessionEvent<'_>> = raw.iter().enumerate().map(|(i, (t, _, _))| SessionEvent {
            event_id: &ids[i], time_ms: *t, touch: touches[i].as_ref(),
        }).collect();

        let batch = sessionize(&events, &config);
        let mut batch_of = vec![0usize; events.len()];
        for (s, session) in batch.iter().enumerate() {
            for &i in &session.events { batch_of[i] = s; }
        }

        // Arrival order: event time plus a delay of at most the lateness bound.
        let mut arrival: Vec<usize> = (0..events.len()).collect();
        arrival.sort_by_key(|&i| (raw[i].0 + raw[i].2, i));
        let sessionizer = Sessionizer::new(config);
        let mut state = SessionState::new();
        let mut number_of: HashMap<String, u64> = HashMap::new();
        for &i in &arrival {
            let a = sessionizer.observe(&mut state, events[i]);
            prop_assert!(!a.beyond_lateness && !a.duplicate);
            for r in &a.reassigned {
                prop_assert_eq!(number_of.insert(r.event_id.clone(), r.to_session), Some(r.from_session));
            }
            number_of.insert(ids[i].clone(), a.session_number);
            // Replaying an event changes nothing.
            let again = sessionizer.observe(&mut state, events[i]);
            prop_assert!(again.duplicate || again.beyond_lateness);
        }
        // Same partition: batch session ↔ incremental number is a bijection.
        let mut forward: HashMap<usize, u64> = HashMap::new();
        let mut backward: HashMap<u64, usize> = HashMap::new();
        for i in 0..events.len() {
            let n = number_of[&ids[i]];
            prop_assert_eq!(*forward.entry(batch_of[i]).or_insert(n), n, "event {} split from its session", i);
            prop_assert_eq!(*backward.entry(n).or_insert(batch_of[i]), batch_of[i], "event {} merged into another session", i);
        }
        let retained_bound = state.retained_events();
        prop_assert!(retained_bound <= config.max_retained_events);
    }
}

fn classifier() -> &'static Classifier {
    static C: std::sync::OnceLock<Classifier> = std::sync::OnceLock::new();
    C.get_or_init(|| Classifier::new(Catalogue::builtin().clone(), vec!["example.com".into()]))
}
