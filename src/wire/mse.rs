//! Message Stream Encryption (MSE, also "PE"): the obfuscated handshake that libtorrent,
//! Transmission, rtorrent and others try before (or instead of) the plain BitTorrent handshake,
//! and the RC4 stream it may select. Sans I/O: the caller feeds received bytes, sends what
//! [`Responder::take_output`] / [`Initiator::take_output`] return, and supplies the randomness
//! (private key, padding) so tests are deterministic.
//!
//! Protocol facts (the MSE specification): Diffie-Hellman over a 768-bit prime with generator 2
//! and 160-bit private keys; public keys are 96 bytes big-endian; the initiator A sends
//! `Ya, PadA`; the responder B sends `Yb, PadB`; A sends `HASH("req1", S)`,
//! `HASH("req2", SKEY) xor HASH("req3", S)` and, RC4-encrypted with `HASH("keyA", S, SKEY)`,
//! `VC (8 zero bytes), crypto_provide (u32), len(PadC) (u16), PadC, len(IA) (u16), IA`; B answers,
//! encrypted with `HASH("keyB", S, SKEY)`, `VC, crypto_select, len(PadD), PadD`. Then the payload
//! continues under the same RC4 streams, or in plaintext if plaintext was selected. Both RC4
//! streams drop their first 1024 bytes; pads are at most 512 bytes; SKEY is the info-hash.
//!
//! Sans I/O: no sockets, no clock; randomness is passed in.

use crate::metainfo::InfoHash;
use crate::reasons::DropReason;
use num_bigint::BigUint;
use sha1::{Digest, Sha1};

/// The 768-bit prime of the MSE key exchange.
const PRIME: &[u8; 96] = b"\xff\xff\xff\xff\xff\xff\xff\xff\xc9\x0f\xda\xa2\x21\x68\xc2\x34\
\xc4\xc6\x62\x8b\x80\xdc\x1c\xd1\x29\x02\x4e\x08\x8a\x67\xcc\x74\x02\x0b\xbe\xa6\x3b\x13\x9b\x22\
\x51\x4a\x08\x79\x8e\x34\x04\xdd\xef\x95\x19\xb3\xcd\x3a\x43\x1b\x30\x2b\x0a\x6d\xf2\x5f\x14\x37\
\x4f\xe1\x35\x6d\x6d\x51\xc2\x45\xe4\x85\xb5\x76\x62\x5e\x7e\xc6\xf4\x4c\x42\xe9\xa6\x3a\x36\x21\
\x00\x00\x00\x00\x00\x09\x05\x63";
/// Public key length in bytes.
pub const KEY_LEN: usize = 96;
/// Longest PadA/PadB/PadC/PadD.
pub const MAX_PAD: usize = 512;
/// Longest initial payload (IA) accepted; clients put their 68-byte handshake there, at most a
/// few messages more.
pub const MAX_IA: usize = 4096;
/// `crypto_provide`/`crypto_select` bits.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
pub const CRYPTO_RC4: u32 = 0x02;
const VC: [u8; 8] = [0; 8];

/// Why an MSE handshake failed (a drop reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MseError {
    /// The peer's public key is 0, 1 or not below the prime minus one.
    BadPublicKey,
    /// The synchronisation hash (B) or encrypted VC (A) did not come within the padding bound.
    NoSync,
    /// SKEY names no torrent served here.
    UnknownInfoHash,
    /// The decrypted verification constant is not zero: wrong keys or garbage.
    BadVc,
    /// A pad or IA length above its bound.
    BadLength,
    /// No payload method both sides allow, or a selection we did not offer.
    NoCommonMethod,
}

impl MseError {
    /// Why the connection is dropped.
    pub fn reason(&self) -> DropReason {
        match self {
            MseError::BadPublicKey => DropReason::MseBadKey,
            MseError::NoSync => DropReason::MseNoSync,
            MseError::UnknownInfoHash => DropReason::UnknownInfoHash,
            MseError::BadVc => DropReason::MseBadVc,
            MseError::BadLength => DropReason::MseBadLength,
            MseError::NoCommonMethod => DropReason::MseNoCommonMethod,
        }
    }
}

