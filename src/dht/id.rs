//! Node ids and the randomness the DHT uses: [`NodeId`] (160 bits), the XOR metric, the bucket
//! index (shared prefix length with our id), BEP 42's id derived from an external address
//! (CRC-32C of the masked address) and its check, and [`Rng`], the seeded PRNG every part of the
//! node draws from (no global RNG, so runs replay from a seed).

use std::fmt;
use std::net::IpAddr;

/// A 160-bit DHT node id (or an info-hash / lookup target in the same space).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 20]);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..")
    }
}

impl NodeId {
    /// The XOR distance to `other`, comparable as a big-endian number (smaller is closer).
    pub fn distance(&self, other: &NodeId) -> [u8; 20] {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        d
    }

    /// How many leading bits `self` shares with `other` (160 when equal). Bucket `i` of a
    /// table around `self` holds the nodes that share exactly `i` leading bits.
    pub fn shared_prefix(&self, other: &NodeId) -> usize {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        160
    }

    /// A random id that shares exactly `prefix` leading bits with `self` (< 160).
    pub fn random_in_bucket(&self, prefix: usize, rng: &mut Rng) -> NodeId {
        let mut id = rng.id().0;
        for bit in 0..=prefix.min(159) {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let ours = self.0[byte] & mask;
            // Copy our bits before `prefix`, flip the one at `prefix`.
            let want = if bit == prefix { ours ^ mask } else { ours };
            id[byte] = (id[byte] & !mask) | want;
        }
        NodeId(id)
    }
}

/// SplitMix64: small, fast, seeded; not for secrets the network could predict from outputs
/// alone (token secrets are hashed with the peer's address before they leave).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    pub fn id(&mut self) -> NodeId {
        let mut id = [0u8; 20];
        self.fill(&mut id);
        NodeId(id)
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: BEP 42 hashes 4 or 8
/// bytes per id, so a table or a crate buys nothing.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// True for addresses BEP 42 exempts from the id check (and for which no id is derived):
/// loopback, private, link-local, unspecified, and IPv6 unique-local.
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The 21-bit prefix BEP 42 ties to `ip` for the 3-bit random `r` (in the top bits of a u32).
fn prefix_for(ip: IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (x, m) in b.iter_mut().zip([0x03, 0x0f, 0x3f, 0xff]) {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v6.octets()[..8]);
            for (x, m) in b
                .iter_mut()
                .zip([0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff])
            {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
    }
}

/// BEP 42: an id for external address `ip`: 21 bits from the CRC-32C of the masked address
/// with `rand`'s low 3 bits mixed in, the rest random, and the last byte `rand`.
pub fn id_for_ip(ip: IpAddr, rand: u8, rng: &mut Rng) -> NodeId {
    let crc = prefix_for(ip, rand);
    let mut id = rng.id().0;
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (id[2] & 0x07);
    id[19] = rand;
    NodeId(id)
}

/// BEP 42: whether `id` is one `ip` may use (always true for exempt addresses).
pub fn is_valid_for(id: &NodeId, ip: IpAddr) -> bool {
    if is_exempt(ip) {
        return true;
    }
    let crc = prefix_for(ip, id.0[19]);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn bep42_vectors_are_valid_and_derived_ids_match_them() {
        // (ip, rand, id prefix) from BEP 42's table; the 21 checked bits are what matters.
        let cases = [
            ("124.31.75.21", 1u8, "5fbfbf"),
            ("21.75.31.124", 86, "5a3ce9"),
            ("65.23.51.170", 22, "a5d432"),
            ("84.124.73.14", 65, "1b0321"),
            ("43.213.53.83", 90, "e56f6c"),
        ];
        let mut rng = Rng::new(7);
        for (ip, rand, prefix) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            let p = hex(prefix);
            let id = id_for_ip(ip, rand, &mut rng);
            assert_eq!(&id.0[..2], &p[..2], "{ip}");
            assert_eq!(id.0[2] & 0xf8, p[2] & 0xf8, "{ip}");
            assert_eq!(id.0[19], rand);
            assert!(is_valid_for(&id, ip));
            let mut wrong = id;
            wrong.0[1] ^= 0x40;
            assert!(!is_valid_for(&wrong, ip), "{ip}");
            // Another address's id is refused.
            assert!(!is_valid_for(&id, "8.8.8.8".parse().unwrap()));
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let id = id_for_ip(v6, 3, &mut rng);
        assert!(is_valid_for(&id, v6));
        assert!(!is_valid_for(&NodeId([0; 20]), v6));
    }

    #[test]
    fn local_addresses_are_exempt() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.9",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_exempt(ip), "{ip}");
            assert!(is_valid_for(&NodeId([0xab; 20]), ip));
        }
        assert!(!is_exempt("1.2.3.4".parse().unwrap()));
        assert!(!is_exempt("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn distance_prefix_and_bucket_ids() {
        let a = NodeId([0; 20]);
        let mut b = [0u8; 20];
        b[0] = 0x10;
        let b = NodeId(b);
        assert_eq!(a.shared_prefix(&b), 3);
        assert_eq!(a.shared_prefix(&a), 160);
        assert_eq!(a.distance(&b)[0], 0x10);
        let mut rng = Rng::new(1);
        for prefix in [0, 1, 7, 8, 100, 159] {
            for _ in 0..20 {
                let r = b.random_in_bucket(prefix, &mut rng);
                assert_eq!(b.shared_prefix(&r), prefix);
            }
        }
    }

    #[test]
    fn rng_is_seeded() {
        assert_eq!(Rng::new(5).next_u64(), Rng::new(5).next_u64());
        assert_ne!(Rng::new(5).next_u64(), Rng::new(6).next_u64());
    }
}
