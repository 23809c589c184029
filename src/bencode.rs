//! Bencode decoding with byte spans, and a small canonical encoder.
//!
//! The decoder is strict and bounded: it rejects trailing bytes, integers with leading zeros or
//! `-0`, duplicate dictionary keys, nesting deeper than [`MAX_DEPTH`] and more than [`MAX_NODES`]
//! values in one input (so the decoded tree's memory is bounded, not only the input's size).
//! It does *not* require
//! dictionary keys to be sorted, because real torrents in the wild are not always canonical and the
//! info-hash must be computed over the bytes exactly as written. Every value records the byte range
//! it came from, so `metainfo` can hash the raw `info` dictionary.
//!
//! It owns the byte format only: it knows nothing of torrents, files or the network.

use std::fmt;
use std::ops::Range;

/// Deepest nesting of lists and dictionaries accepted. Real torrents need about 5.
pub const MAX_DEPTH: usize = 64;
/// Most values (integers, strings, lists, dictionaries) decoded from one input: libtorrent's
/// default `max_decode_tokens` is 3,000,000 too. A torrent needs about 4 per file.
pub const MAX_NODES: usize = 3_000_000;

/// A decoded bencode value borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Node<'a>>),
    /// Entries in the order they appear in the input.
    Dict(Vec<(&'a [u8], Node<'a>)>),
}

/// A value together with the byte range of its encoding in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    pub value: Value<'a>,
    pub span: Range<usize>,
}

impl<'a> Node<'a> {
    /// Looks up `key` in a dictionary node; `None` if absent or not a dictionary.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match &self.value {
            Value::Dict(entries) => entries
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }
}

/// Why a byte string is not valid bencode; `offset` is where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid bencode at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

/// Decodes exactly one value that must fill the whole of `input`.
pub fn decode(input: &[u8]) -> Result<Node<'_>, DecodeError> {
    let mut parser = Parser {
        input,
        pos: 0,
        nodes_left: MAX_NODES,
    };
    let node = parser.value(0)?;
    if parser.pos != input.len() {
        return Err(parser.err(format!(
            "{} bytes of trailing data after the value",
            input.len() - parser.pos
        )));
    }
    Ok(node)
}

/// Decodes one value at the start of `input` and returns it with the number of bytes it used.
/// Used for framed data (e.g. tracker replies, extension messages) where more may follow.
pub fn decode_prefix(input: &[u8]) -> Result<(Node<'_>, usize), DecodeError> {
    let mut parser = Parser {
        input,
        pos: 0,
        nodes_left: MAX_NODES,
    };
    let node = parser.value(0)?;
    Ok((node, parser.pos))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    nodes_left: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end of data"))
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, DecodeError> {
        let start = self.pos;
        self.nodes_left = self
            .nodes_left
            .checked_sub(1)
            .ok_or_else(|| self.err(format!("more than {MAX_NODES} values")))?;
        let value = match self.peek()? {
            b'i' => {
                self.pos += 1;
                Value::Int(self.int_until(b'e')?)
            }
            b'0'..=b'9' => Value::Bytes(self.bytes()?),
            b'l' | b'd' if depth >= MAX_DEPTH => {
                return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                // Growth leaves up to half a list unused (and 4 slots for a list of 1): with a
                // million small lists in a torrent that is most of its tree.
                items.shrink_to_fit();
                Value::List(items)
            }
            b'd' => {
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Node<'a>)> = Vec::new();
                // Duplicate detection in linear time: while keys arrive in ascending order (as
                // canonical encoders write them) a key can only repeat the previous one; after
                // the first out-of-order key, a set of all keys seen takes over.
                let mut seen: Option<std::collections::HashSet<&'a [u8]>> = None;
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(self.err("dictionary key is not a string"));
                    }
                    let key = self.bytes()?;
                    let duplicate = match (&mut seen, entries.last()) {
                        (Some(set), _) => !set.insert(key),
                        (None, Some((prev, _))) if key > *prev => false,
                        (None, Some(_)) => {
                            let mut set: std::collections::HashSet<&'a [u8]> =
                                entries.iter().map(|(k, _)| *k).collect();
                            let dup = !set.insert(key);
                            seen = Some(set);
                            dup
                        }
                        (None, None) => false,
                    };
                    if duplicate {
                        return Err(DecodeError {
                            offset: key_at,
                            reason: format!(
                                "duplicate dictionary key {:?}",
                                String::from_utf8_lossy(key)
                            ),
                        });
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                entries.shrink_to_fit();
                Value::Dict(entries)
            }
            other => return Err(self.err(format!("unexpected byte 0x{other:02x}"))),
        };
        Ok(Node {
            value,
            span: start..self.pos,
        })
    }

    /// Parses a canonical decimal integer terminated by `end` and consumes the terminator.
    fn int_until(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let Some(len) = rest.iter().take(21).position(|&b| b == end) else {
            return Err(self.err("integer is unterminated or too long"));
        };
        let text = &rest[..len];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && !(text[0] == b'-' && digits == b"0");
        if !canonical {
            return Err(self.err(format!(
                "malformed integer {:?}",
                String::from_utf8_lossy(text)
            )));
        }
        // The text is ASCII digits with an optional sign, so from_utf8 cannot fail.
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| self.err("integer out of range"))?;
        self.pos = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.int_until(b':')?;
        let len = usize::try_from(len).map_err(|_| self.err("negative string length"))?;
        if len > self.input.len() - self.pos {
            return Err(self.err(format!("string of {len} bytes runs past the end of data")));
        }
        let s = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }
}

