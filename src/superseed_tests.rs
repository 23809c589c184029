//! Tests of the super-seeding core: one offer per peer until the piece reaches another peer,
//! rarest first, never a piece the peer has, requests only for offers, the lone leecher's
//! timeout, both stop reasons, seeds, the BEP 16 upload claim in a small swarm simulation, and
//! random event sequences.

use super::*;
use proptest::prelude::*;

const S: Duration = Duration::from_secs(1);

fn drain(s: &mut SuperSeed) -> Vec<(PeerKey, u32)> {
    std::iter::from_fn(|| s.poll_offer()).collect()
}

fn bits(pieces: usize, set: &[u32]) -> Vec<u8> {
    let mut b = vec![0; pieces.div_ceil(8)];
    for &p in set {
        bitfield::set(&mut b, p as usize);
    }
    b
}

#[test]
fn one_offer_at_join_and_the_next_only_once_another_peer_announces_it() {
    let t = Instant::now();
    let cfg = Config {
        alone_offers: 1,
        ..Config::default()
    };
    let mut s = SuperSeed::new(16, cfg, 1, t);
    s.handle_joined(1, t);
    let offers = drain(&mut s);
    assert_eq!(offers.len(), 1);
    let (peer, x) = offers[0];
    assert_eq!(peer, 1);
    assert_eq!(s.offered(1), vec![x]);
    s.handle_joined(2, t + S);
    let offers = drain(&mut s);
    assert_eq!(offers.len(), 1);
    let (peer, y) = offers[0];
    assert!(peer == 2 && y != x);
    // With another leecher there, the peer downloading its piece is not enough.
    s.handle_have(1, x, t + 2 * S);
    assert_eq!(drain(&mut s), vec![]);
    // Another peer announcing an unrelated piece changes nothing for peer 1.
    let other = (0..16).find(|&p| p != x && p != y).unwrap();
    s.handle_have(2, other, t + 3 * S);
    assert_eq!(drain(&mut s), vec![]);
    // Peer 2 announcing x: x reached the swarm, so peer 1 gets its next piece.
    s.handle_have(2, x, t + 4 * S);
    let offers = drain(&mut s);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].0, 1);
    assert_ne!(offers[0].1, x);
    assert_eq!(s.offered(1), vec![offers[0].1]);
    assert_eq!(s.availability(x), 2);
}

#[test]
fn offers_are_the_rarest_pieces_the_peer_lacks() {
    let t = Instant::now();
    let mut s = SuperSeed::new(8, Config::default(), 3, t);
    s.handle_joined(1, t);
    s.handle_bitfield(1, &bits(8, &[0, 1, 2, 3, 4, 5]), t);
    s.handle_joined(2, t);
    s.handle_bitfield(2, &bits(8, &[0, 1, 2, 3]), t);
    drain(&mut s);
    // Pieces 6 and 7 are held by nobody and each offered to one of them.
    let mut out: Vec<u32> = s.offered(1).into_iter().chain(s.offered(2)).collect();
    out.sort();
    assert_eq!(out, vec![6, 7]);
    // A newcomer gets the rarest piece nobody else is offered: 4 or 5 (held once).
    s.handle_joined(3, t);
    let offers = drain(&mut s);
    assert_eq!(offers.len(), 1);
    assert!([4, 5].contains(&offers[0].1), "{offers:?}");
    assert_eq!(s.availability(offers[0].1), 1);
    // Ties are broken by the seed, deterministically.
    let picks: BTreeSet<u32> = (0..32)
        .map(|seed| {
            let mut s = SuperSeed::new(64, Config::default(), seed, t);
            s.handle_joined(1, t);
            drain(&mut s)[0].1
        })
        .collect();
    assert!(picks.len() > 8, "{picks:?}");
    let again = |seed| {
        let mut s = SuperSeed::new(64, Config::default(), seed, t);
        s.handle_joined(1, t);
        drain(&mut s)
    };
    assert_eq!(again(5), again(5));
}

