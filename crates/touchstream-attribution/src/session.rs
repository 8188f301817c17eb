//! Sessionisation (GA's rule): a visitor's session ends after 30 minutes without events, and a
//! click arriving through a different campaign source starts a new one. A Direct (or internal)
//! click never starts a session by itself inside the inactivity window.
//!
//! Sessions are always computed over the event-time order of the history, never arrival order:
//! [`sessionize`] does it for a whole history, [`Sessionizer`] incrementally for a streaming
//! enricher, keeping a [`SessionState`] per visitor that holds the events still within the
//! allowed lateness so that a late event is placed by its event time.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use touchstream_model::SessionSource;

use crate::channel::Channel;
use crate::classify::Touch;

/// What "the campaign source changed" compares: source, medium and campaign of a touch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CampaignKey {
    pub source: String,
    pub medium: String,
    pub campaign: Option<String>,
}

impl CampaignKey {
    /// The campaign a touch brings, if it can start a session: a click that is not internal and
    /// not Direct.
    pub fn of(touch: &Touch) -> Option<CampaignKey> {
        (touch.opens_touch() && touch.channel != Channel::Direct).then(|| CampaignKey {
            source: touch.source.clone(),
            medium: touch.medium.clone(),
            campaign: touch.campaign.clone(),
        })
    }
}

/// One event of a visitor. `touch` is the classified touch for `click` events and `None` for
/// the other types (they extend a session but never change its campaign or give it a source).
/// A touch that is internal navigation or a bot neither starts a campaign session nor gives a
/// session its source.
#[derive(Clone, Copy, Debug)]
pub struct SessionEvent<'a> {
    pub event_id: &'a str,
    pub time_ms: i64,
    pub touch: Option<&'a Touch>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// GA: 30 minutes.
    pub inactivity_ms: i64,
    /// How late (behind the newest event time seen for the visitor) an event may arrive and
    /// still be placed exactly. Later events are still assigned, best effort, and flagged.
    pub max_lateness_ms: i64,
    /// Bound on the events a [`SessionState`] keeps, whatever the lateness window.
    pub max_retained_events: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            inactivity_ms: 30 * 60 * 1000,
            max_lateness_ms: 30 * 60 * 1000,
            max_retained_events: 1024,
        }
    }
}

/// One session of a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Indices into the input slice, in event-time order.
    pub events: Vec<usize>,
    /// The campaign the session started with (None: started Direct or by a conversion).
    pub campaign: Option<CampaignKey>,
}

