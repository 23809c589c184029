//! Two [`Conn`]s over a deterministic simulated network (a seeded PRNG decides loss,
//! duplication, delay and so reordering; time advances by hand, the loop is bounded), and
//! single-connection tests driven with hand-made packets: LEDBAT, the RTO, buffer bounds.

use super::conn::{Config, Conn, ConnError, State, MAX_PAYLOAD, MIN_RTO};
use super::packet::{decode, Packet, Type};
use crate::dht::id::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A datagram in flight: delivery time, tie-break, destination (0 = A, 1 = B), bytes.
type InFlight = Reverse<(Instant, u64, usize, Vec<u8>)>;

struct Net {
    rng: Rng,
    loss: f64,
    dup: f64,
    delay: Duration,
    jitter: Duration,
    queue: BinaryHeap<InFlight>,
    n: u64,
    /// Datagrams longer than this are dropped (a path MTU with the don't-fragment bit).
    mtu: usize,
}

impl Net {
    fn new(seed: u64, loss: f64, dup: f64, delay_ms: u64, jitter_ms: u64) -> Net {
        Net {
            rng: Rng::new(seed),
            loss,
            dup,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            queue: BinaryHeap::new(),
            n: 0,
            mtu: usize::MAX,
        }
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn send(&mut self, now: Instant, to: usize, bytes: Vec<u8>) {
        if self.unit() < self.loss || bytes.len() > self.mtu {
            return;
        }
        let copies = if self.unit() < self.dup { 2 } else { 1 };
        for _ in 0..copies {
            let at = now + self.delay + self.jitter.mul_f64(self.unit());
            self.n += 1;
            self.queue.push(Reverse((at, self.n, to, bytes.clone())));
        }
    }
}

struct Outcome {
    a: Conn,
    b: Conn,
    got_a: Vec<u8>,
    got_b: Vec<u8>,
    elapsed: Duration,
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// A connects to B; each writes its data, optionally closes, and reads everything.
fn run(
    net: &mut Net,
    cfg_a: Config,
    cfg_b: Config,
    a_data: &[u8],
    b_data: &[u8],
    close: bool,
) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let mut conns: [Option<Conn>; 2] = [Some(Conn::connect_with(1000, cfg_a, now)), None];
    let src = [a_data, b_data];
    let mut off = [0usize; 2];
    let mut got = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..3_000_000 {
        for i in 0..2 {
            let Some(c) = conns[i].as_mut() else { continue };
            off[i] += c.write(&src[i][off[i]..]);
            if close && off[i] == src[i].len() {
                c.close(now);
            }
            while let Some(d) = c.poll_transmit(now) {
                net.send(now, 1 - i, d);
            }
            loop {
                let n = c.read(&mut buf);
                if n == 0 {
                    break;
                }
                got[i].extend_from_slice(&buf[..n]);
            }
        }
        let done = conns.iter().all(|c| {
            c.as_ref().is_some_and(|c| {
                if close {
                    c.state() == State::Closed
                } else {
                    c.unacked() == 0
                }
            })
        }) && got[0].len() == b_data.len()
            && got[1].len() == a_data.len();
        if done || conns.iter().flatten().any(|c| c.state() == State::Reset) {
            break;
        }
        let next = conns
            .iter()
            .flatten()
            .filter_map(|c| c.poll_timeout())
            .chain(net.queue.peek().map(|Reverse(e)| e.0))
            .min();
        let Some(next) = next else { break };
        now = now.max(next);
        while net.queue.peek().is_some_and(|Reverse(e)| e.0 <= now) {
            let Reverse((_, _, to, bytes)) = net.queue.pop().unwrap();
            let p = decode(&bytes).expect("our packets decode");
            match conns[to].as_mut() {
                Some(c) => c.handle_packet(&p, now),
                None if p.ty == Type::Syn => {
                    conns[to] = Some(Conn::accept_with(&p, cfg_b.clone(), now).unwrap())
                }
                None => {}
            }
        }
        for c in conns.iter_mut().flatten() {
            c.handle_timeout(now);
        }
    }
    let [a, b] = conns;
    let [got_a, got_b] = got;
    Outcome {
        a: a.unwrap(),
        b: b.expect("accepted"),
        got_a,
        got_b,
        elapsed: now - t0,
    }
}

fn transfer(net: &mut Net, len: usize) -> Outcome {
    let (x, y) = (data(len, 1), data(len, 2));
    let o = run(net, Config::default(), Config::default(), &x, &y, false);
    let why = format!(
        "after {:?}: A {:?} {:?}, B {:?} {:?}",
        o.elapsed,
        o.a.error(),
        o.a.stats(),
        o.b.error(),
        o.b.stats()
    );
    assert!(o.a.error().is_none() && o.b.error().is_none(), "{why}");
    assert!(o.got_b == x, "B got {} of {} bytes", o.got_b.len(), x.len());
    assert!(o.got_a == y, "A got {} of {} bytes", o.got_a.len(), y.len());
    o
}

const MIB2: usize = 2 << 20;

#[test]
fn two_mib_both_ways_without_loss() {
    let o = transfer(&mut Net::new(1, 0.0, 0.0, 10, 0), MIB2);
    assert_eq!(o.a.stats().retransmits, 0);
    assert_eq!(o.b.stats().retransmits, 0);
    assert_eq!(o.a.stats().bytes_received, MIB2 as u64);
    let srtt = o.a.stats().srtt.unwrap();
    assert!(
        srtt >= Duration::from_millis(20) && srtt < Duration::from_millis(40),
        "{srtt:?}"
    );
    assert!(
        o.a.stats().cwnd > 10 * MAX_PAYLOAD,
        "cwnd {}",
        o.a.stats().cwnd
    );
}

#[test]
fn two_mib_with_loss_reordering_and_duplication() {
    let o = transfer(&mut Net::new(2, 0.10, 0.01, 10, 20), MIB2);
    let s = o.a.stats();
    assert!(s.retransmits > 0 && s.fast_retransmits > 0, "{s:?}");
    assert!(o.b.stats().duplicate_packets > 0);
    assert!(s.loss_cuts > 0);
}

#[test]
fn the_mtu_search_finds_the_path_mtu_without_losing_data() {
    use super::conn::{MAX_PACKET_V4, PACKET_SIZE};
    for (path, loss) in [(1436usize, 0.0), (1460, 0.05), (usize::MAX, 0.0)] {
        // No jitter where there is no loss: reordering would look like loss.
        let jitter = if loss > 0.0 { 2 } else { 0 };
        let mut net = Net::new(7, loss, 0.0, 10, jitter);
        net.mtu = path;
        let (x, y) = (data(MIB2, 1), data(1000, 2));
        let cfg = Config {
            max_packet: MAX_PACKET_V4,
            ..Config::default()
        };
        let o = run(&mut net, cfg.clone(), cfg, &x, &y, false);
        assert!(
            o.got_b == x,
            "path {path}: B got {} of {} bytes",
            o.got_b.len(),
            x.len()
        );
        let size = o.a.stats().packet_size;
        let want = path.min(MAX_PACKET_V4);
        assert!(
            size <= want && size + 8 >= want,
            "path {path}: settled at {size}"
        );
        assert!(size > PACKET_SIZE, "path {path}: {size}");
        // Probes lost to the path do not halve the window: only the 5% random loss does.
        if loss == 0.0 {
            assert_eq!(o.a.stats().loss_cuts, 0, "path {path}: {:?}", o.a.stats());
        }
    }
}

#[test]
fn two_mib_with_thirty_percent_loss() {
    let o = transfer(&mut Net::new(3, 0.30, 0.0, 10, 5), MIB2);
    assert!(o.a.stats().timeouts > 0, "{:?}", o.a.stats());
    assert!(o.elapsed < Duration::from_secs(3600), "{:?}", o.elapsed);
}

#[test]
fn two_mib_over_a_100ms_rtt() {
    let o = transfer(&mut Net::new(4, 0.0, 0.0, 50, 0), MIB2);
    let srtt = o.b.stats().srtt.unwrap();
    assert!(
        srtt >= Duration::from_millis(100) && srtt < Duration::from_millis(130),
        "{srtt:?}"
    );
    assert_eq!(o.b.stats().rto, MIN_RTO.max(o.b.stats().rto));
}

#[test]
fn sequence_numbers_wrap() {
    let cfg = |s| Config {
        initial_seq: s,
        ..Config::default()
    };
    let (x, y) = (data(MIB2, 5), data(MIB2, 6));
    let mut net = Net::new(5, 0.05, 0.0, 10, 10);
    let o = run(&mut net, cfg(65500), cfg(65530), &x, &y, true);
    assert!(o.got_b == x && o.got_a == y);
    assert_eq!((o.a.state(), o.b.state()), (State::Closed, State::Closed));
}

#[test]
fn fin_closes_after_all_data() {
    let (x, y) = (data(300_000, 7), data(1000, 8));
    let o = run(
        &mut Net::new(6, 0.1, 0.0, 10, 10),
        Config::default(),
        Config::default(),
        &x,
        &y,
        true,
    );
    assert!(o.got_b == x && o.got_a == y);
    assert_eq!((o.a.state(), o.b.state()), (State::Closed, State::Closed));
    assert!(o.a.is_eof() && o.b.is_eof());
    assert_eq!(o.a.error(), None);
}

// --- One connection driven by hand. ---

fn ack_for(c: &Conn, ack: u16, diff_us: u32, wnd: u32) -> Packet {
    let mut p = Packet::new(Type::State, c.recv_id());
    p.ack_nr = ack;
    p.seq_nr = 500;
    p.timestamp_diff_us = diff_us;
    p.wnd_size = wnd;
    p
}

/// A connected initiator (its SYN acked), the time.
fn connected(cfg: Config) -> (Conn, Instant) {
    let t = Instant::now();
    let mut c = Conn::connect_with(10, cfg, t);
    let syn = decode(&c.poll_transmit(t).unwrap()).unwrap();
    assert_eq!((syn.ty, syn.conn_id, syn.seq_nr), (Type::Syn, 10, 1));
    assert!(c.poll_transmit(t).is_none());
    let t = t + Duration::from_millis(50);
    c.handle_packet(&ack_for(&c, syn.seq_nr.wrapping_add(1), 0, 1 << 20), t);
    assert_eq!(c.state(), State::SynSent, "a STATE not acking the SYN");
    c.handle_packet(&ack_for(&c, syn.seq_nr, 0, 1 << 20), t);
    assert_eq!(c.state(), State::Connected);
    (c, t)
}

/// Sends what the window allows and acks every packet after `rtt` with a delay sample.
fn round(c: &mut Conn, now: &mut Instant, diff_us: u32) {
    let mut seqs = vec![];
    while let Some(d) = c.poll_transmit(*now) {
        seqs.push(decode(&d).unwrap().seq_nr);
    }
    *now += Duration::from_millis(50);
    for s in seqs {
        c.handle_packet(&ack_for(c, s, diff_us, 1 << 20), *now);
    }
}

#[test]
fn ledbat_grows_below_target_and_shrinks_above() {
    let (mut c, mut now) = connected(Config::default());
    c.write(&vec![7; 1 << 20]);
    let base = 5_000_000; // includes the clocks' offset
    for _ in 0..20 {
        round(&mut c, &mut now, base + 10_000);
    }
    let grown = c.stats().cwnd;
    assert!(grown > 10 * MAX_PAYLOAD, "cwnd {grown}");
    // Growth is at most about one packet per round trip.
    assert!(grown < 25 * MAX_PAYLOAD, "cwnd {grown}");
    for _ in 0..5 {
        round(&mut c, &mut now, base + 300_000);
    }
    let shrunk = c.stats().cwnd;
    assert!(shrunk < grown, "cwnd {shrunk} after {grown}");
    assert!(c.stats().queuing_delay_us >= 290_000);
    for _ in 0..200 {
        round(&mut c, &mut now, base + 300_000);
    }
    // One packet at the size the MTU search reached (every probe here is acked).
    let one = c.stats().packet_size - super::packet::HEADER_LEN;
    assert!(one > MAX_PAYLOAD);
    assert_eq!(c.stats().cwnd, one, "floor of one packet");
    for _ in 0..5 {
        round(&mut c, &mut now, base + 20_000);
    }
    assert!(c.stats().cwnd > MAX_PAYLOAD);
}

#[test]
fn rto_doubles_and_the_connection_gives_up() {
    let t = Instant::now();
    let cfg = Config {
        max_timeouts: 5,
        ..Config::default()
    };
    let mut c = Conn::connect_with(3, cfg, t);
    let mut now = t;
    let mut gaps = vec![];
    while c.state() != State::Reset {
        assert!(c.poll_transmit(now).is_some(), "the SYN is (re)sent");
        let next = c.poll_timeout().unwrap();
        gaps.push((next - now).as_secs());
        now = next;
        c.handle_timeout(now);
    }
    assert_eq!(gaps, vec![1, 2, 4, 8, 16]);
    assert_eq!(c.error(), Some(ConnError::TimedOut));
    assert_eq!(c.stats().timeouts, 5);
    assert!(c.poll_timeout().is_none() && c.poll_transmit(now).is_none());
}

#[test]
fn rto_follows_rtt_with_a_floor() {
    let (mut c, mut now) = connected(Config::default());
    c.write(&[1; 5000]);
    round(&mut c, &mut now, 0);
    assert_eq!(c.stats().srtt, Some(Duration::from_millis(50)));
    assert_eq!(c.stats().rto, MIN_RTO);
}

#[test]
fn send_buffer_is_bounded() {
    let (mut c, _) = connected(Config::default());
    assert_eq!(c.write(&vec![0; 3 << 20]), 1 << 20);
    assert_eq!(c.write(&[0; 10]), 0);
    c.close(Instant::now());
    assert_eq!(c.send_capacity(), 0);
}

#[test]
fn peer_window_is_respected() {
    let (mut c, t) = connected(Config::default());
    c.handle_packet(&ack_for(&c, 1, 0, 3000), t);
    c.write(&[0; 100_000]);
    let mut sent = 0;
    while let Some(d) = c.poll_transmit(t) {
        sent += decode(&d).unwrap().payload.len();
    }
    assert!(sent > 0 && sent <= 3000, "{sent}");
}

fn acceptor() -> (Conn, Instant, u16) {
    let t = Instant::now();
    let mut syn = Packet::new(Type::Syn, 40);
    syn.seq_nr = 9;
    syn.wnd_size = 1 << 20;
    let mut c = Conn::accept_with(
        &syn,
        Config {
            initial_seq: 300,
            ..Config::default()
        },
        t,
    )
    .unwrap();
    assert_eq!((c.recv_id(), c.send_id()), (41, 40));
    let st = decode(&c.poll_transmit(t).unwrap()).unwrap();
    assert_eq!(
        (st.ty, st.conn_id, st.ack_nr, st.seq_nr),
        (Type::State, 40, 9, 300)
    );
    (c, t, 41)
}

fn data_pkt(id: u16, seq: u16, payload: &[u8]) -> Packet {
    let mut p = Packet::new(Type::Data, id);
    p.seq_nr = seq;
    p.ack_nr = 299;
    p.wnd_size = 1 << 20;
    p.payload = payload.to_vec();
    p
}

#[test]
fn gaps_get_selective_acks_and_reorder_delivers_in_order() {
    let (mut c, t, id) = acceptor();
    c.handle_packet(&data_pkt(id, 12, b"cc"), t);
    c.handle_packet(&data_pkt(id, 14, b"ee"), t);
    let st = decode(&c.poll_transmit(t).unwrap()).unwrap();
    assert_eq!(st.ack_nr, 9);
    // Bit 0 = seq 11, so 12 is bit 1 and 14 bit 3.
    assert_eq!(st.sack, Some(vec![0b1010, 0, 0, 0]));
    let mut out = [0u8; 16];
    assert_eq!(c.read(&mut out), 0);
    c.handle_packet(&data_pkt(id, 10, b"aa"), t);
    c.handle_packet(&data_pkt(id, 11, b"bb"), t);
    c.handle_packet(&data_pkt(id, 13, b"dd"), t);
    c.handle_packet(&data_pkt(id, 13, b"dd"), t);
    assert_eq!(c.read(&mut out), 10);
    assert_eq!(&out[..10], b"aabbccddee");
    assert_eq!(c.stats().duplicate_packets, 1);
    let st = decode(&c.poll_transmit(t).unwrap()).unwrap();
    assert_eq!((st.ack_nr, st.sack), (14, None));
}

#[test]
fn out_of_window_packets_are_dropped() {
    let (mut c, t, id) = acceptor();
    c.handle_packet(&data_pkt(id, 10 + 3000, b"far"), t);
    c.handle_packet(&data_pkt(id, 9, b"old"), t);
    c.handle_packet(&data_pkt(id, 5, b"older"), t);
    assert_eq!(c.stats().out_of_window, 1);
    assert_eq!(c.stats().duplicate_packets, 2);
    // A window of 1,000 bytes holds one 600-byte packet, not two.
    let (mut c, t, id) = {
        let t = Instant::now();
        let syn = Packet::new(Type::Syn, 40);
        let cfg = Config {
            recv_window: 1000,
            ..Config::default()
        };
        (Conn::accept_with(&syn, cfg, t).unwrap(), t, 41)
    };
    c.handle_packet(&data_pkt(id, 2, &[1; 600]), t);
    c.handle_packet(&data_pkt(id, 3, &[1; 600]), t);
    assert_eq!(c.stats().out_of_window, 1);
    assert_eq!(c.stats().bytes_received, 0);
}

#[test]
fn three_duplicate_acks_resend_the_oldest() {
    let (mut c, t) = connected(Config::default());
    c.write(&[5; 2000]);
    let first = decode(&c.poll_transmit(t).unwrap()).unwrap();
    let _second = c.poll_transmit(t).unwrap();
    assert!(c.poll_transmit(t).is_none());
    for _ in 0..3 {
        c.handle_packet(&ack_for(&c, first.seq_nr.wrapping_sub(1), 0, 1 << 20), t);
    }
    let again = decode(&c.poll_transmit(t).unwrap()).unwrap();
    assert_eq!(again.seq_nr, first.seq_nr);
    assert_eq!(c.stats().fast_retransmits, 1);
}

#[test]
fn reset_from_peer_and_wrong_ids() {
    let (mut c, t) = connected(Config::default());
    let mut p = Packet::new(Type::Reset, c.recv_id().wrapping_add(5));
    c.handle_packet(&p, t);
    assert_eq!(c.stats().wrong_conn_id, 1);
    p.conn_id = c.recv_id();
    c.handle_packet(&p, t);
    assert_eq!(
        (c.state(), c.error()),
        (State::Reset, Some(ConnError::ResetByPeer))
    );
    assert!(Conn::accept(&Packet::new(Type::Data, 1), t).is_err());
}
