//! What the node keeps for others: peers announced to us per info-hash ([`PeerStore`]: at most
//! [`PEERS_PER_HASH`] peers per info-hash, [`MAX_HASHES`] info-hashes in all, each peer
//! forgotten [`PEER_TTL`] after its last announce) and the announce tokens we hand out
//! ([`Tokens`]: the first 8 bytes of SHA-1(secret ‖ IP octets), the secret rotated every
//! [`ROTATE_EVERY`], a token valid under the current or the previous secret, so 5–10 minutes).

use super::id::Rng;
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub const PEERS_PER_HASH: usize = 100;
pub const MAX_HASHES: usize = 5_000;
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);
pub const ROTATE_EVERY: Duration = Duration::from_secs(5 * 60);
pub const TOKEN_LEN: usize = 8;

#[derive(Default)]
pub struct PeerStore {
    map: HashMap<[u8; 20], Vec<(SocketAddr, Instant)>>,
}

impl PeerStore {
    /// Records `peer` for `info_hash`; false when refused (the info-hash cap is reached).
    /// A full list drops its oldest peer.
    pub fn announce(&mut self, info_hash: [u8; 20], peer: SocketAddr, now: Instant) -> bool {
        if !self.map.contains_key(&info_hash) && self.map.len() >= MAX_HASHES {
            return false;
        }
        let list = self.map.entry(info_hash).or_default();
        if let Some(e) = list.iter_mut().find(|(a, _)| *a == peer) {
            e.1 = now;
            return true;
        }
        if list.len() >= PEERS_PER_HASH {
            let oldest = (0..list.len())
                .min_by_key(|&i| list[i].1)
                .expect("non-empty");
            list.swap_remove(oldest);
        }
        list.push((peer, now));
        true
    }

    /// Up to `max` live peers for `info_hash`, newest first.
    pub fn peers(&self, info_hash: &[u8; 20], max: usize, now: Instant) -> Vec<SocketAddr> {
        let Some(list) = self.map.get(info_hash) else {
            return Vec::new();
        };
        let mut live: Vec<_> = list
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL)
            .collect();
        live.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        live.into_iter().take(max).map(|(a, _)| *a).collect()
    }

    /// Forgets expired peers and empty info-hashes.
    pub fn expire(&mut self, now: Instant) {
        self.map.retain(|_, list| {
            list.retain(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL);
            !list.is_empty()
        });
    }

    pub fn hashes(&self) -> usize {
        self.map.len()
    }

    pub fn peer_count(&self) -> usize {
        self.map.values().map(Vec::len).sum()
    }
}

pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated: Instant,
}

fn token_for(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match ip.to_canonical() {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    let d = h.finalize();
    let mut t = [0u8; TOKEN_LEN];
    t.copy_from_slice(&d[..TOKEN_LEN]);
    t
}

impl Tokens {
    pub fn new(rng: &mut Rng, now: Instant) -> Tokens {
        let (mut current, mut previous) = ([0u8; 16], [0u8; 16]);
        rng.fill(&mut current);
        rng.fill(&mut previous);
        Tokens {
            current,
            previous,
            rotated: now,
        }
    }

    /// Rotates the secret if [`ROTATE_EVERY`] has passed.
    pub fn maybe_rotate(&mut self, rng: &mut Rng, now: Instant) {
        if now.saturating_duration_since(self.rotated) >= ROTATE_EVERY {
            self.previous = self.current;
            rng.fill(&mut self.current);
            self.rotated = now;
        }
    }

    /// When the next rotation is due.
    pub fn next_rotation(&self) -> Instant {
        self.rotated + ROTATE_EVERY
    }

    pub fn token(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        token_for(&self.current, ip)
    }

    pub fn valid(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == token_for(&self.current, ip) || token == token_for(&self.previous, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u32) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), 6881))
    }

    #[test]
    fn per_hash_and_total_caps_and_expiry() {
        let t0 = Instant::now();
        let mut s = PeerStore::default();
        for i in 0..150 {
            assert!(s.announce([1; 20], peer(i), t0 + Duration::from_secs(u64::from(i))));
        }
        let got = s.peers(&[1; 20], 1000, t0 + Duration::from_secs(200));
        assert_eq!(got.len(), PEERS_PER_HASH);
        assert_eq!(got[0], peer(149));
        assert!(!got.contains(&peer(0)), "the oldest went first");
        for i in 1..MAX_HASHES as u32 {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&i.to_be_bytes());
            assert!(s.announce(h, peer(1), t0));
        }
        assert_eq!(s.hashes(), MAX_HASHES);
        assert!(!s.announce([9; 20], peer(1), t0), "info-hash cap");
        assert!(
            s.announce([1; 20], peer(7), t0),
            "a known info-hash still takes peers"
        );
        // Expiry.
        let late = t0 + PEER_TTL + Duration::from_secs(151);
        assert!(s.peers(&[1; 20], 10, late).is_empty());
        s.expire(late);
        assert_eq!(s.hashes(), 0);
        assert_eq!(s.peer_count(), 0);
    }

    #[test]
    fn tokens_are_per_ip_and_expire_after_two_rotations() {
        let t0 = Instant::now();
        let mut rng = Rng::new(3);
        let mut t = Tokens::new(&mut rng, t0);
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let tok = t.token(ip);
        assert!(t.valid(ip, &tok));
        assert!(!t.valid("1.2.3.5".parse().unwrap(), &tok));
        assert!(!t.valid(ip, &tok[..7]));
        t.maybe_rotate(&mut rng, t0 + Duration::from_secs(10));
        assert_eq!(t.token(ip), tok, "not due yet");
        t.maybe_rotate(&mut rng, t0 + ROTATE_EVERY);
        assert_ne!(t.token(ip), tok);
        assert!(t.valid(ip, &tok), "previous secret still accepted");
        t.maybe_rotate(&mut rng, t0 + 2 * ROTATE_EVERY);
        assert!(!t.valid(ip, &tok), "rotated out");
    }
}
