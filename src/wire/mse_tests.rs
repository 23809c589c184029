//! Tests of the MSE handshake: RC4 against published vectors, both sides against each other
//! at every split of the byte streams, and the bounds on hostile input.

use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[test]
fn rc4_matches_published_vectors() {
    for (key, plain, cipher) in [
        ("Key", "Plaintext", "BBF316E8D940AF0AD3"),
        ("Wiki", "pedia", "1021BF0420"),
        ("Secret", "Attack at dawn", "45A01F645FC35B383552544B9BF5"),
    ] {
        let mut data = plain.as_bytes().to_vec();
        Rc4::new(key.as_bytes()).apply(&mut data);
        assert_eq!(hex(&data), cipher, "key {key}");
        // Split application continues the same stream.
        let mut rc4 = Rc4::new(key.as_bytes());
        let mut split = plain.as_bytes().to_vec();
        let (a, b) = split.split_at_mut(3);
        rc4.apply(a);
        rc4.apply(b);
        assert_eq!(hex(&split), cipher);
    }
}

#[test]
fn key_exchange_agrees_and_public_keys_are_full_width() {
    let a = KeyPair::new([0x11; 20]);
    let b = KeyPair::new([0x22; 20]);
    assert_eq!(a.shared(&b.public), b.shared(&a.public));
    assert!(a.shared(&b.public).is_some());
    assert_eq!(a.public.len(), KEY_LEN);
    // 2^1 mod P = 2: a tiny key still encodes to 96 bytes, left-padded with zeros.
    let mut one = [0u8; 20];
    one[19] = 1;
    let k = KeyPair::new(one);
    assert_eq!(k.public[..95], [0u8; 95]);
    assert_eq!(k.public[95], 2);
    // Degenerate peer keys are refused.
    assert_eq!(a.shared(&[0u8; KEY_LEN]), None);
    let mut y1 = [0u8; KEY_LEN];
    y1[95] = 1;
    assert_eq!(a.shared(&y1), None);
    assert_eq!(a.shared(PRIME), None);
}

const IH: InfoHash = InfoHash([0xab; 20]);

fn find(h: &[u8; 20]) -> Option<InfoHash> {
    (*h == req2_hash(&IH)).then_some(IH)
}

/// Runs a whole handshake, delivering each side's bytes in pieces of `chunk` bytes (the last
/// flight also carrying `a_extra` payload from A), and checks both ends agree.
fn run(
    provide: u32,
    policy: Policy,
    pads: (usize, usize),
    chunk: usize,
) -> Result<(Established, Established), MseError> {
    let ia = b"\x13BitTorrent protocol handshake".to_vec();
    let mut a = Initiator::new([3; 20], vec![0x5a; pads.0], IH, provide, ia.clone());
    let mut b = Responder::new([4; 20], vec![0xa5; pads.1], policy);
    let (mut done_a, mut done_b) = (None, None);
    for _round in 0..8 {
        let to_b = a.take_output();
        for c in to_b.chunks(chunk.max(1)) {
            if let Some(e) = b.feed(c, find)? {
                done_b = Some(e);
            }
        }
        let to_a = b.take_output();
        for c in to_a.chunks(chunk.max(1)) {
            if let Some(e) = a.feed(c)? {
                done_a = Some(e);
            }
        }
        if done_a.is_some() && done_b.is_some() {
            break;
        }
    }
    let (ea, eb) = (done_a.expect("A finished"), done_b.expect("B finished"));
    assert_eq!(eb.initial, ia, "B gets the IA in clear");
    assert_eq!(ea.method, eb.method);
    assert_eq!((ea.info_hash, eb.info_hash), (IH, IH));
    Ok((ea, eb))
}

/// The payload after the handshake goes through in both directions.
fn payload_flows(mut ea: Established, mut eb: Established) {
    for (tx, rx) in [(&mut ea.tx, &mut eb.rx), (&mut eb.tx, &mut ea.rx)] {
        let msg = b"\x00\x00\x00\x01\x02 interested and more".to_vec();
        let mut wire = msg.clone();
        if let Some(t) = tx {
            t.apply(&mut wire);
            assert_ne!(wire, msg, "RC4 payload is not sent in clear");
        }
        if let Some(r) = rx {
            r.apply(&mut wire);
        }
        assert_eq!(wire, msg);
    }
}

