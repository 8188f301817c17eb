//! One person's attribution state and the rules that run on it (schemas/attribution-rules.md,
//! sections 5–8): the touches that belong to the person, the devices linked to it and when, its
//! conversions (kept so that late data can re-credit them), and its lifecycle.
//!
//! The same type serves a device that has never signed in (the device is its own person: no
//! linked devices, every touch its own) and a user (its devices arrive through link records).
//! Pure: no I/O. Every operation returns the attributed events it emits, in order: the event
//! itself first, then conversions written again with a higher revision because of it.

use serde::{Deserialize, Serialize};
use touchstream_attribution::{
    AttributionModel, Channel, Conversion, CreditConfig, TouchRecord, credit,
};
use touchstream_model::{AttributedEvent, ConversionCredits, Credit, LifecycleStage};

use crate::records::{Counts, DeviceEvent, SessionUpdate};

/// Bounds and settings of the rules.
#[derive(Clone, Debug)]
pub struct Rules {
    pub credit: CreditConfig,
    pub lookback_ms: i64,
    /// Conversions further than this behind the newest event are let go (they can no longer
    /// be re-credited); `None`: only the count bound applies.
    pub conversion_horizon_ms: Option<i64>,
    /// Conversions kept at most (the oldest are let go first).
    pub max_conversions: usize,
    /// Touches kept at most, whatever the lookback (a safety bound on state size).
    pub max_stored_touches: usize,
    /// Linked devices kept at most.
    pub max_devices: usize,
}

/// A device linked to the person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkedDevice {
    pub anonymous_id: String,
    /// When the device first carried the person's user id.
    pub linked_at: i64,
    /// The device's conversions from before `linked_at`: they count for the person from then on.
    pub prelink: Counts,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersonTouch {
    pub device: String,
    pub touch: TouchRecord,
}

/// A conversion kept to be re-credited, with what it was last written with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retained {
    pub event: DeviceEvent,
    pub revision: i32,
    /// The touches its last revision credited, oldest first (empty: the synthetic Direct
    /// touch); `None` before it was first written.
    pub credited: Option<Vec<TouchRecord>>,
    /// The lifecycle it was last written with: (stage, purchase count).
    pub lifecycle: (LifecycleStage, i32),
    /// Changed since its changelog record was last written (a user's conversions each have a
    /// record of their own, so that unchanged ones are not written again).
    #[serde(skip)]
    pub changed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonState {
    /// Devices linked to this user and when; empty for a device that is its own person.
    pub devices: Vec<LinkedDevice>,
    /// In `(time, event id)` order.
    pub touches: Vec<PersonTouch>,
    /// In `(time, event id)` order.
    pub conversions: Vec<Retained>,
    /// Conversions let go: they still count for the lifecycle of later ones.
    pub settled: Counts,
    /// Newest event time seen.
    pub max_event_time: i64,
    /// Conversions whose session changed and that the next refresh writes again (whatever else
    /// changes), so that one input writes a conversion once.
    #[serde(skip)]
    pending: Vec<(i64, String)>,
    /// Conversions let go or handed over since the changelog was last written (their records
    /// are deleted then).
    #[serde(skip)]
    pub(crate) removed: Vec<String>,
}

/// Why a conversion was written again (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    New,
    LateTouch,
    Link,
    Moved,
    Lifecycle,
    Session,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::LateTouch => "late_touch",
            Reason::Link => "link",
            Reason::Moved => "moved",
            Reason::Lifecycle => "lifecycle",
            Reason::Session => "session",
        }
    }
}

/// What one operation emits: attributed events, and why each re-credited conversion was
/// written again.
#[derive(Debug, Default)]
pub struct Emitted {
    pub events: Vec<AttributedEvent>,
    pub recredits: Vec<Reason>,
}

impl Emitted {
    pub fn extend(&mut self, other: Emitted) {
        self.events.extend(other.events);
        self.recredits.extend(other.recredits);
    }
}

impl PersonState {
    /// The device `device` belongs to this person from `linked_at`, with its touches so far and
    /// the lifecycle it had before. Repeated links keep the earliest time and the latest counts.
    pub fn link(
        &mut self,
        rules: &Rules,
        person: &str,
        device: &str,
        linked_at: i64,
        touches: Vec<TouchRecord>,
        prelink: Counts,
    ) -> Emitted {
        match self.devices.iter_mut().find(|d| d.anonymous_id == device) {
            Some(d) => {
                d.linked_at = d.linked_at.min(linked_at);
                d.prelink = prelink;
            }
            None => self.devices.push(LinkedDevice {
                anonymous_id: device.to_owned(),
                linked_at,
                prelink,
            }),
        }
        for touch in touches {
            self.insert_touch(device, touch);
        }
        let emitted = self.refresh(rules, person, linked_at, None, Reason::Link);
        self.evict(rules);
        emitted
    }

