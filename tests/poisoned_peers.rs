//! Poisoned peer lists (issue 21, item 4): a tracker that answers with the seed's own listen
//! and metrics addresses (over IPv4 and IPv6), unspecified, broadcast and multicast addresses,
//! port 0, a privileged port, one real peer twenty times over, and `interval 1`. The real
//! binary must dial the real peer once and nothing else, count every refusal by its reason, and
//! not announce again before `tracker.min_announce_interval_secs`.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// An HTTP tracker on loopback that holds each announce until [`FakeTracker::answer_with`]
/// has been given its reply (at most 20 s), then sends it and closes.
struct FakeTracker {
    url: String,
    body: Arc<(Mutex<Option<Vec<u8>>>, Condvar)>,
    announces: Arc<AtomicUsize>,
}

impl FakeTracker {
    fn start() -> FakeTracker {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/announce", l.local_addr().unwrap());
        let body: Arc<(Mutex<Option<Vec<u8>>>, Condvar)> = Arc::default();
        let announces = Arc::new(AtomicUsize::new(0));
        let (b, n) = (body.clone(), announces.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { break };
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() || !line.starts_with("GET /announce") {
                    continue;
                }
                // The rest of the head.
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                let (lock, ready) = &*b;
                let guard = ready
                    .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(20), |b| {
                        b.is_none()
                    })
                    .unwrap()
                    .0;
                let reply = guard
                    .clone()
                    .unwrap_or_else(|| b"d14:failure reason4:latee".to_vec());
                drop(guard);
                let mut w = s;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    reply.len()
                );
                let _ = w.write_all(&reply);
            }
        });
        FakeTracker {
            url,
            body,
            announces,
        }
    }

    fn answer_with(&self, body: Vec<u8>) {
        *self.body.0.lock().unwrap() = Some(body);
        self.body.1.notify_all();
    }
}

fn compact(addrs: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for a in addrs {
        match a {
            SocketAddr::V4(a) => {
                v4.extend(a.ip().octets());
                v4.extend(a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                v6.extend(a.ip().octets());
                v6.extend(a.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

#[test]
fn a_poisoned_tracker_reply_dials_only_the_real_peer_once_and_is_not_reannounced_early() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_tree(dir.path(), "content");
    let tracker = FakeTracker::start();
    let torrent = dir.path().join("t.torrent");
    make_torrent(&root, &torrent, &["--tracker", &tracker.url]);

    // The real peer: counts the connections it gets.
    let honeypot = TcpListener::bind("127.0.0.1:0").unwrap();
    let real = honeypot.local_addr().unwrap();
    let dialled = Arc::new(AtomicUsize::new(0));
    let d = dialled.clone();
    std::thread::spawn(move || {
        for s in honeypot.incoming() {
            let Ok(mut s) = s else { break };
            d.fetch_add(1, Ordering::SeqCst);
            // Read its handshake, then let it go.
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.read(&mut [0u8; 68]);
        }
    });

    let mut s = serve("poisoned", &torrent, dir.path(), &[], &[], dir.path());
    let listen = s.addr.port();
    let metrics: SocketAddr = s.metrics.parse().unwrap();
    let sa = |t: &str| -> SocketAddr { t.parse().unwrap() };
    let mut list = vec![
        sa(&format!("127.0.0.1:{listen}")),
        metrics,
        sa(&format!("0.0.0.0:{listen}")),
        sa("127.0.0.1:0"),
        sa("224.0.0.1:7000"),
        sa("255.255.255.255:7000"),
        sa("127.0.0.1:80"),
        sa(&format!("[::1]:{listen}")),
        sa(&format!("[::1]:{}", metrics.port())),
        sa(&format!("[::ffff:127.0.0.1]:{listen}")),
    ];
    list.extend(std::iter::repeat_n(real, 20));
    let (v4, v6) = compact(&list);
    let mut body = b"d8:intervali1e5:peers".to_vec();
    body.extend(format!("{}:", v4.len()).as_bytes());
    body.extend(&v4);
    body.extend(format!("6:peers6{}:", v6.len()).as_bytes());
    body.extend(&v6);
    body.push(b'e');
    tracker.answer_with(body);
    s.ready();

    let deadline = Instant::now() + Duration::from_secs(15);
    while dialled.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the real peer was never dialled\n{}",
            s.proc.report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // `interval 1` with the 5 s floor this used to have meant a new announce (and a new round of
    // dials) every 5 s; the floor is now 300 s.
    std::thread::sleep(Duration::from_secs(7));
    let announces = tracker.announces.load(Ordering::SeqCst);
    assert_eq!(
        announces, 1,
        "announced {announces} times in 7 s to a tracker saying interval 1"
    );
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        1,
        "the real peer, twenty times listed, dialled more than once"
    );
    let got = |result: &str| {
        s.metric(&format!(
            "uringseed_peer_candidates_total{{result=\"{result}\",source=\"tracker\"}}"
        ))
    };
    let counts: Vec<(&str, f64)> = [
        "dialed",
        "own_address",
        "invalid",
        "privileged_port",
        "duplicate",
    ]
    .iter()
    .map(|r| (*r, got(r)))
    .collect();
    eprintln!("candidates from the poisoned reply: {counts:?}");
    assert_eq!(
        counts,
        vec![
            ("dialed", 1.0),
            ("own_address", 5.0),
            ("invalid", 4.0),
            ("privileged_port", 1.0),
            ("duplicate", 19.0)
        ]
    );
    s.stop();
}
