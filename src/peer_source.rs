//! The one entry point for peer addresses to dial, from any source (trackers now; DHT, PEX and
//! the control API later), sans I/O: time and the server's current room are passed in.
//!
//! [`PeerIntake::handle_offer`] decides at once what can be decided from the address alone:
//! not one of our own addresses (peer listeners, and the metrics/API, web seed and built-in
//! tracker listeners; on loopback or, for a wildcard listener, any local address, at that
//! port), not port 0 or an unspecified, broadcast or multicast address, not a port below 1024
//! unless allowed, not blocklisted, not already waiting, not tried for this torrent within
//! [`IntakeLimits::redial_after`], and room in the bounded queue. [`PeerIntake::poll_dial`]
//! then hands out queued addresses at no more than [`IntakeLimits::dials_per_sec`] (a token
//! bucket), dropping those whose torrent or server has no room for another connection at that
//! moment. Every outcome is a [`CandidateResult`] the caller counts by [`PeerSourceKind`]. This
//! module owns the decisions only; it opens no socket and reads no clock.

use crate::metainfo::InfoHash;
use crate::reasons::{CandidateResult, PeerSourceKind};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A peer address to dial for a torrent, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub info_hash: InfoHash,
    pub addr: SocketAddr,
    pub source: PeerSourceKind,
}

/// Bounds of the intake.
#[derive(Debug, Clone)]
pub struct IntakeLimits {
    /// An address is not dialled again for the same torrent within this time.
    pub redial_after: Duration,
    /// Dials started per second (and the burst allowed after a quiet spell); 0 = no dials.
    pub dials_per_sec: u32,
    /// Addresses waiting for a dial slot.
    pub max_queued: usize,
    /// Addresses remembered as recently tried.
    pub max_recent: usize,
    /// Dial ports below 1024 too.
    pub dial_privileged_ports: bool,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            redial_after: Duration::from_secs(300),
            dials_per_sec: 30,
            max_queued: 2048,
            max_recent: 65_536,
            dial_privileged_ports: false,
        }
    }
}

/// What [`PeerIntake::poll_dial`] gives out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    /// Dial this one now.
    Go(Candidate),
    /// This queued one was dropped (no room): count it and poll again.
    Dropped(Candidate, CandidateResult),
    /// Nothing may be dialled before this time.
    Wait(Instant),
    /// The queue is empty.
    Idle,
}

/// Queued and recently tried peer addresses, and the dial budget.
#[derive(Debug)]
pub struct PeerIntake {
    limits: IntakeLimits,
    /// Addresses we listen on (a port on an unspecified address means every local address).
    own: Vec<SocketAddr>,
    /// Listeners of our other services (HTTP, web seed, tracker), same rule.
    services: Vec<SocketAddr>,
    /// This machine's interface addresses (what a wildcard listener covers).
    local_ips: HashSet<IpAddr>,
    queue: VecDeque<Candidate>,
    queued: HashSet<(InfoHash, SocketAddr)>,
    recent: HashMap<(InfoHash, SocketAddr), Instant>,
    tokens: f64,
    refilled: Option<Instant>,
}

impl PeerIntake {
    pub fn new(limits: IntakeLimits) -> PeerIntake {
        PeerIntake {
            tokens: f64::from(limits.dials_per_sec),
            limits,
            own: Vec::new(),
            services: Vec::new(),
            local_ips: HashSet::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            recent: HashMap::new(),
            refilled: None,
        }
    }

    /// Our listen addresses, so that we never dial ourselves.
    pub fn set_own_addrs(&mut self, addrs: &[SocketAddr]) {
        self.own = addrs.to_vec();
    }

    /// The listeners of our other services (metrics/API, web seed, built-in tracker): a peer
    /// list naming them would have us send a BitTorrent handshake to ourselves.
    pub fn set_service_addrs(&mut self, addrs: &[SocketAddr]) {
        self.services = addrs.to_vec();
    }

    /// This machine's interface addresses, which a listener on 0.0.0.0 or [::] also answers on.
    pub fn set_local_ips(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        self.local_ips = ips.into_iter().map(|ip| ip.to_canonical()).collect();
    }

