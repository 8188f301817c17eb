//! The enricher's two pure steps (no I/O: the Kafka loop calls them inside a transaction).
//!
//! - [`Attributor::device_event`]: one raw event and its device's state in. Classifies the hit,
//!   places it in its session, follows who the device belongs to, and either attributes it
//!   (a device that is its own person) or hands it to its user on the person topic.
//! - [`Attributor::person_record`]: one person-topic record and its user's state in: links,
//!   touches, events and conversions of all the user's devices.
//!
//! The rules are in schemas/attribution-rules.md.

use std::collections::HashMap;
use touchstream_attribution::{
    Catalogue, Classifier, CreditConfig, Hit, SessionConfig, SessionEvent, Sessionizer, Touch,
    TouchRecord,
};

use touchstream_model::time::{DAY_MS, MINUTE_MS};
use touchstream_model::{AttributedEvent, EventType, RawEvent, TouchFields};

use crate::config::EnricherConfig;
use crate::device::{DeviceState, LinkChange};
use crate::person::{Emitted, PersonState, Reason, Rules};
use crate::records::{Counts, DeviceEvent, PersonRecord, SessionUpdate};

pub struct Attributor {
    /// The classifier of events of unconfigured sites (the `site_hosts` of the config).
    classifier: Classifier,
    /// One classifier per configured site, with that site's own hosts.
    site_classifiers: HashMap<String, Classifier>,
    sessionizer: Sessionizer,
    /// For a device as its own person: conversions kept within the allowed lateness.
    device_rules: Rules,
    /// For a user: conversions kept whatever their age (up to a count), since another device's
    /// records may arrive long after (a backfill processes partitions at different speeds).
    person_rules: Rules,
    /// How far behind its device's newest event an event may be and still be on time.
    lateness_ms: i64,
}

/// What one raw event produced.
#[derive(Debug, Default)]
pub struct DeviceOutput {
    /// Attributed events of the device as its own person (this event and re-credits).
    pub emitted: Emitted,
    /// Records for users, `(user_id, record)`, in order.
    pub to_persons: Vec<(String, PersonRecord)>,
    /// The event id was already processed (inside the lateness window): nothing was emitted.
    pub duplicate: bool,
    /// The event is later than the allowed lateness.
    pub late: bool,
    /// Earlier events whose session changed and that are not conversions: their rows keep the
    /// session they were written with.
    pub session_changes_kept: usize,
}

