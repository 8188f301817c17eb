//! Crediting a conversion to the touches that led to it, under every attribution model.
//!
//! Pure: the caller passes one visitor's touch history (in any order) and the conversion; the
//! result is the same whatever the order, so replays and out-of-order delivery give the same
//! rows.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::classify::{DIRECT_SOURCE, Touch};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

// The model names are wire vocabulary (Avro, ClickHouse): one definition, in the model crate.
pub use touchstream_model::{AttributionModel, UnknownModel};

/// One touch in a person's history: what a credit needs of it, and nothing more (it is kept in
/// the enricher's state for up to the lookback). Only clicks that open a touch become one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TouchRecord {
    pub event_id: String,
    pub time_ms: i64,
    pub channel: Channel,
    pub source: String,
    pub social_network: Option<String>,
    pub campaign: Option<String>,
    /// utm_content: the post.
    pub content: Option<String>,
}

impl TouchRecord {
    pub fn new(event_id: impl Into<String>, time_ms: i64, touch: &Touch) -> Self {
        Self {
            event_id: event_id.into(),
            time_ms,
            channel: touch.channel,
            source: touch.source.clone(),
            social_network: touch.social_network.clone(),
            campaign: touch.campaign.clone(),
            content: touch.content.clone(),
        }
    }

    /// A touch from its wire classification (an unknown channel name reads as Unassigned).
    pub fn from_fields(
        event_id: impl Into<String>,
        time_ms: i64,
        fields: &touchstream_model::TouchFields,
    ) -> Self {
        Self {
            event_id: event_id.into(),
            time_ms,
            channel: fields.channel.parse().unwrap_or(Channel::Unassigned),
            source: fields.source.clone(),
            social_network: fields.social_network.clone(),
            campaign: fields.campaign.clone(),
            content: fields.content.clone(),
        }
    }

    /// `(time, event id)`: the order touches are credited in.
    pub fn order_key(&self) -> (i64, &str) {
        (self.time_ms, self.event_id.as_str())
    }
}

/// A conversion to credit. `revenue` is in whatever unit the caller chose (minor units for
/// purchases, 0 for signups and downloads); each credit carries `weight × revenue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    pub event_id: String,
    pub time_ms: i64,
    pub revenue: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditConfig {
    /// Touches older than this before the conversion do not count.
    pub lookback_ms: i64,
    pub time_decay_half_life_ms: i64,
    /// At most this many touches are credited: the newest inside the window.
    pub max_touches: usize,
}

impl Default for CreditConfig {
    /// 30-day lookback, 7-day half-life, 64 touches.
    fn default() -> Self {
        CreditConfig {
            lookback_ms: 30 * DAY_MS,
            time_decay_half_life_ms: 7 * DAY_MS,
            max_touches: 64,
        }
    }
}

/// One touch's share of one conversion under one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Credit {
    pub model: AttributionModel,
    pub touch_event_id: String,
    pub touch_time_ms: i64,
    pub channel: Channel,
    pub source: String,
    pub social_network: Option<String>,
    pub campaign: Option<String>,
    pub content: Option<String>,
    pub weight: f64,
    pub revenue_credit: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversionCredits {
    /// Touches inside the lookback window (0 when the conversion had none).
    pub touches_to_conversion: u32,
    /// From the first touch in the window to the conversion, in days (0 without touches).
    pub days_to_conversion: f64,
    /// Models in [`AttributionModel::ALL`] order, touches oldest first within a model. The
    /// weights of one model add up to 1.
    pub credits: Vec<Credit>,
}

/// Credits `conversion` to `touches` (one person's history, any order) under every model.
///
/// Only touches with `conversion.time_ms − lookback_ms ≤ time_ms ≤ conversion.time_ms` count, at
/// most the newest `max_touches` of them; a repeated `event_id` counts once.
///
/// A conversion with no touch in the window is still counted: every model gives weight 1 to a
/// synthetic Direct / `(direct)` touch whose event id is the conversion's own and whose time is
/// the conversion's, and `touches_to_conversion` is 0. Sums by channel then match the number of
/// conversions, which is what "source of sale" reports need.
pub fn credit(
    touches: &[TouchRecord],
    conversion: &Conversion,
    config: &CreditConfig,
) -> ConversionCredits {
    let window_start = conversion.time_ms.saturating_sub(config.lookback_ms.max(0));
    let mut window: Vec<&TouchRecord> = touches
        .iter()
        .filter(|t| t.time_ms >= window_start && t.time_ms <= conversion.time_ms)
        .collect();
    // (time, event id) is a total order over distinct events, which makes the result independent
    // of the input order.
    window.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let mut seen = HashSet::with_capacity(window.len());
    window.retain(|t| seen.insert(t.event_id.as_str()));
    let excess = window.len().saturating_sub(config.max_touches.max(1));
    window.drain(..excess);

    if window.is_empty() {
        return no_touch_credits(conversion);
    }
    let n = window.len();
    let mut credits = Vec::with_capacity(3 + 3 * n);
    let mut push = |model, record: &TouchRecord, weight: f64| {
        credits.push(credit_for(model, record, weight, conversion.revenue));
    };
    let first = window[0];
    let last = window[n - 1];
    push(AttributionModel::FirstTouch, first, 1.0);
    push(AttributionModel::LastTouch, last, 1.0);
    let last_non_direct = window
        .iter()
        .rev()
        .find(|t| t.channel != Channel::Direct)
        .copied()
        .unwrap_or(last);
    push(AttributionModel::LastNonDirect, last_non_direct, 1.0);
    for t in &window {
        push(AttributionModel::Linear, t, 1.0 / n as f64);
    }
    for (i, t) in window.iter().enumerate() {
        push(AttributionModel::PositionBased, t, position_weight(i, n));
    }
    // Ages are measured from the newest touch, not the conversion: the weights are the same up
    // to normalisation, and the newest touch's weight is 1, so the sum never underflows to 0.
    let half_life = config.time_decay_half_life_ms.max(1) as f64;
    let raw: Vec<f64> = window
        .iter()
        .map(|t| (-((last.time_ms - t.time_ms) as f64) / half_life).exp2())
        .collect();
    let total: f64 = raw.iter().sum();
    for (t, w) in window.iter().zip(&raw) {
        push(AttributionModel::TimeDecay, t, w / total);
    }

    ConversionCredits {
        touches_to_conversion: u32::try_from(n).unwrap_or(u32::MAX),
        days_to_conversion: (conversion.time_ms - first.time_ms) as f64 / DAY_MS as f64,
        credits,
    }
}

