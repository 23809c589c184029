//! The uTP packet codec (BEP 29): the 20-byte header, the extension chain (selective ack
//! decoded, unknown extensions skipped, the chain bounded) and the payload; [`decode`],
//! [`Packet::encode`] and [`looks_like_utp`] for telling uTP from DHT KRPC on a shared port.

use std::fmt;

/// Header length in bytes.
pub const HEADER_LEN: usize = 20;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Most extensions accepted in one packet's chain.
pub const MAX_EXTENSIONS: usize = 8;
/// Extension number of the selective ack.
pub const EXT_SACK: u8 = 1;
/// Extension number of our MTU-probe padding (no meaning: receivers skip unknown extensions).
pub const EXT_PADDING: u8 = 0x7f;

/// Packet type (high nibble of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Data = 0,
    Fin = 1,
    State = 2,
    Reset = 3,
    Syn = 4,
}

impl Type {
    fn from_nibble(n: u8) -> Option<Type> {
        Some(match n {
            0 => Type::Data,
            1 => Type::Fin,
            2 => Type::State,
            3 => Type::Reset,
            4 => Type::Syn,
            _ => return None,
        })
    }
}

/// One decoded uTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub ty: Type,
    pub conn_id: u16,
    pub timestamp_us: u32,
    pub timestamp_diff_us: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
    /// Selective ack bitmask: bit `i` (byte `i / 8`, least significant bit first) says that
    /// `ack_nr + 2 + i` was received. Any non-zero length is read (BEP 29 says a multiple of 4; libtorrent sends others).
    pub sack: Option<Vec<u8>>,
    /// Zero bytes of a padding extension sent after the header (MTU probes); never decoded
    /// (a received packet has 0 here whatever it carried).
    pub padding: u8,
    pub payload: Vec<u8>,
}

/// Why bytes were refused as a uTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer than 20 bytes, or an extension running past the end.
    Short,
    BadVersion(u8),
    BadType(u8),
    /// More than [`MAX_EXTENSIONS`] extensions in the chain.
    TooManyExtensions,
    /// An empty selective ack.
    BadSackLength(u8),
    /// Two selective acks in one packet.
    DuplicateSack,
}

impl PacketError {
    /// A short, stable label (for counters and logs).
    pub fn reason(&self) -> &'static str {
        match self {
            PacketError::Short => "short",
            PacketError::BadVersion(_) => "bad_version",
            PacketError::BadType(_) => "bad_type",
            PacketError::TooManyExtensions => "too_many_extensions",
            PacketError::BadSackLength(_) => "bad_sack_length",
            PacketError::DuplicateSack => "duplicate_sack",
        }
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::BadVersion(v) => write!(f, "utp: version {v}"),
            PacketError::BadType(t) => write!(f, "utp: packet type {t}"),
            PacketError::BadSackLength(n) => write!(f, "utp: selective ack of {n} bytes"),
            e => write!(f, "utp: {}", e.reason()),
        }
    }
}

impl std::error::Error for PacketError {}

/// Whether `bytes` may be a uTP packet (version 1, type at most 4, at least 20 bytes), for
/// demultiplexing a port shared with the DHT: a KRPC message starts with `d` (0x64, type 6).
pub fn looks_like_utp(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] & 0x0f == VERSION && bytes[0] >> 4 <= 4
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes one datagram. The extension chain is walked at most [`MAX_EXTENSIONS`] steps and
/// never past the end of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Packet, PacketError> {
    if bytes.len() < HEADER_LEN {
        return Err(PacketError::Short);
    }
    let version = bytes[0] & 0x0f;
    if version != VERSION {
        return Err(PacketError::BadVersion(version));
    }
    let ty = Type::from_nibble(bytes[0] >> 4).ok_or(PacketError::BadType(bytes[0] >> 4))?;
    let mut next = bytes[1];
    let mut at = HEADER_LEN;
    let mut sack = None;
    let mut count = 0;
    while next != 0 {
        count += 1;
        if count > MAX_EXTENSIONS {
            return Err(PacketError::TooManyExtensions);
        }
        if at + 2 > bytes.len() {
            return Err(PacketError::Short);
        }
        let (kind, len) = (next, bytes[at + 1]);
        next = bytes[at];
        let start = at + 2;
        let end = start + usize::from(len);
        if end > bytes.len() {
            return Err(PacketError::Short);
        }
        if kind == EXT_SACK {
            // BEP 29 asks for a multiple of 4, but libtorrent sends any length (1 and 13
            // bytes seen from 2.0): every non-empty mask is read.
            if len == 0 {
                return Err(PacketError::BadSackLength(len));
            }
            if sack.is_some() {
                return Err(PacketError::DuplicateSack);
            }
            sack = Some(bytes[start..end].to_vec());
        }
        at = end;
    }
    Ok(Packet {
        ty,
        conn_id: be16(bytes, 2),
        timestamp_us: be32(bytes, 4),
        timestamp_diff_us: be32(bytes, 8),
        wnd_size: be32(bytes, 12),
        seq_nr: be16(bytes, 16),
        ack_nr: be16(bytes, 18),
        sack,
        padding: 0,
        payload: bytes[at..].to_vec(),
    })
}