impl Attributor {
    pub fn new(cfg: &EnricherConfig) -> anyhow::Result<Self> {
        let catalogue = match &cfg.catalogue_path {
            Some(path) => Catalogue::from_path(path)?,
            None => Catalogue::builtin().clone(),
        };
        let a = &cfg.attribution;
        let lookback_ms = i64::from(a.lookback_days) * DAY_MS;
        let lateness_ms = i64::from(a.allowed_lateness_minutes) * MINUTE_MS;
        let credit = CreditConfig {
            lookback_ms,
            time_decay_half_life_ms: (a.time_decay_half_life_days * DAY_MS as f64) as i64,
            max_touches: a.max_touches_per_visitor,
        };
        let rules = |conversion_horizon_ms| Rules {
            credit,
            lookback_ms,
            conversion_horizon_ms,
            max_conversions: a.max_conversions_per_person,
            max_stored_touches: a.max_touches_per_visitor.saturating_mul(4),
            max_devices: 64,
        };
        let site_classifiers = cfg
            .sites
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    Classifier::new(catalogue.clone(), s.hosts.clone()),
                )
            })
            .collect();
        Ok(Self {
            classifier: Classifier::new(catalogue, cfg.site_hosts.clone()),
            site_classifiers,
            sessionizer: Sessionizer::new(SessionConfig {
                inactivity_ms: i64::from(a.session_timeout_minutes) * MINUTE_MS,
                max_lateness_ms: lateness_ms,
                ..SessionConfig::default()
            }),
            device_rules: rules(Some(lateness_ms)),
            person_rules: rules(None),
            lateness_ms,
        })
    }

    /// One raw event of the device whose state is `d`.
    pub fn device_event(&self, d: &mut DeviceState, raw: RawEvent) -> DeviceOutput {
        let mut out = DeviceOutput::default();
        let t = raw.event_time;
        let classifier = self
            .site_classifiers
            .get(&raw.site_id)
            .unwrap_or(&self.classifier);
        let touch = classifier.classify(&Hit {
            page_url: &raw.page_url,
            referrer: raw.referrer.as_deref(),
            user_agent: raw.user_agent.as_deref(),
        });
        let is_click = raw.event_type == EventType::Click;
        let mut placed = self.sessionizer.observe(
            &mut d.sessions,
            SessionEvent {
                event_id: &raw.event_id,
                time_ms: t,
                touch: is_click.then_some(&touch),
            },
        );
        if placed.duplicate {
            out.duplicate = true;
            return out;
        }
        // On time: no more than the allowed lateness behind the device's newest event so far.
        out.late = placed.beyond_lateness || t < d.max_event_time.saturating_sub(self.lateness_ms);
        d.max_event_time = d.max_event_time.max(t);
        d.own.max_event_time = d.own.max_event_time.max(d.max_event_time);
        let device = raw.anonymous_id.clone();

        // Who the device belongs to: an event carrying a user id may link it, move its first
        // link earlier, or hand a shared device to another user.
        if let Some(user) = raw
            .user_id
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            let user = user.to_owned();
            self.follow_link(d, &device, &user, t, &mut out);
        }

        // Earlier events whose session this one changed: the device's own conversions take the
        // new session now (and are written once, below), users' are told with the record this
        // event sends them; events that are not conversions keep the session they were
        // written with.
        let mut own_updates = Vec::new();
        let mut user_updates: Vec<(String, Vec<SessionUpdate>)> = Vec::new();
        for change in std::mem::take(&mut placed.changed) {
            let update = SessionUpdate {
                session_id: format!("{device}:{}", change.session),
                event_id: change.event_id,
                session: change.session_source,
            };
            match d.person_at(change.time_ms) {
                None => own_updates.push(update),
                Some(user) => match user_updates.iter_mut().find(|(u, _)| u == user) {
                    Some((_, updates)) => updates.push(update),
                    None => user_updates.push((user.to_owned(), vec![update])),
                },
            }
        }
        let noted = d.own.note_sessions(&own_updates);
        out.session_changes_kept += own_updates.len() - noted;
        let mut sessions_for = |user: &str| -> Vec<SessionUpdate> {
            user_updates
                .iter()
                .position(|(u, _)| u == user)
                .map(|i| user_updates.swap_remove(i).1)
                .unwrap_or_default()
        };

        // Bots are flagged, not dropped; they just don't count as touches.
        let opens_touch = is_click && touch.opens_touch() && !touch.is_bot;
        let record = opens_touch.then(|| TouchRecord::new(raw.event_id.clone(), t, &touch));
        let event = DeviceEvent {
            touch: touch_fields(&touch),
            opens_touch,
            session_id: format!("{}:{}", raw.anonymous_id, placed.session_number),
            session: placed.session_source.clone(),
            is_late: out.late,
            raw,
        };
        // The device keeps its touches from before its first sign-in (for its own conversions,
        // all from before too, and for its first user); later ones belong to its users only.
        // A touch later than the lateness re-credits nothing.
        let before_first_link = d.links.first().is_none_or(|l| t < l.from);
        if let (Some(r), true) = (&record, before_first_link) {
            let recredit = !out.late;
            out.emitted.extend(d.own.add_touch(
                &self.device_rules,
                &device,
                &device,
                r.clone(),
                recredit,
            ));
        }
        match d.person_at(t).map(str::to_owned) {
            None => {
                out.emitted
                    .extend(d.own.event(&self.device_rules, &device, &device, event));
                if let (Some(touch), Some(owner)) = (record, d.touch_owner(t).map(str::to_owned)) {
                    let sessions = sessions_for(&owner);
                    out.to_persons.push((
                        owner,
                        PersonRecord::Touch {
                            device: device.clone(),
                            touch,
                            late: out.late,
                            sessions,
                        },
                    ));
                }
            }
            Some(user) => {
                let sessions = sessions_for(&user);
                out.to_persons.push((
                    user,
                    PersonRecord::Event {
                        device: device.clone(),
                        event: Box::new(event),
                        sessions,
                    },
                ));
            }
        }
        out.emitted.extend(d.own.flush(&self.device_rules, &device));
        // Once the first link is further back than the lateness, no conversion of the device as
        // its own person can arrive on time any more: its touches have been handed over.
        if let Some(first) = d.links.first()
            && d.max_event_time.saturating_sub(self.lateness_ms) > first.from
            && d.own.conversions.is_empty()
            && !d.own.touches.is_empty()
        {
            d.own.touches.clear();
        }
        for (user, updates) in user_updates {
            out.to_persons
                .push((user, PersonRecord::Sessions { updates }));
        }
        out
    }

    /// An event of the device carries `user` at `t`.
    fn follow_link(
        &self,
        d: &mut DeviceState,
        device: &str,
        user: &str,
        t: i64,
        out: &mut DeviceOutput,
    ) {
        let had_user = d.had_before(user, t);
        match d.record_link(user, t) {
            LinkChange::None => {}
            LinkChange::First | LinkChange::FirstEarlier { .. } => {
                // Conversions the device credited as its own person that happened at or after
                // the link (they arrived before the sign-in did) belong to the user.
                let moved = d.own.take_conversions_from(t);
                out.to_persons.push((
                    user.to_owned(),
                    PersonRecord::Link {
                        device: device.to_owned(),
                        linked_at: t,
                        touches: d.own.touch_records(),
                        prelink: d.own.counts_before(t),
                    },
                ));
                for conversion in moved {
                    out.to_persons.push((
                        user.to_owned(),
                        PersonRecord::Moved {
                            device: device.to_owned(),
                            conversion: Box::new(conversion),
                        },
                    ));
                }
            }
            LinkChange::Switch => {
                // A shared device: the new user inherits nothing the device did before.
                if !had_user {
                    out.to_persons.push((
                        user.to_owned(),
                        PersonRecord::Link {
                            device: device.to_owned(),
                            linked_at: t,
                            touches: Vec::new(),
                            prelink: Counts::default(),
                        },
                    ));
                }
            }
        }
    }

    /// One record of the person topic for the user whose state is `p`. Also returns how many of
    /// the session changes it carried were not conversions (their rows keep their session).
    pub fn person_record(
        &self,
        p: &mut PersonState,
        user: &str,
        record: PersonRecord,
    ) -> (Emitted, usize) {
        let rules = &self.person_rules;
        let mut kept = 0;
        let mut note = |p: &mut PersonState, sessions: &[SessionUpdate]| {
            kept += sessions.len() - p.note_sessions(sessions);
        };
        let mut emitted = match record {
            PersonRecord::Link {
                device,
                linked_at,
                touches,
                prelink,
            } => p.link(rules, user, &device, linked_at, touches, prelink),
            PersonRecord::Event {
                device,
                event,
                sessions,
            } => {
                note(p, &sessions);
                p.event(rules, user, &device, *event)
            }
            PersonRecord::Touch {
                device,
                touch,
                late,
                sessions,
            } => {
                note(p, &sessions);
                p.add_touch(rules, user, &device, touch, !late)
            }
            PersonRecord::Moved { device, conversion } => {
                p.adopt(rules, user, &device, *conversion)
            }
            PersonRecord::Sessions { updates } => {
                note(p, &updates);
                Emitted::default()
            }
            // Erasures change several states at once: the processor handles them.
            PersonRecord::Forget { .. } => Emitted::default(),
        };
        emitted.extend(p.flush(rules, user));
        (emitted, kept)
    }
}

