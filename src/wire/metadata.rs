//! BEP 9 (`ut_metadata`) messages, sans I/O: a bencoded dictionary (`msg_type` 0 request,
//! 1 data, 2 reject; `piece`; `total_size` with data) followed, for data, by the raw bytes of
//! that 16 KiB piece of the info dictionary. Decoding is bounded by the message cap and the
//! bencode decoder's depth; anything that is not such a message is an error. It owns the
//! format only; which pieces are served is `super::extension`'s business.

use crate::bencode::{self, Value};

/// Size of one metadata piece (the last may be shorter).
pub const PIECE: usize = 16 << 10;

const REQUEST: i64 = 0;
const DATA: i64 = 1;
const REJECT: i64 = 2;

/// One `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    Request(u32),
    Data {
        piece: u32,
        total_size: u64,
        bytes: &'a [u8],
    },
    Reject(u32),
}

/// Why a `ut_metadata` message is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError(pub &'static str);

/// Pieces of metadata of `size` bytes.
pub fn pieces(size: usize) -> usize {
    size.div_ceil(PIECE)
}

/// The bytes of piece `index` of `metadata`, if it exists.
pub fn piece(metadata: &[u8], index: u32) -> Option<&[u8]> {
    let start = (index as usize).checked_mul(PIECE)?;
    if start >= metadata.len() {
        return None;
    }
    Some(&metadata[start..(start + PIECE).min(metadata.len())])
}

pub fn decode(payload: &[u8]) -> Result<MetadataMessage<'_>, MetadataError> {
    let (dict, used) = bencode::decode_prefix(payload).map_err(|_| MetadataError("not bencode"))?;
    let int = |key: &str| match dict.get(key).map(|n| &n.value) {
        Some(Value::Int(v)) => Some(*v),
        _ => None,
    };
    if !matches!(dict.value, Value::Dict(_)) {
        return Err(MetadataError("not a dictionary"));
    }
    let kind = int("msg_type").ok_or(MetadataError("no msg_type"))?;
    let piece = int("piece")
        .and_then(|p| u32::try_from(p).ok())
        .ok_or(MetadataError("no valid piece"))?;
    let rest = &payload[used..];
    match kind {
        REQUEST if rest.is_empty() => Ok(MetadataMessage::Request(piece)),
        REJECT if rest.is_empty() => Ok(MetadataMessage::Reject(piece)),
        DATA => {
            let total_size = int("total_size")
                .and_then(|t| u64::try_from(t).ok())
                .ok_or(MetadataError("no valid total_size"))?;
            if rest.len() > PIECE {
                return Err(MetadataError("data longer than a piece"));
            }
            Ok(MetadataMessage::Data {
                piece,
                total_size,
                bytes: rest,
            })
        }
        REQUEST | REJECT => Err(MetadataError("bytes after a request or reject")),
        _ => Err(MetadataError("unknown msg_type")),
    }
}

/// A data message for piece `piece` of metadata of `total_size` bytes, holding `bytes`.
pub fn encode_data(piece: u32, total_size: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v =
        format!("d8:msg_typei{DATA}e5:piecei{piece}e10:total_sizei{total_size}ee").into_bytes();
    v.extend_from_slice(bytes);
    v
}

pub fn encode_reject(piece: u32) -> Vec<u8> {
    format!("d8:msg_typei{REJECT}e5:piecei{piece}ee").into_bytes()
}

pub fn encode_request(piece: u32) -> Vec<u8> {
    format!("d8:msg_typei{REQUEST}e5:piecei{piece}ee").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        assert_eq!(decode(&encode_request(3)), Ok(MetadataMessage::Request(3)));
        assert_eq!(decode(&encode_reject(7)), Ok(MetadataMessage::Reject(7)));
        let data = encode_data(1, 20_000, b"abc");
        assert_eq!(
            decode(&data),
            Ok(MetadataMessage::Data {
                piece: 1,
                total_size: 20_000,
                bytes: b"abc"
            })
        );
        for bad in [
            &b""[..],
            b"i3e",
            b"d5:piecei1ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"d8:msg_typei9e5:piecei0ee",
            b"d8:msg_typei0e5:piecei0eexyz",
            b"d8:msg_typei1e5:piecei0ee",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "d1:a".repeat(1000), "e".repeat(1000));
        assert!(decode(deep.as_bytes()).is_err());
        let meta = vec![7u8; 40_000];
        assert_eq!(pieces(meta.len()), 3);
        assert_eq!(piece(&meta, 2).unwrap().len(), 40_000 - 2 * PIECE);
        assert!(piece(&meta, 3).is_none());
        assert!(piece(&meta, u32::MAX).is_none());
    }
}
