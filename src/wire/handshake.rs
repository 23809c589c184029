//! The 68-byte BitTorrent handshake: protocol string, reserved bits, info-hash, peer id.
//!
//! Sans I/O: no sockets, no clock.

use crate::metainfo::InfoHash;

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;

/// Reserved-bit helpers (BEP 4 assignments).
pub mod reserved {
    /// BEP 10 extension protocol: byte 5, bit 0x10.
    pub const EXTENSION: (usize, u8) = (5, 0x10);
    /// BEP 6 fast extension: byte 7, bit 0x04.
    pub const FAST: (usize, u8) = (7, 0x04);
    /// BEP 52 v2 support: byte 7, bit 0x10 (the 4th most significant bit of the last byte).
    pub const V2: (usize, u8) = (7, 0x10);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    BadProtocol,
}

impl Handshake {
    /// Our handshake: fast extension and extension protocol on.
    pub fn ours(info_hash: InfoHash, peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        for (byte, bit) in [reserved::EXTENSION, reserved::FAST] {
            reserved[byte] |= bit;
        }
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn has(&self, (byte, bit): (usize, u8)) -> bool {
        self.reserved[byte] & bit != 0
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0] = 19;
        b[1..20].copy_from_slice(PROTOCOL);
        b[20..28].copy_from_slice(&self.reserved);
        b[28..48].copy_from_slice(&self.info_hash.0);
        b[48..68].copy_from_slice(&self.peer_id);
        b
    }

    /// Decodes a handshake from the front of `buf`: `Ok(None)` means more bytes are needed
    /// (the protocol prefix seen so far is checked eagerly so garbage is refused at once).
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, HandshakeError> {
        let prefix_len = buf.len().min(20);
        let mut want = [0u8; 20];
        want[0] = 19;
        want[1..].copy_from_slice(PROTOCOL);
        if buf[..prefix_len] != want[..prefix_len] {
            return Err(HandshakeError::BadProtocol);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut hs = Handshake {
            reserved: [0; 8],
            info_hash: InfoHash([0; 20]),
            peer_id: [0; 20],
        };
        hs.reserved.copy_from_slice(&buf[20..28]);
        hs.info_hash.0.copy_from_slice(&buf[28..48]);
        hs.peer_id.copy_from_slice(&buf[48..68]);
        Ok(Some(hs))
    }
}

/// A peer id for this process: client prefix `-US0100-` (Azureus style) and 12 random bytes.
pub fn new_peer_id(random: u64, more: u64) -> [u8; 20] {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-US0100-");
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut x = random ^ more.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    for b in &mut id[8..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = ALPHABET[(x % ALPHABET.len() as u64) as usize];
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_reserved_bits() {
        let mut hs = Handshake::ours(InfoHash([7; 20]), new_peer_id(1, 2));
        hs.reserved[0] = 0x80; // an unknown bit survives
        let bytes = hs.encode();
        assert_eq!(Handshake::decode(&bytes).unwrap(), Some(hs));
        assert!(hs.has(reserved::FAST) && hs.has(reserved::EXTENSION));
        for split in 0..HANDSHAKE_LEN {
            assert_eq!(
                Handshake::decode(&bytes[..split]).unwrap(),
                None,
                "split {split}"
            );
        }
        assert!(hs.peer_id.starts_with(b"-US0100-"));
    }

    #[test]
    fn refuses_garbage_early() {
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1"),
            Err(HandshakeError::BadProtocol)
        );
        assert_eq!(
            Handshake::decode(b"\x13BitTorrent protocoX"),
            Err(HandshakeError::BadProtocol)
        );
        assert_eq!(Handshake::decode(&[19, b'B']), Ok(None));
    }
}
