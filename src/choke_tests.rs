//! Unit tests of the choker ([`super`]): slots, rotation, the optimistic slot, anti-leech
//! ranking, pausing, and slots starved by peers that take nothing.

use super::*;

fn unchoked(c: &Choker) -> Vec<PeerKey> {
    c.peers
        .iter()
        .filter(|(_, e)| e.unchoked)
        .map(|(k, _)| *k)
        .collect()
}

#[test]
fn fills_free_slots_at_once_and_refills_on_leave() {
    let t0 = Instant::now();
    let mut c = Choker::new(2);
    for k in 1..=4 {
        c.add(k, t0);
    }
    assert_eq!(c.set_interested(1, true, t0), vec![(1, false)]);
    assert_eq!(c.set_interested(2, true, t0), vec![(2, false)]);
    assert_eq!(c.set_interested(3, true, t0), vec![]);
    assert_eq!(c.set_interested(1, false, t0), vec![(1, true), (3, false)]);
    assert_eq!(c.remove(2, t0), vec![]);
    assert_eq!(unchoked(&c), vec![3]);
}

#[test]
fn a_slot_starved_for_a_round_goes_to_a_waiting_peer_and_its_group_waits_last() {
    let t0 = Instant::now();
    let (a, b, d) = (10, 20, 40);
    let mut c = Choker::new(1);
    c.add_in(1, a, t0);
    c.set_interested(1, true, t0);
    c.add_in(2, a, t0);
    c.set_interested(2, true, t0);
    let t1 = t0 + Duration::from_secs(1);
    c.add_in(3, b, t1);
    c.set_interested(3, true, t1);
    assert_eq!(unchoked(&c), vec![1]);
    // Peer 1 requested and stopped reading: its one send never completes.
    let activity = |c: &mut Choker, k: PeerKey| c.set_activity(k, 5000, 3, true);
    // Tick 1 starts its round, and gives the optimistic slot to 3: of the waiting peers,
    // the one whose address group holds no slot yet.
    activity(&mut c, 1);
    c.tick(t0 + TICK);
    assert_eq!(unchoked(&c), vec![1, 3]);
    // Tick 2: a whole round without progress; group a is penalized and the slot goes to
    // the only one waiting.
    activity(&mut c, 1);
    let t2 = t0 + 2 * TICK;
    c.tick(t2);
    assert_eq!(unchoked(&c), vec![2, 3]);
    // A newcomer of another group arrives after 1 started waiting again: it goes first.
    let late = t2 + Duration::from_secs(1);
    c.add_in(4, d, late);
    c.set_interested(4, true, late);
    assert_eq!(c.waiting(late), vec![4, 1]);
    // Peer 2 takes its data (bytes and sends move), so it keeps its slot; the optimistic
    // slot moves on when due to the newcomer, not to the penalized peer that waited longer.
    c.set_activity(2, 100, 1, false);
    c.set_activity(2, 900_000, 40, true);
    c.tick(t0 + TICK + OPTIMISTIC_EVERY);
    assert_eq!(c.optimistic, Some(4));
    assert!(c.is_unchoked(2));
    assert!(!c.is_unchoked(1));
    // The penalty runs out.
    let after = t2 + STARVED_PENALTY;
    c.tick(after);
    assert!(c.starved.is_empty());
}

#[test]
fn a_peer_that_takes_its_data_keeps_its_slot_for_its_turn() {
    let t0 = Instant::now();
    let mut c = Choker::new(1);
    for k in 1..=2 {
        c.add(k, t0);
        c.set_interested(k, true, t0);
    }
    // Slow but moving (sends complete), and no byte at all are told apart.
    c.set_activity(1, 0, 0, true);
    c.tick(t0 + TICK);
    c.set_activity(1, 16384, 1, true);
    c.tick(t0 + 2 * TICK);
    assert!(
        c.is_unchoked(1),
        "a peer whose sends complete is not starving"
    );
}

#[test]
fn rotates_round_robin_with_one_optimistic_slot() {
    let t0 = Instant::now();
    let mut c = Choker::new(1);
    for k in 1..=3 {
        c.add(k, t0);
        c.set_interested(k, true, t0);
    }
    assert_eq!(unchoked(&c), vec![1]);
    // First tick: the optimistic slot goes to the longest-waiting peer.
    c.tick(t0 + TICK);
    assert_eq!(unchoked(&c), vec![1, 2]);
    assert_eq!(c.optimistic, Some(2));
    // After ROTATE_AFTER peer 1 hands its slot to 3; the optimistic slot is not yet due.
    c.tick(t0 + ROTATE_AFTER);
    assert_eq!(unchoked(&c), vec![2, 3]);
    // Optimistic moves on: 2 is choked, the longest waiting (1) takes the extra slot.
    c.tick(t0 + TICK + OPTIMISTIC_EVERY);
    assert_eq!(unchoked(&c), vec![1, 3]);
    assert!(c.unchoked_count() <= 2);
}

