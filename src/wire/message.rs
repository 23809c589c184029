//! Peer wire messages (BEP 3 ids 0–8, BEP 6 ids 13–17, BEP 10 id 20, BEP 52 ids 21–23):
//! framing, decoding with a bound on message size, and encoding.
//!
//! [`decode`] is check-then-parse: it looks at the 4-byte length prefix first, refuses anything
//! over the caller's cap before buffering it, and otherwise says how many more bytes it needs.
//!
//! Sans I/O: no sockets, no clock, no protocol state (that is [`super::peer`]).

use std::fmt;

pub const CHOKE: u8 = 0;
pub const UNCHOKE: u8 = 1;
pub const INTERESTED: u8 = 2;
pub const NOT_INTERESTED: u8 = 3;
pub const HAVE: u8 = 4;
pub const BITFIELD: u8 = 5;
pub const REQUEST: u8 = 6;
pub const PIECE: u8 = 7;
pub const CANCEL: u8 = 8;
pub const PORT: u8 = 9;
pub const SUGGEST: u8 = 13;
pub const HAVE_ALL: u8 = 14;
pub const HAVE_NONE: u8 = 15;
pub const REJECT: u8 = 16;
pub const ALLOWED_FAST: u8 = 17;
pub const EXTENDED: u8 = 20;
pub const HASH_REQUEST: u8 = 21;
pub const HASHES: u8 = 22;
pub const HASH_REJECT: u8 = 23;

/// Length of the fields BEP 52's hash request, hashes and hash reject share.
pub const HASH_RANGE_LEN: usize = 48;

/// Length of a piece message's header: length prefix, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// A block reference: piece index, offset in the piece, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Block {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// What a BEP 52 hash request names: a file's merkle root, the layer (0: 16 KiB blocks), the
/// first node and the number of nodes in it, and how many layers of proof to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRange {
    pub root: [u8; 32],
    pub base: u32,
    pub index: u32,
    pub length: u32,
    pub proof_layers: u32,
}

impl HashRange {
    fn decode(p: &[u8]) -> HashRange {
        HashRange {
            root: p[..32].try_into().expect("48-byte payload"),
            base: be32(&p[32..]),
            index: be32(&p[36..]),
            length: be32(&p[40..]),
            proof_layers: be32(&p[44..]),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.root);
        for v in [self.base, self.index, self.length, self.proof_layers] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// A decoded message; payloads borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request(Block),
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel(Block),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(Block),
    AllowedFast(u32),
    /// BEP 10: extension message id and payload.
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    /// BEP 52: a request for merkle nodes.
    HashRequest(HashRange),
    /// BEP 52: the nodes asked for (32 bytes each), then the proof.
    Hashes {
        range: HashRange,
        hashes: &'a [u8],
    },
    /// BEP 52: a hash request that will not be answered.
    HashReject(HashRange),
    /// A message id this server does not know; skipped.
    Unknown {
        id: u8,
    },
}

/// Why a byte stream is not a valid message sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix announces more than the cap.
    TooLong { len: u32, cap: u32 },
    /// A known message id with the wrong payload length.
    BadLength { id: u8, len: u32 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooLong { len, cap } => {
                write!(f, "message of {len} bytes over the cap of {cap}")
            }
            WireError::BadLength { id, len } => write!(f, "message id {id} with bad length {len}"),
        }
    }
}