#[test]
fn never_offers_a_piece_the_peer_has_and_serves_only_offers() {
    let t = Instant::now();
    let mut s = SuperSeed::new(10, Config::default(), 9, t);
    s.handle_joined(1, t);
    let first = drain(&mut s)[0].1;
    // Its bitfield holds everything but piece 5, including the piece just offered: that
    // offer ends and 5 is offered instead.
    let all_but_5: Vec<u32> = (0..10).filter(|&p| p != 5).collect();
    s.handle_bitfield(1, &bits(10, &all_but_5), t);
    assert_eq!(
        drain(&mut s),
        if first == 5 { vec![] } else { vec![(1, 5)] }
    );
    assert_eq!(s.offered(1), vec![5]);
    assert!(s.may_serve(1, 5));
    for p in all_but_5 {
        assert!(!s.may_serve(1, p));
    }
    assert!(!s.may_serve(1, 10) && !s.may_serve(1, u32::MAX) && !s.may_serve(2, 5));
    // After the timeout the only candidate is offered again; once held, the peer is a seed.
    s.handle_timeout(t + 30 * S);
    assert_eq!(drain(&mut s), vec![(1, 5)]);
    s.handle_have(1, 5, t + 31 * S);
    assert_eq!((s.seeds(), s.leechers()), (1, 0));
    assert!(s.offered(1).is_empty() && !s.may_serve(1, 5));
    s.handle_timeout(t + 100 * S);
    assert_eq!(drain(&mut s), vec![]);
}

#[test]
fn a_lone_leecher_advances_on_its_own_have_and_completes_the_torrent() {
    const PIECES: usize = 20;
    let t = Instant::now();
    let cfg = Config {
        alone_grace: Duration::MAX,
        alone_offers: 1,
        ..Config::default()
    };
    let mut s = SuperSeed::new(PIECES, cfg, 4, t);
    s.handle_joined(1, t);
    let mut now = t;
    let mut got = BTreeSet::new();
    for _ in 0..PIECES * 2 {
        if s.seeds() == 1 {
            break;
        }
        let offers = drain(&mut s);
        assert_eq!(offers.len(), 1, "{offers:?}");
        let (_, p) = offers[0];
        assert!(got.insert(p), "offered {p} twice");
        // It downloads the piece and announces it: alone, it is offered the next at once
        // (there is no other peer for the piece to reach).
        now += S;
        s.handle_have(1, p, now);
    }
    assert_eq!(got.len(), PIECES);
    assert_eq!((s.seeds(), s.leechers()), (1, 0));
    assert_eq!(s.poll_stop(), None);

    // One that ignores its offer is moved on too, after the offer timeout.
    let one = Config {
        alone_offers: 1,
        ..Config::default()
    };
    let mut s = SuperSeed::new(4, one, 4, t);
    s.handle_joined(1, t);
    let first = drain(&mut s);
    s.handle_timeout(t + 29 * S);
    assert_eq!(drain(&mut s), vec![]);
    s.handle_timeout(t + 30 * S);
    let next = drain(&mut s);
    assert_eq!((first.len(), next.len()), (1, 1));
    assert_eq!(s.offered(1), vec![next[0].1]);
}

#[test]
fn a_single_leecher_alone_for_the_grace_stops_super_seeding() {
    let t = Instant::now();
    let mut s = SuperSeed::new(8, Config::default(), 2, t);
    s.handle_joined(1, t);
    s.handle_joined(2, t + 10 * S);
    s.handle_left(2, t + 20 * S);
    drain(&mut s);
    s.handle_timeout(t + 79 * S);
    assert_eq!(s.poll_stop(), None);
    assert!(s.poll_timeout().is_some_and(|d| d <= t + 80 * S));
    s.handle_timeout(t + 80 * S);
    assert_eq!(s.poll_stop(), Some(Stop::SingleLeecher));
    assert_eq!(s.poll_stop(), None);
    s.handle_timeout(t + 1000 * S);
    assert_eq!(s.poll_stop(), None);
    // A seed peer does not make the leecher less alone.
    let mut s = SuperSeed::new(8, Config::default(), 2, t);
    s.handle_joined(1, t);
    s.handle_joined(2, t);
    s.handle_have_all(2, t);
    assert_eq!((s.seeds(), s.leechers()), (1, 1));
    s.handle_timeout(t + 60 * S);
    assert_eq!(s.poll_stop(), Some(Stop::SingleLeecher));
}

