//! What Message Stream Encryption costs the seed, against baselines measured in the same run.
//!
//! Run: `cargo bench --bench mse`. One thread, in memory:
//! - a full MSE handshake (both sides' key pairs and shared secrets: four 768-bit modular
//!   exponentiations, the hashes and RC4 set-up), against a SHA-1 of 68 bytes (the plain
//!   handshake's only work is a comparison, so this is a floor, not a competitor);
//! - RC4 over 64 MiB (what an RC4 peer costs per byte sent), against a `memcpy` of the same bytes
//!   (the copy every byte already costs on its way into the socket).

use sha1::{Digest, Sha1};
use std::time::Instant;
use uringseed::metainfo::InfoHash;
use uringseed::wire::mse::{self, Initiator, Policy, Responder};

fn handshake(i: u32) {
    let ih = InfoHash([7; 20]);
    let mut secret = [0x5a; 20];
    secret[..4].copy_from_slice(&i.to_le_bytes());
    let mut a = Initiator::new(secret, vec![], ih, mse::CRYPTO_RC4, vec![0; 68]);
    secret[4] ^= 0xff;
    let mut b = Responder::new(
        secret,
        vec![],
        Policy {
            allow_plaintext: true,
            prefer_rc4: false,
        },
    );
    let find = |h: &[u8; 20]| (*h == mse::req2_hash(&ih)).then_some(ih);
    b.feed(&a.take_output(), find).unwrap();
    a.feed(&b.take_output()).unwrap();
    let eb = b
        .feed(&a.take_output(), find)
        .unwrap()
        .expect("responder done");
    let ea = a.feed(&b.take_output()).unwrap().expect("initiator done");
    assert_eq!(ea.method, eb.method);
}

fn main() {
    let n = 200u32;
    let t = Instant::now();
    for i in 0..n {
        handshake(i);
    }
    let per_handshake = t.elapsed().as_secs_f64() / f64::from(n);
    let t = Instant::now();
    let mut h = [0u8; 20];
    for i in 0..100_000u32 {
        let mut s = Sha1::new();
        s.update(i.to_le_bytes());
        s.update([0u8; 64]);
        h = s.finalize().into();
    }
    let per_sha1 = t.elapsed().as_secs_f64() / 100_000.0;
    std::hint::black_box(h);

    let len = 64usize << 20;
    let src = vec![0x42u8; len];
    let mut dst = vec![0u8; len];
    let t = Instant::now();
    for _ in 0..4 {
        dst.copy_from_slice(std::hint::black_box(&src));
    }
    let copy_gbs = 4.0 * len as f64 / t.elapsed().as_secs_f64() / 1e9;
    let mut rc4 = mse::Rc4::new(b"benchmark key");
    let t = Instant::now();
    rc4.apply(&mut dst);
    let rc4_gbs = len as f64 / t.elapsed().as_secs_f64() / 1e9;
    std::hint::black_box(&dst);

    println!("| what (1 thread) | figure | × baseline |");
    println!("|---|---|---|");
    println!(
        "| SHA-1 of 68 bytes (floor) | {:.2} µs | 1 |",
        per_sha1 * 1e6
    );
    println!(
        "| full MSE handshake, both sides | {:.2} ms ({:.0} per second; the seed's side is about half) | {:.0} |",
        per_handshake * 1e3,
        1.0 / per_handshake,
        per_handshake / per_sha1
    );
    println!("| memcpy | {copy_gbs:.2} GB/s | 1 |");
    println!("| RC4 | {rc4_gbs:.2} GB/s | {:.2} |", rc4_gbs / copy_gbs);
}