/// Outcome of trying to decode one message from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole message and the number of bytes it used.
    Message(Message<'a>, usize),
    /// At least this many more bytes are needed.
    NeedMore(usize),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes the message at the front of `buf`. `cap` bounds the length prefix (id + payload).
pub fn decode(buf: &[u8], cap: u32) -> Result<Decoded<'_>, WireError> {
    if buf.len() < 4 {
        return Ok(Decoded::NeedMore(4 - buf.len()));
    }
    let len = be32(buf);
    if len > cap {
        return Err(WireError::TooLong { len, cap });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total - buf.len()));
    }
    if len == 0 {
        return Ok(Decoded::Message(Message::KeepAlive, 4));
    }
    let id = buf[4];
    let p = &buf[5..total];
    let bad = || WireError::BadLength { id, len };
    let fixed = |want: usize| if p.len() == want { Ok(()) } else { Err(bad()) };
    let block = |p: &[u8]| Block {
        index: be32(p),
        begin: be32(&p[4..]),
        length: be32(&p[8..]),
    };
    let msg = match id {
        CHOKE => fixed(0).map(|_| Message::Choke)?,
        UNCHOKE => fixed(0).map(|_| Message::Unchoke)?,
        INTERESTED => fixed(0).map(|_| Message::Interested)?,
        NOT_INTERESTED => fixed(0).map(|_| Message::NotInterested)?,
        HAVE_ALL => fixed(0).map(|_| Message::HaveAll)?,
        HAVE_NONE => fixed(0).map(|_| Message::HaveNone)?,
        HAVE => fixed(4).map(|_| Message::Have(be32(p)))?,
        SUGGEST => fixed(4).map(|_| Message::Suggest(be32(p)))?,
        ALLOWED_FAST => fixed(4).map(|_| Message::AllowedFast(be32(p)))?,
        REQUEST => fixed(12).map(|_| Message::Request(block(p)))?,
        CANCEL => fixed(12).map(|_| Message::Cancel(block(p)))?,
        REJECT => fixed(12).map(|_| Message::Reject(block(p)))?,
        PORT => fixed(2).map(|_| Message::Port(u16::from_be_bytes([p[0], p[1]])))?,
        BITFIELD => Message::Bitfield(p),
        PIECE if p.len() >= 8 => Message::Piece {
            index: be32(p),
            begin: be32(&p[4..]),
            data: &p[8..],
        },
        PIECE => return Err(bad()),
        EXTENDED if !p.is_empty() => Message::Extended {
            id: p[0],
            payload: &p[1..],
        },
        EXTENDED => return Err(bad()),
        HASH_REQUEST => {
            fixed(HASH_RANGE_LEN).map(|_| Message::HashRequest(HashRange::decode(p)))?
        }
        HASH_REJECT => fixed(HASH_RANGE_LEN).map(|_| Message::HashReject(HashRange::decode(p)))?,
        HASHES if p.len() >= HASH_RANGE_LEN && (p.len() - HASH_RANGE_LEN) % 32 == 0 => {
            Message::Hashes {
                range: HashRange::decode(p),
                hashes: &p[HASH_RANGE_LEN..],
            }
        }
        HASHES => return Err(bad()),
        other => Message::Unknown { id: other },
    };
    Ok(Decoded::Message(msg, total))
}

