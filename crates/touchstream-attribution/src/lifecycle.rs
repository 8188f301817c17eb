//! Lifecycle stage per identity: visitor → customer (first signup or download) → client (first
//! purchase), counting purchases. A pure state machine the enricher keeps next to the visitor.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The conversion event types: signup and download (micro), purchase (macro).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversionKind {
    Signup,
    Download,
    Purchase,
}

impl ConversionKind {
    pub const ALL: [ConversionKind; 3] = [
        ConversionKind::Signup,
        ConversionKind::Download,
        ConversionKind::Purchase,
    ];

    /// The `event_type` spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConversionKind::Signup => "signup",
            ConversionKind::Download => "download",
            ConversionKind::Purchase => "purchase",
        }
    }

    /// The conversion kind of an `event_type`, or `None` for `click` and anything else.
    pub fn from_event_type(event_type: &str) -> Option<ConversionKind> {
        ConversionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == event_type)
    }
}

impl fmt::Display for ConversionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lifecycle stages (`schemas/attribution-rules.md`, section 7), ordered: a stage never
/// goes back.
// Stage names are wire vocabulary: one definition, in the model crate.
pub use touchstream_model::LifecycleStage;

/// One identity's lifecycle. Serialisable so the enricher can checkpoint it with the visitor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub stage: LifecycleStage,
    /// Every purchase, the first included.
    pub purchases: u32,
}

impl Lifecycle {
    pub fn new() -> Self {
        Lifecycle::default()
    }

    /// Records a conversion; returns the new stage when this conversion moved the identity on
    /// (so the caller can emit a "became customer/client" fact exactly once).
    pub fn record(&mut self, kind: ConversionKind) -> Option<LifecycleStage> {
        let reached = match kind {
            ConversionKind::Signup | ConversionKind::Download => LifecycleStage::Customer,
            ConversionKind::Purchase => {
                self.purchases = self.purchases.saturating_add(1);
                LifecycleStage::Client
            }
        };
        (reached > self.stage).then(|| {
            self.stage = reached;
            reached
        })
    }

    /// Purchases after the first one.
    pub fn repeat_purchases(&self) -> u32 {
        self.purchases.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]
    use super::*;
    use ConversionKind::*;
    use LifecycleStage::*;

    #[test]
    fn stages_only_move_forward() {
        let cases: &[(
            &[ConversionKind],
            LifecycleStage,
            u32,
            &[Option<LifecycleStage>],
        )] = &[
            (&[], Visitor, 0, &[]),
            (&[Signup], Customer, 0, &[Some(Customer)]),
            (&[Download, Signup], Customer, 0, &[Some(Customer), None]),
            (&[Purchase], Client, 1, &[Some(Client)]),
            (
                &[Signup, Purchase, Purchase],
                Client,
                2,
                &[Some(Customer), Some(Client), None],
            ),
            (
                &[Purchase, Signup, Download],
                Client,
                1,
                &[Some(Client), None, None],
            ),
        ];
        for (events, stage, purchases, transitions) in cases {
            let mut l = Lifecycle::new();
            let got: Vec<_> = events.iter().map(|k| l.record(*k)).collect();
            assert_eq!(l.stage, *stage, "{events:?}");
            assert_eq!(l.purchases, *purchases, "{events:?}");
            assert_eq!(got, *transitions, "{events:?}");
        }
        let mut l = Lifecycle::new();
        for _ in 0..3 {
            l.record(Purchase);
        }
        assert_eq!(l.repeat_purchases(), 2);
    }

    #[test]
    fn names_are_design_vocabulary() {
        assert_eq!(
            serde_json::to_string(&Lifecycle {
                stage: Client,
                purchases: 2
            })
            .unwrap(),
            r#"{"stage":"client","purchases":2}"#
        );
        assert_eq!(ConversionKind::from_event_type("download"), Some(Download));
        assert_eq!(ConversionKind::from_event_type("click"), None);
        let names: Vec<_> = LifecycleStage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["visitor", "customer", "client"]);
    }
}
