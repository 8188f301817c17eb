//! Every metric the sink emits, named once (`touchstream_sink_<what>_<unit>`).

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub fn consumed(n: u64) {
    counter!("touchstream_sink_events_in_total").increment(n);
}

pub fn inserted(events: usize, credits: usize, bytes: usize, took: Duration) {
    counter!("touchstream_sink_rows_inserted_total", "table" => "events").increment(events as u64);
    counter!("touchstream_sink_rows_inserted_total", "table" => "conversion_credits")
        .increment(credits as u64);
    counter!("touchstream_sink_bytes_inserted_total").increment(bytes as u64);
    histogram!("touchstream_sink_batch_rows").record(events as f64);
    histogram!("touchstream_sink_insert_latency_seconds").record(took.as_secs_f64());
    gauge!("touchstream_sink_last_insert_timestamp_seconds")
        .set(touchstream_model::time::now_ms() as f64 / 1000.0);
}

pub fn retry() {
    counter!("touchstream_sink_insert_retries_total").increment(1);
}

/// Records sent to the DLQ: rows ClickHouse refused, and attributed records that do not decode.
pub fn dlq(n: u64) {
    counter!("touchstream_sink_dlq_rows_total").increment(n);
}

/// Rows an erasure deleted (the count before its mutation), per table.
pub fn forgotten_rows(table: &str, n: u64) {
    counter!("touchstream_sink_forgotten_rows_total", "table" => table.to_string()).increment(n);
}

/// One run of the retention: partitions and rows dropped per table, and when it last ran.
pub fn retention(table: &str, partitions: usize, rows: u64) {
    counter!("touchstream_sink_retention_partitions_dropped_total", "table" => table.to_string())
        .increment(partitions as u64);
    counter!("touchstream_sink_retention_rows_dropped_total", "table" => table.to_string())
        .increment(rows);
    gauge!("touchstream_sink_retention_last_run_timestamp_seconds")
        .set(touchstream_model::time::now_ms() as f64 / 1000.0);
}
