//! The tiny HTTP/1.1 client `uringseed ctl` talks to the control API with: plain HTTP over
//! `std::net::TcpStream` (no TLS: the API listens on loopback by default), one request per
//! connection (`Connection: close`), connect/read/write timeouts, a capped response (headers
//! 64 KiB, body 64 MiB), bodies by `Content-Length`, chunked or read to the close.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response head.
const MAX_HEAD: usize = 64 << 10;
/// Largest response body.
pub const MAX_BODY: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the API is: `http://HOST:PORT` plus an optional path prefix (a reverse proxy's).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `HOST:PORT` as given (the Host header and the address to resolve).
    pub authority: String,
    /// Path prefix without a trailing slash ("" for none).
    pub prefix: String,
}

impl Endpoint {
    /// Parses `http://HOST[:PORT][/PREFIX]` or `HOST:PORT`; https is refused (no TLS here).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(format!(
                "{url}: ctl speaks plain HTTP only (no TLS); reach the API over loopback or an ssh tunnel"
            ));
        } else if url.contains("://") {
            return Err(format!("{url}: not an http:// URL"));
        } else {
            url
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url}: give http://HOST:PORT"));
        }
        let authority = if has_port(authority) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Endpoint {
            authority,
            prefix: prefix.to_string(),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }
}

fn has_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        // "[::1]" has a colon but no port; "[::1]:9437" and "host:9437" have one.
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']'))
        }
        None => false,
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole response. Errors are for people ("cannot reach ...").
pub fn request(
    ep: &Endpoint,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let url = ep.url();
    let addrs: Vec<SocketAddr> = ep
        .authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", ep.authority))?
        .collect();
    let mut last = format!("{}: no address", ep.authority);
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let mut s = stream.ok_or_else(|| {
        format!("cannot reach the API at {url} ({last}); is `uringseed serve` running?")
    })?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: uringseed-ctl/{}\r\nContent-Length: {}\r\n",
        ep.prefix,
        ep.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body).map_err(io)?;
    s.flush().map_err(io)?;
    read_response(&mut s).map_err(|e| format!("{url}: {e}"))
}

/// Reads a response: head, then the body by its framing, within the caps.
pub fn read_response(r: &mut impl Read) -> Result<Response, String> {
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err("response head too large".into());
        }
        if fill(r, &mut buf)? == 0 {
            return Err("connection closed before a complete response".into());
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            if n > MAX_BODY {
                return Err(format!(
                    "response body of {n} bytes is over the {MAX_BODY} cap"
                ));
            }
            length = Some(n);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let mut rest = buf.split_off(head_end + 4);
    let body = if chunked {
        dechunk(r, rest)?
    } else if let Some(n) = length {
        while rest.len() < n {
            if fill(r, &mut rest)? == 0 {
                return Err("connection closed inside the response body".into());
            }
        }
        rest.truncate(n);
        rest
    } else {
        while fill(r, &mut rest)? > 0 {
            if rest.len() > MAX_BODY {
                return Err(format!("response body over the {MAX_BODY} cap"));
            }
        }
        rest
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body (`have`: bytes already read after the head); trailers are skipped.
fn dechunk(r: &mut impl Read, mut have: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = loop {
            if let Some(i) = find(&have[at..], b"\r\n") {
                break at + i;
            }
            if have.len() - at > 1024 {
                return Err("chunk size line too long".into());
            }
            if fill(r, &mut have)? == 0 {
                return Err("connection closed inside a chunked body".into());
            }
        };
        let line = std::str::from_utf8(&have[at..line_end]).map_err(|_| "bad chunk size")?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
        at = line_end + 2;
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(format!("response body over the {MAX_BODY} cap"));
        }
        while have.len() < at + size + 2 {
            if fill(r, &mut have)? == 0 {
                return Err("connection closed inside a chunk".into());
            }
        }
        body.extend_from_slice(&have[at..at + size]);
        if &have[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        at += size + 2;
    }
}

fn fill(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 16384];
    loop {
        match r.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err("no answer within 30 s".into())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Response, String> {
        read_response(&mut &raw[..])
    }

    #[test]
    fn content_length_chunked_and_close_delimited_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        let r = parse(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"abcde"[..]));
        let r = parse(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(r.body, b"until close");
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n").is_err());
        assert!(parse(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX").is_err());
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:9437/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("127.0.0.1:9437", "")
        );
        let e = Endpoint::parse("[::1]:1/x/").unwrap();
        assert_eq!((e.authority.as_str(), e.prefix.as_str()), ("[::1]:1", "/x"));
        assert_eq!(Endpoint::parse("http://h").unwrap().authority, "h:80");
        assert!(Endpoint::parse("https://h:1")
            .unwrap_err()
            .contains("plain HTTP"));
        assert!(Endpoint::parse("ftp://h").is_err());
        assert_eq!(encode("/a b/ü&"), "/a%20b/%C3%BC%26");
    }
}
