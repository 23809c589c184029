//! Request target to torrent name and path (BEP 19 URLs `/NAME` and `/NAME/dir/file`): the path
//! of an origin- or absolute-form target, split on `/` and percent-decoded per segment, with
//! every segment that could reach outside the torrent (dot segments, NUL, backslash, control
//! bytes, encoded slashes) refused.

use crate::metainfo::hex_digit as hex;

/// At most this many bytes in the path, and in one segment.
pub const MAX_PATH: usize = 4096;
/// At most this many `/`-separated segments.
pub const MAX_SEGMENTS: usize = 256;

/// A torrent name and the path inside it, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The first segment: the torrent's name.
    pub name: String,
    /// The rest: components inside a multi-file torrent (empty for `/NAME`).
    pub path: Vec<String>,
}

/// Why a target was refused (answered 404 and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not `/...` (after an `http://host` prefix), e.g. `*` or `host:port`.
    NotAPath,
    /// No torrent name (`/`, `//...`).
    EmptyName,
    /// An empty segment: double or trailing slash.
    EmptySegment,
    /// `.` or `..`, raw or decoded.
    DotSegment,
    /// NUL, raw or `%00`.
    Nul,
    /// A backslash, raw or `%5C`.
    Backslash,
    /// A control byte other than NUL, raw or decoded.
    Control,
    /// `%2F`: a slash inside a name, which no file has.
    EncodedSlash,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// Decoded bytes that are not UTF-8.
    NotUtf8,
    /// The path or one segment longer than [`MAX_PATH`] bytes.
    TooLong,
    /// More than [`MAX_SEGMENTS`] segments.
    TooManySegments,
}

impl Refused {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::NotAPath => "not_a_path",
            Refused::EmptyName => "empty_name",
            Refused::EmptySegment => "empty_segment",
            Refused::DotSegment => "dot_segment",
            Refused::Nul => "nul",
            Refused::Backslash => "backslash",
            Refused::Control => "control_byte",
            Refused::EncodedSlash => "encoded_slash",
            Refused::BadEscape => "bad_escape",
            Refused::NotUtf8 => "not_utf8",
            Refused::TooLong => "too_long",
            Refused::TooManySegments => "too_many_segments",
        }
    }
}

/// The path part of a target: without `?query` or `#fragment`, and without the scheme and
/// authority of an absolute-form target (`http://host:port/path`).
fn path_of(raw: &[u8]) -> &[u8] {
    let end = raw
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(raw.len());
    let p = &raw[..end];
    for scheme in [&b"http://"[..], b"https://"] {
        if p.len() >= scheme.len() && p[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &p[scheme.len()..];
            return match rest.iter().position(|&b| b == b'/') {
                Some(slash) => &rest[slash..],
                None => b"/",
            };
        }
    }
    p
}

/// Checks one byte of a segment, raw or decoded.
fn check_byte(b: u8) -> Result<(), Refused> {
    match b {
        0 => Err(Refused::Nul),
        b'\\' => Err(Refused::Backslash),
        b'/' => Err(Refused::EncodedSlash),
        b if b < 0x20 || b == 0x7f => Err(Refused::Control),
        _ => Ok(()),
    }
}

fn decode_segment(seg: &[u8]) -> Result<String, Refused> {
    if seg.is_empty() {
        return Err(Refused::EmptySegment);
    }
    if seg.len() > MAX_PATH {
        return Err(Refused::TooLong);
    }
    if seg == b"." || seg == b".." {
        return Err(Refused::DotSegment);
    }
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        if b == b'%' {
            let hi = seg.get(i + 1).copied().and_then(hex);
            let lo = seg.get(i + 2).copied().and_then(hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Refused::BadEscape);
            };
            let d = hi << 4 | lo;
            check_byte(d)?;
            out.push(d);
            i += 3;
        } else {
            check_byte(b)?;
            out.push(b);
            i += 1;
        }
    }
    if out == b"." || out == b".." {
        return Err(Refused::DotSegment);
    }
    String::from_utf8(out).map_err(|_| Refused::NotUtf8)
}

/// Splits a raw request target into the torrent name and the path inside it.
pub fn split_target(raw: &[u8]) -> Result<Target, Refused> {
    let path = path_of(raw);
    if path.len() > MAX_PATH {
        return Err(Refused::TooLong);
    }
    let Some(rest) = path.strip_prefix(b"/") else {
        return Err(Refused::NotAPath);
    };
    let mut segments = rest.split(|&b| b == b'/');
    let first = segments.next().unwrap_or(&[]);
    if first.is_empty() {
        return Err(Refused::EmptyName);
    }
    let name = decode_segment(first)?;
    let mut parts = Vec::new();
    for seg in segments {
        if parts.len() + 1 >= MAX_SEGMENTS {
            return Err(Refused::TooManySegments);
        }
        parts.push(decode_segment(seg)?);
    }
    Ok(Target { name, path: parts })
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