/// Splits one visitor's history (any order) into sessions, ordered by start time. Events are
/// ordered by (time, event id).
pub fn sessionize(events: &[SessionEvent<'_>], config: &SessionConfig) -> Vec<Session> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| event_order(&events[a], &events[b]));
    let mut sessions: Vec<Session> = Vec::new();
    let mut current_campaign: Option<CampaignKey> = None;
    let mut last_ms: Option<i64> = None;
    for i in order {
        let e = &events[i];
        let campaign = e.touch.and_then(CampaignKey::of);
        if starts_session(
            last_ms,
            current_campaign.as_ref(),
            e.time_ms,
            campaign.as_ref(),
            config,
        ) {
            current_campaign = campaign.clone();
            sessions.push(Session {
                start_ms: e.time_ms,
                end_ms: e.time_ms,
                events: Vec::new(),
                campaign,
            });
        }
        if let Some(s) = sessions.last_mut() {
            s.end_ms = e.time_ms;
            s.events.push(i);
        }
        last_ms = Some(e.time_ms);
    }
    sessions
}

fn event_order(a: &SessionEvent<'_>, b: &SessionEvent<'_>) -> std::cmp::Ordering {
    a.time_ms
        .cmp(&b.time_ms)
        .then_with(|| a.event_id.cmp(b.event_id))
}

/// GA's rule: a gap longer than the inactivity timeout, or a campaign that differs from the
/// session's (a session that started Direct changes campaign on its first campaign click).
fn starts_session(
    last_ms: Option<i64>,
    session_campaign: Option<&CampaignKey>,
    time_ms: i64,
    campaign: Option<&CampaignKey>,
    config: &SessionConfig,
) -> bool {
    let Some(last_ms) = last_ms else {
        return true;
    };
    time_ms.saturating_sub(last_ms) > config.inactivity_ms
        || campaign.is_some_and(|c| Some(c) != session_campaign)
}

/// A visitor's sessionisation state: the events still inside the lateness window, in event-time
/// order, and what the last forgotten event said. Serialisable so the enricher can checkpoint it
/// (e.g. in its compacted changelog) with the rest of the visitor's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    next_session: u64,
    /// Newest event time seen.
    watermark_ms: Option<i64>,
    /// In (time, event id) order.
    retained: Vec<RetainedEvent>,
    /// The newest event that was let go: everything before it is final.
    anchor: Option<RetainedEvent>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RetainedEvent {
    event_id: String,
    time_ms: i64,
    campaign: Option<CampaignKey>,
    /// The event's own classification when it is a touch (what its session would take as its
    /// source, were it first).
    source: Option<Arc<SessionSource>>,
    session: u64,
    /// The campaign of the event's session as of this event.
    session_campaign: Option<CampaignKey>,
    /// The source of the event's session: its first event's when that is a touch, else Direct.
    /// Shared by the events of one session (a clone is a reference count).
    session_source: Arc<SessionSource>,
}

/// The source of a session that did not start with a touch.
fn direct() -> Arc<SessionSource> {
    static DIRECT: LazyLock<Arc<SessionSource>> =
        LazyLock::new(|| Arc::new(SessionSource::default()));
    DIRECT.clone()
}

/// The source a touch gives the session it opens.
pub fn source_of(touch: &Touch) -> SessionSource {
    SessionSource {
        channel: touch.channel.as_str().to_owned(),
        source: touch.source.clone(),
        medium: touch.medium.clone(),
        campaign: touch.campaign.clone(),
        content: touch.content.clone(),
        social_network: touch.social_network.clone(),
    }
}

fn own_source(touch: Option<&Touch>) -> Option<Arc<SessionSource>> {
    touch
        .filter(|t| t.opens_touch() && !t.is_bot)
        .map(|t| Arc::new(source_of(t)))
}

impl SessionState {
    pub fn new() -> Self {
        SessionState::default()
    }

    /// A state with nothing retained whose next session number is `next_session` (to carry a
    /// visitor's numbering over from a state this version cannot read in full).
    pub fn resuming(next_session: u64) -> Self {
        SessionState {
            next_session,
            ..SessionState::default()
        }
    }

    /// How many events the state currently holds (bounded by the lateness window and
    /// [`SessionConfig::max_retained_events`]).
    pub fn retained_events(&self) -> usize {
        self.retained.len()
    }
}

/// Where an observed event went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAssignment {
    /// The visitor-local session number (0, 1, 2 … in order of creation); a session id is
    /// e.g. `"{anonymous_id}:{session_number}"`.
    pub session_number: u64,
    /// This event is the first of its session (in event time) as things stand now.
    pub starts_session: bool,
    /// The event sorts before every event the state still holds (it let them go because they
    /// were more than `max_lateness_ms` behind the newest event): it was assigned next to the
    /// oldest event still known, best effort, and not retained. Events within the lateness bound
    /// never get here.
    pub beyond_lateness: bool,
    /// The event id was already observed; the assignment is the current one and nothing changed.
    pub duplicate: bool,
    /// Earlier events whose session changed because this one arrived late (it split a session
    /// with a new campaign, or bridged two sessions). Empty for in-order streams.
    pub reassigned: Vec<Reassignment>,
    /// The source of this event's session (the touch that opened it, or Direct).
    pub session_source: SessionSource,
    /// Earlier events whose session number or session source changed because of this one
    /// (a superset of `reassigned`: a late landing touch gives the events after it a source).
    pub changed: Vec<SessionChange>,
}

/// An earlier event's session, as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionChange {
    pub event_id: String,
    pub time_ms: i64,
    pub session: u64,
    pub session_source: SessionSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassignment {
    pub event_id: String,
    pub from_session: u64,
    pub to_session: u64,
}

/// Incremental sessionisation: stateless itself (holds only the configuration), it updates a
/// visitor's [`SessionState`] one event at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessionizer {
    pub config: SessionConfig,
}