/// Appends the encoding of `msg` to `out`.
pub fn encode(msg: &Message<'_>, out: &mut Vec<u8>) {
    let mut head = |id: u8, payload_len: usize| {
        out.extend_from_slice(&(1 + payload_len as u32).to_be_bytes());
        out.push(id);
    };
    match msg {
        Message::KeepAlive => out.extend_from_slice(&[0; 4]),
        Message::Choke => head(CHOKE, 0),
        Message::Unchoke => head(UNCHOKE, 0),
        Message::Interested => head(INTERESTED, 0),
        Message::NotInterested => head(NOT_INTERESTED, 0),
        Message::HaveAll => head(HAVE_ALL, 0),
        Message::HaveNone => head(HAVE_NONE, 0),
        Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => {
            let id = match msg {
                Message::Have(_) => HAVE,
                Message::Suggest(_) => SUGGEST,
                _ => ALLOWED_FAST,
            };
            head(id, 4);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
            let id = match msg {
                Message::Request(_) => REQUEST,
                Message::Cancel(_) => CANCEL,
                _ => REJECT,
            };
            head(id, 12);
            for v in [b.index, b.begin, b.length] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Message::Bitfield(bits) => {
            head(BITFIELD, bits.len());
            out.extend_from_slice(bits);
        }
        Message::Piece { index, begin, data } => {
            out.extend_from_slice(&piece_header(*index, *begin, data.len() as u32));
            out.extend_from_slice(data);
        }
        Message::Port(p) => {
            head(PORT, 2);
            out.extend_from_slice(&p.to_be_bytes());
        }
        Message::Extended { id, payload } => {
            head(EXTENDED, 1 + payload.len());
            out.push(*id);
            out.extend_from_slice(payload);
        }
        Message::HashRequest(r) | Message::HashReject(r) => {
            let id = match msg {
                Message::HashRequest(_) => HASH_REQUEST,
                _ => HASH_REJECT,
            };
            head(id, HASH_RANGE_LEN);
            r.encode(out);
        }
        Message::Hashes { range, hashes } => {
            head(HASHES, HASH_RANGE_LEN + hashes.len());
            range.encode(out);
            out.extend_from_slice(hashes);
        }
        Message::Unknown { id } => head(*id, 0),
    }
}

/// The 13-byte header of a piece message carrying `len` bytes of data.
pub fn piece_header(index: u32, begin: u32, len: u32) -> [u8; PIECE_HEADER_LEN] {
    let mut h = [0u8; PIECE_HEADER_LEN];
    h[..4].copy_from_slice(&(9 + len).to_be_bytes());
    h[4] = PIECE;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<Message<'static>> {
        let b = Block {
            index: 7,
            begin: 16384,
            length: 16384,
        };
        let range = HashRange {
            root: [3; 32],
            base: 2,
            index: 512,
            length: 512,
            proof_layers: 9,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(42),
            Message::Bitfield(&[0xff, 0x80]),
            Message::Request(b),
            Message::Piece {
                index: 1,
                begin: 2,
                data: b"abc",
            },
            Message::Cancel(b),
            Message::Port(6881),
            Message::Suggest(3),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(b),
            Message::AllowedFast(9),
            Message::Extended {
                id: 0,
                payload: b"de",
            },
            Message::HashRequest(range),
            Message::Hashes {
                range,
                hashes: &[7; 64],
            },
            Message::HashReject(range),
            Message::Unknown { id: 99 },
        ]
    }

    #[test]
    fn every_message_round_trips_at_every_split_point() {
        let msgs = all_messages();
        let mut stream = Vec::new();
        for m in &msgs {
            encode(m, &mut stream);
        }
        // Feed the stream in two parts split at every byte: the decoder must ask for more
        // until the whole message is there, and then decode the same messages.
        for split in 0..=stream.len() {
            let mut buf = stream[..split].to_vec();
            let mut rest = &stream[split..];
            let mut got = Vec::new();
            loop {
                match decode(&buf, 1 << 20).unwrap() {
                    Decoded::Message(m, used) => {
                        got.push(format!("{m:?}"));
                        buf.drain(..used);
                    }
                    Decoded::NeedMore(n) => {
                        assert!(n > 0);
                        if rest.is_empty() {
                            break;
                        }
                        buf.extend_from_slice(rest);
                        rest = &[];
                    }
                }
            }
            assert!(buf.is_empty());
            let want: Vec<String> = msgs.iter().map(|m| format!("{m:?}")).collect();
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn need_more_is_exact() {
        let mut v = Vec::new();
        encode(
            &Message::Request(Block {
                index: 1,
                begin: 0,
                length: 16384,
            }),
            &mut v,
        );
        assert_eq!(decode(&v[..2], 100).unwrap(), Decoded::NeedMore(2));
        assert_eq!(decode(&v[..4], 100).unwrap(), Decoded::NeedMore(13));
        assert_eq!(decode(&v[..16], 100).unwrap(), Decoded::NeedMore(1));
    }

    #[test]
    fn cap_is_checked_before_buffering() {
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode(&huge, 20_000),
            Err(WireError::TooLong {
                len: u32::MAX,
                cap: 20_000
            })
        );
        let over = 20_001u32.to_be_bytes();
        assert!(decode(&over, 20_000).is_err());
    }

    #[test]
    fn wrong_payload_lengths_are_errors() {
        for (id, len) in [
            (REQUEST, 12),
            (HAVE, 3),
            (CHOKE, 1),
            (PIECE, 5),
            (EXTENDED, 0),
            (PORT, 3),
            (HASH_REQUEST, 47),
            (HASH_REJECT, 49),
            (HASHES, 47),
            (HASHES, 48 + 31),
        ] {
            let mut v = (1 + len as u32).to_be_bytes().to_vec();
            v.push(id);
            v.extend(std::iter::repeat_n(0, len));
            let ok = matches!((id, len), (REQUEST, 12));
            assert_eq!(decode(&v, 100).is_ok(), ok, "id {id} len {len}");
        }
    }
}
