//! The request body reader on arbitrary bytes, as gzip and as plain text: never panics, never
//! inflates past its limit, and a body it takes is a non-empty batch within the limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use producer::body::{Limits, gunzip, parse};

const LIMITS: Limits = Limits {
    max_body_bytes: 64 * 1024,
    max_decompressed_bytes: 256 * 1024,
    max_batch_events: 50,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(inflated) = gunzip(data, LIMITS.max_decompressed_bytes) {
        assert!(inflated.len() <= LIMITS.max_decompressed_bytes);
    }
    for gzip in [true, false] {
        if let Ok(events) = parse(data, gzip, &LIMITS) {
            assert!(!events.is_empty() && events.len() <= LIMITS.max_batch_events);
        }
    }
});
