//! The random-piece leechers of `benches/random_load.rs`: threads that keep a number of block
//! requests in flight, pieces in a random order of their own, reading no faster than their
//! rate, and that count what they receive and how long each block took.

use super::common::handshake;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BLOCK: u64 = 16384;
/// The most a rate-limited leecher reads at once after a pause (its token bucket's size).
const BURST: f64 = 65536.0;

#[derive(Clone)]
pub struct Load {
    pub addr: SocketAddr,
    pub info_hash: [u8; 20],
    pub pieces: u32,
    pub piece_len: u32,
    pub total: u64,
    pub leechers: usize,
    /// Read rates of the first and last leecher (bytes/s), the others spread between; None:
    /// as fast as they can.
    pub rate: Option<(f64, f64)>,
    pub depth: usize,
    pub warmup: u64,
    pub secs: u64,
}

/// What all leechers received: payload in the measured window, payload in all, and the
/// latencies (µs) of the blocks completed in the window.
#[derive(Default)]
pub struct Tally {
    pub window_bytes: u64,
    pub total_bytes: u64,
    pub lat_us: Vec<u32>,
}

impl Tally {
    /// p50 and p99 in milliseconds.
    pub fn percentiles(&self) -> (f64, f64) {
        let mut v = self.lat_us.clone();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        (at(0.5), at(0.99))
    }
}

/// Runs `load.leechers` leechers for warmup + secs seconds; `window` is called when the
/// measured window begins and when it ends. Every leecher then stops asking and drains what
/// it asked for.
pub fn run(load: &Load, mut window: impl FnMut()) -> Tally {
    let t0 = Instant::now();
    let in_window = AtomicU64::new(0);
    let total = AtomicU64::new(0);
    let lat = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..load.leechers {
            let (window, total, lat) = (&in_window, &total, &lat);
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, move || {
                    let mine = leech(i, load, t0, window, total);
                    lat.lock().unwrap().extend(mine);
                })
                .unwrap();
        }
        std::thread::sleep(
            (t0 + Duration::from_secs(load.warmup)).saturating_duration_since(Instant::now()),
        );
        window();
        let end = t0 + Duration::from_secs(load.warmup + load.secs);
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        window();
    });
    Tally {
        window_bytes: in_window.into_inner(),
        total_bytes: total.into_inner(),
        lat_us: lat.into_inner().unwrap(),
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn connect(i: usize, to: SocketAddr) -> TcpStream {
    let src = Ipv4Addr::new(127, 20, 1 + (i / 250 % 250) as u8, 1 + (i % 250) as u8);
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())
        .unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(10))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// One leecher; returns the latencies (µs) of its blocks completed inside the window.
