//! Touch classification on arbitrary page URLs, referrers and user agents: it never fails or
//! panics, and gives the same answer twice (its memo caches must not change the result).

#![no_main]

use libfuzzer_sys::fuzz_target;
use touchstream_attribution::{Catalogue, Classifier, Hit};

thread_local! {
    static CLASSIFIER: Classifier =
        Classifier::new(Catalogue::builtin().clone(), vec!["shop.example".into()]);
}

fuzz_target!(|data: &[u8]| {
    // Three fields separated by newlines; a missing one is None.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let page_url = parts.next().unwrap_or_default();
    let referrer = parts.next();
    let user_agent = parts.next();
    let hit = Hit {
        page_url,
        referrer,
        user_agent,
    };
    CLASSIFIER.with(|c| {
        let first = c.classify(&hit);
        let second = c.classify(&hit);
        assert_eq!(first, second);
    });
});