    /// Addresses waiting for a dial slot.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn is_own(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        // Our port on loopback is us whichever address we listen on (a wildcard listener
        // covers loopback; a specific one is still this machine), and so is a wildcard
        // listener's port on any of this machine's addresses.
        self.own.iter().chain(&self.services).any(|o| {
            let o_ip = o.ip().to_canonical();
            o.port() == addr.port()
                && (o_ip == ip
                    || ip.is_loopback()
                    || (o_ip.is_unspecified() && self.local_ips.contains(&ip)))
        })
    }

    /// Takes an address offered by a source; Ok if it is queued, else why not.
    pub fn handle_offer(
        &mut self,
        now: Instant,
        cand: Candidate,
        blocked: impl Fn(IpAddr) -> bool,
    ) -> Result<(), CandidateResult> {
        let ip = cand.addr.ip().to_canonical();
        if cand.addr.port() == 0 || !dialable(ip) {
            return Err(CandidateResult::Invalid);
        }
        if self.is_own(cand.addr) {
            return Err(CandidateResult::OwnAddress);
        }
        if cand.addr.port() < 1024 && !self.limits.dial_privileged_ports {
            return Err(CandidateResult::PrivilegedPort);
        }
        if blocked(ip) {
            return Err(CandidateResult::Blocked);
        }
        let key = (cand.info_hash, cand.addr);
        let recent = self
            .recent
            .get(&key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.limits.redial_after);
        if recent || self.queued.contains(&key) {
            return Err(CandidateResult::Duplicate);
        }
        if self.queue.len() >= self.limits.max_queued {
            return Err(CandidateResult::QueueFull);
        }
        self.queue.push_back(cand);
        self.queued.insert(key);
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        let rate = f64::from(self.limits.dials_per_sec);
        if let Some(last) = self.refilled {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * rate).min(rate.max(1.0));
        }
        self.refilled = Some(now);
    }

    /// The next thing to do with the queue. `has_room(info_hash)` says whether that torrent
    /// exists and it and the server can take one more connection now.
    pub fn poll_dial(&mut self, now: Instant, has_room: impl Fn(&InfoHash) -> bool) -> Dial {
        let Some(&cand) = self.queue.front() else {
            return Dial::Idle;
        };
        if !has_room(&cand.info_hash) {
            self.pop();
            return Dial::Dropped(cand, CandidateResult::NoRoom);
        }
        if self.limits.dials_per_sec == 0 {
            return Dial::Wait(now + Duration::from_secs(3600));
        }
        self.refill(now);
        if self.tokens < 1.0 {
            let secs = (1.0 - self.tokens) / f64::from(self.limits.dials_per_sec);
            return Dial::Wait(now + Duration::from_secs_f64(secs));
        }
        if self.recent.len() >= self.limits.max_recent {
            let window = self.limits.redial_after;
            self.recent
                .retain(|_, t| now.saturating_duration_since(*t) < window);
            if self.recent.len() >= self.limits.max_recent {
                // Still full of fresh entries: forget the oldest half.
                let mut times: Vec<Instant> = self.recent.values().copied().collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                self.recent.retain(|_, t| *t > cut);
            }
        }
        self.tokens -= 1.0;
        self.pop();
        self.recent.insert((cand.info_hash, cand.addr), now);
        Dial::Go(cand)
    }

    fn pop(&mut self) {
        if let Some(c) = self.queue.pop_front() {
            self.queued.remove(&(c.info_hash, c.addr));
        }
    }

    /// Forgets everything queued for a torrent that is no longer served.
    pub fn forget_torrent(&mut self, info_hash: &InfoHash) {
        self.queue.retain(|c| c.info_hash != *info_hash);
        self.queued.retain(|(ih, _)| ih != info_hash);
        self.recent.retain(|(ih, _), _| ih != info_hash);
    }
}

