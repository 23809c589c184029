//! Piece bitfields in BEP 3 layout (high bit first, spare bits zero): plain helpers and a
//! lock-free shared one for the pieces a torrent may serve (cleared at runtime on read errors).
//!
//! It owns the bit layout only and knows nothing of peers or files.

use std::sync::atomic::{AtomicU8, Ordering};

/// A complete bitfield for `pieces` pieces.
pub fn full(pieces: usize) -> Vec<u8> {
    let mut bits = vec![0xff; pieces.div_ceil(8)];
    if pieces % 8 != 0 {
        if let Some(last) = bits.last_mut() {
            *last = 0xff << (8 - pieces % 8);
        }
    }
    bits
}

/// True if `bits` is exactly ceil(pieces / 8) bytes with the spare bits of the last byte zero.
pub fn valid(bits: &[u8], pieces: usize) -> bool {
    if bits.len() != pieces.div_ceil(8) {
        return false;
    }
    let spare = (8 - pieces % 8) % 8;
    spare == 0
        || bits
            .last()
            .is_none_or(|last| last & ((1u8 << spare) - 1) == 0)
}

pub fn get(bits: &[u8], index: usize) -> bool {
    bits.get(index / 8)
        .is_some_and(|b| b & (0x80 >> (index % 8)) != 0)
}

pub fn set(bits: &mut [u8], index: usize) {
    bits[index / 8] |= 0x80 >> (index % 8);
}

/// A bitfield shared between threads; bits can be set and cleared without locks.
#[derive(Debug)]
pub struct SharedBitfield {
    bits: Vec<AtomicU8>,
    len: usize,
}

impl SharedBitfield {
    /// From BEP 3 bytes for `len` pieces.
    pub fn from_bytes(bytes: &[u8], len: usize) -> SharedBitfield {
        let mut bits: Vec<AtomicU8> = bytes.iter().map(|&b| AtomicU8::new(b)).collect();
        bits.resize_with(len.div_ceil(8), || AtomicU8::new(0));
        SharedBitfield { bits, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn has(&self, index: usize) -> bool {
        index < self.len
            && self.bits[index / 8].load(Ordering::Relaxed) & (0x80 >> (index % 8)) != 0
    }

    /// Clears a piece; returns true if it was set.
    pub fn clear(&self, index: usize) -> bool {
        if index >= self.len {
            return false;
        }
        let mask = 0x80 >> (index % 8);
        self.bits[index / 8].fetch_and(!mask, Ordering::Relaxed) & mask != 0
    }

    pub fn count(&self) -> usize {
        self.bits
            .iter()
            .map(|b| b.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// A snapshot in BEP 3 layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bits
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_valid_agree_on_spare_bits() {
        for n in 1..=17 {
            let f = full(n);
            assert!(valid(&f, n), "{n}");
            assert_eq!((0..n).filter(|&i| get(&f, i)).count(), n);
            let shared = SharedBitfield::from_bytes(&f, n);
            assert!(shared.is_full());
            assert!(shared.clear(n - 1) && !shared.clear(n - 1) && !shared.has(n - 1));
            assert_eq!(shared.count(), n - 1);
            assert!(!shared.clear(n));
        }
        assert!(!valid(&[0xff], 6) && valid(&[0xfc], 6) && !valid(&[], 6) && !valid(&[0, 0], 6));
    }
}