    /// A touch of `device` that belongs to this person. `recredit`: re-credit the conversions
    /// it belongs to (false for a touch later than the allowed lateness: best effort).
    pub fn add_touch(
        &mut self,
        rules: &Rules,
        person: &str,
        device: &str,
        touch: TouchRecord,
        recredit: bool,
    ) -> Emitted {
        self.max_event_time = self.max_event_time.max(touch.time_ms);
        let t = touch.time_ms;
        let added = self.insert_touch(device, touch);
        let emitted = if added && recredit {
            self.refresh(rules, person, t, None, Reason::LateTouch)
        } else {
            Emitted::default()
        };
        self.evict(rules);
        emitted
    }

    /// An event of `device` that belongs to this person: written with the person's identity and
    /// lifecycle, credited when it is a conversion.
    pub fn event(
        &mut self,
        rules: &Rules,
        person: &str,
        device: &str,
        event: DeviceEvent,
    ) -> Emitted {
        let t = event.raw.event_time;
        self.max_event_time = self.max_event_time.max(t);
        if !self.devices.is_empty() && !self.devices.iter().any(|d| d.anonymous_id == device) {
            // Only reachable if a link record went missing (never in a healthy stream): the
            // device counts from this event on.
            self.devices.push(LinkedDevice {
                anonymous_id: device.to_owned(),
                linked_at: t,
                prelink: Counts::default(),
            });
        }
        let mut emitted = Emitted::default();
        let touch = event
            .opens_touch
            .then(|| TouchRecord::from_fields(event.raw.event_id.clone(), t, &event.touch));
        if let Some(touch) = touch.clone() {
            self.insert_touch(device, touch);
        }
        if event.is_conversion() {
            let at = self.position(event.order_key());
            self.conversions.insert(
                at,
                Retained {
                    event,
                    revision: 0,
                    credited: None,
                    lifecycle: (LifecycleStage::Visitor, 0),
                    changed: true,
                },
            );
            // This conversion, and the later ones whose purchase count it moves.
            emitted.extend(self.refresh(rules, person, t, None, Reason::Lifecycle));
        } else {
            let counts = self.counts_at((t, event.raw.event_id.as_str()));
            let late = event.is_late;
            emitted.events.push(into_attributed(event, person, counts));
            if touch.is_some() && !late {
                emitted.extend(self.refresh(rules, person, t, None, Reason::LateTouch));
            }
        }
        self.evict(rules);
        emitted
    }

    /// A conversion credited elsewhere that belongs to this person after all: re-credited here
    /// with a higher revision, retracting what it credited there.
    pub fn adopt(
        &mut self,
        rules: &Rules,
        person: &str,
        device: &str,
        conversion: Retained,
    ) -> Emitted {
        let t = conversion.event.raw.event_time;
        if !self.devices.iter().any(|d| d.anonymous_id == device) && !self.devices.is_empty() {
            self.devices.push(LinkedDevice {
                anonymous_id: device.to_owned(),
                linked_at: t,
                prelink: Counts::default(),
            });
        }
        let id = conversion.event.raw.event_id.clone();
        if self.conversions.iter().any(|c| c.event.raw.event_id == id) {
            return Emitted::default();
        }
        let at = self.position(conversion.event.order_key());
        self.conversions.insert(
            at,
            Retained {
                changed: true,
                ..conversion
            },
        );
        let emitted = self.refresh(rules, person, t, Some(&id), Reason::Moved);
        self.evict(rules);
        emitted
    }

    /// Sessions of some events changed: conversions among them take the new session and are
    /// written again by the next refresh (see [`Self::flush`]). Returns how many were theirs.
    pub fn note_sessions(&mut self, updates: &[SessionUpdate]) -> usize {
        let mut noted = 0;
        for update in updates {
            let Some(c) = self
                .conversions
                .iter_mut()
                .find(|c| c.event.raw.event_id == update.event_id)
            else {
                continue;
            };
            noted += 1;
            if c.event.session_id == update.session_id && c.event.session == update.session {
                continue;
            }
            c.event.session_id.clone_from(&update.session_id);
            c.event.session = update.session.clone();
            c.changed = true;
            self.pending
                .push((c.event.raw.event_time, c.event.raw.event_id.clone()));
        }
        noted
    }

