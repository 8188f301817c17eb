//! Every metric the enricher emits, named once (`touchstream_enricher_<what>_<unit>`).

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub fn event_in(event_type: &'static str) {
    counter!("touchstream_enricher_events_in_total", "event_type" => event_type).increment(1);
}

pub fn event_out(event_type: &'static str) {
    counter!("touchstream_enricher_events_out_total", "event_type" => event_type).increment(1);
}

pub fn conversion(model: &'static str, channel: &str) {
    counter!("touchstream_enricher_conversions_total", "model" => model, "channel" => channel.to_string()).increment(1);
}

pub fn late_event() {
    counter!("touchstream_enricher_late_events_total").increment(1);
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

pub fn state(visitors: usize, bytes: usize) {
    gauge!("touchstream_enricher_state_visitors").set(visitors as f64);
    gauge!("touchstream_enricher_state_bytes").set(bytes as f64);
}

pub fn restored(partition: i32, visitors: usize, took: Duration) {
    counter!("touchstream_enricher_state_restores_total").increment(1);
    counter!("touchstream_enricher_state_restored_visitors_total").increment(visitors as u64);
    histogram!("touchstream_enricher_state_restore_seconds").record(took.as_secs_f64());
    tracing::info!(
        partition,
        visitors,
        took_ms = took.as_millis() as u64,
        "state restored"
    );
}