/// False for addresses no peer can have: unspecified, broadcast, multicast.
fn dialable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(addr: &str) -> Candidate {
        Candidate {
            info_hash: InfoHash([1; 20]),
            addr: addr.parse().unwrap(),
            source: PeerSourceKind::Tracker,
        }
    }

    fn intake(rate: u32) -> PeerIntake {
        let mut i = PeerIntake::new(IntakeLimits {
            dials_per_sec: rate,
            max_queued: 4,
            dial_privileged_ports: true,
            ..IntakeLimits::default()
        });
        i.set_own_addrs(&[
            "0.0.0.0:6881".parse().unwrap(),
            "[::]:6881".parse().unwrap(),
        ]);
        i
    }

    #[test]
    fn own_invalid_blocked_and_duplicate_addresses_are_refused() {
        let t0 = Instant::now();
        let mut i = intake(10);
        let none = |_: IpAddr| false;
        for (addr, want) in [
            ("127.0.0.1:6881", CandidateResult::OwnAddress),
            ("0.0.0.0:6881", CandidateResult::Invalid),
            ("[::1]:6881", CandidateResult::OwnAddress),
            ("[::ffff:127.0.0.1]:6881", CandidateResult::OwnAddress),
            ("10.0.0.1:0", CandidateResult::Invalid),
            ("255.255.255.255:80", CandidateResult::Invalid),
            ("224.0.0.1:6881", CandidateResult::Invalid),
            ("[ff02::1]:6881", CandidateResult::Invalid),
        ] {
            assert_eq!(i.handle_offer(t0, cand(addr), none), Err(want), "{addr}");
        }
        // Another port on loopback is another program: dialled.
        assert_eq!(i.handle_offer(t0, cand("127.0.0.1:7000"), none), Ok(()));
        assert_eq!(
            i.handle_offer(t0, cand("127.0.0.1:7000"), none),
            Err(CandidateResult::Duplicate)
        );
        let blocked = |ip: IpAddr| ip == "10.1.1.1".parse::<IpAddr>().unwrap();
        assert_eq!(
            i.handle_offer(t0, cand("10.1.1.1:1"), blocked),
            Err(CandidateResult::Blocked)
        );
        for a in ["10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1"] {
            assert_eq!(i.handle_offer(t0, cand(a), none), Ok(()));
        }
        assert_eq!(
            i.handle_offer(t0, cand("10.0.0.5:1"), none),
            Err(CandidateResult::QueueFull)
        );
    }

    #[test]
    fn our_other_services_local_addresses_and_privileged_ports_are_never_dialled() {
        let t0 = Instant::now();
        let mut i = PeerIntake::new(IntakeLimits::default());
        i.set_own_addrs(&["0.0.0.0:6881".parse().unwrap()]);
        i.set_service_addrs(&[
            "127.0.0.1:9437".parse().unwrap(),
            "[::]:8080".parse().unwrap(),
        ]);
        i.set_local_ips(["192.168.1.5".parse().unwrap(), "fe80::1".parse().unwrap()]);
        let none = |_: IpAddr| false;
        for (addr, want) in [
            ("127.0.0.1:9437", CandidateResult::OwnAddress),
            ("[::1]:9437", CandidateResult::OwnAddress),
            ("192.168.1.5:6881", CandidateResult::OwnAddress),
            ("[::ffff:192.168.1.5]:6881", CandidateResult::OwnAddress),
            ("[fe80::1]:8080", CandidateResult::OwnAddress),
            ("10.0.0.1:22", CandidateResult::PrivilegedPort),
            ("10.0.0.1:1023", CandidateResult::PrivilegedPort),
        ] {
            assert_eq!(i.handle_offer(t0, cand(addr), none), Err(want), "{addr}");
        }
        // The same ports elsewhere, and another machine's 6881, are peers like any other.
        for addr in ["192.168.1.6:6881", "10.0.0.1:9437", "10.0.0.1:1024"] {
            assert_eq!(i.handle_offer(t0, cand(addr), none), Ok(()), "{addr}");
        }
    }

    #[test]
    fn dials_are_paced_and_not_repeated_within_the_redial_window() {
        let t0 = Instant::now();
        let mut i = intake(2);
        for n in 1..=4 {
            i.handle_offer(t0, cand(&format!("10.0.0.{n}:1")), |_| false)
                .unwrap();
        }
        let room = |_: &InfoHash| true;
        // A burst of 2, then one every 0.5 s.
        assert!(matches!(i.poll_dial(t0, room), Dial::Go(_)));
        assert!(matches!(i.poll_dial(t0, room), Dial::Go(_)));
        let Dial::Wait(at) = i.poll_dial(t0, room) else {
            panic!("not paced")
        };
        assert_eq!(at, t0 + Duration::from_millis(500));
        assert!(matches!(i.poll_dial(at, room), Dial::Go(_)));
        // No room for the last one: dropped, counted by the caller.
        let later = at + Duration::from_secs(1);
        assert!(matches!(
            i.poll_dial(later, |_| false),
            Dial::Dropped(_, CandidateResult::NoRoom)
        ));
        assert_eq!(i.poll_dial(later, room), Dial::Idle);
        // Tried addresses are refused until the window has passed.
        let again = cand("10.0.0.1:1");
        assert_eq!(
            i.handle_offer(later, again, |_| false),
            Err(CandidateResult::Duplicate)
        );
        let after = t0 + IntakeLimits::default().redial_after;
        assert_eq!(i.handle_offer(after, again, |_| false), Ok(()));
        // Another torrent may dial the same address.
        let other = Candidate {
            info_hash: InfoHash([2; 20]),
            ..cand("10.0.0.2:1")
        };
        assert_eq!(i.handle_offer(later, other, |_| false), Ok(()));
        i.forget_torrent(&InfoHash([2; 20]));
        assert_eq!(i.queued(), 1);
    }
}
