//! Erasure: a request to forget a person or a device, and the marker the enricher leaves on the
//! attributed topic once it has forgotten them.
//!
//! A request travels like an event: `touchstream forget` (or the collector's `POST /v1/forget`)
//! writes it to every partition of the raw topic, with the header [`KIND_HEADER`] =
//! [`KIND_FORGET`] and the request as JSON. Every device-stage partition deletes the matching
//! devices (a tombstone on the device changelog) and forwards the request to every partition of
//! the person topic; every person-stage partition deletes the matching person state (tombstones
//! on the person changelog) and writes a [`ForgetMarker`] to every partition of the attributed
//! topic. The sink, on a marker, deletes the rows it names after inserting every row before the
//! marker (see [`ForgetMarker::scope`]).

use serde::{Deserialize, Serialize};

/// The Kafka header that tells a record that is not an event.
pub const KIND_HEADER: &str = "touchstream-record";
/// [`KIND_HEADER`]'s value on a [`ForgetRequest`] (raw and person topics) and a [`ForgetMarker`]
/// (attributed topic).
pub const KIND_FORGET: &str = "forget";

/// Longest id accepted in a request (the collector's limit on ids).
pub const MAX_ID_LEN: usize = 256;

/// Who to forget: a user (every device linked to it and its person state) or a device (its
/// state, and its part of the persons it was linked to), on one site or on every site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    /// A UUID, chosen by whoever issues the request; the markers carry it.
    pub request_id: String,
    /// `None`: every site.
    #[serde(default)]
    pub site_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub anonymous_id: Option<String>,
    /// Epoch milliseconds.
    #[serde(default)]
    pub requested_at: i64,
}

/// Which one of the two ids a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    User(&'a str),
    Device(&'a str),
}

/// What is wrong with a request: the field and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for ForgetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ForgetError {}

fn check_id(field: &'static str, value: &str) -> Result<(), ForgetError> {
    let err = |reason: &str| {
        Err(ForgetError {
            field,
            reason: reason.to_owned(),
        })
    };
    if value.trim().is_empty() {
        return err("must not be empty");
    }
    if value.len() > MAX_ID_LEN {
        return err(&format!("longer than {MAX_ID_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return err("contains a control character");
    }
    Ok(())
}

impl ForgetRequest {
    /// A new request with a fresh id (exactly one of the two ids should be given; see
    /// [`Self::validate`]).
    pub fn new(
        site_id: Option<String>,
        user_id: Option<String>,
        anonymous_id: Option<String>,
        requested_at: i64,
    ) -> Self {
        Self {
            request_id: uuid::Uuid::new_v4().to_string(),
            site_id,
            user_id,
            anonymous_id,
            requested_at,
        }
    }

    /// Exactly one of `user_id` and `anonymous_id`, each id non-empty and bounded.
    pub fn validate(&self) -> Result<Subject<'_>, ForgetError> {
        if uuid::Uuid::parse_str(&self.request_id).is_err() {
            return Err(ForgetError {
                field: "request_id",
                reason: "must be a UUID".into(),
            });
        }
        if let Some(site) = &self.site_id {
            check_id("site_id", site)?;
        }
        match (&self.user_id, &self.anonymous_id) {
            (Some(u), None) => check_id("user_id", u).map(|()| Subject::User(u)),
            (None, Some(a)) => check_id("anonymous_id", a).map(|()| Subject::Device(a)),
            (Some(_), Some(_)) => Err(ForgetError {
                field: "user_id",
                reason: "give user_id or anonymous_id, not both".into(),
            }),
            (None, None) => Err(ForgetError {
                field: "user_id",
                reason: "one of user_id and anonymous_id is required".into(),
            }),
        }
    }

    /// Parses and validates a request from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ForgetError> {
        let request: Self = serde_json::from_slice(bytes).map_err(|e| ForgetError {
            field: "body",
            reason: format!("not a forget request: {e}"),
        })?;
        request.validate()?;
        Ok(request)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn on_site(&self, site_id: &str) -> bool {
        self.site_id.as_deref().is_none_or(|s| s == site_id)
    }

    /// The request's key on the forgotten-ids topic, `site/kind/id` (`*`: every site): one
    /// record per id, which compaction keeps.
    pub fn forgotten_key(&self) -> String {
        let (kind, id) = match self.subject() {
            Some(Subject::User(u)) => ("user", u),
            Some(Subject::Device(a)) => ("device", a),
            None => ("none", ""),
        };
        format!("{}/{kind}/{id}", self.site_id.as_deref().unwrap_or("*"))
    }

    /// The id the request names (for logs and the forgotten-ids list).
    pub fn subject(&self) -> Option<Subject<'_>> {
        self.validate().ok()
    }
}