fn leech(i: usize, load: &Load, t0: Instant, window: &AtomicU64, total: &AtomicU64) -> Vec<u32> {
    let (w0, w1) = (
        t0 + Duration::from_secs(load.warmup),
        t0 + Duration::from_secs(load.warmup + load.secs),
    );
    let rate = load
        .rate
        .map(|(lo, hi)| lo + (hi - lo) * i as f64 / load.leechers.saturating_sub(1).max(1) as f64);
    let mut s = connect(i, load.addr);
    let mut hs = handshake(load.info_hash);
    hs[48..].copy_from_slice(format!("-LR0001-{i:012}").as_bytes());
    s.write_all(&hs).unwrap();
    s.write_all(&[0, 0, 0, 1, 2]).unwrap(); // interested
                                            // This leecher's order of pieces: a Fisher-Yates shuffle of its own.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut order: Vec<u32> = (0..load.pieces).collect();
    for k in (1..order.len()).rev() {
        order.swap(k, (xorshift(&mut seed) % (k as u64 + 1)) as usize);
    }
    let mut next = (0usize, 0u64); // (position in order, offset in piece)
    let mut sent: HashMap<(u32, u32), Instant> = HashMap::new();
    let mut lat = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    let (mut have, mut pos) = (0usize, 0usize);
    let (mut hs_left, mut skip) = (68usize, 0usize);
    let mut current: Option<(Instant, u64)> = None; // the piece message being received
    let mut unchoked = false;
    let mut tokens = BURST;
    let mut last = Instant::now();
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        let asking = now < w1;
        if !asking && sent.is_empty() && current.is_none() {
            break;
        }
        if now > w1 + Duration::from_secs(60) {
            panic!(
                "leecher {i}: {} requests unanswered a minute after the end",
                sent.len()
            );
        }
        if unchoked && asking && sent.len() < load.depth {
            out.clear();
            while sent.len() < load.depth {
                let piece = order[next.0 % order.len()];
                let start = u64::from(piece) * u64::from(load.piece_len);
                let plen = (load.total - start).min(u64::from(load.piece_len));
                let len = (plen - next.1).min(BLOCK);
                out.extend_from_slice(&[0, 0, 0, 13, 6]);
                for v in [piece, next.1 as u32, len as u32] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                sent.insert((piece, next.1 as u32), now);
                next.1 += len;
                if next.1 >= plen {
                    next = (next.0 + 1, 0);
                }
            }
            s.write_all(&out).unwrap();
        }
        // What this read may take: all the room left when unlimited (or draining), else the
        // bucket's tokens.
        let room = buf.len() - have;
        let mut want = room;
        if let (Some(r), true) = (rate, asking) {
            tokens = (tokens + r * now.duration_since(last).as_secs_f64()).min(BURST);
            last = now;
            // Reads of at least a block, as a client's rate limiter hands out (and so that 500
            // leechers on one machine cost the load generator little CPU).
            if tokens < BLOCK as f64 {
                std::thread::sleep(Duration::from_secs_f64((BLOCK as f64 - tokens) / r));
                continue;
            }
            want = want.min(tokens as usize);
        }
        let n = s.read(&mut buf[have..have + want]).expect("leecher read");
        assert!(n > 0, "leecher {i}: server closed the connection");
        tokens -= n as f64;
        have += n;
        loop {
            let avail = have - pos;
            if hs_left > 0 {
                let k = hs_left.min(avail);
                hs_left -= k;
                pos += k;
                if hs_left > 0 {
                    break;
                }
                continue;
            }
            if skip > 0 {
                let k = skip.min(avail);
                skip -= k;
                pos += k;
                if skip > 0 {
                    break;
                }
            } else {
                if avail < 4 {
                    break;
                }
                let len = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
                if len == 0 {
                    pos += 4;
                    continue;
                }
                let id_len = if avail > 4 && buf[pos + 4] == 7 {
                    13
                } else {
                    5
                };
                if avail < id_len {
                    break;
                }
                match buf[pos + 4] {
                    1 => unchoked = true,
                    7 => {
                        let index = u32::from_be_bytes(buf[pos + 5..pos + 9].try_into().unwrap());
                        let begin = u32::from_be_bytes(buf[pos + 9..pos + 13].try_into().unwrap());
                        let at = sent
                            .remove(&(index, begin))
                            .expect("a block that was asked for");
                        current = Some((at, (len - 9) as u64));
                    }
                    16 => panic!("leecher {i}: request rejected"),
                    _ => {}
                }
                let k = (4 + len).min(avail);
                pos += k;
                skip = 4 + len - k;
                if skip > 0 {
                    break;
                }
            }
            if let Some((at, bytes)) = current.take() {
                let done = Instant::now();
                total.fetch_add(bytes, Ordering::Relaxed);
                if done >= w0 && done < w1 {
                    window.fetch_add(bytes, Ordering::Relaxed);
                    lat.push(done.duration_since(at).as_micros().min(u32::MAX as u128) as u32);
                }
            }
        }
        if pos == have {
            (pos, have) = (0, 0);
        } else if pos > 0 {
            buf.copy_within(pos..have, 0);
            have -= pos;
            pos = 0;
        }
    }
    lat
}