/// Counts the conversions an emission credited (for the conversions metric): new ones only.
pub fn new_conversions(emitted: &Emitted) -> impl Iterator<Item = &AttributedEvent> {
    emitted
        .events
        .iter()
        .filter(|e| e.conversion.is_some() && e.revision == 0)
}

/// Whether a re-credit reason is worth its own label.
pub fn is_recredit(reason: Reason) -> bool {
    reason != Reason::New
}

fn touch_fields(t: &Touch) -> TouchFields {
    TouchFields {
        channel: t.channel.as_str().to_string(),
        source: t.source.clone(),
        medium: t.medium.clone(),
        campaign: t.campaign.clone(),
        content: t.content.clone(),
        term: t.term.clone(),
        campaign_id: t.campaign_id.clone(),
        click_id_kind: t.click_id_kind.clone(),
        social_network: t.social_network.clone(),
        is_internal: t.is_internal,
        is_bot: t.is_bot,
        is_spam_referrer: t.is_spam_referrer,
    }
}

#[cfg(test)]
mod tests {
    //! The two stages wired together in memory (the Kafka loop's routing, without Kafka), on
    //! journeys worked out by hand from the rules.
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, HashMap, VecDeque};

    use touchstream_model::{AttributionModel, LifecycleStage};

    use super::*;

    const T0: i64 = 1_795_600_000_000;
    const MIN: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MIN;

    /// Devices and users in memory; person records are delivered in order, each right after
    /// the raw event that produced it (the way one partition delivers them).
    struct Sim {
        a: Attributor,
        devices: HashMap<String, DeviceState>,
        persons: HashMap<String, PersonState>,
        /// The latest revision of every event, as ClickHouse's FINAL reads it.
        latest: BTreeMap<String, AttributedEvent>,
        /// Every credit row ever written, by (conversion, model, touch): the latest revision.
        credits: BTreeMap<(String, AttributionModel, String), (i32, f64, bool)>,
        written: usize,
    }

    impl Sim {
        fn new() -> Self {
            let cfg = EnricherConfig {
                site_hosts: vec!["shop.example".into()],
                ..EnricherConfig::default()
            };
            Sim {
                a: Attributor::new(&cfg).unwrap(),
                devices: HashMap::new(),
                persons: HashMap::new(),
                latest: BTreeMap::new(),
                credits: BTreeMap::new(),
                written: 0,
            }
        }

        fn write(&mut self, emitted: Emitted) {
            for e in emitted.events {
                self.written += 1;
                if let Some(c) = &e.conversion {
                    for k in &c.credits {
                        let key = (e.event.event_id.clone(), k.model, k.touch_event_id.clone());
                        let row = (e.revision, k.weight, k.retracted);
                        let slot = self.credits.entry(key).or_insert(row);
                        if e.revision >= slot.0 {
                            *slot = row;
                        }
                    }
                }
                let id = e.event.event_id.clone();
                match self.latest.get(&id) {
                    Some(old) if old.revision > e.revision => {}
                    _ => {
                        self.latest.insert(id, e);
                    }
                }
            }
        }

        fn send(&mut self, raw: RawEvent) {
            let key = raw.device_key();
            let d = self.devices.entry(key).or_default();
            let out = self.a.device_event(d, raw);
            self.write(out.emitted);
            let mut queue: VecDeque<_> = out.to_persons.into();
            while let Some((user, record)) = queue.pop_front() {
                let p = self.persons.entry(user.clone()).or_default();
                let (emitted, _) = self.a.person_record(p, &user, record);
                self.write(emitted);
            }
        }

        /// Live credits of a conversion under a model: touch id → weight.
        fn credits(&self, conversion: &str, model: AttributionModel) -> BTreeMap<String, f64> {
            self.credits
                .iter()
                .filter(|((c, m, _), (_, _, retracted))| {
                    c == conversion && *m == model && !retracted
                })
                .map(|((_, _, t), (_, w, _))| (t.clone(), *w))
                .collect()
        }

        fn row(&self, id: &str) -> &AttributedEvent {
            &self.latest[id]
        }
    }

    fn click(id: &str, device: &str, t: i64, referrer: &str) -> RawEvent {
        RawEvent {
            referrer: Some(referrer.into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0".into()),
            ..RawEvent::new(id, EventType::Click, device, t, "https://shop.example/")
        }
    }

    fn purchase(id: &str, device: &str, t: i64, user: Option<&str>) -> RawEvent {
        RawEvent {
            user_id: user.map(Into::into),
            order_id: Some(format!("o-{id}")),
            revenue: Some(1000),
            currency: Some("EUR".into()),
            ..RawEvent::new(
                id,
                EventType::Purchase,
                device,
                t,
                "https://shop.example/thanks",
            )
        }
    }

    fn identify(id: &str, device: &str, t: i64, user: &str) -> RawEvent {
        RawEvent {
            user_id: Some(user.into()),
            ..RawEvent::new(id, EventType::Identify, device, t, "")
        }
    }

    fn ids(m: &BTreeMap<String, f64>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    const LINKEDIN: &str = "https://www.linkedin.com/";
    const GOOGLE: &str = "https://www.google.com/";
    const FACEBOOK: &str = "https://l.facebook.com/";

    #[test]
    fn a_purchase_on_the_phone_credits_the_desktop_touches_before_the_sign_in() {
        let mut s = Sim::new();
        s.send(click("d1", "desktop", T0, LINKEDIN));
        s.send(click("d2", "desktop", T0 + DAY, GOOGLE));
        s.send(identify("d3", "desktop", T0 + DAY + MIN, "u"));
        s.send(click("p1", "phone", T0 + 2 * DAY, FACEBOOK));
        s.send(purchase("p2", "phone", T0 + 2 * DAY + MIN, Some("u")));
        let linear = s.credits("p2", AttributionModel::Linear);
        assert_eq!(ids(&linear), ["d1", "d2", "p1"]);
        assert!(linear.values().all(|w| (w - 1.0 / 3.0).abs() < 1e-12));
        assert_eq!(ids(&s.credits("p2", AttributionModel::FirstTouch)), ["d1"]);
        let p2 = s.row("p2");
        assert_eq!(p2.identity_id, "u");
        assert_eq!(p2.revision, 0);
        let c = p2.conversion.as_ref().unwrap();
        assert_eq!(c.touches_to_conversion, 3);
        assert!((c.days_to_conversion - (2.0 + 1.0 / 1440.0)).abs() < 1e-9);
        assert_eq!(
            (p2.lifecycle_stage, p2.purchase_count),
            (LifecycleStage::Client, 1)
        );
        // The desktop's clicks before its sign-in are written as the desktop's own.
        assert_eq!(s.row("d1").identity_id, "desktop");
        assert_eq!(s.row("p1").identity_id, "phone");
    }

    #[test]
    fn a_device_linked_after_a_conversion_does_not_change_it() {
        let mut s = Sim::new();
        s.send(click("d1", "desktop", T0, LINKEDIN));
        s.send(click("p1", "phone", T0 + DAY, FACEBOOK));
        s.send(purchase("p2", "phone", T0 + DAY + MIN, Some("u")));
        // The desktop signs in a day after the purchase: a later purchase counts its touches,
        // the first one stays as it was.
        s.send(identify("d2", "desktop", T0 + 2 * DAY, "u"));
        s.send(purchase("p3", "phone", T0 + 3 * DAY, None));
        assert_eq!(ids(&s.credits("p2", AttributionModel::Linear)), ["p1"]);
        assert_eq!(s.row("p2").revision, 0);
        assert_eq!(
            ids(&s.credits("p3", AttributionModel::Linear)),
            ["d1", "p1"]
        );
        assert_eq!(s.row("p3").purchase_count, 2);
    }

    #[test]
    fn a_late_landing_touch_re_credits_its_conversion_and_retracts_the_old_credit() {
        let mut s = Sim::new();
        s.send(click("a", "v", T0, GOOGLE));
        // The purchase arrives before the LinkedIn click that led to it.
        s.send(purchase("buy", "v", T0 + 20 * MIN, None));
        assert_eq!(ids(&s.credits("buy", AttributionModel::LastTouch)), ["a"]);
        s.send(click("late", "v", T0 + 15 * MIN, LINKEDIN));
        let row = s.row("buy");
        assert_eq!(row.revision, 1);
        assert_eq!(
            ids(&s.credits("buy", AttributionModel::LastTouch)),
            ["late"]
        );
        assert_eq!(
            ids(&s.credits("buy", AttributionModel::Linear)),
            ["a", "late"]
        );
        // The retracted row stands for the old last touch.
        let old = &s.credits[&(
            "buy".to_string(),
            AttributionModel::LastTouch,
            "a".to_string(),
        )];
        assert_eq!(*old, (1, 0.0, true));
        assert_eq!(row.conversion.as_ref().unwrap().touches_to_conversion, 2);
        // The purchase's session now starts with the late LinkedIn touch.
        assert_eq!(row.session.source, "linkedin");
    }

    #[test]
    fn a_late_conversion_credits_only_earlier_touches_and_moves_the_later_purchase_count() {
        let mut s = Sim::new();
        s.send(click("a", "v", T0, GOOGLE));
        s.send(click("b", "v", T0 + 10 * MIN, LINKEDIN));
        s.send(purchase("second", "v", T0 + 12 * MIN, None));
        assert_eq!(s.row("second").purchase_count, 1);
        // A purchase made at minute 5 arrives last.
        s.send(purchase("first", "v", T0 + 5 * MIN, None));
        assert_eq!(ids(&s.credits("first", AttributionModel::Linear)), ["a"]);
        assert_eq!(s.row("first").purchase_count, 1);
        let second = s.row("second");
        assert_eq!((second.purchase_count, second.revision), (2, 1));
        assert_eq!(
            ids(&s.credits("second", AttributionModel::Linear)),
            ["a", "b"]
        );
    }

    #[test]
    fn a_late_sign_in_moves_the_conversions_after_it_to_the_user() {
        let mut s = Sim::new();
        s.send(click("w1", "work", T0, GOOGLE));
        s.send(identify("w2", "work", T0 + MIN, "u"));
        s.send(click("h1", "home", T0 + 2 * MIN, LINKEDIN));
        s.send(purchase("h3", "home", T0 + 10 * MIN, None));
        assert_eq!(s.row("h3").identity_id, "home");
        // The home device's sign-in at minute 5 arrives after the purchase.
        s.send(identify("h2", "home", T0 + 5 * MIN, "u"));
        let h3 = s.row("h3");
        assert_eq!((h3.identity_id.as_str(), h3.revision), ("u", 1));
        assert_eq!(
            ids(&s.credits("h3", AttributionModel::Linear)),
            ["h1", "w1"]
        );
    }

    #[test]
    fn a_shared_device_hands_over_at_the_second_sign_in_and_the_new_user_inherits_nothing() {
        let mut s = Sim::new();
        s.send(click("t1", "family", T0, GOOGLE));
        s.send(identify("t2", "family", T0 + MIN, "alice"));
        s.send(click("t3", "family", T0 + DAY, LINKEDIN));
        s.send(identify("t4", "family", T0 + DAY + MIN, "bob"));
        s.send(click("t5", "family", T0 + DAY + 2 * MIN, FACEBOOK));
        s.send(purchase("t6", "family", T0 + DAY + 3 * MIN, None));
        assert_eq!(s.row("t6").identity_id, "bob");
        assert_eq!(ids(&s.credits("t6", AttributionModel::Linear)), ["t5"]);
        s.send(purchase("t7", "family", T0 + 2 * DAY, Some("alice")));
        assert_eq!(s.row("t7").identity_id, "alice");
        assert_eq!(
            ids(&s.credits("t7", AttributionModel::Linear)),
            ["t1", "t3"]
        );
        assert_eq!(s.row("t7").purchase_count, 1);
    }

    #[test]
    fn a_touch_later_than_the_allowed_lateness_is_flagged_and_only_counts_from_then_on() {
        let mut s = Sim::new();
        s.send(click("a", "v", T0, GOOGLE));
        s.send(purchase("p1", "v", T0 + 120 * MIN, None));
        s.send(click("b", "v", T0 + 180 * MIN, FACEBOOK));
        // Two hours behind the device's newest event: beyond the 60 minutes allowed.
        s.send(click("late", "v", T0 + 60 * MIN, LINKEDIN));
        assert!(s.row("late").is_late);
        assert!(!s.row("b").is_late);
        assert_eq!(s.row("p1").revision, 0, "not re-credited");
        assert_eq!(ids(&s.credits("p1", AttributionModel::Linear)), ["a"]);
        s.send(purchase("p2", "v", T0 + 240 * MIN, None));
        assert_eq!(
            ids(&s.credits("p2", AttributionModel::Linear)),
            ["a", "b", "late"]
        );
    }

    #[test]
    fn a_conversion_without_touches_gets_the_synthetic_direct_touch_until_one_arrives() {
        let mut s = Sim::new();
        s.send(purchase("buy", "v", T0, None));
        let direct = s.credits("buy", AttributionModel::Linear);
        assert_eq!(ids(&direct), ["buy"]);
        s.send(click("late", "v", T0 - 5 * MIN, LINKEDIN));
        assert_eq!(ids(&s.credits("buy", AttributionModel::Linear)), ["late"]);
        let synthetic = &s.credits[&(
            "buy".to_string(),
            AttributionModel::Linear,
            "buy".to_string(),
        )];
        assert!(synthetic.2, "the synthetic credit is retracted");
        // Replaying an event changes nothing.
        let before = s.written;
        s.send(click("late", "v", T0 - 5 * MIN, LINKEDIN));
        assert_eq!(s.written, before);
    }

    #[test]
    fn each_site_classifies_with_its_own_hosts() {
        let cfg = EnricherConfig {
            site_hosts: vec!["shop.example".into()],
            sites: vec![touchstream_model::SiteConfig {
                id: "blog".into(),
                hosts: vec!["blog.example".into()],
                ..touchstream_model::SiteConfig::default()
            }],
            ..EnricherConfig::default()
        };
        let a = Attributor::new(&cfg).unwrap();
        let hit = |site: &str, id: &str, referrer: &str| {
            let mut d = DeviceState::default();
            let raw = RawEvent {
                site_id: site.into(),
                ..click(id, "v", T0, referrer)
            };
            a.device_event(&mut d, raw).emitted.events[0].clone()
        };
        // A referrer on the blog is internal on the blog and a referral on the shop.
        let on_blog = hit("blog", "b1", "https://www.blog.example/post");
        assert!(on_blog.touch.is_internal && !on_blog.opens_touch);
        let on_shop = hit("default", "s1", "https://www.blog.example/post");
        assert!(!on_shop.touch.is_internal && on_shop.opens_touch);
        // The shop's hosts belong to the default site only.
        let shop_on_default = hit("default", "s2", "https://shop.example/a");
        assert!(shop_on_default.touch.is_internal);
        let shop_on_blog = hit("blog", "b2", "https://shop.example/a");
        assert!(!shop_on_blog.touch.is_internal);
    }
}
