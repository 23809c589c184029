//! The BEP 10/9/11 decoders and the extension dispatch never panic, and what they accept keeps
//! its bounds: handshakes, metadata and PEX messages from any bytes, and any sequence of
//! extended messages into one connection's `Extensions` (replies never exceed the per-read
//! metadata budget, PEX peers never exceed what one message may carry).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use uringseed::wire::extension::{decode_handshake, ExtEvent, Extensions, METADATA_BACKLOG};
use uringseed::wire::{metadata, pex};

fuzz_target!(|data: &[u8]| {
    let _ = decode_handshake(data);
    let _ = metadata::decode(data);
    if let Ok(peers) = pex::decode(data) {
        assert!(peers.len() <= pex::MAX_TAKEN);
    }
    // A sequence: each chunk is [id, len, payload...] for one extended message.
    let meta = bytes::Bytes::from(vec![0x64u8; 40_000]);
    let mut x = Extensions::new(Some(meta), data.first().is_some_and(|b| b & 1 == 0));
    let t0 = Instant::now();
    let mut rest = data;
    let mut step = 0u64;
    while rest.len() >= 2 {
        let (id, len) = (rest[0] % 4, usize::from(rest[1]) * 4);
        let payload = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        step += 1;
        let (mut replies, mut events) = (Vec::new(), Vec::new());
        let now = t0 + Duration::from_secs(step * 7);
        let unsent = usize::from(payload.first().copied().unwrap_or(0)) << 11;
        if x.handle(now, id, payload, unsent, &mut replies, &mut events)
            .is_err()
        {
            break;
        }
        // Data goes out only while the output waiting (and what this call added) stays under
        // the backlog bound.
        let data: usize = replies
            .iter()
            .filter(|(_, r)| {
                matches!(
                    metadata::decode(r),
                    Ok(metadata::MetadataMessage::Data { .. })
                )
            })
            .map(|(_, r)| r.len())
            .sum();
        assert!(data == 0 || unsent + data <= METADATA_BACKLOG + 64 * replies.len());
        let served = events
            .iter()
            .filter(|e| **e == ExtEvent::MetadataServed)
            .count();
        assert!(served <= replies.len());
        for e in &events {
            if let ExtEvent::Peers(p) = e {
                assert!(p.len() <= pex::MAX_TAKEN);
            }
        }
        let _ = x.poll_pex(now, &[]);
    }
});