impl Sessionizer {
    pub fn new(config: SessionConfig) -> Self {
        Sessionizer { config }
    }

    /// Places one event of the visitor by its event time. For events within the lateness bound
    /// the sessions of the retained events are exactly those [`sessionize`] gives for the whole
    /// history (session numbers aside); the events it renumbers are listed in the result.
    pub fn observe(&self, state: &mut SessionState, event: SessionEvent<'_>) -> SessionAssignment {
        let config = &self.config;
        if let Some(found) = state.retained.iter().find(|r| r.event_id == event.event_id) {
            return SessionAssignment {
                session_number: found.session,
                starts_session: false,
                beyond_lateness: false,
                duplicate: true,
                reassigned: Vec::new(),
                session_source: (*found.session_source).clone(),
                changed: Vec::new(),
            };
        }
        let campaign = event.touch.filter(|t| !t.is_bot).and_then(CampaignKey::of);
        let source = own_source(event.touch);
        if let Some(anchor) = &state.anchor {
            let key = (event.time_ms, event.event_id);
            if key <= (anchor.time_ms, anchor.event_id.as_str()) {
                return beyond_lateness(state, event.time_ms, campaign, source, config);
            }
        }
        state.watermark_ms = Some(
            state
                .watermark_ms
                .map_or(event.time_ms, |w| w.max(event.time_ms)),
        );

        let position = state.retained.partition_point(|r| {
            (r.time_ms, r.event_id.as_str()) < (event.time_ms, event.event_id)
        });
        state.retained.insert(
            position,
            RetainedEvent {
                event_id: event.event_id.to_owned(),
                time_ms: event.time_ms,
                campaign,
                source,
                session: u64::MAX,
                session_campaign: None,
                session_source: direct(),
            },
        );
        let (reassigned, changed) = if position + 1 == state.retained.len() {
            // The common case, an event newer than every other: nothing before it can change,
            // so only its own session is decided (what `renumber` would give it).
            append(state, position, config);
            (Vec::new(), Vec::new())
        } else {
            renumber(state, position, config)
        };
        let placed = &state.retained[position];
        let starts_session = position
            .checked_sub(1)
            .map(|p| state.retained[p].session)
            .or(state.anchor.as_ref().map(|a| a.session))
            != Some(placed.session);
        let session_number = placed.session;
        let session_source = (*placed.session_source).clone();
        forget_settled(state, config);
        SessionAssignment {
            session_number,
            starts_session,
            beyond_lateness: false,
            duplicate: false,
            reassigned,
            session_source,
            changed,
        }
    }
}

/// Places the newest event, at `at` (the end): it continues the session of the event before it
/// (or of the anchor) unless GA's rule starts a new one, which takes the next number.
fn append(state: &mut SessionState, at: usize, config: &SessionConfig) {
    let (previous_time, previous) = match at.checked_sub(1) {
        Some(p) => {
            let r = &state.retained[p];
            (
                Some(r.time_ms),
                Some((r.session, &r.session_campaign, &r.session_source)),
            )
        }
        None => match &state.anchor {
            Some(a) => (
                Some(a.time_ms),
                Some((a.session, &a.session_campaign, &a.session_source)),
            ),
            None => (None, None),
        },
    };
    let event = &state.retained[at];
    let starts = starts_session(
        previous_time,
        previous.and_then(|(_, c, _)| c.as_ref()),
        event.time_ms,
        event.campaign.as_ref(),
        config,
    );
    let (session, campaign, source) = match previous {
        Some((n, c, s)) if !starts => (n, c.clone(), s.clone()),
        _ => {
            let n = state.next_session;
            state.next_session += 1;
            (
                n,
                event.campaign.clone(),
                event.source.clone().unwrap_or_else(direct),
            )
        }
    };
    let event = &mut state.retained[at];
    event.session = session;
    event.session_campaign = campaign;
    event.session_source = source;
}