#[test]
fn pausing_chokes_everyone_until_resumed() {
    let t0 = Instant::now();
    let mut c = Choker::new(2);
    for k in 1..=3 {
        c.add(k, t0);
        c.set_interested(k, true, t0);
    }
    c.tick(t0 + TICK);
    assert_eq!(
        unchoked(&c),
        vec![1, 2, 3],
        "two slots and the optimistic one"
    );
    let changes = c.set_paused(true, t0 + TICK);
    assert_eq!(changes, vec![(1, true), (2, true), (3, true)]);
    assert!(c.set_interested(4, true, t0).is_empty());
    c.add(5, t0);
    assert!(c.set_interested(5, true, t0).is_empty());
    assert!(c.tick(t0 + ROTATE_AFTER * 3).is_empty());
    assert_eq!(c.unchoked_count(), 0);
    let resumed = c.set_paused(false, t0 + ROTATE_AFTER * 3);
    assert_eq!(
        resumed.len(),
        2,
        "the free slots filled at once: {resumed:?}"
    );
    assert!(resumed.iter().all(|(_, choke)| !choke));
}

#[test]
fn unlimited_slots_unchoke_everyone_interested() {
    let t0 = Instant::now();
    let mut c = Choker::new(0);
    for k in 1..=50 {
        c.add(k, t0);
        assert_eq!(c.set_interested(k, true, t0), vec![(k, false)]);
    }
    assert!(c.tick(t0 + ROTATE_AFTER * 2).is_empty());
    assert_eq!(c.unchoked_count(), 50);
}

#[test]
fn anti_leech_serves_new_and_nearly_done_peers_before_the_middle() {
    let t0 = Instant::now();
    let mut c = Choker::with_mode(1, Mode::AntiLeech, 100);
    for k in 1..=3 {
        c.add(k, t0);
    }
    c.set_progress(1, 50);
    c.set_progress(2, 97);
    c.set_progress(3, 0);
    // 1 waited longest, but is halfway: the free slot goes to the best-ranked peer.
    c.set_interested(1, true, t0);
    assert_eq!(
        c.set_interested(2, true, t0),
        vec![],
        "the one slot is held by 1"
    );
    c.set_interested(3, true, t0);
    assert_eq!(unchoked(&c), vec![1]);
    // Before TICK nobody is moved but the optimistic slot fills (best rank: 3, then 2).
    c.tick(t0 + TICK / 2);
    assert_eq!(unchoked(&c), vec![1, 3]);
    assert_eq!(c.optimistic, Some(3));
    // After TICK the halfway holder yields to the waiting peer that ranks better (2).
    c.tick(t0 + TICK);
    assert_eq!(unchoked(&c), vec![2, 3]);
    // 2 is now halfway too, 1 is still halfway: equal ranks rotate only after ROTATE_AFTER.
    c.set_progress(2, 50);
    c.tick(t0 + TICK * 2);
    assert_eq!(unchoked(&c), vec![2, 3]);
    c.tick(t0 + TICK + ROTATE_AFTER);
    // 1 took 2's regular slot; the optimistic slot, due again, moved from 3 to 2.
    assert_eq!(unchoked(&c), vec![1, 2]);
    assert_eq!(c.optimistic, Some(2));
}

#[test]
fn anti_leech_with_unknown_progress_is_round_robin() {
    let t0 = Instant::now();
    let (mut rr, mut al) = (Choker::new(2), Choker::with_mode(2, Mode::AntiLeech, 64));
    for k in 1..=6 {
        for c in [&mut rr, &mut al] {
            c.add(k, t0);
            c.set_interested(k, true, t0 + Duration::from_millis(k));
        }
    }
    for step in 1..=8 {
        let now = t0 + TICK * step;
        assert_eq!(rr.tick(now), al.tick(now), "tick {step}");
    }
    assert_eq!(Mode::from_name("anti_leech"), Some(Mode::AntiLeech));
    assert_eq!(
        Mode::from_name(Mode::RoundRobin.name()),
        Some(Mode::RoundRobin)
    );
    assert_eq!(Mode::from_name("fastest"), None);
}
