//! The HTTP/1.1 request-head parser of the web seed: finds the end of the head within a bound,
//! checks the request line and every header line strictly (no obs-fold, no control bytes, at
//! most [`MAX_HEADERS`] lines), refuses bodies, and keeps only what a web seed needs.

/// At most this many header lines in one head.
pub const MAX_HEADERS: usize = 100;

/// The request methods a web seed tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other valid method token: answered 405 with `Allow: GET, HEAD`.
    Other,
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target, raw, as sent (visible ASCII only).
    pub target: Vec<u8>,
    /// HTTP/1.1 (else HTTP/1.0).
    pub http11: bool,
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    pub range: Option<Vec<u8>>,
    pub if_range: Option<Vec<u8>>,
    /// All `If-None-Match` lines, joined with ", ".
    pub if_none_match: Option<Vec<u8>>,
    pub if_modified_since: Option<Vec<u8>>,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// No end of head within the bound: 431.
    TooLarge,
    /// Not `METHOD SP target SP HTTP/x.y`, or a bad method token or target: 400.
    BadRequestLine,
    /// `HTTP/d.d` other than 1.0 and 1.1: 505.
    Version,
    /// A header line without a colon, with an empty or bad name, or space before the colon: 400.
    BadHeader,
    /// A header line starting with space or tab (obsolete line folding): 400.
    ObsFold,
    /// A control byte (other than tab) or a bare CR in the head: 400.
    ControlByte,
    /// More than [`MAX_HEADERS`] header lines: 400.
    TooManyHeaders,
    /// `Content-Length` not all digits, too large, a list, or sent twice: 400.
    BadContentLength,
    /// `Range`, `If-Range`, `If-Modified-Since` or `Host` sent twice: 400.
    Duplicate,
    /// A request with a body (`Content-Length` > 0 or any `Transfer-Encoding`): 400, close.
    Body,
}

impl HeadError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Version => 505,
            _ => 400,
        }
    }

    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::TooLarge => "head_too_large",
            HeadError::BadRequestLine => "bad_request_line",
            HeadError::Version => "http_version",
            HeadError::BadHeader => "bad_header",
            HeadError::ObsFold => "obs_fold",
            HeadError::ControlByte => "control_byte",
            HeadError::TooManyHeaders => "too_many_headers",
            HeadError::BadContentLength => "bad_content_length",
            HeadError::Duplicate => "duplicate_header",
            HeadError::Body => "request_body",
        }
    }
}

/// The outcome of parsing the start of a connection's unread bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No end of head yet, and the buffer is within the bound: read more.
    Incomplete,
    /// A whole head; `consumed` bytes of the buffer belong to it (with any empty lines before).
    Done {
        req: Request,
        consumed: usize,
    },
    Error(HeadError),
}

/// Parses the head at the start of `buf`, looking at most `max_head` bytes into it.
pub fn parse_head(buf: &[u8], max_head: usize) -> Parsed {
    let window = &buf[..buf.len().min(max_head)];
    // RFC 9112 2.2: empty lines before the request line are ignored.
    let skip = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let Some(end) = head_end(window, skip) else {
        return if buf.len() > max_head {
            Parsed::Error(HeadError::TooLarge)
        } else {
            Parsed::Incomplete
        };
    };
    let head = window
        .get(skip..end.body_at - end.terminator)
        .unwrap_or(&[]);
    match parse_lines(head) {
        Ok(req) => Parsed::Done {
            req,
            consumed: end.body_at,
        },
        Err(e) => Parsed::Error(e),
    }
}

struct End {
    /// Index just past the terminator.
    body_at: usize,
    /// Length of the terminator's blank line and the line end before it.
    terminator: usize,
}

/// The first `\r\n\r\n` or `\n\n` (or mixes `\n\r\n`, `\r\n\n`) at or after `from`.
fn head_end(w: &[u8], from: usize) -> Option<End> {
    let mut i = from;
    while i < w.len() {
        if w[i] == b'\n' {
            if w.get(i + 1) == Some(&b'\n') {
                return Some(End {
                    body_at: i + 2,
                    terminator: 2,
                });
            }
            if w.get(i + 1) == Some(&b'\r') && w.get(i + 2) == Some(&b'\n') {
                return Some(End {
                    body_at: i + 3,
                    terminator: 3,
                });
            }
        }
        i += 1;
    }
    None
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ows(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ows(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// Lines split on LF with one CR before it removed; any other CR is refused later.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn parse_lines(head: &[u8]) -> Result<Request, HeadError> {
    let mut it = lines(head);
    let first = it.next().ok_or(HeadError::BadRequestLine)?;
    let mut req = parse_request_line(first)?;
    let mut count = 0usize;
    let mut host = false;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let (mut close, mut keep) = (false, false);
    for line in it {
        count += 1;
        if count > MAX_HEADERS {
            return Err(HeadError::TooManyHeaders);
        }
        let (name, value) = parse_header_line(line)?;
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            if content_length.is_some() {
                return Err(HeadError::BadContentLength);
            }
            content_length = Some(parse_length(value)?);
        } else if is("transfer-encoding") {
            transfer_encoding = true;
        } else if is("connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is("host") {
            if host {
                return Err(HeadError::Duplicate);
            }
            host = true;
        } else if is("range") {
            set_once(&mut req.range, value)?;
        } else if is("if-range") {
            set_once(&mut req.if_range, value)?;
        } else if is("if-modified-since") {
            set_once(&mut req.if_modified_since, value)?;
        } else if is("if-none-match") {
            match &mut req.if_none_match {
                Some(v) => {
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(value);
                }
                None => req.if_none_match = Some(value.to_vec()),
            }
        }
    }
    if transfer_encoding || content_length.unwrap_or(0) > 0 {
        return Err(HeadError::Body);
    }
    req.keep_alive = !close && (req.http11 || keep);
    Ok(req)
}

fn set_once(slot: &mut Option<Vec<u8>>, value: &[u8]) -> Result<(), HeadError> {
    if slot.is_some() {
        return Err(HeadError::Duplicate);
    }
    *slot = Some(value.to_vec());
    Ok(())
}

fn parse_length(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::BadContentLength);
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn parse_request_line(line: &[u8]) -> Result<Request, HeadError> {
    if line.iter().any(|&b| b.is_ascii_control()) {
        return Err(HeadError::ControlByte);
    }
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadRequestLine);
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(HeadError::BadRequestLine);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HeadError::Version)
        }
        _ => return Err(HeadError::BadRequestLine),
    };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok(Request {
        method,
        target: target.to_vec(),
        http11,
        keep_alive: http11,
        range: None,
        if_range: None,
        if_none_match: None,
        if_modified_since: None,
    })
}

fn parse_header_line(line: &[u8]) -> Result<(&[u8], &[u8]), HeadError> {
    if line.first().is_some_and(|&b| is_ows(b)) {
        return Err(HeadError::ObsFold);
    }
    if line.iter().any(|&b| b != b'\t' && b.is_ascii_control()) {
        return Err(HeadError::ControlByte);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::BadHeader)?;
    let (name, rest) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadHeader);
    }
    Ok((name, trim_ows(rest.get(1..).unwrap_or(&[]))))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