impl Packet {
    /// A packet of type `ty` with every other field zero and no payload.
    pub fn new(ty: Type, conn_id: u16) -> Packet {
        Packet {
            ty,
            conn_id,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr: 0,
            ack_nr: 0,
            sack: None,
            padding: 0,
            payload: Vec::new(),
        }
    }

    /// The encoded length.
    pub fn len(&self) -> usize {
        let pad = if self.padding > 0 {
            2 + usize::from(self.padding)
        } else {
            0
        };
        HEADER_LEN + self.sack.as_ref().map_or(0, |s| 2 + s.len()) + pad + self.payload.len()
    }

    /// Whether the packet carries no payload.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Encodes the packet. A selective ack must be 1 to 255 bytes (we send multiples of 4).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(&[])
    }

    /// Encodes the packet with `extra` after its own payload (one allocation, one copy: a
    /// connection's resendable payload is not cloned into a packet first).
    pub fn encode_with(&self, extra: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + extra.len());
        out.push(((self.ty as u8) << 4) | VERSION);
        let pad = if self.padding > 0 { EXT_PADDING } else { 0 };
        out.push(if self.sack.is_some() { EXT_SACK } else { pad });
        out.extend_from_slice(&self.conn_id.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.extend_from_slice(&self.timestamp_diff_us.to_be_bytes());
        out.extend_from_slice(&self.wnd_size.to_be_bytes());
        out.extend_from_slice(&self.seq_nr.to_be_bytes());
        out.extend_from_slice(&self.ack_nr.to_be_bytes());
        if let Some(s) = &self.sack {
            debug_assert!(!s.is_empty() && s.len() <= 255);
            out.push(pad);
            out.push(s.len() as u8);
            out.extend_from_slice(s);
        }
        if self.padding > 0 {
            out.push(0);
            out.push(self.padding);
            out.resize(out.len() + usize::from(self.padding), 0);
        }
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Packet {
        Packet {
            ty: Type::Data,
            conn_id: 0xbeef,
            timestamp_us: 0x0102_0304,
            timestamp_diff_us: 0x0506_0708,
            wnd_size: 1 << 20,
            seq_nr: 65535,
            ack_nr: 7,
            sack: Some(vec![0b101, 0, 0, 0x80]),
            padding: 0,
            payload: b"hello".to_vec(),
        }
    }

    #[test]
    fn padding_is_skipped_by_the_decoder() {
        let mut p = sample();
        p.padding = 30;
        let b = p.encode();
        assert_eq!(b.len(), p.len());
        assert_eq!(b.len(), sample().encode().len() + 32);
        let back = decode(&b).unwrap();
        assert_eq!(
            (back.sack, back.payload, back.padding),
            (p.sack.clone(), p.payload.clone(), 0)
        );
        p.sack = None;
        let back = decode(&p.encode()).unwrap();
        assert_eq!((back.sack, back.payload), (None, b"hello".to_vec()));
    }

    #[test]
    fn round_trip_every_type() {
        for ty in [Type::Data, Type::Fin, Type::State, Type::Reset, Type::Syn] {
            let mut p = sample();
            p.ty = ty;
            let bytes = p.encode();
            assert_eq!(bytes.len(), p.len());
            assert!(looks_like_utp(&bytes));
            assert_eq!(decode(&bytes), Ok(p.clone()));
            p.sack = None;
            assert_eq!(decode(&p.encode()), Ok(p));
        }
    }

    #[test]
    fn header_layout() {
        let b = sample().encode();
        assert_eq!(b[0], 0x01);
        assert_eq!(b[1], EXT_SACK);
        assert_eq!(&b[2..4], &[0xbe, 0xef]);
        assert_eq!(&b[16..20], &[0xff, 0xff, 0, 7]);
        assert_eq!(&b[20..22], &[0, 4]);
        assert_eq!(&b[26..], b"hello");
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        let mut b = Packet::new(Type::State, 3).encode();
        b[1] = 9; // unknown ext 9, then sack, then end
        b.extend_from_slice(&[EXT_SACK, 3, 0xaa, 0xbb, 0xcc]);
        b.extend_from_slice(&[0, 4, 1, 2, 3, 4]);
        b.extend_from_slice(b"xy");
        let p = decode(&b).unwrap();
        assert_eq!(p.sack, Some(vec![1, 2, 3, 4]));
        assert_eq!(p.payload, b"xy");
    }

    #[test]
    fn refusals() {
        let good = sample().encode();
        assert_eq!(decode(&good[..19]), Err(PacketError::Short));
        assert_eq!(decode(&[]), Err(PacketError::Short));
        let mut b = good.clone();
        b[0] = 0x02;
        assert_eq!(decode(&b), Err(PacketError::BadVersion(2)));
        b[0] = 0x51;
        assert_eq!(decode(&b), Err(PacketError::BadType(5)));
        // The sack runs past the end.
        assert_eq!(decode(&good[..23]), Err(PacketError::Short));
        // Only the next-extension byte of a chain.
        assert_eq!(decode(&good[..21]), Err(PacketError::Short));
        let mut b = Packet::new(Type::State, 1).encode();
        b[1] = EXT_SACK;
        b.extend_from_slice(&[0, 0]);
        let e = decode(&b).unwrap_err();
        assert_eq!(e, PacketError::BadSackLength(0));
        assert_eq!(e.reason(), "bad_sack_length");
        // Lengths that are not a multiple of 4, as libtorrent sends them, are read.
        for len in [1u8, 3, 13] {
            let mut b = Packet::new(Type::Data, 1).encode();
            b[1] = EXT_SACK;
            b.extend_from_slice(&[0, len]);
            b.extend(std::iter::repeat_n(0xff, usize::from(len)));
            b.extend_from_slice(b"payload");
            let p = decode(&b).unwrap();
            assert_eq!(p.sack.map(|s| s.len()), Some(usize::from(len)));
            assert_eq!(p.payload, b"payload");
        }
        // Two sacks.
        let mut b = Packet::new(Type::State, 1).encode();
        b[1] = EXT_SACK;
        b.extend_from_slice(&[EXT_SACK, 4, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(decode(&b), Err(PacketError::DuplicateSack));
    }

    #[test]
    fn long_chains_are_refused() {
        // A "looping" chain of empty unknown extensions, each naming another.
        let mut b = Packet::new(Type::Data, 1).encode();
        b[1] = 7;
        for _ in 0..MAX_EXTENSIONS {
            b.extend_from_slice(&[7, 0]);
        }
        assert_eq!(decode(&b), Err(PacketError::TooManyExtensions));
        // Exactly MAX_EXTENSIONS is fine.
        let n = b.len();
        b[n - 2] = 0;
        assert_eq!(decode(&b).unwrap().sack, None);
        // A chain much longer than the packet stops at the end, never reads past it.
        let mut b = Packet::new(Type::Data, 1).encode();
        b[1] = 7;
        b.extend_from_slice(&[7, 200, 1, 2]);
        assert_eq!(decode(&b), Err(PacketError::Short));
    }

    #[test]
    fn demultiplexing() {
        assert!(!looks_like_utp(
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"
        ));
        assert!(!looks_like_utp(&[0x01; 19]));
        assert!(!looks_like_utp(&[0x51; 20]));
        assert!(!looks_like_utp(&[0x42; 20]));
        assert!(looks_like_utp(&[0x41; 20]));
    }
}