#[test]
fn every_piece_out_twice_stops_super_seeding() {
    let t = Instant::now();
    let mut s = SuperSeed::new(4, Config::default(), 2, t);
    for k in 1..=3 {
        s.handle_joined(k, t);
    }
    s.handle_bitfield(1, &bits(4, &[0, 1, 2]), t);
    s.handle_bitfield(2, &bits(4, &[1, 2, 3]), t);
    drain(&mut s);
    assert_eq!(s.poll_stop(), None);
    s.handle_have(3, 0, t);
    assert_eq!(s.poll_stop(), None);
    s.handle_have(3, 3, t);
    assert_eq!(s.poll_stop(), Some(Stop::EveryPieceOutTwice));
    assert_eq!(s.poll_stop(), None);
    // Seeds count: one seed plus one copy of each piece is enough.
    let mut s = SuperSeed::new(4, Config::default(), 2, t);
    s.handle_joined(1, t);
    s.handle_bitfield(1, &[0xf0], t);
    assert_eq!((s.seeds(), s.availability(3)), (1, 1));
    s.handle_joined(2, t);
    for p in 0..3 {
        s.handle_have(2, p, t);
    }
    assert_eq!(s.poll_stop(), None);
    s.handle_have(2, 3, t);
    assert_eq!(s.seeds(), 2);
    assert_eq!(s.poll_stop(), Some(Stop::EveryPieceOutTwice));
}

#[test]
fn seeds_are_counted_never_offered_and_leave_cleanly() {
    let t = Instant::now();
    let mut s = SuperSeed::new(12, Config::default(), 8, t);
    s.handle_joined(1, t);
    s.handle_have_all(1, t);
    s.handle_joined(2, t);
    s.handle_bitfield(2, &[0xff, 0xf0, 0xff], t); // full, junk byte past the end
    s.handle_joined(3, t);
    s.handle_bitfield(3, &[0x80, 0x0f], t); // spare bits ignored
    let offers = drain(&mut s);
    assert!(offers.iter().all(|&(k, _)| k == 3), "{offers:?}");
    assert_eq!((s.seeds(), s.leechers()), (2, 1));
    assert_eq!((s.availability(0), s.availability(1)), (3, 2));
    assert_eq!(s.availability(12), 0);
    for p in 1..12 {
        s.handle_have(3, p, t);
        drain(&mut s);
    }
    assert_eq!((s.seeds(), s.leechers(), s.availability(5)), (3, 0, 3));
    s.handle_left(3, t);
    s.handle_left(1, t);
    s.handle_left(1, t);
    assert_eq!((s.seeds(), s.leechers(), s.availability(5)), (1, 0, 1));
    // Events for unknown peers and odd sizes are ignored.
    s.handle_have(9, 0, t);
    s.handle_bitfield(9, &[0xff; 4], t);
    s.handle_have_all(9, t);
    s.handle_left(9, t);
    assert_eq!(drain(&mut s), vec![]);
    let mut z = SuperSeed::new(0, Config::default(), 0, t);
    z.handle_joined(1, t);
    z.handle_bitfield(1, &[], t);
    assert_eq!(drain(&mut z), vec![]);
    assert_eq!(z.poll_stop(), Some(Stop::EveryPieceOutTwice));
}