/// State entries one step of an erasure removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Device states (the device stage).
    pub devices: u64,
    /// Person states (the person stage).
    pub persons: u64,
    /// Conversions kept for re-crediting (the person stage).
    pub conversions: u64,
}

impl Removed {
    pub fn add(&mut self, other: Removed) {
        self.devices += other.devices;
        self.persons += other.persons;
        self.conversions += other.conversions;
    }
}

/// What the person stage writes on every attributed partition once one device-stage partition's
/// forward of a request has been handled: every row of the people and devices it names that
/// the enricher wrote before is ahead of it in every partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetMarker {
    pub request: ForgetRequest,
    /// The raw partition whose forward this answers, and the person partition that answered.
    pub raw_partition: i32,
    pub person_partition: i32,
    /// Of how many raw and person partitions: a request is through the enricher once there is
    /// a marker for every pair on one attributed partition.
    pub raw_partitions: i32,
    pub person_partitions: i32,
    /// `(site_id, anonymous_id)` of the devices that were forgotten (those the state knew).
    pub devices: Vec<(String, String)>,
    /// What this step removed. The device stage's count is only in the markers of person
    /// partition 0, so that the markers on one attributed partition add up to the request's
    /// total.
    pub removed: Removed,
}

impl ForgetMarker {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The rows an erasure deletes, as a ClickHouse condition (the same on `events` and
/// `conversion_credits`, whose shared columns are `site_id`, `anonymous_id` and `identity_id`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// `(site (None: every site), user_id)`: rows whose person is the user.
    pub users: Vec<(Option<String>, String)>,
    /// `(site (None: every site), anonymous_id)`: rows of the device.
    pub devices: Vec<(Option<String>, String)>,
}

impl Scope {
    pub fn of_request(request: &ForgetRequest) -> Scope {
        let mut scope = Scope::default();
        scope.add_request(request);
        scope
    }

    pub fn add_request(&mut self, request: &ForgetRequest) {
        match request.subject() {
            Some(Subject::User(u)) => {
                push_new(&mut self.users, (request.site_id.clone(), u.into()))
            }
            Some(Subject::Device(a)) => {
                push_new(&mut self.devices, (request.site_id.clone(), a.into()))
            }
            None => {}
        }
    }

    pub fn add_marker(&mut self, marker: &ForgetMarker) {
        self.add_request(&marker.request);
        for (site, device) in &marker.devices {
            push_new(&mut self.devices, (Some(site.clone()), device.clone()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.devices.is_empty()
    }
}

fn push_new<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request(user: Option<&str>, device: Option<&str>) -> ForgetRequest {
        ForgetRequest::new(None, user.map(Into::into), device.map(Into::into), 1)
    }

    #[test]
    fn a_request_names_exactly_one_id() {
        assert_eq!(
            request(Some("u"), None).validate().unwrap(),
            Subject::User("u")
        );
        assert_eq!(
            request(None, Some("a")).validate().unwrap(),
            Subject::Device("a")
        );
        assert_eq!(
            request(Some("u"), Some("a")).validate().unwrap_err().field,
            "user_id"
        );
        assert!(request(None, None).validate().is_err());
        assert_eq!(
            request(Some(" "), None).validate().unwrap_err().reason,
            "must not be empty"
        );
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(request(None, Some(&long)).validate().is_err());
    }

    #[test]
    fn json_requests_are_parsed_and_checked() {
        let r = request(Some("u"), None);
        assert_eq!(ForgetRequest::from_json(&r.to_json()).unwrap(), r);
        let e = ForgetRequest::from_json(b"{\"request_id\":\"x\",\"user_id\":\"u\"}").unwrap_err();
        assert_eq!(e.field, "request_id");
        let e = ForgetRequest::from_json(b"[1]").unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn scopes_collect_each_id_once() {
        let r = request(Some("u"), None);
        let marker = ForgetMarker {
            request: r.clone(),
            raw_partition: 0,
            person_partition: 0,
            raw_partitions: 1,
            person_partitions: 1,
            devices: vec![("s".into(), "a".into()), ("s".into(), "a".into())],
            removed: Removed::default(),
        };
        let mut scope = Scope::of_request(&r);
        scope.add_marker(&marker);
        assert_eq!(scope.users, vec![(None, "u".to_string())]);
        assert_eq!(scope.devices, vec![(Some("s".into()), "a".to_string())]);
    }
}
