//! `tracker::http::parse_reply` never panics on any body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = uringseed::tracker::http::parse_reply(data) {
        assert!(r.interval.as_secs() <= 7 * 24 * 3600);
    }
});