#[test]
fn several_offers_per_peer_and_shared_ones_only_when_nothing_else_is_left() {
    let t = Instant::now();
    let cfg = Config {
        max_offers: 3,
        alone_offers: 3,
        ..Config::default()
    };
    let mut s = SuperSeed::new(4, cfg, 6, t);
    s.handle_joined(1, t);
    let a = drain(&mut s);
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|&(k, _)| k == 1));
    // One piece is offered to nobody: peer 2 gets it first, then two of peer 1's.
    s.handle_joined(2, t);
    let b = drain(&mut s);
    assert_eq!(b.len(), 3);
    let free = (0..4).find(|p| !s.offered(1).contains(p)).unwrap();
    assert_eq!(b[0], (2, free));
    assert_eq!(s.offered(1).len() + s.offered(2).len(), 6);
    // Peer 2 announcing one of peer 1's pieces frees a slot of peer 1's.
    let shared = b[1].1;
    s.handle_have(2, shared, t);
    assert_eq!(drain(&mut s), vec![(1, free)]);
    assert!(!s.may_serve(1, shared) && s.may_serve(2, shared));
}

/// 1 seed and 8 leechers: each step every leecher downloads one block of a piece someone has,
/// rarest first among the leechers, from another leecher when one has it and from the seed
/// otherwise (only as offered when `superseed`). Returns the pieces' worth the seed uploaded
/// before the first leecher held every piece.
fn swarm(superseed: bool, seed: u64) -> f64 {
    const PIECES: usize = 64;
    const BLOCKS: u32 = 4;
    const N: usize = 8;
    let t = Instant::now();
    let mut s = SuperSeed::new(PIECES, Config::default(), seed, t);
    let mut rng = Rng(seed ^ 0x5eed);
    let mut has = vec![vec![false; PIECES]; N];
    let mut cur: Vec<Option<(u32, u32)>> = vec![None; N];
    for k in 0..N {
        s.handle_joined(k as PeerKey, t);
        drain(&mut s);
    }
    let holders = |p: usize, has: &[Vec<bool>]| has.iter().filter(|h| h[p]).count();
    let mut seed_blocks = 0u32;
    let mut now = t;
    for _step in 0..10_000 {
        now += S;
        for k in 0..N {
            let reachable = |p: usize, has: &[Vec<bool>], s: &SuperSeed| {
                !has[k][p]
                    && (!superseed || holders(p, has) > 0 || s.may_serve(k as PeerKey, p as u32))
            };
            if cur[k].is_some_and(|(p, _)| !reachable(p as usize, &has, &s)) {
                cur[k] = None;
            }
            if cur[k].is_none() {
                let mut best: Option<(usize, u64, usize)> = None;
                for p in (0..PIECES).filter(|&p| reachable(p, &has, &s)) {
                    let key = (holders(p, &has), rng.next(), p);
                    if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                        best = Some(key);
                    }
                }
                cur[k] = best.map(|b| (b.2 as u32, 0));
            }
            let Some((p, done)) = cur[k] else { continue };
            if holders(p as usize, &has) == 0 {
                assert!(!superseed || s.may_serve(k as PeerKey, p));
                seed_blocks += 1;
            }
            cur[k] = Some((p, done + 1));
            if done + 1 == BLOCKS {
                has[k][p as usize] = true;
                cur[k] = None;
                s.handle_have(k as PeerKey, p, now);
                drain(&mut s);
            }
        }
        s.handle_timeout(now);
        drain(&mut s);
        if has.iter().any(|h| h.iter().all(|&x| x)) {
            break;
        }
    }
    assert!(has.iter().any(|h| h.iter().all(|&x| x)), "nobody finished");
    let uploaded = f64::from(seed_blocks) / f64::from(BLOCKS);
    assert!(uploaded >= PIECES as f64, "{uploaded}");
    uploaded / PIECES as f64
}

/// BEP 16's claim: a super-seed uploads little more than one copy before the first leecher is
/// done; the same swarm seeded normally costs it visibly more (so the model can tell).
#[test]
fn eight_leechers_complete_with_about_one_copy_from_the_seed() {
    for seed in 0..8 {
        let copies = swarm(true, seed);
        assert!(
            copies <= 1.1,
            "seed {seed}: the super-seed uploaded {copies} copies"
        );
    }
    let normal: f64 = (0..8).map(|seed| swarm(false, seed)).sum::<f64>() / 8.0;
    assert!(normal > 1.1, "normal seeding uploaded {normal} copies");
}

