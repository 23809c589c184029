//! IP blocklist: a file of CIDR ranges (IPv4 and IPv6), one per line, `#` comments. Blocked
//! addresses are closed at accept and never dialled. Lookups are a binary search over merged
//! ranges; the file is re-read on SIGHUP.
//!
//! It owns parsing and lookup; it opens no socket (admission and the peer intake ask it).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// Largest blocklist file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    /// Sorted, merged, inclusive ranges over IPv6-mapped addresses (IPv4 as ::ffff:a.b.c.d).
    ranges: Vec<(u128, u128)>,
}

/// A line that is not a valid address or CIDR range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BlocklistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: line {}: {}", self.file, self.line, self.reason)
    }
}

impl std::error::Error for BlocklistError {}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Blocklist {
    /// Parses blocklist text; `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Blocklist, BlocklistError> {
        let mut ranges = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |reason: String| BlocklistError {
                file: file.to_string(),
                line: i + 1,
                reason,
            };
            let (addr, prefix) = match line.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (line, None),
            };
            let ip: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| err(format!("{addr:?} is not an IP address")))?;
            let width = if ip.is_ipv4() { 32 } else { 128 };
            let prefix: u32 = match prefix {
                None => width,
                Some(p) => p
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&p| p <= width)
                    .ok_or_else(|| err(format!("bad prefix length /{p}")))?,
            };
            // In the 128-bit key space an IPv4 prefix covers the last 32 bits.
            let host_bits = width - prefix;
            let mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let start = key(ip) & !mask;
            ranges.push((start, start | mask));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Ok(Blocklist { ranges: merged })
    }

    /// Reads a blocklist file.
    pub fn load(path: &Path) -> Result<Blocklist, BlocklistError> {
        let file = path.display().to_string();
        let fail = |reason: String| BlocklistError {
            file: file.clone(),
            line: 0,
            reason,
        };
        let text = crate::fsread::read_regular_string(path, MAX_FILE_BYTES)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        Blocklist::parse(&text, &file)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let k = key(ip.to_canonical());
        let i = self.ranges.partition_point(|r| r.1 < k);
        self.ranges.get(i).is_some_and(|r| r.0 <= k)
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_cidr_ranges_of_both_families() {
        let b = Blocklist::parse(
            "# bad hosts\n10.0.0.0/8\n192.168.1.7\n2001:db8::/32 # doc\n\n11.0.0.0/8\n",
            "b",
        )
        .unwrap();
        assert_eq!(b.len(), 3, "10/8 and 11/8 merge");
        for ip in [
            "10.1.2.3",
            "11.255.255.255",
            "192.168.1.7",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(b.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "9.255.255.255",
            "12.0.0.0",
            "192.168.1.8",
            "2001:db9::1",
            "127.0.0.1",
            "::1",
        ] {
            assert!(!b.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(Blocklist::parse("0.0.0.0/0", "b")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Blocklist::parse("::/0", "b")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = Blocklist::parse("10.0.0.0/8\nnot-an-ip\n", "list.txt").unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (2, "list.txt"));
        let e = Blocklist::parse("10.0.0.0/33\n", "l").unwrap_err();
        assert!(e.reason.contains("/33"), "{e}");
    }
}
