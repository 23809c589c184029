//! `Config::parse` never panics on any UTF-8 text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::parse(text, "fuzz") {
        c.validate("fuzz").expect("a parsed config validates");
        let _ = c.hashing.resume_dir();
    }
});
