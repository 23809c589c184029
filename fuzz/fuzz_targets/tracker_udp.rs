//! `tracker::udp::parse_connect` and `parse_announce` never panic on any packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::tracker::udp;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let flags = data[0];
    let v6 = flags & 1 != 0;
    let mut p = &data[1..];
    // Either a transaction id from the input, or the one the packet itself carries (so that
    // the body is reached without the fuzzer having to guess the id twice).
    let tid = if flags & 2 != 0 {
        let t = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        p = &p[4..];
        t
    } else if p.len() >= 8 {
        u32::from_be_bytes([p[4], p[5], p[6], p[7]])
    } else {
        0
    };
    let _ = udp::parse_connect(p, tid);
    if let Ok(Some(r)) = udp::parse_announce(p, tid, v6) {
        assert_eq!(r.peers.len(), (p.len() - 20) / if v6 { 18 } else { 6 });
    }
});
