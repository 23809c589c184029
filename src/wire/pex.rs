//! BEP 11 peer exchange (`ut_pex`), sans I/O: the message codec (compact IPv4 and IPv6
//! `added` / `added.f` / `dropped`, `added6` / `added6.f` / `dropped6`) and one connection's
//! sending schedule ([`PexSender`]: a first message soon after the extension handshake, then
//! at most one a minute, at most [`MAX_ADDED`] added and [`MAX_DROPPED`] dropped each, as the
//! difference from what that peer was told before). Time is passed in. Which peers may be
//! shared is decided by the caller; this module only diffs and encodes.

use crate::bencode::{self, Value};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Peers added per message at most (BEP 11).
pub const MAX_ADDED: usize = 50;
/// Peers dropped per message at most (BEP 11).
pub const MAX_DROPPED: usize = 50;
/// Between two messages to one peer.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// After the extension handshake, before the first message (others may connect meanwhile).
pub const FIRST_AFTER: Duration = Duration::from_secs(3);
/// Addresses taken from one received message at most (a peer may send more than BEP 11's 50).
pub const MAX_TAKEN: usize = 200;

/// BEP 11 flag: the peer prefers encryption.
pub const FLAG_ENCRYPTION: u8 = 0x01;
/// BEP 11 flag: the peer is reachable (we connected to it).
pub const FLAG_REACHABLE: u8 = 0x10;
/// BEP 11: the peer supports uTP.
pub const FLAG_UTP: u8 = 0x04;

/// A peer as shared: its listen address and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PexPeer {
    pub addr: SocketAddr,
    pub flags: u8,
}

/// Why a `ut_pex` message is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PexError(pub &'static str);