    /// Writes the conversions whose session changed and that nothing else wrote yet.
    pub fn flush(&mut self, rules: &Rules, person: &str) -> Emitted {
        match self.pending.iter().map(|(t, _)| *t).min() {
            Some(from) => self.refresh(rules, person, from, None, Reason::Session),
            None => Emitted::default(),
        }
    }

    /// Takes out the conversions at or after `t` (they belong to someone else now).
    pub fn take_conversions_from(&mut self, t: i64) -> Vec<Retained> {
        let at = self
            .conversions
            .partition_point(|c| c.event.raw.event_time < t);
        let taken: Vec<Retained> = self.conversions.drain(at..).collect();
        self.removed
            .extend(taken.iter().map(|c| c.event.raw.event_id.clone()));
        taken
    }

    /// Erasure of one device: its link, its touches and the conversions made on it go (the
    /// changelog deletes those conversions' records). Returns the conversions removed, `None`
    /// when the person had nothing of the device.
    pub fn forget_device(&mut self, anonymous_id: &str) -> Option<u64> {
        let had = self.devices.len() + self.touches.len();
        self.devices.retain(|d| d.anonymous_id != anonymous_id);
        self.touches.retain(|t| t.device != anonymous_id);
        let before = self.conversions.len();
        let mut gone = Vec::new();
        self.conversions.retain(|c| {
            let keep = c.event.raw.anonymous_id != anonymous_id;
            if !keep {
                gone.push(c.event.raw.event_id.clone());
            }
            keep
        });
        self.pending.retain(|(_, id)| !gone.contains(id));
        let conversions = (before - self.conversions.len()) as u64;
        self.removed.extend(gone);
        let changed = had != self.devices.len() + self.touches.len() || conversions > 0;
        changed.then_some(conversions)
    }

    /// The lifecycle counts of everything before `t`.
    pub fn counts_before(&self, t: i64) -> Counts {
        let mut counts = self.settled;
        for c in self
            .conversions
            .iter()
            .filter(|c| c.event.raw.event_time < t)
        {
            counts.add(Counts::one(c.event.is_purchase()));
        }
        counts
    }

    /// The touches, oldest first.
    pub fn touch_records(&self) -> Vec<TouchRecord> {
        self.touches.iter().map(|t| t.touch.clone()).collect()
    }

    fn position(&self, key: (i64, &str)) -> usize {
        self.conversions
            .partition_point(|c| c.event.order_key() < key)
    }

    /// Inserts in order; false if the touch was already there (a copy of one touch has its
    /// time and id).
    fn insert_touch(&mut self, device: &str, touch: TouchRecord) -> bool {
        let at = self
            .touches
            .partition_point(|t| t.touch.order_key() < touch.order_key());
        if self
            .touches
            .get(at)
            .is_some_and(|t| t.touch.event_id == touch.event_id)
        {
            return false;
        }
        self.touches.insert(
            at,
            PersonTouch {
                device: device.to_owned(),
                touch,
            },
        );
        true
    }

    /// Lifecycle counts of the person as of `key`: what was let go, the devices' conversions
    /// from before their links (from the link on), and the kept conversions up to `key`.
    fn counts_at(&self, key: (i64, &str)) -> Counts {
        let mut counts = self.settled;
        for d in self.devices.iter().filter(|d| d.linked_at <= key.0) {
            counts.add(d.prelink);
        }
        for c in self
            .conversions
            .iter()
            .take_while(|c| c.event.order_key() <= key)
        {
            counts.add(Counts::one(c.event.is_purchase()));
        }
        counts
    }