#[test]
fn both_sides_agree_at_every_chunk_size_and_pad_length() {
    let prefer_plain = Policy {
        allow_plaintext: true,
        prefer_rc4: false,
    };
    for chunk in [1, 7, 20, 96, 97, 4096] {
        for pads in [(0, 0), (1, 511), (512, 512), (37, 0)] {
            let (ea, eb) = run(CRYPTO_RC4 | CRYPTO_PLAINTEXT, prefer_plain, pads, chunk).unwrap();
            assert_eq!(ea.method, CRYPTO_PLAINTEXT);
            assert!(ea.tx.is_none() && eb.rx.is_none());
            payload_flows(ea, eb);
            let (ea, eb) = run(CRYPTO_RC4, prefer_plain, pads, chunk).unwrap();
            assert_eq!(ea.method, CRYPTO_RC4);
            assert!(ea.tx.is_some() && eb.rx.is_some());
            payload_flows(ea, eb);
        }
    }
}

#[test]
fn payload_sent_with_the_third_message_reaches_the_responder_decrypted() {
    let strict = Policy {
        allow_plaintext: false,
        prefer_rc4: true,
    };
    // The same secrets give the same streams: a first run yields A's RC4 state after its IA,
    // with which a second run sends payload in the same flight as the third message (as a
    // client that offered RC4 only may).
    let handshake = || {
        let mut a = Initiator::new([3; 20], vec![], IH, CRYPTO_RC4, b"hs".to_vec());
        let mut b = Responder::new([4; 20], vec![], strict);
        assert!(b.feed(&a.take_output(), find).unwrap().is_none());
        assert!(a.feed(&b.take_output()).unwrap().is_none());
        (a, b)
    };
    let (mut a, mut b) = handshake();
    b.feed(&a.take_output(), find).unwrap().expect("B done");
    let mut tx_after_ia = a
        .feed(&b.take_output())
        .unwrap()
        .expect("A done")
        .tx
        .unwrap();
    let (mut a, mut b) = handshake();
    let mut flight = a.take_output();
    let mut payload = b"bitfield".to_vec();
    tx_after_ia.apply(&mut payload);
    flight.extend(payload);
    let eb = b.feed(&flight, find).unwrap().expect("B done");
    assert_eq!(eb.initial, b"hsbitfield");
}

#[test]
fn bytes_after_the_answer_reach_the_initiator_decrypted() {
    let mut a = Initiator::new([3; 20], vec![], IH, CRYPTO_RC4, vec![]);
    let mut b = Responder::new(
        [4; 20],
        vec![1; 10],
        Policy {
            allow_plaintext: true,
            prefer_rc4: true,
        },
    );
    b.feed(&a.take_output(), find).unwrap();
    let yb = b.take_output();
    assert!(a.feed(&yb).unwrap().is_none());
    let mut eb = b.feed(&a.take_output(), find).unwrap().unwrap();
    let mut answer = b.take_output();
    let mut hs = b"our handshake".to_vec();
    eb.tx.as_mut().unwrap().apply(&mut hs);
    answer.extend(hs);
    let ea = a.feed(&answer).unwrap().unwrap();
    assert_eq!(ea.initial, b"our handshake");
}

#[test]
fn policy_picks_the_cheapest_allowed_method() {
    let p = |allow_plaintext, prefer_rc4| Policy {
        allow_plaintext,
        prefer_rc4,
    };
    let both = CRYPTO_RC4 | CRYPTO_PLAINTEXT;
    assert_eq!(p(true, false).select(both), Some(CRYPTO_PLAINTEXT));
    assert_eq!(p(true, true).select(both), Some(CRYPTO_RC4));
    assert_eq!(p(false, false).select(both), Some(CRYPTO_RC4));
    assert_eq!(p(false, false).select(CRYPTO_PLAINTEXT), None);
    assert_eq!(p(true, false).select(CRYPTO_RC4), Some(CRYPTO_RC4));
    assert_eq!(p(true, false).select(0), None);
    assert_eq!(p(true, false).select(0x0c), None, "unknown methods only");
}

