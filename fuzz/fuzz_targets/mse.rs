//! The MSE handshake machines (`wire::mse`) never panic and stay within their bounds: raw bytes
//! fed to a responder or an initiator in chunks of any size, and honest exchanges between the
//! two with fuzz-chosen offers, pads, initial payload and policy, optionally with one byte of
//! the initiator's flight flipped. An untouched exchange must finish exactly when the policy
//! allows one of the offered methods, on both sides alike, with the IA delivered intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::metainfo::InfoHash;
use uringseed::wire::mse::{self, Initiator, Policy, Responder, MAX_IA, MAX_PAD};

const IH: InfoHash = InfoHash([0x33; 20]);

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let split = usize::from(head[1]).max(1);
    let policy = Policy {
        allow_plaintext: head[2] & 1 != 0,
        prefer_rc4: head[2] & 2 != 0,
    };
    let find = |h: &[u8; 20]| (*h == mse::req2_hash(&IH)).then_some(IH);
    match head[0] % 4 {
        0 => {
            let mut b = Responder::new([1; 20], vec![], policy);
            for c in rest.chunks(split) {
                match b.feed(c, find) {
                    Err(_) | Ok(Some(_)) => break,
                    Ok(None) => {}
                }
            }
        }
        1 => {
            let mut a = Initiator::new([2; 20], vec![], IH, 3, vec![]);
            for c in rest.chunks(split) {
                match a.feed(c) {
                    Err(_) | Ok(Some(_)) => break,
                    Ok(None) => {}
                }
            }
        }
        mode => {
            let provide = u32::from(head[3]);
            let pad_a = (usize::from(head[4]) * 2).min(MAX_PAD);
            let pad_b = (usize::from(head[5]) * 2).min(MAX_PAD);
            let ia = &rest[..rest.len().min(MAX_IA)];
            let flip = (mode == 3).then(|| usize::from(u16::from_le_bytes([head[6], head[7]])));
            let mut a = Initiator::new([2; 20], vec![0xa; pad_a], IH, provide, ia.to_vec());
            let mut b = Responder::new([1; 20], vec![0xb; pad_b], policy);
            let (mut done_a, mut done_b, mut failed) = (None, None, false);
            let mut sent = 0usize;
            for _round in 0..4 {
                let mut out = a.take_output();
                if let Some(at) = flip.and_then(|f| f.checked_sub(sent)) {
                    if at < out.len() {
                        out[at] ^= 0x80;
                    }
                }
                sent += out.len();
                for c in out.chunks(split) {
                    match b.feed(c, find) {
                        Err(_) => failed = true,
                        Ok(Some(e)) => done_b = Some(e),
                        Ok(None) => {}
                    }
                    if failed {
                        break;
                    }
                }
                if failed {
                    break;
                }
                match a.feed(&b.take_output()) {
                    Err(_) => {
                        failed = true;
                        break;
                    }
                    Ok(Some(e)) => done_a = Some(e),
                    Ok(None) => {}
                }
                if done_a.is_some() && done_b.is_some() {
                    break;
                }
            }
            if flip.is_none() {
                let expect = policy.select(provide);
                match (expect, done_a, done_b) {
                    (Some(m), Some(ea), Some(eb)) => {
                        assert_eq!((ea.method, eb.method), (m, m));
                        assert_eq!(eb.initial, ia);
                        assert_eq!(ea.rx.is_some(), m == mse::CRYPTO_RC4);
                    }
                    (None, _, None) => assert!(failed),
                    (e, a, b) => panic!(
                        "expected {e:?}, initiator done {}, responder done {}",
                        a.is_some(),
                        b.is_some()
                    ),
                }
            }
        }
    }
});