/// True if every dictionary in the tree has its keys in strictly ascending byte order,
/// as BEP 3 requires of encoders.
pub fn is_canonical(node: &Node<'_>) -> bool {
    match &node.value {
        Value::Int(_) | Value::Bytes(_) => true,
        Value::List(items) => items.iter().all(is_canonical),
        Value::Dict(entries) => {
            entries.windows(2).all(|w| w[0].0 < w[1].0)
                && entries.iter().all(|(_, v)| is_canonical(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_values_with_spans() {
        let input = b"d3:cow3:moo4:spaml1:a1:bi-3eee";
        let node = decode(input).unwrap();
        let spam = node.get("spam").unwrap();
        assert_eq!(&input[spam.span.clone()], b"l1:a1:bi-3ee");
        match &spam.value {
            Value::List(items) => {
                assert_eq!(items[0].value, Value::Bytes(b"a"));
                assert_eq!(items[2].value, Value::Int(-3));
            }
            other => panic!("expected list, got {other:?}"),
        }
        assert_eq!(node.span, 0..input.len());
    }

    #[test]
    fn accepts_unsorted_keys_but_reports_them() {
        let node = decode(b"d1:bi1e1:ai2ee").unwrap();
        assert!(!is_canonical(&node));
        assert!(is_canonical(&decode(b"d1:ai2e1:bi1ee").unwrap()));
    }

    #[test]
    fn rejects_malformed_input() {
        let cases: &[(&[u8], &str)] = &[
            (b"i03e", "malformed integer"),
            (b"i-0e", "malformed integer"),
            (b"ie", "malformed integer"),
            (b"i12", "unterminated"),
            (b"i99999999999999999999e", "out of range"),
            (b"5:abc", "runs past the end"),
            (b"-1:a", "unexpected byte"),
            (b"d1:ai1e1:ai2ee", "duplicate dictionary key"),
            (b"di1ei2ee", "key is not a string"),
            (b"l", "unexpected end"),
            (b"i1ei2e", "trailing data"),
            (b"x", "unexpected byte"),
        ];
        for (input, want) in cases {
            let err = decode(input).unwrap_err();
            assert!(
                err.reason.contains(want),
                "{:?}: got {err}, want {want}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bounds_nesting_depth() {
        let deep = |n: usize| {
            let mut v = vec![b'l'; n];
            v.extend(std::iter::repeat_n(b'e', n));
            v
        };
        assert!(decode(&deep(MAX_DEPTH)).is_ok());
        let err = decode(&deep(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.reason.contains("nesting"), "{err}");
        // Far deeper input must fail cleanly rather than overflow the stack.
        assert!(decode(&deep(1_000_000)).is_err());
    }

    #[test]
    fn bounds_the_number_of_values() {
        let list = |n: usize| {
            let mut v = b"l".to_vec();
            v.extend(b"i0e".repeat(n));
            v.push(b'e');
            v
        };
        // The list itself is one value.
        assert!(decode(&list(MAX_NODES - 1)).is_ok());
        let err = decode(&list(MAX_NODES)).unwrap_err();
        assert!(err.reason.contains("more than 3000000 values"), "{err}");
    }

    #[test]
    fn prefix_decode_reports_consumed_length() {
        let (node, used) = decode_prefix(b"i42eXYZ").unwrap();
        assert_eq!(node.value, Value::Int(42));
        assert_eq!(used, 4);
    }
}
