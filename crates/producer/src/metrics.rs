//! Every metric the producer emits, named once (`touchstream_producer_<what>_<unit>`).

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub fn request(route: &'static str, status: u16) {
    counter!("touchstream_producer_requests_total", "route" => route, "status" => status.to_string()).increment(1);
}

pub fn accepted(event_type: &'static str, n: u64) {
    counter!("touchstream_producer_events_accepted_total", "event_type" => event_type).increment(n);
}

/// `reason` is a short fixed category (invalid_event, body_too_large, bad_json …), never free text.
pub fn rejected(reason: &'static str, n: u64) {
    counter!("touchstream_producer_events_rejected_total", "reason" => reason).increment(n);
}

pub fn dropped_do_not_track(n: u64) {
    counter!("touchstream_producer_events_dropped_dnt_total").increment(n);
}

pub fn in_flight(n: usize) {
    gauge!("touchstream_producer_queue_depth_events").set(n as f64);
}

pub fn produce_latency(d: Duration) {
    histogram!("touchstream_producer_produce_latency_seconds").record(d.as_secs_f64());
}

pub fn delivery_error() {
    counter!("touchstream_producer_kafka_delivery_errors_total").increment(1);
}

pub fn dlq_written() {
    counter!("touchstream_producer_dlq_records_total").increment(1);
}

pub fn dlq_failed() {
    counter!("touchstream_producer_dlq_errors_total").increment(1);
}

/// The clock-skew correction applied to a live event (`event_time − occurred_at`), as an
/// absolute number of seconds; `direction` says whether the client's clock was behind (the
/// event moved later) or ahead.
pub fn clock_correction(ms: i64) {
    let direction = if ms >= 0 {
        "client_behind"
    } else {
        "client_ahead"
    };
    histogram!("touchstream_producer_clock_correction_seconds", "direction" => direction)
        .record(ms.unsigned_abs() as f64 / 1000.0);
}

/// A connection answered 503 and closed because `max_connections` were open.
pub fn connection_refused() {
    counter!("touchstream_producer_connections_refused_total").increment(1);
}

/// A request refused before it reached a route: hyper's parser refused it, or its head did
/// not arrive in time (408).
pub fn malformed_http(status: u16) {
    counter!("touchstream_producer_malformed_requests_total", "status" => status.to_string())
        .increment(1);
}
