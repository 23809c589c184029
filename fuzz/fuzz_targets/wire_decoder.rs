//! `wire::message::decode` over a byte stream and `Handshake::decode` never panic; decoded
//! known messages re-encode to exactly the bytes they came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::wire::message::{self, Decoded, Message, WireError};
use uringseed::wire::Handshake;

fuzz_target!(|data: &[u8]| {
    let _ = Handshake::decode(data);
    if let Ok(Some(hs)) = Handshake::decode(data) {
        assert_eq!(&hs.encode()[..], &data[..68]);
    }
    if data.len() < 4 {
        return;
    }
    // Cap from the first bytes: small caps exercise TooLong; 0 only allows keep-alives.
    let cap = match data[0] % 4 {
        0 => u32::from(data[1]),
        1 => u32::from(u16::from_le_bytes([data[1], data[2]])),
        2 => 1 << 20,
        _ => u32::from_le_bytes([data[0] & 0xfc, data[1], data[2], data[3]]),
    };
    let buf = &data[4..];
    let mut at = 0;
    while at < buf.len() {
        match message::decode(&buf[at..], cap) {
            Ok(Decoded::Message(msg, used)) => {
                assert!(used >= 4 && used <= buf.len() - at, "used {used}");
                assert!(used as u64 - 4 <= u64::from(cap));
                if !matches!(msg, Message::Unknown { .. }) {
                    let mut out = Vec::new();
                    message::encode(&msg, &mut out);
                    assert_eq!(&out[..], &buf[at..at + used], "{msg:?} does not round-trip");
                }
                at += used;
            }
            Ok(Decoded::NeedMore(n)) => {
                assert!(n > 0);
                break;
            }
            Err(WireError::TooLong { len, cap: c }) => {
                assert!(len > c && c == cap);
                break;
            }
            Err(WireError::BadLength { .. }) => break,
        }
    }
});