fn compact(peers: impl Iterator<Item = SocketAddr>, v6: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for a in peers {
        match (a.ip(), v6) {
            (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
            (IpAddr::V6(ip), true) => out.extend_from_slice(&ip.octets()),
            _ => continue,
        }
        out.extend_from_slice(&a.port().to_be_bytes());
    }
    out
}

fn push_str(out: &mut Vec<u8>, key: &str, bytes: &[u8]) {
    out.extend_from_slice(format!("{}:{key}{}:", key.len(), bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// A `ut_pex` message (keys in canonical order).
pub fn encode(added: &[PexPeer], dropped: &[SocketAddr]) -> Vec<u8> {
    let v4 = |a: &SocketAddr| a.ip().to_canonical().is_ipv4();
    let canon = |a: &SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let added4: Vec<&PexPeer> = added.iter().filter(|p| v4(&p.addr)).collect();
    let added6: Vec<&PexPeer> = added.iter().filter(|p| !v4(&p.addr)).collect();
    let mut out = b"d".to_vec();
    push_str(
        &mut out,
        "added",
        &compact(added4.iter().map(|p| canon(&p.addr)), false),
    );
    push_str(
        &mut out,
        "added.f",
        &added4.iter().map(|p| p.flags).collect::<Vec<u8>>(),
    );
    push_str(
        &mut out,
        "added6",
        &compact(added6.iter().map(|p| p.addr), true),
    );
    push_str(
        &mut out,
        "added6.f",
        &added6.iter().map(|p| p.flags).collect::<Vec<u8>>(),
    );
    push_str(
        &mut out,
        "dropped",
        &compact(dropped.iter().filter(|a| v4(a)).map(canon), false),
    );
    push_str(
        &mut out,
        "dropped6",
        &compact(dropped.iter().filter(|a| !v4(a)).copied(), true),
    );
    out.push(b'e');
    out
}

/// The peers a `ut_pex` message adds (at most [`MAX_TAKEN`]); `dropped` is not needed by a
/// seed and is only checked for shape.
pub fn decode(payload: &[u8]) -> Result<Vec<PexPeer>, PexError> {
    let node = bencode::decode(payload).map_err(|_| PexError("not bencode"))?;
    if !matches!(node.value, Value::Dict(_)) {
        return Err(PexError("not a dictionary"));
    }
    let bytes = |key: &str| match node.get(key).map(|n| &n.value) {
        None => Ok(&[][..]),
        Some(Value::Bytes(b)) => Ok(*b),
        Some(_) => Err(PexError("a field is not a string")),
    };
    let mut out = Vec::new();
    for (key, flags_key, len) in [("added", "added.f", 6), ("added6", "added6.f", 18)] {
        let list = bytes(key)?;
        let flags = bytes(flags_key)?;
        if list.len() % len != 0 {
            return Err(PexError("compact peers of the wrong length"));
        }
        for (i, c) in list.chunks_exact(len).enumerate() {
            if out.len() >= MAX_TAKEN {
                break;
            }
            let ip = if len == 6 {
                IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            } else {
                let o: [u8; 16] = c[..16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(o))
            };
            let port = u16::from_be_bytes([c[len - 2], c[len - 1]]);
            out.push(PexPeer {
                addr: SocketAddr::new(ip, port),
                flags: flags.get(i).copied().unwrap_or(0),
            });
        }
    }
    for (key, len) in [("dropped", 6), ("dropped6", 18)] {
        if bytes(key)?.len() % len != 0 {
            return Err(PexError("compact peers of the wrong length"));
        }
    }
    Ok(out)
}

/// What one connection was told, and when it may be told more.
#[derive(Debug)]
pub struct PexSender {
    told: HashSet<SocketAddr>,
    next: Instant,
}

impl PexSender {
    /// Starts the schedule when the peer's extension handshake arrived at `now`.
    pub fn new(now: Instant) -> PexSender {
        PexSender {
            told: HashSet::new(),
            next: now + FIRST_AFTER,
        }
    }

    /// When the next message is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// The message for this peer, if it is due and something changed since the last one;
    /// `current` is the torrent's shareable peers (not this peer itself).
    pub fn poll(&mut self, now: Instant, current: &[PexPeer]) -> Option<Vec<u8>> {
        if now < self.next {
            return None;
        }
        self.next = now + INTERVAL;
        let now_set: HashSet<SocketAddr> = current.iter().map(|p| p.addr).collect();
        let added: Vec<PexPeer> = current
            .iter()
            .filter(|p| !self.told.contains(&p.addr))
            .take(MAX_ADDED)
            .copied()
            .collect();
        let dropped: Vec<SocketAddr> = self
            .told
            .iter()
            .filter(|a| !now_set.contains(a))
            .take(MAX_DROPPED)
            .copied()
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        for a in &dropped {
            self.told.remove(a);
        }
        self.told.extend(added.iter().map(|p| p.addr));
        Some(encode(&added, &dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str, flags: u8) -> PexPeer {
        PexPeer {
            addr: s.parse().unwrap(),
            flags,
        }
    }

    #[test]
    fn messages_round_trip_with_both_families_and_flags() {
        let added = [
            peer("10.0.0.1:6881", FLAG_REACHABLE),
            peer("[2001:db8::1]:51413", FLAG_ENCRYPTION),
            peer("[::ffff:10.0.0.2]:7000", 0),
        ];
        let msg = encode(&added, &["10.9.9.9:1".parse().unwrap()]);
        assert!(crate::bencode::is_canonical(
            &crate::bencode::decode(&msg).unwrap()
        ));
        let got = decode(&msg).unwrap();
        assert_eq!(
            got,
            vec![
                peer("10.0.0.1:6881", FLAG_REACHABLE),
                peer("10.0.0.2:7000", 0),
                peer("[2001:db8::1]:51413", FLAG_ENCRYPTION)
            ]
        );
        for bad in [
            &b"i1e"[..],
            b"d5:added5:12345e",
            b"d7:dropped2:xxe",
            b"d5:addedi1ee",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // More than we take: bounded.
        let many: Vec<PexPeer> = (0..1000u32)
            .map(|i| PexPeer {
                addr: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6881)),
                flags: 0,
            })
            .collect();
        assert_eq!(decode(&encode(&many, &[])).unwrap().len(), MAX_TAKEN);
    }

    #[test]
    fn the_schedule_sends_diffs_at_most_once_a_minute_and_fifty_at_a_time() {
        let t0 = Instant::now();
        let mut s = PexSender::new(t0);
        let many: Vec<PexPeer> = (0..60u8)
            .map(|i| peer(&format!("10.0.0.{i}:1"), 0))
            .collect();
        assert!(s.poll(t0, &many).is_none(), "not before FIRST_AFTER");
        let first = decode(&s.poll(t0 + FIRST_AFTER, &many).unwrap()).unwrap();
        assert_eq!(first.len(), MAX_ADDED);
        assert!(s.poll(t0 + FIRST_AFTER + INTERVAL / 2, &many).is_none());
        // A minute later: the other ten, and two that left are dropped.
        let later = t0 + FIRST_AFTER + INTERVAL;
        let msg = s.poll(later, &many[2..]).unwrap();
        let node = crate::bencode::decode(&msg).unwrap();
        let dropped = match &node.get("dropped").unwrap().value {
            Value::Bytes(b) => b.len() / 6,
            _ => 0,
        };
        assert_eq!((decode(&msg).unwrap().len(), dropped), (10, 2));
        // Nothing new: no message.
        assert!(s.poll(later + INTERVAL, &many[2..]).is_none());
    }
}
