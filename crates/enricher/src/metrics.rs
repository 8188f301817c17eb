//! Every metric the enricher emits, named once (`touchstream_enricher_<what>_<unit>`).

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub fn event_in(event_type: &'static str) {
    counter!("touchstream_enricher_events_in_total", "event_type" => event_type).increment(1);
}

pub fn event_out(event_type: &'static str) {
    counter!("touchstream_enricher_events_out_total", "event_type" => event_type).increment(1);
}

/// One credited touch of a new conversion (weight > 0) under `model`; `social_network` is the
/// touch's network, "none" when it has none (the catalogue's and GA4's lists bound the values).
pub fn conversion(model: &'static str, channel: &str, social_network: Option<&str>) {
    counter!(
        "touchstream_enricher_conversions_total",
        "model" => model,
        "channel" => channel.to_string(),
        "social_network" => social_network.unwrap_or("none").to_string()
    )
    .increment(1);
}

/// Later than the allowed lateness behind its device's newest event: attributed best effort.
pub fn late_event() {
    counter!("touchstream_enricher_late_events_total").increment(1);
}

/// An event id seen again inside the lateness window: dropped (its first copy stands).
pub fn duplicate() {
    counter!("touchstream_enricher_duplicate_events_total").increment(1);
}

/// A conversion written again with a higher revision; `reason`: late_touch, link, moved,
/// lifecycle or session.
pub fn recredit(reason: &'static str) {
    counter!("touchstream_enricher_recredits_total", "reason" => reason).increment(1);
}

/// Earlier events (not conversions) whose session a late event changed: their rows keep the
/// session they were written with.
pub fn session_changes_kept(n: usize) {
    if n > 0 {
        counter!("touchstream_enricher_session_changes_total").increment(n as u64);
    }
}

/// A record for a user on the person topic; `kind`: link, event, touch, moved or sessions.
pub fn person_record(kind: &'static str) {
    counter!("touchstream_enricher_person_records_total", "kind" => kind).increment(1);
}

pub fn poison() {
    counter!("touchstream_enricher_dlq_records_total").increment(1);
}

pub fn committed(records: usize, took: Duration) {
    counter!("touchstream_enricher_transactions_total", "outcome" => "commit").increment(1);
    histogram!("touchstream_enricher_transaction_duration_seconds").record(took.as_secs_f64());
    histogram!("touchstream_enricher_transaction_records").record(records as f64);
}

pub fn aborted() {
    counter!("touchstream_enricher_transactions_total", "outcome" => "abort").increment(1);
}

pub fn restarts() {
    counter!("touchstream_enricher_restarts_total").increment(1);
}

/// The states this instance holds; `store`: device or person.
pub fn state(store: &'static str, states: usize, bytes: usize) {
    gauge!("touchstream_enricher_state_entries", "store" => store).set(states as f64);
    gauge!("touchstream_enricher_state_bytes", "store" => store).set(bytes as f64);
}

pub fn restored(store: &'static str, partition: i32, states: usize, took: Duration) {
    counter!("touchstream_enricher_state_restores_total", "store" => store).increment(1);
    counter!("touchstream_enricher_state_restored_entries_total", "store" => store)
        .increment(states as u64);
    histogram!("touchstream_enricher_state_restore_seconds").record(took.as_secs_f64());
    tracing::info!(
        store,
        partition,
        states,
        took_ms = took.as_millis() as u64,
        "state restored"
    );
}

/// State entries an erasure removed; `store`: device, person or conversion.
pub fn forgotten(store: &'static str, n: u64) {
    if n > 0 {
        counter!("touchstream_enricher_forgotten_total", "store" => store).increment(n);
    }
}