/// 40/20/40; one touch takes everything, two split 50/50.
fn position_weight(i: usize, n: usize) -> f64 {
    match n {
        1 => 1.0,
        2 => 0.5,
        _ if i == 0 || i == n - 1 => 0.4,
        _ => 0.2 / (n - 2) as f64,
    }
}

fn credit_for(model: AttributionModel, t: &TouchRecord, weight: f64, revenue: f64) -> Credit {
    Credit {
        model,
        touch_event_id: t.event_id.clone(),
        touch_time_ms: t.time_ms,
        channel: t.channel,
        source: t.source.clone(),
        social_network: t.social_network.clone(),
        campaign: t.campaign.clone(),
        content: t.content.clone(),
        weight,
        revenue_credit: weight * revenue,
    }
}

fn no_touch_credits(conversion: &Conversion) -> ConversionCredits {
    let credits = AttributionModel::ALL
        .into_iter()
        .map(|model| Credit {
            model,
            touch_event_id: conversion.event_id.clone(),
            touch_time_ms: conversion.time_ms,
            channel: Channel::Direct,
            source: DIRECT_SOURCE.to_owned(),
            social_network: None,
            campaign: None,
            content: None,
            weight: 1.0,
            revenue_credit: conversion.revenue,
        })
        .collect();
    ConversionCredits {
        touches_to_conversion: 0,
        days_to_conversion: 0.0,
        credits,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;

    fn touch(channel: Channel, source: &str) -> Touch {
        Touch {
            channel,
            source: source.to_owned(),
            ..Touch::direct()
        }
    }

    fn rec(id: &str, time_ms: i64, channel: Channel, source: &str) -> TouchRecord {
        TouchRecord::new(id, time_ms, &touch(channel, source))
    }

    fn weights(c: &ConversionCredits, model: AttributionModel) -> Vec<(String, f64)> {
        c.credits
            .iter()
            .filter(|x| x.model == model)
            .map(|x| (x.touch_event_id.clone(), x.weight))
            .collect()
    }

    fn conv(time_ms: i64, revenue: f64) -> Conversion {
        Conversion {
            event_id: "conv".into(),
            time_ms,
            revenue,
        }
    }

    #[test]
    fn every_model_on_a_three_touch_path() {
        let t0 = 100 * DAY_MS;
        let touches = vec![
            rec("c", t0 - HOUR, Channel::Direct, "(direct)"),
            rec("a", t0 - 14 * DAY_MS, Channel::OrganicSocial, "instagram"),
            rec("b", t0 - 7 * DAY_MS, Channel::PaidSearch, "google"),
        ];
        let c = credit(&touches, &conv(t0, 10_000.0), &CreditConfig::default());
        assert_eq!(c.touches_to_conversion, 3);
        assert!((c.days_to_conversion - 14.0).abs() < 1e-12);
        use AttributionModel::*;
        assert_eq!(weights(&c, FirstTouch), [("a".into(), 1.0)]);
        assert_eq!(weights(&c, LastTouch), [("c".into(), 1.0)]);
        assert_eq!(weights(&c, LastNonDirect), [("b".into(), 1.0)]);
        let pb = weights(&c, PositionBased);
        assert_eq!(
            pb,
            [("a".into(), 0.4), ("b".into(), 0.2), ("c".into(), 0.4)]
        );
        // Ages from the conversion: 14 d, 7 d, 1 h → raw 0.25, 0.5, 2^(-1/168).
        let raw = [0.25, 0.5, (-1.0f64 / 168.0).exp2()];
        let total: f64 = raw.iter().sum();
        for ((_, w), r) in weights(&c, TimeDecay).iter().zip(raw) {
            assert!((w - r / total).abs() < 1e-12);
        }
        let revenue: f64 = c
            .credits
            .iter()
            .filter(|x| x.model == Linear)
            .map(|x| x.revenue_credit)
            .sum();
        assert!((revenue - 10_000.0).abs() < 1e-6);
    }

    #[test]
    fn position_based_edge_cases() {
        let t0 = 10 * DAY_MS;
        let one = vec![rec("a", t0 - HOUR, Channel::Email, "newsletter")];
        let c = credit(&one, &conv(t0, 1.0), &CreditConfig::default());
        assert_eq!(
            weights(&c, AttributionModel::PositionBased),
            [("a".into(), 1.0)]
        );
        let two = vec![
            rec("a", t0 - 2 * HOUR, Channel::Email, "newsletter"),
            rec("b", t0 - HOUR, Channel::Referral, "partner.org"),
        ];
        let c = credit(&two, &conv(t0, 1.0), &CreditConfig::default());
        assert_eq!(
            weights(&c, AttributionModel::PositionBased),
            [("a".into(), 0.5), ("b".into(), 0.5)]
        );
    }

    #[test]
    fn lookback_and_future_touches_do_not_count() {
        let t0 = 100 * DAY_MS;
        let touches = vec![
            rec("old", t0 - 31 * DAY_MS, Channel::OrganicSearch, "google"),
            rec("edge", t0 - 30 * DAY_MS, Channel::OrganicSocial, "x"),
            rec("after", t0 + 1, Channel::PaidSocial, "facebook"),
        ];
        let c = credit(&touches, &conv(t0, 5.0), &CreditConfig::default());
        assert_eq!(c.touches_to_conversion, 1);
        assert!(c.credits.iter().all(|x| x.touch_event_id == "edge"));
    }

    #[test]
    fn all_direct_falls_back_to_last_touch_and_no_touch_gets_synthetic_direct() {
        let t0 = 100 * DAY_MS;
        let touches = vec![
            rec("a", t0 - 2 * HOUR, Channel::Direct, "(direct)"),
            rec("b", t0 - HOUR, Channel::Direct, "(direct)"),
        ];
        let c = credit(&touches, &conv(t0, 1.0), &CreditConfig::default());
        assert_eq!(
            weights(&c, AttributionModel::LastNonDirect),
            [("b".into(), 1.0)]
        );

        let c = credit(&[], &conv(t0, 42.0), &CreditConfig::default());
        assert_eq!(c.touches_to_conversion, 0);
        assert_eq!(c.days_to_conversion, 0.0);
        assert_eq!(c.credits.len(), AttributionModel::ALL.len());
        for x in &c.credits {
            assert_eq!(
                (x.touch_event_id.as_str(), x.channel),
                ("conv", Channel::Direct)
            );
            assert_eq!(
                (x.source.as_str(), x.weight, x.revenue_credit),
                ("(direct)", 1.0, 42.0)
            );
        }
    }

    #[test]
    fn duplicates_count_once_and_only_the_newest_touches_up_to_the_cap() {
        let t0 = 100 * DAY_MS;
        let a = rec("a", t0 - 2 * HOUR, Channel::OrganicSocial, "linkedin");
        let c = credit(&[a.clone(), a], &conv(t0, 1.0), &CreditConfig::default());
        assert_eq!(c.touches_to_conversion, 1);
        let many: Vec<TouchRecord> = (0..10)
            .map(|i| {
                rec(
                    &format!("t{i}"),
                    t0 - (10 - i) * HOUR,
                    Channel::Email,
                    "news",
                )
            })
            .collect();
        let capped = CreditConfig {
            max_touches: 4,
            ..CreditConfig::default()
        };
        let c = credit(&many, &conv(t0, 1.0), &capped);
        assert_eq!(c.touches_to_conversion, 4);
        assert_eq!(
            weights(&c, AttributionModel::FirstTouch),
            [("t6".into(), 1.0)]
        );
    }

    #[test]
    fn tiny_half_life_does_not_produce_nan() {
        let t0 = 100 * DAY_MS;
        let touches = vec![
            rec("a", t0 - 20 * DAY_MS, Channel::OrganicSocial, "x"),
            rec("b", t0 - 10 * DAY_MS, Channel::OrganicSocial, "x"),
        ];
        let config = CreditConfig {
            time_decay_half_life_ms: 1,
            ..CreditConfig::default()
        };
        let c = credit(&touches, &conv(t0, 1.0), &config);
        let w = weights(&c, AttributionModel::TimeDecay);
        assert_eq!(w, [("a".into(), 0.0), ("b".into(), 1.0)]);
    }

    #[test]
    fn model_names() {
        let names: Vec<_> = AttributionModel::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            names,
            [
                "first_touch",
                "last_touch",
                "last_non_direct",
                "linear",
                "position_based",
                "time_decay"
            ]
        );
        for m in AttributionModel::ALL {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
            assert_eq!(m.as_str().parse::<AttributionModel>().unwrap(), m);
        }
    }
}