/// Re-runs GA's rule over the retained events (starting from the anchor's context) and keeps the
/// existing session numbers wherever the grouping allows. Returns the events other than the
/// inserted one whose session number changed, and those whose number or source changed.
fn renumber(
    state: &mut SessionState,
    inserted: usize,
    config: &SessionConfig,
) -> (Vec<Reassignment>, Vec<SessionChange>) {
    let anchor_session = state.anchor.as_ref().map(|a| a.session);
    let mut last_ms = state.anchor.as_ref().map(|a| a.time_ms);
    let mut session_campaign = state
        .anchor
        .as_ref()
        .and_then(|a| a.session_campaign.clone());
    // `None`: the event continues the anchor's session; `Some(g)`: the g-th session that starts
    // among the retained events.
    let mut session_source = state
        .anchor
        .as_ref()
        .map_or_else(direct, |a| a.session_source.clone());
    let mut groups: Vec<Option<usize>> = Vec::with_capacity(state.retained.len());
    let mut campaigns = Vec::with_capacity(state.retained.len());
    let mut sources = Vec::with_capacity(state.retained.len());
    let mut group_count = 0usize;
    let mut current: Option<usize> = None;
    for r in &state.retained {
        if starts_session(
            last_ms,
            session_campaign.as_ref(),
            r.time_ms,
            r.campaign.as_ref(),
            config,
        ) {
            current = Some(group_count);
            group_count += 1;
            session_campaign = r.campaign.clone();
            session_source = r.source.clone().unwrap_or_else(direct);
        }
        groups.push(current);
        campaigns.push(session_campaign.clone());
        sources.push(session_source.clone());
        last_ms = Some(r.time_ms);
    }
    // A new group keeps the old number of its earliest member whose number is still free.
    let mut numbers: Vec<Option<u64>> = vec![None; group_count];
    for (i, r) in state.retained.iter().enumerate() {
        let Some(g) = groups[i] else { continue };
        if i == inserted || numbers[g].is_some() || Some(r.session) == anchor_session {
            continue;
        }
        if !numbers.contains(&Some(r.session)) {
            numbers[g] = Some(r.session);
        }
    }
    let mut reassigned = Vec::new();
    let mut changed = Vec::new();
    for (i, (r, source)) in state.retained.iter_mut().zip(sources).enumerate() {
        let number = match (groups[i], anchor_session) {
            (Some(g), _) => *numbers[g].get_or_insert_with(|| {
                let n = state.next_session;
                state.next_session += 1;
                n
            }),
            (None, Some(a)) => a,
            // Unreachable: without an anchor the first event always starts a session.
            (None, None) => r.session,
        };
        if i != inserted && r.session != number {
            reassigned.push(Reassignment {
                event_id: r.event_id.clone(),
                from_session: r.session,
                to_session: number,
            });
        }
        if i != inserted && (r.session != number || r.session_source != source) {
            changed.push(SessionChange {
                event_id: r.event_id.clone(),
                time_ms: r.time_ms,
                session: number,
                session_source: (*source).clone(),
            });
        }
        r.session = number;
        r.session_campaign = campaigns[i].clone();
        r.session_source = source;
    }
    (reassigned, changed)
}

/// Lets go of events no acceptable late event can sort before any more (older than the
/// lateness bound behind the watermark), and of the oldest beyond the retention cap.
fn forget_settled(state: &mut SessionState, config: &SessionConfig) {
    let Some(watermark) = state.watermark_ms else {
        return;
    };
    let settled_before = watermark.saturating_sub(config.max_lateness_ms.max(0));
    let keep_from = state
        .retained
        .partition_point(|r| r.time_ms < settled_before)
        .max(
            state
                .retained
                .len()
                .saturating_sub(config.max_retained_events.max(1)),
        );
    if keep_from > 0 {
        state.anchor = state.retained.drain(..keep_from).next_back();
    }
}