#[derive(Debug, Clone)]
enum Ev {
    Join(u64),
    Left(u64),
    Have(u64, u32),
    Bitfield(u64, Vec<u8>),
    HaveAll(u64),
    Wait(u64),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0..6u64).prop_map(Ev::Join),
        (0..6u64).prop_map(Ev::Left),
        (0..6u64, 0..26u32).prop_map(|(k, p)| Ev::Have(k, p)),
        (0..6u64, proptest::collection::vec(any::<u8>(), 0..5))
            .prop_map(|(k, b)| Ev::Bitfield(k, b)),
        (0..6u64).prop_map(Ev::HaveAll),
        (0..40u64).prop_map(Ev::Wait),
    ]
}

proptest! {
    #[test]
    fn random_events_keep_the_rules(
        pieces in 0..24usize,
        max_offers in 0..3usize,
        timeout in 1..20u64,
        seed in any::<u64>(),
        evs in proptest::collection::vec(ev(), 0..80),
    ) {
        let t = Instant::now();
        let cfg = Config { offer_timeout: Duration::from_secs(timeout), max_offers, alone_offers: max_offers, alone_grace: 50 * S };
        let mut s = SuperSeed::new(pieces, cfg, seed, t);
        // The model: what each joined peer has.
        let mut model: BTreeMap<u64, Vec<bool>> = BTreeMap::new();
        let mut now = t;
        for e in evs {
            match e {
                Ev::Join(k) => {
                    model.entry(k).or_insert_with(|| vec![false; pieces]);
                    s.handle_joined(k, now);
                }
                Ev::Left(k) => {
                    model.remove(&k);
                    s.handle_left(k, now);
                }
                Ev::Have(k, p) => {
                    if let Some(h) = model.get_mut(&k) {
                        if let Some(x) = h.get_mut(p as usize) {
                            *x = true;
                        }
                    }
                    s.handle_have(k, p, now);
                }
                Ev::Bitfield(k, b) => {
                    if let Some(h) = model.get_mut(&k) {
                        for (p, x) in h.iter_mut().enumerate() {
                            *x |= bitfield::get(&b, p);
                        }
                    }
                    s.handle_bitfield(k, &b, now);
                }
                Ev::HaveAll(k) => {
                    if let Some(h) = model.get_mut(&k) {
                        h.iter_mut().for_each(|x| *x = true);
                    }
                    s.handle_have_all(k, now);
                }
                Ev::Wait(secs) => {
                    now += Duration::from_secs(secs);
                    s.handle_timeout(now);
                }
            }
            while let Some((k, p)) = s.poll_offer() {
                let h = model.get(&k).expect("offer to an unknown peer");
                prop_assert!((p as usize) < pieces && !h[p as usize], "offered {p} to {k}");
                prop_assert!(s.may_serve(k, p));
                prop_assert!(s.offered(k).len() <= max_offers);
            }
            let _ = s.poll_stop();
            let r = &s.rarity;
            prop_assert_eq!(r.start.last().copied(), Some(pieces as u32));
            for k in 0..r.start.len() - 1 {
                for i in r.start[k]..r.start[k + 1] {
                    let p = r.order[i as usize];
                    prop_assert_eq!(r.pos[p as usize], i);
                    prop_assert_eq!(r.avail[p as usize] as usize, k);
                }
            }
            if let Some(d) = s.poll_timeout() {
                prop_assert!(d >= t);
            }
            let seeds = model.values().filter(|h| h.iter().all(|&x| x)).count();
            prop_assert_eq!(s.seeds(), seeds);
            prop_assert_eq!(s.leechers(), model.len() - seeds);
            for p in 0..pieces {
                let n = model.values().filter(|h| h[p]).count() as u32;
                prop_assert_eq!(s.availability(p as u32), n);
            }
            for (&k, h) in &model {
                let o = s.offered(k);
                prop_assert!(o.len() <= max_offers);
                if h.iter().all(|&x| x) {
                    prop_assert!(o.is_empty());
                }
            }
        }
    }
}
