//! The Avro decoder on arbitrary datums behind a valid header (the first byte picks the
//! schema, so the fuzzer reaches the datum decoder rather than the header check): never
//! panics, and what it decodes encodes, and decodes again to the same bytes (compared as
//! bytes: a decoded double may be NaN, which is not equal to itself).

#![no_main]

use libfuzzer_sys::fuzz_target;
use touchstream_avro::{DlqRecord, WireType, decode, encode};
use touchstream_model::{AttributedEvent, RawEvent};

fn round_trip<T: WireType>(datum: &[u8]) {
    let mut bytes = T::schema().header.to_vec();
    bytes.extend_from_slice(datum);
    if let Ok(value) = decode::<T>(&bytes) {
        let again = encode(&value).expect("a decoded value encodes");
        let decoded = decode::<T>(&again).expect("and decodes");
        assert_eq!(encode(&decoded).expect("encodes again"), again);
    }
    // The bytes as they are (a header of their own, or none) must not panic either.
    let _ = decode::<T>(datum);
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, datum)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => round_trip::<RawEvent>(datum),
        1 => round_trip::<AttributedEvent>(datum),
        _ => round_trip::<DlqRecord>(datum),
    }
});