/// An event older than everything that is still retained: joined to the anchor's session when
/// GA's rule would allow it, otherwise given a session of its own. Not retained.
fn beyond_lateness(
    state: &mut SessionState,
    time_ms: i64,
    campaign: Option<CampaignKey>,
    source: Option<Arc<SessionSource>>,
    config: &SessionConfig,
) -> SessionAssignment {
    let joins = state.anchor.as_ref().and_then(|a| {
        let close = a.time_ms.saturating_sub(time_ms) <= config.inactivity_ms;
        let same = campaign.is_none() || campaign == a.session_campaign;
        (close && same).then(|| (a.session, (*a.session_source).clone()))
    });
    let (session_number, starts_session, session_source) = match joins {
        Some((n, source)) => (n, false, source),
        None => {
            let n = state.next_session;
            state.next_session += 1;
            (n, true, source.map(|s| (*s).clone()).unwrap_or_default())
        }
    };
    SessionAssignment {
        session_number,
        starts_session,
        beyond_lateness: true,
        duplicate: false,
        reassigned: Vec::new(),
        session_source,
        changed: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]
    use super::*;

    const MIN: i64 = 60 * 1000;

    fn social(source: &str, campaign: Option<&str>) -> Touch {
        Touch {
            channel: Channel::OrganicSocial,
            source: source.into(),
            medium: "referral".into(),
            campaign: campaign.map(Into::into),
            ..Touch::direct()
        }
    }

    /// Session index of every event, for events given in time order.
    fn split(events: &[(i64, Option<&Touch>)]) -> Vec<usize> {
        let ids: Vec<String> = (0..events.len()).map(|i| format!("e{i:02}")).collect();
        let input: Vec<SessionEvent<'_>> = events
            .iter()
            .zip(&ids)
            .map(|((t, touch), id)| SessionEvent {
                event_id: id,
                time_ms: *t,
                touch: *touch,
            })
            .collect();
        let mut of = vec![usize::MAX; events.len()];
        for (s, session) in sessionize(&input, &SessionConfig::default())
            .iter()
            .enumerate()
        {
            for &i in &session.events {
                of[i] = s;
            }
        }
        of
    }

    #[test]
    fn ga_session_rules() {
        let direct = Touch::direct();
        let fb = social("facebook", None);
        let fb_spring = social("facebook", Some("spring"));
        let li = social("linkedin", None);
        let internal = Touch {
            is_internal: true,
            ..social("google", None)
        };
        let cases: &[(&str, Vec<(i64, Option<&Touch>)>, Vec<usize>)] = &[
            ("one event", vec![(0, Some(&fb))], vec![0]),
            (
                "29 min gaps",
                vec![(0, Some(&fb)), (29 * MIN, None), (58 * MIN, None)],
                vec![0, 0, 0],
            ),
            (
                "exactly 30 min",
                vec![(0, Some(&fb)), (30 * MIN, None)],
                vec![0, 0],
            ),
            ("31 min", vec![(0, Some(&fb)), (31 * MIN, None)], vec![0, 1]),
            (
                "same campaign again",
                vec![(0, Some(&fb)), (5 * MIN, Some(&fb))],
                vec![0, 0],
            ),
            (
                "new source",
                vec![(0, Some(&fb)), (5 * MIN, Some(&li))],
                vec![0, 1],
            ),
            (
                "new campaign",
                vec![(0, Some(&fb)), (5 * MIN, Some(&fb_spring))],
                vec![0, 1],
            ),
            (
                "direct continues",
                vec![(0, Some(&fb)), (5 * MIN, Some(&direct))],
                vec![0, 0],
            ),
            (
                "internal continues",
                vec![(0, Some(&fb)), (5 * MIN, Some(&internal))],
                vec![0, 0],
            ),
            (
                "direct then campaign",
                vec![(0, Some(&direct)), (5 * MIN, Some(&fb))],
                vec![0, 1],
            ),
            (
                "conversion first",
                vec![(0, None), (MIN, Some(&direct))],
                vec![0, 0],
            ),
            (
                "back to the first source",
                vec![(0, Some(&fb)), (5 * MIN, Some(&li)), (6 * MIN, Some(&fb))],
                vec![0, 1, 2],
            ),
        ];
        for (name, events, want) in cases {
            assert_eq!(&split(events), want, "{name}");
        }
    }

    #[test]
    fn late_event_is_placed_by_event_time_and_renumbers_what_it_splits() {
        let fb = social("facebook", None);
        let li = social("linkedin", None);
        let s = Sessionizer::default();
        let mut state = SessionState::new();
        let obs = |state: &mut SessionState, id: &str, t: i64, touch: Option<&Touch>| {
            s.observe(
                state,
                SessionEvent {
                    event_id: id,
                    time_ms: t,
                    touch,
                },
            )
        };
        assert_eq!(obs(&mut state, "a", 0, Some(&fb)).session_number, 0);
        assert_eq!(obs(&mut state, "c", 20 * MIN, None).session_number, 0);
        // A LinkedIn click at minute 10 arrives late: it starts a session, and "c" moves into it
        // and takes its source.
        let late = obs(&mut state, "b", 10 * MIN, Some(&li));
        assert!(late.starts_session && !late.beyond_lateness);
        assert_eq!(late.session_number, 1);
        assert_eq!(late.session_source.source, "linkedin");
        assert_eq!(
            late.changed,
            [SessionChange {
                event_id: "c".into(),
                time_ms: 20 * MIN,
                session: 1,
                session_source: source_of(&li),
            }]
        );
        assert_eq!(
            late.reassigned,
            [Reassignment {
                event_id: "c".into(),
                from_session: 0,
                to_session: 1
            }]
        );
        // Two hours later: new session; the old events are let go.
        let next = obs(&mut state, "d", 140 * MIN, None);
        assert!(next.starts_session);
        assert_eq!(next.session_number, 2);
        assert_eq!(state.retained_events(), 1);
        // An event older than what the state still holds is still assigned, and flagged.
        let too_late = obs(&mut state, "z", 15 * MIN, None);
        assert!(too_late.beyond_lateness);
        assert_eq!(
            too_late.session_number, 1,
            "within 30 min of the oldest known event"
        );
        // Later than the bound but after what was let go: still placed exactly.
        let placed = obs(&mut state, "y", 30 * MIN, None);
        assert!(!placed.beyond_lateness);
        assert_eq!(placed.session_number, 1);
        // Duplicates change nothing.
        let dup = obs(&mut state, "d", 140 * MIN, None);
        assert!(dup.duplicate);
        assert_eq!(dup.session_number, 2);

        let json = serde_json::to_string(&state).unwrap();
        let back: SessionState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn a_late_landing_touch_gives_the_events_of_its_session_their_source() {
        let fb = social("facebook", None);
        let internal = Touch {
            is_internal: true,
            ..Touch::direct()
        };
        let s = Sessionizer::default();
        let mut state = SessionState::new();
        let mut obs = |id: &str, t: i64, touch: Option<&Touch>| {
            s.observe(
                &mut state,
                SessionEvent {
                    event_id: id,
                    time_ms: t,
                    touch,
                },
            )
        };
        // An internal click and a signup arrive first: their session has no touch yet.
        let first = obs("i", 2 * MIN, Some(&internal));
        assert_eq!(first.session_source, SessionSource::default());
        assert_eq!(obs("s", 5 * MIN, None).session_source.channel, "Direct");
        // The landing click from Facebook at minute 1 arrives: same session, now its source.
        let landing = obs("l", MIN, Some(&fb));
        assert_eq!(landing.session_number, 0);
        assert!(landing.reassigned.is_empty());
        let changed: Vec<(&str, &str)> = landing
            .changed
            .iter()
            .map(|c| (c.event_id.as_str(), c.session_source.source.as_str()))
            .collect();
        assert_eq!(changed, [("i", "facebook"), ("s", "facebook")]);
        // A bot's click never gives a session its source or a campaign.
        let bot = Touch {
            is_bot: true,
            ..social("linkedin", Some("x"))
        };
        let b = obs("b", 3 * MIN, Some(&bot));
        assert_eq!(
            (b.session_number, b.session_source.source.as_str()),
            (0, "facebook")
        );
    }

    #[test]
    fn late_event_bridging_two_sessions_merges_them() {
        let s = Sessionizer::default();
        let mut state = SessionState::new();
        let mut obs = |id: &str, t: i64| {
            s.observe(
                &mut state,
                SessionEvent {
                    event_id: id,
                    time_ms: t,
                    touch: None,
                },
            )
        };
        assert_eq!(obs("a", 0).session_number, 0);
        assert_eq!(obs("c", 50 * MIN).session_number, 1);
        let bridge = obs("b", 25 * MIN);
        assert_eq!(bridge.session_number, 0);
        assert_eq!(
            bridge.reassigned,
            [Reassignment {
                event_id: "c".into(),
                from_session: 1,
                to_session: 0
            }]
        );
    }
}