/// RC4 keystream (the only cipher MSE defines).
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    pub fn new(key: &[u8]) -> Rc4 {
        let mut s = [0u8; 256];
        for (k, v) in s.iter_mut().enumerate() {
            *v = k as u8;
        }
        let mut j = 0u8;
        for k in 0..256 {
            j = j.wrapping_add(s[k]).wrapping_add(key[k % key.len()]);
            s.swap(k, j as usize);
        }
        Rc4 { s, i: 0, j: 0 }
    }

    /// An MSE stream: keyed with a 20-byte hash, first 1024 keystream bytes dropped.
    fn mse(key: &[u8; 20]) -> Rc4 {
        let mut rc4 = Rc4::new(key);
        rc4.apply(&mut [0u8; 1024]);
        rc4
    }

    /// Encrypts or decrypts `data` in place (XOR with the next keystream bytes).
    pub fn apply(&mut self, data: &mut [u8]) {
        let (mut i, mut j) = (self.i, self.j);
        for b in data {
            i = i.wrapping_add(1);
            j = j.wrapping_add(self.s[i as usize]);
            self.s.swap(i as usize, j as usize);
            let k = self.s[i as usize].wrapping_add(self.s[j as usize]);
            *b ^= self.s[k as usize];
        }
        (self.i, self.j) = (i, j);
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HASH("req2", SKEY)`: what a responder matches (after removing the req3 mask) to find the
/// torrent an initiator wants.
pub fn req2_hash(info_hash: &InfoHash) -> [u8; 20] {
    hash(&[b"req2", &info_hash.0])
}

/// One side's Diffie-Hellman key pair.
pub struct KeyPair {
    private: BigUint,
    public: [u8; KEY_LEN],
}

fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let b = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - b.len()..].copy_from_slice(&b);
    out
}

impl KeyPair {
    /// A key pair from 160 random bits.
    pub fn new(secret: [u8; 20]) -> KeyPair {
        let private = BigUint::from_bytes_be(&secret);
        let public = BigUint::from(2u8).modpow(&private, &BigUint::from_bytes_be(PRIME));
        KeyPair {
            private,
            public: to_key_bytes(&public),
        }
    }

    /// The shared secret S from the peer's public key; None for a degenerate key.
    fn shared(&self, theirs: &[u8]) -> Option<[u8; KEY_LEN]> {
        let p = BigUint::from_bytes_be(PRIME);
        let y = BigUint::from_bytes_be(theirs);
        if y <= BigUint::from(1u8) || y >= &p - 1u8 {
            return None;
        }
        Some(to_key_bytes(&y.modpow(&self.private, &p)))
    }
}

/// A finished handshake.
pub struct Established {
    /// SKEY: the torrent the initiator asked for (or that we asked for).
    pub info_hash: InfoHash,
    /// The payload method: [`CRYPTO_RC4`] or [`CRYPTO_PLAINTEXT`].
    pub method: u32,
    /// Decrypts what the peer sends from now on (None: plaintext).
    pub rx: Option<Rc4>,
    /// Encrypts what we send from now on (None: plaintext).
    pub tx: Option<Rc4>,
    /// Payload bytes already received, decrypted: the initiator's IA and anything after it.
    pub initial: Vec<u8>,
}

/// Received bytes with a cursor; what lies before the cursor is consumed.
#[derive(Default)]
struct Input {
    buf: Vec<u8>,
    pos: usize,
}

impl Input {
    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes, decrypted in place with `rc4`, if all have arrived.
    fn take(&mut self, n: usize, rc4: &mut Rc4) -> Option<&[u8]> {
        if self.available() < n {
            return None;
        }
        let s = &mut self.buf[self.pos..self.pos + n];
        rc4.apply(s);
        self.pos += n;
        Some(s)
    }

    /// Whatever is left, decrypted with `rc4` when the payload is encrypted.
    fn rest(mut self, rc4: Option<&mut Rc4>) -> Vec<u8> {
        let mut rest = self.buf.split_off(self.pos);
        if let Some(rc4) = rc4 {
            rc4.apply(&mut rest);
        }
        rest
    }
}

/// Where the handshake stands.
enum State {
    /// Waiting for the peer's 96-byte public key.
    Key,
    /// Scanning for the synchronisation pattern.
    Sync {
        secret: [u8; KEY_LEN],
    },
    /// Reading the encrypted fields; `stage` counts the fixed parts done.
    Fields {
        info_hash: InfoHash,
        rx: Rc4,
        tx: Rc4,
        stage: u8,
        method: u32,
        len: usize,
    },
    /// (Initiator) Scanning for the responder's encrypted VC.
    Vc {
        info_hash: InfoHash,
        rx: Rc4,
        tx: Rc4,
        pattern: [u8; 8],
    },
    Done,
}

impl State {
    /// Reading the encrypted fields from the start.
    fn fields(info_hash: InfoHash, rx: Rc4, tx: Rc4) -> State {
        State::Fields {
            info_hash,
            rx,
            tx,
            stage: 0,
            method: 0,
            len: 0,
        }
    }
}

/// Ends a handshake that is in the `Fields` state: the payload streams (RC4 only if selected)
/// and the payload bytes received so far, `head` (already decrypted) first.
fn establish(state: &mut State, input: &mut Input, mut head: Vec<u8>) -> Established {
    let State::Fields {
        info_hash,
        mut rx,
        tx,
        method,
        ..
    } = std::mem::replace(state, State::Done)
    else {
        unreachable!("a handshake is established from its Fields state only");
    };
    let rc4 = method == CRYPTO_RC4;
    head.extend(std::mem::take(input).rest(rc4.then_some(&mut rx)));
    Established {
        info_hash,
        method,
        rx: rc4.then_some(rx),
        tx: rc4.then_some(tx),
        initial: head,
    }
}

/// How the responder picks the payload method from what the initiator provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Accept plaintext payload after the obfuscated handshake.
    pub allow_plaintext: bool,
    /// Pick RC4 when both are offered (otherwise plaintext: cheaper, same obfuscated handshake).
    pub prefer_rc4: bool,
}

impl Policy {
    /// The method picked for an initiator that provides `provide`; None if nothing fits.
    pub fn select(&self, provide: u32) -> Option<u32> {
        let rc4 = provide & CRYPTO_RC4 != 0;
        let plain = provide & CRYPTO_PLAINTEXT != 0 && self.allow_plaintext;
        match (rc4, plain) {
            (true, false) | (true, true) if self.prefer_rc4 || !plain => Some(CRYPTO_RC4),
            (_, true) => Some(CRYPTO_PLAINTEXT),
            _ => None,
        }
    }
}

/// The side that accepted the connection (B).
pub struct Responder {
    keys: KeyPair,
    pad: Vec<u8>,
    policy: Policy,
    input: Input,
    out: Vec<u8>,
    state: State,
}

impl Responder {
    /// `secret` makes the key pair; `pad` (at most [`MAX_PAD`] bytes) follows our public key.
    pub fn new(secret: [u8; 20], pad: Vec<u8>, policy: Policy) -> Responder {
        assert!(pad.len() <= MAX_PAD);
        Responder {
            keys: KeyPair::new(secret),
            pad,
            policy,
            input: Input::default(),
            out: Vec::new(),
            state: State::Key,
        }
    }

    /// Bytes to send now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Feeds received bytes. `find` maps `HASH("req2", SKEY)` to the torrent it names.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        find: impl Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<Option<Established>, MseError> {
        self.input.buf.extend_from_slice(bytes);
        loop {
            match &mut self.state {
                State::Key => {
                    if self.input.available() < KEY_LEN {
                        return Ok(None);
                    }
                    let theirs = &self.input.buf[..KEY_LEN];
                    let secret = self.keys.shared(theirs).ok_or(MseError::BadPublicKey)?;
                    self.input.pos = KEY_LEN;
                    self.out.extend_from_slice(&self.keys.public);
                    self.out.append(&mut self.pad);
                    self.state = State::Sync { secret };
                }
                State::Sync { secret } => {
                    let secret = *secret;
                    let want = hash(&[b"req1", &secret]);
                    let window = &self.input.buf[KEY_LEN..];
                    let Some(at) = window.windows(20).position(|w| w == want) else {
                        if window.len() >= MAX_PAD + 20 {
                            return Err(MseError::NoSync);
                        }
                        return Ok(None);
                    };
                    let start = KEY_LEN + at + 20;
                    if self.input.buf.len() < start + 20 {
                        return Ok(None);
                    }
                    let mut req2 = [0u8; 20];
                    let req3 = hash(&[b"req3", &secret]);
                    for (k, b) in req2.iter_mut().enumerate() {
                        *b = self.input.buf[start + k] ^ req3[k];
                    }
                    let info_hash = find(&req2).ok_or(MseError::UnknownInfoHash)?;
                    self.input.pos = start + 20;
                    self.state = State::fields(
                        info_hash,
                        Rc4::mse(&hash(&[b"keyA", &secret, &info_hash.0])),
                        Rc4::mse(&hash(&[b"keyB", &secret, &info_hash.0])),
                    );
                }
                State::Fields {
                    rx,
                    tx,
                    stage,
                    method,
                    len,
                    ..
                } => match *stage {
                    // VC, crypto_provide, len(PadC)
                    0 => {
                        let Some(f) = self.input.take(14, rx) else {
                            return Ok(None);
                        };
                        if f[..8] != VC {
                            return Err(MseError::BadVc);
                        }
                        let provide = u32::from_be_bytes(f[8..12].try_into().expect("4"));
                        *len = usize::from(u16::from_be_bytes([f[12], f[13]]));
                        if *len > MAX_PAD {
                            return Err(MseError::BadLength);
                        }
                        *method = self
                            .policy
                            .select(provide)
                            .ok_or(MseError::NoCommonMethod)?;
                        *stage = 1;
                    }
                    // PadC, len(IA)
                    1 => {
                        let Some(f) = self.input.take(*len + 2, rx) else {
                            return Ok(None);
                        };
                        *len = usize::from(u16::from_be_bytes([f[f.len() - 2], f[f.len() - 1]]));
                        if *len > MAX_IA {
                            return Err(MseError::BadLength);
                        }
                        // Our answer goes out now, not after IA: it does not depend on IA,
                        // and an initiator that writes IA separately (libtorrent does) may
                        // hold that small write (Nagle) until this reply acknowledges its
                        // last one; waiting for IA cost such a client a delayed ACK (~40 ms).
                        let mut answer = VC.to_vec();
                        answer.extend_from_slice(&method.to_be_bytes());
                        answer.extend_from_slice(&0u16.to_be_bytes());
                        tx.apply(&mut answer);
                        self.out.extend_from_slice(&answer);
                        *stage = 2;
                    }
                    // IA (always RC4)
                    _ => {
                        let Some(ia) = self.input.take(*len, rx) else {
                            return Ok(None);
                        };
                        let initial = ia.to_vec();
                        return Ok(Some(establish(&mut self.state, &mut self.input, initial)));
                    }
                },
                State::Vc { .. } | State::Done => return Ok(None),
            }
        }
    }
}

/// The side that dialled (A).
pub struct Initiator {
    keys: KeyPair,
    info_hash: InfoHash,
    provide: u32,
    ia: Vec<u8>,
    input: Input,
    out: Vec<u8>,
    state: State,
}

impl Initiator {
    /// Starts a handshake for `info_hash` offering the `provide` methods; `ia` (our BitTorrent
    /// handshake, at most [`MAX_IA`] bytes) travels encrypted in the third message. The first
    /// output is our public key and `pad`.
    pub fn new(
        secret: [u8; 20],
        pad: Vec<u8>,
        info_hash: InfoHash,
        provide: u32,
        ia: Vec<u8>,
    ) -> Initiator {
        assert!(pad.len() <= MAX_PAD && ia.len() <= MAX_IA);
        let keys = KeyPair::new(secret);
        let mut out = keys.public.to_vec();
        out.extend_from_slice(&pad);
        Initiator {
            keys,
            info_hash,
            provide,
            ia,
            input: Input::default(),
            out,
            state: State::Key,
        }
    }

    /// Bytes to send now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Feeds received bytes; returns the connection once the responder's answer is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Established>, MseError> {
        self.input.buf.extend_from_slice(bytes);
        loop {
            match &mut self.state {
                State::Key => {
                    if self.input.available() < KEY_LEN {
                        return Ok(None);
                    }
                    let secret = self
                        .keys
                        .shared(&self.input.buf[..KEY_LEN])
                        .ok_or(MseError::BadPublicKey)?;
                    self.input.pos = KEY_LEN;
                    let skey = &self.info_hash.0;
                    let mut tx = Rc4::mse(&hash(&[b"keyA", &secret, skey]));
                    let rx = Rc4::mse(&hash(&[b"keyB", &secret, skey]));
                    self.out.extend_from_slice(&hash(&[b"req1", &secret]));
                    let req3 = hash(&[b"req3", &secret]);
                    let req2 = req2_hash(&self.info_hash);
                    self.out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
                    let mut fields = VC.to_vec();
                    fields.extend_from_slice(&self.provide.to_be_bytes());
                    fields.extend_from_slice(&0u16.to_be_bytes());
                    fields.extend_from_slice(&(self.ia.len() as u16).to_be_bytes());
                    fields.append(&mut self.ia);
                    tx.apply(&mut fields);
                    self.out.extend_from_slice(&fields);
                    let mut pattern = VC;
                    rx.clone().apply(&mut pattern);
                    self.state = State::Vc {
                        info_hash: self.info_hash,
                        rx,
                        tx,
                        pattern,
                    };
                }
                State::Vc {
                    info_hash,
                    rx,
                    tx,
                    pattern,
                } => {
                    let window = &self.input.buf[KEY_LEN..];
                    let Some(at) = window.windows(8).position(|w| w == pattern) else {
                        if window.len() >= MAX_PAD + 8 {
                            return Err(MseError::NoSync);
                        }
                        return Ok(None);
                    };
                    self.input.pos = KEY_LEN + at;
                    let mut rx = rx.clone();
                    self.input.take(8, &mut rx);
                    self.state = State::fields(*info_hash, rx, tx.clone());
                }
                State::Fields {
                    rx,
                    stage,
                    method,
                    len,
                    ..
                } => {
                    if *stage == 0 {
                        // crypto_select, len(PadD)
                        let Some(f) = self.input.take(6, rx) else {
                            return Ok(None);
                        };
                        *method = u32::from_be_bytes(f[..4].try_into().expect("4"));
                        *len = usize::from(u16::from_be_bytes([f[4], f[5]]));
                        let one_bit = method.count_ones() == 1;
                        if !one_bit || *method & self.provide == 0 {
                            return Err(MseError::NoCommonMethod);
                        }
                        if *len > MAX_PAD {
                            return Err(MseError::BadLength);
                        }
                        *stage = 1;
                        continue;
                    }
                    // PadD
                    if self.input.take(*len, rx).is_none() {
                        return Ok(None);
                    }
                    return Ok(Some(establish(
                        &mut self.state,
                        &mut self.input,
                        Vec::new(),
                    )));
                }
                State::Sync { .. } | State::Done => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
#[path = "mse_tests.rs"]
mod tests;
