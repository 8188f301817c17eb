//! One raw event plus its visitor's state in, one attributed event out. No I/O: the Kafka loop
//! calls this inside a transaction.

use touchstream_attribution::{
    Catalogue, Classifier, Conversion, ConversionKind, CreditConfig, Hit, SessionConfig,
    SessionEvent, Sessionizer, Touch, TouchRecord, credit,
};
use touchstream_model::time::{DAY_MS, MINUTE_MS};
use touchstream_model::{AttributedEvent, EventType, RawEvent, TouchFields};

use crate::config::EnricherConfig;
use crate::metrics;
use crate::state::VisitorState;

pub struct Attributor {
    classifier: Classifier,
    sessionizer: Sessionizer,
    credit: CreditConfig,
    lookback_ms: i64,
    max_touches: usize,
}

impl Attributor {
    pub fn new(cfg: &EnricherConfig) -> anyhow::Result<Self> {
        let catalogue = match &cfg.catalogue_path {
            Some(path) => Catalogue::from_path(path)?,
            None => Catalogue::builtin().clone(),
        };
        let a = &cfg.attribution;
        let lookback_ms = i64::from(a.lookback_days) * DAY_MS;
        Ok(Self {
            classifier: Classifier::new(catalogue, cfg.site_hosts.clone()),
            sessionizer: Sessionizer::new(SessionConfig {
                inactivity_ms: i64::from(a.session_timeout_minutes) * MINUTE_MS,
                max_lateness_ms: i64::from(a.allowed_lateness_minutes) * MINUTE_MS,
                ..SessionConfig::default()
            }),
            credit: CreditConfig {
                lookback_ms,
                time_decay_half_life_ms: (a.time_decay_half_life_days * DAY_MS as f64) as i64,
            },
            lookback_ms,
            max_touches: a.max_touches_per_visitor,
        })
    }

    /// Classifies the event's touch, places it in its session, keeps the touch history, and
    /// credits a conversion under every model.
    ///
    /// The touch fields of an event that opens no touch (internal clicks, conversions) are
    /// those of the visitor's last touch at or before it (Direct when there is none), so that
    /// "which network brought this signup?" has an answer on the event row too; its own flags
    /// (internal, bot, spam) are kept.
    pub fn attribute(&self, v: &mut VisitorState, raw: RawEvent) -> AttributedEvent {
        let t = raw.event_time;
        let touch = self.classifier.classify(&Hit {
            page_url: &raw.page_url,
            referrer: raw.referrer.as_deref(),
            user_agent: raw.user_agent.as_deref(),
        });
        if let Some(user_id) = raw.user_id.as_ref().filter(|u| !u.trim().is_empty()) {
            // Stitching: touches before the signup count for the conversions after it.
            v.user_id = Some(user_id.clone());
        }
        let is_click = raw.event_type == EventType::Click;
        let placed = self.sessionizer.observe(
            &mut v.sessions,
            SessionEvent {
                event_id: &raw.event_id,
                time_ms: t,
                touch: is_click.then_some(&touch),
            },
        );
        if placed.beyond_lateness {
            metrics::late_event();
        }
        // Bots are flagged, not dropped; they just don't count as touches. Too-late events are
        // attributed but do not rewrite a history whose conversions were already credited.
        let opens_touch = is_click
            && touch.opens_touch()
            && !touch.is_bot
            && !placed.beyond_lateness
            && !placed.duplicate;
        if opens_touch {
            let at = v
                .touches
                .partition_point(|r| (r.time_ms, r.event_id.as_str()) < (t, raw.event_id.as_str()));
            v.touches.insert(
                at,
                TouchRecord {
                    event_id: raw.event_id.clone(),
                    time_ms: t,
                    touch: touch.clone(),
                },
            );
        }
        v.max_event_time = v.max_event_time.max(t);
        self.evict(v);

        let conversion = match ConversionKind::from_event_type(raw.event_type.as_str()) {
            Some(kind) if !placed.duplicate => {
                v.lifecycle.record(kind);
                let revenue = raw.revenue.unwrap_or(0) as f64;
                let conv = Conversion {
                    event_id: raw.event_id.clone(),
                    time_ms: t,
                    revenue,
                };
                Some(to_wire(credit(&v.touches, &conv, &self.credit)))
            }
            _ => None,
        };
        let reported = if opens_touch {
            touch.clone()
        } else {
            let last = v
                .touches
                .iter()
                .rev()
                .find(|r| r.time_ms <= t)
                .map(|r| &r.touch);
            Touch {
                is_internal: touch.is_internal,
                is_bot: touch.is_bot,
                is_spam_referrer: touch.is_spam_referrer,
                ..last.cloned().unwrap_or(touch)
            }
        };
        AttributedEvent {
            session_id: format!("{}:{}", raw.anonymous_id, placed.session_number),
            identity_id: v
                .user_id
                .clone()
                .unwrap_or_else(|| raw.anonymous_id.clone()),
            lifecycle_stage: v.lifecycle.stage,
            purchase_count: i32::try_from(v.lifecycle.purchases).unwrap_or(i32::MAX),
            touch: touch_fields(&reported),
            opens_touch,
            conversion,
            event: raw,
            revision: 0,
            session: touchstream_model::SessionSource::default(),
            is_late: placed.beyond_lateness,
        }
    }

    /// Touches older than the lookback behind the newest event cannot be credited any more;
    /// beyond `max_touches` the oldest go first.
    fn evict(&self, v: &mut VisitorState) {
        let horizon = v.max_event_time.saturating_sub(self.lookback_ms);
        let expired = v.touches.partition_point(|r| r.time_ms < horizon);
        let excess = v
            .touches
            .len()
            .saturating_sub(expired)
            .saturating_sub(self.max_touches);
        v.touches.drain(..expired + excess);
    }
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

fn to_wire(c: touchstream_attribution::ConversionCredits) -> touchstream_model::ConversionCredits {
    touchstream_model::ConversionCredits {
        touches_to_conversion: i32::try_from(c.touches_to_conversion).unwrap_or(i32::MAX),
        days_to_conversion: c.days_to_conversion,
        credits: c
            .credits
            .into_iter()
            .map(|k| touchstream_model::Credit {
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
