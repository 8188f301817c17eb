//! One device's state (a site's anonymous id), kept on the raw topic's partitions: its sessions,
//! who it belongs to from when, and, until it signs in, its attribution as its own person.

use serde::{Deserialize, Serialize};
use touchstream_attribution::SessionState;

use crate::person::PersonState;

/// From `from` (an event time) on, the device belongs to `user_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLink {
    pub user_id: String,
    pub from: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The events still inside the lateness window, for sessionisation by event time.
    pub sessions: SessionState,
    /// The device as its own person: all its touches (they go to its first user when it links),
    /// and its conversions from before it first signed in.
    pub own: PersonState,
    /// Who the device belonged to from when, oldest first; empty until it first carries a user
    /// id. A second user on a shared device starts a new entry.
    pub links: Vec<DeviceLink>,
    /// Newest event time seen: what lateness is measured against.
    pub max_event_time: i64,
}

/// Link entries kept per device at most (the oldest go first).
const MAX_LINKS: usize = 16;

impl DeviceState {
    /// The user an event at `t` belongs to; `None`: the device itself (before its first link).
    pub fn person_at(&self, t: i64) -> Option<&str> {
        self.links
            .iter()
            .rev()
            .find(|l| l.from <= t)
            .map(|l| l.user_id.as_str())
    }

    /// The user a touch at `t` belongs to: the one at `t`, or the first user for a touch from
    /// before the first link; `None` while the device has never signed in.
    pub fn touch_owner(&self, t: i64) -> Option<&str> {
        self.person_at(t)
            .or_else(|| self.links.first().map(|l| l.user_id.as_str()))
    }

    /// Whether `user_id` had the device at some time before `t`.
    pub fn had_before(&self, user_id: &str, t: i64) -> bool {
        self.links
            .iter()
            .any(|l| l.user_id == user_id && l.from < t)
    }

    /// Starts (or moves earlier) an entry for `user_id` at `t`. Returns what changed.
    pub fn record_link(&mut self, user_id: &str, t: i64) -> LinkChange {
        let Some(first) = self.links.first() else {
            self.links.push(DeviceLink {
                user_id: user_id.to_owned(),
                from: t,
            });
            return LinkChange::First;
        };
        if t < first.from {
            if first.user_id == user_id {
                let old = first.from;
                self.links[0].from = t;
                return LinkChange::FirstEarlier { old };
            }
            // Another user before the first one, arriving late: the device was theirs first.
            self.links.insert(
                0,
                DeviceLink {
                    user_id: user_id.to_owned(),
                    from: t,
                },
            );
            return LinkChange::Switch;
        }
        let at = self.links.partition_point(|l| l.from <= t);
        if self.links[at - 1].user_id == user_id {
            return LinkChange::None;
        }
        match self.links.get_mut(at) {
            // The same user's next entry starts later: it started here (a late sign-in).
            Some(next) if next.user_id == user_id => next.from = t,
            _ => self.links.insert(
                at,
                DeviceLink {
                    user_id: user_id.to_owned(),
                    from: t,
                },
            ),
        }
        if self.links.len() > MAX_LINKS {
            let excess = self.links.len() - MAX_LINKS;
            // Keep the first: it owns the touches from before any sign-in.
            self.links.drain(1..=excess);
        }
        LinkChange::Switch
    }
}

/// What an event carrying a user id did to a device's links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Already linked to that user at that time.
    None,
    /// The device's first sign-in.
    First,
    /// The first user's sign-in, earlier than the one seen so far (it arrived late).
    FirstEarlier { old: i64 },
    /// Another user (a shared device), from this time on.
    Switch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_say_who_has_the_device_when() {
        let mut d = DeviceState::default();
        assert_eq!((d.person_at(5), d.touch_owner(5)), (None, None));
        assert_eq!(d.record_link("u", 10), LinkChange::First);
        assert_eq!(d.record_link("u", 12), LinkChange::None);
        assert_eq!((d.person_at(5), d.touch_owner(5)), (None, Some("u")));
        assert_eq!(d.person_at(10), Some("u"));
        assert_eq!(d.record_link("v", 20), LinkChange::Switch);
        assert_eq!(d.record_link("u", 30), LinkChange::Switch);
        assert_eq!(d.person_at(25), Some("v"));
        assert_eq!(d.person_at(35), Some("u"));
        assert!(d.had_before("v", 21) && !d.had_before("v", 20));
        assert_eq!(d.record_link("u", 8), LinkChange::FirstEarlier { old: 10 });
        assert_eq!(d.person_at(8), Some("u"));
        // V's sign-in at 18 arrives late: V had the device from 18.
        assert_eq!(d.record_link("v", 18), LinkChange::Switch);
        assert_eq!(d.person_at(19), Some("v"));
        assert_eq!(d.links.len(), 3);
    }
}