    /// Credits every kept conversion at or after `from` again (and the `force`d one in any
    /// case), and writes those whose credits or lifecycle changed (or that were never written)
    /// with a higher revision; a forced one is written again whatever changed.
    fn refresh(
        &mut self,
        rules: &Rules,
        person: &str,
        from: i64,
        force: Option<&str>,
        reason: Reason,
    ) -> Emitted {
        let mut emitted = Emitted::default();
        let pending = std::mem::take(&mut self.pending);
        let from = pending.iter().map(|(t, _)| *t).fold(from, i64::min);
        let start = self
            .conversions
            .partition_point(|c| c.event.raw.event_time < from);
        for i in start..self.conversions.len() {
            let (time, id, revenue) = {
                let raw = &self.conversions[i].event.raw;
                (
                    raw.event_time,
                    raw.event_id.clone(),
                    raw.revenue.unwrap_or(0),
                )
            };
            let counts = self.counts_at((time, &id));
            let lifecycle = (
                counts.stage(),
                i32::try_from(counts.purchases).unwrap_or(i32::MAX),
            );
            let mut candidates = self.eligible(rules, time);
            let credits = credit(
                &candidates,
                &Conversion {
                    event_id: id.clone(),
                    time_ms: time,
                    revenue: revenue as f64,
                },
                &rules.credit,
            );
            // The window, oldest first: every touch linear credits (none for synthetic Direct).
            let window: Vec<TouchRecord> = credits
                .credits
                .iter()
                .filter(|k| k.model == AttributionModel::Linear && k.touch_event_id != id)
                .filter_map(|k| {
                    let at = candidates
                        .iter()
                        .position(|t| t.event_id == k.touch_event_id)?;
                    Some(candidates.swap_remove(at))
                })
                .collect();
            let c = &mut self.conversions[i];
            let mut wire = to_wire(credits);
            let why = match &c.credited {
                None => Reason::New,
                Some(old) => {
                    let credits_changed = !same_ids(old, &window);
                    let lifecycle_changed = c.lifecycle != lifecycle;
                    let session_changed = pending.iter().any(|(_, p)| *p == id);
                    if !credits_changed
                        && !lifecycle_changed
                        && !session_changed
                        && force != Some(id.as_str())
                    {
                        continue;
                    }
                    wire.credits.extend(retractions(old, &window, &c.event));
                    c.revision = c.revision.saturating_add(1);
                    if credits_changed || force == Some(id.as_str()) {
                        reason
                    } else if lifecycle_changed {
                        Reason::Lifecycle
                    } else {
                        Reason::Session
                    }
                }
            };
            c.credited = Some(window);
            c.lifecycle = lifecycle;
            c.changed = true;
            emitted
                .events
                .push(attributed(&c.event, person, counts, Some(wire), c.revision));
            emitted.recredits.push(why);
        }
        emitted
    }

    /// The touches a conversion at `t` may be credited to: inside its lookback, from every
    /// device linked to the person at or before `t` (all of them for a device that is its own
    /// person).
    fn eligible(&self, rules: &Rules, t: i64) -> Vec<TouchRecord> {
        let from = t.saturating_sub(rules.lookback_ms);
        let start = self.touches.partition_point(|pt| pt.touch.time_ms < from);
        let linked: Vec<&str> = self
            .devices
            .iter()
            .filter(|d| d.linked_at <= t)
            .map(|d| d.anonymous_id.as_str())
            .collect();
        self.touches[start..]
            .iter()
            .take_while(|pt| pt.touch.time_ms <= t)
            .filter(|pt| self.devices.is_empty() || linked.contains(&pt.device.as_str()))
            .map(|pt| pt.touch.clone())
            .collect()
    }

    /// Lets go of what can no longer matter, and of the oldest beyond the bounds.
    fn evict(&mut self, rules: &Rules) {
        let mut drop = 0;
        if let Some(horizon) = rules.conversion_horizon_ms {
            let before = self.max_event_time.saturating_sub(horizon);
            drop = self
                .conversions
                .partition_point(|c| c.event.raw.event_time < before && c.credited.is_some());
        }
        drop = drop.max(
            self.conversions
                .len()
                .saturating_sub(rules.max_conversions.max(1)),
        );
        for c in self.conversions.drain(..drop) {
            self.settled.add(Counts::one(c.event.is_purchase()));
            self.removed.push(c.event.raw.event_id);
        }
        // Touches are kept while a future conversion or a kept one may credit them.
        let oldest_use = self.conversions.first().map_or(self.max_event_time, |c| {
            c.event.raw.event_time.min(self.max_event_time)
        });
        let horizon = oldest_use.saturating_sub(rules.lookback_ms);
        let expired = self.touches.partition_point(|t| t.touch.time_ms < horizon);
        let excess = self
            .touches
            .len()
            .saturating_sub(expired)
            .saturating_sub(rules.max_stored_touches.max(1));
        self.touches.drain(..expired + excess);
        let devices = self.devices.len();
        if devices > rules.max_devices.max(1) {
            // The devices linked earliest go first (their touches stay until they expire).
            self.devices.sort_by_key(|d| d.linked_at);
            self.devices.drain(..devices - rules.max_devices.max(1));
        }
    }
}

fn same_ids(a: &[TouchRecord], b: &[TouchRecord]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.event_id == y.event_id)
}