#[test]
fn hostile_input_fails_within_bounds() {
    let policy = Policy {
        allow_plaintext: true,
        prefer_rc4: false,
    };
    // No synchronisation hash within PadA's bound.
    let mut b = Responder::new([4; 20], vec![], policy);
    let mut garbage = KeyPair::new([9; 20]).public.to_vec();
    garbage.extend(vec![0x77; MAX_PAD + 19]);
    assert!(b.feed(&garbage, find).unwrap().is_none());
    assert_eq!(b.feed(&[0x77], find).err(), Some(MseError::NoSync));
    // A degenerate key.
    let mut b = Responder::new([4; 20], vec![], policy);
    assert_eq!(
        b.feed(&[0u8; KEY_LEN], find).err(),
        Some(MseError::BadPublicKey)
    );
    // A torrent not served here.
    let other = InfoHash([0xcd; 20]);
    let mut a = Initiator::new([3; 20], vec![], other, CRYPTO_RC4, vec![]);
    let mut b = Responder::new([4; 20], vec![], policy);
    b.feed(&a.take_output(), find).unwrap();
    a.feed(&b.take_output()).unwrap();
    assert_eq!(
        b.feed(&a.take_output(), find).err(),
        Some(MseError::UnknownInfoHash)
    );
    // Only methods the responder refuses.
    let strict = Policy {
        allow_plaintext: false,
        prefer_rc4: true,
    };
    assert_eq!(
        run(CRYPTO_PLAINTEXT, strict, (0, 0), 4096).err(),
        Some(MseError::NoCommonMethod)
    );
    // A responder whose answer never comes: the initiator gives up after PadB's bound.
    let mut a = Initiator::new([3; 20], vec![], IH, CRYPTO_RC4, vec![]);
    let mut reply = KeyPair::new([8; 20]).public.to_vec();
    reply.extend(vec![0x42; MAX_PAD + 8]);
    assert_eq!(a.feed(&reply).err(), Some(MseError::NoSync));
    // A tampered encrypted field (flip a VC bit) on the responder side.
    let mut a = Initiator::new([3; 20], vec![], IH, CRYPTO_RC4, vec![]);
    let mut b = Responder::new([4; 20], vec![], policy);
    b.feed(&a.take_output(), find).unwrap();
    a.feed(&b.take_output()).unwrap();
    let mut third = a.take_output();
    third[40] ^= 1;
    assert_eq!(b.feed(&third, find).err(), Some(MseError::BadVc));
}

#[test]
fn the_answer_goes_out_before_the_initial_payload_arrives() {
    // libtorrent writes its handshake (IA) apart from the rest of the third message; a reply
    // held back until IA arrives cost it a delayed ACK per connection.
    let ia = b"\x13BitTorrent protocol handshake".to_vec();
    let mut a = Initiator::new([3; 20], vec![], IH, CRYPTO_RC4, ia.clone());
    let mut b = Responder::new(
        [4; 20],
        vec![],
        Policy {
            allow_plaintext: true,
            prefer_rc4: false,
        },
    );
    assert!(b.feed(&a.take_output(), find).unwrap().is_none());
    assert!(a.feed(&b.take_output()).unwrap().is_none());
    let third = a.take_output();
    let (fields, ia_bytes) = third.split_at(third.len() - ia.len());
    assert!(b.feed(fields, find).unwrap().is_none(), "IA still missing");
    let answer = b.take_output();
    assert_eq!(
        answer.len(),
        14,
        "VC, crypto_select, len(PadD) sent before IA"
    );
    let eb = b.feed(ia_bytes, find).unwrap().expect("B done with IA");
    assert_eq!(eb.initial, ia);
    assert!(b.take_output().is_empty(), "the answer is sent once");
    let ea = a.feed(&answer).unwrap().expect("A done");
    assert_eq!(ea.method, eb.method);
}