/// The (model, touch) pairs a credited window gives: every touch under linear, position-based
/// and time decay; one each under first, last and last non-direct. An empty window credits the
/// conversion's own synthetic Direct touch under every model.
fn pairs(window: &[TouchRecord]) -> Vec<(AttributionModel, &TouchRecord)> {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return Vec::new();
    };
    let lnd = window
        .iter()
        .rev()
        .find(|t| t.channel != Channel::Direct)
        .unwrap_or(last);
    let mut out = vec![
        (AttributionModel::FirstTouch, first),
        (AttributionModel::LastTouch, last),
        (AttributionModel::LastNonDirect, lnd),
    ];
    for model in [
        AttributionModel::Linear,
        AttributionModel::PositionBased,
        AttributionModel::TimeDecay,
    ] {
        out.extend(window.iter().map(|t| (model, t)));
    }
    out
}

/// Credits the previous revision gave and this one does not: written with weight 0 and
/// `retracted`, so that they replace the earlier rows.
fn retractions(old: &[TouchRecord], new: &[TouchRecord], event: &DeviceEvent) -> Vec<Credit> {
    let keep = pairs(new);
    let kept = |model: AttributionModel, id: &str| {
        if new.is_empty() {
            id == event.raw.event_id
        } else {
            keep.iter().any(|(m, t)| *m == model && t.event_id == id)
        }
    };
    let retract = |model: AttributionModel, t: &TouchRecord| Credit {
        model,
        touch_event_id: t.event_id.clone(),
        touch_time: t.time_ms,
        channel: t.channel.as_str().to_owned(),
        source: t.source.clone(),
        social_network: t.social_network.clone(),
        campaign: t.campaign.clone(),
        content: t.content.clone(),
        weight: 0.0,
        revenue_credit: 0.0,
        retracted: true,
    };
    if old.is_empty() {
        // The synthetic Direct touch (the conversion's own id) under every model.
        if new.is_empty() {
            return Vec::new();
        }
        let synthetic = TouchRecord {
            event_id: event.raw.event_id.clone(),
            time_ms: event.raw.event_time,
            channel: Channel::Direct,
            source: touchstream_attribution::DIRECT_SOURCE.to_owned(),
            social_network: None,
            campaign: None,
            content: None,
        };
        return AttributionModel::ALL
            .into_iter()
            .map(|m| retract(m, &synthetic))
            .collect();
    }
    pairs(old)
        .into_iter()
        .filter(|(m, t)| !kept(*m, &t.event_id))
        .map(|(m, t)| retract(m, t))
        .collect()
}

/// The attributed event of an event that is not a conversion (written once, revision 0).
fn into_attributed(event: DeviceEvent, person: &str, counts: Counts) -> AttributedEvent {
    AttributedEvent {
        event: event.raw,
        touch: event.touch,
        opens_touch: event.opens_touch,
        session_id: event.session_id,
        identity_id: person.to_owned(),
        lifecycle_stage: counts.stage(),
        purchase_count: i32::try_from(counts.purchases).unwrap_or(i32::MAX),
        conversion: None,
        revision: 0,
        session: event.session,
        is_late: event.is_late,
    }
}

/// The attributed event written for `event` as this person's.
fn attributed(
    event: &DeviceEvent,
    person: &str,
    counts: Counts,
    conversion: Option<ConversionCredits>,
    revision: i32,
) -> AttributedEvent {
    AttributedEvent {
        event: event.raw.clone(),
        touch: event.touch.clone(),
        opens_touch: event.opens_touch,
        session_id: event.session_id.clone(),
        identity_id: person.to_owned(),
        lifecycle_stage: counts.stage(),
        purchase_count: i32::try_from(counts.purchases).unwrap_or(i32::MAX),
        conversion,
        revision,
        session: event.session.clone(),
        is_late: event.is_late,
    }
}

pub(crate) fn to_wire(c: touchstream_attribution::ConversionCredits) -> ConversionCredits {
    ConversionCredits {
        touches_to_conversion: i32::try_from(c.touches_to_conversion).unwrap_or(i32::MAX),
        days_to_conversion: c.days_to_conversion,
        credits: c
            .credits
            .into_iter()
            .map(|k| Credit {
                model: k.model,
                touch_event_id: k.touch_event_id,
                touch_time: k.touch_time_ms,
                channel: k.channel.as_str().to_string(),
                source: k.source,
                social_network: k.social_network,
                campaign: k.campaign,
                content: k.content,
                weight: k.weight,
                revenue_credit: k.revenue_credit,
                retracted: false,
            })
            .collect(),
    }
}
