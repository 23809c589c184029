//! The systemd watchdog (`WatchdogSec=` in the unit): every worker thread bumps its own
//! heartbeat counter from inside its runtime ([`HEARTBEAT`]), and the service `watchdog` sends
//! `WATCHDOG=1` at half of `$WATCHDOG_USEC` only if every worker's counter moved since the
//! last ping. A worker whose runtime is stuck (a blocking call, a busy loop) stops the pings,
//! so systemd kills and restarts the server instead of leaving it half dead.
//!
//! It owns the counters and the decision ([`Watchdog::check`], pure); it reads nothing of what
//! the workers serve and sends through [`crate::notify`] only.

use crate::lifecycle::Services;
use crate::notify::Notifier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each worker bumps its heartbeat. A ping interval holds several (WatchdogSec=2s,
/// the shortest documented, pings every second: four beats), so a check never falls between
/// two beats of a healthy worker.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// One heartbeat counter per worker thread.
#[derive(Debug, Default)]
pub struct Heartbeats {
    beats: Vec<AtomicU64>,
}

impl Heartbeats {
    pub fn new(workers: usize) -> Heartbeats {
        Heartbeats {
            beats: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Worker `i` is alive (called from inside its runtime).
    pub fn beat(&self, i: usize) {
        if let Some(b) = self.beats.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every worker's count now.
    pub fn snapshot(&self) -> Vec<u64> {
        self.beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// What one check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every worker moved: send WATCHDOG=1.
    Ping,
    /// These workers did not move since the last ping: send nothing.
    Stalled(Vec<usize>),
}

/// The decision, apart from clocks and sockets: compares each check with the counts at the
/// last ping (not at the last check, so a worker that stalls and later moves again brings the
/// pings back, while one that never moves keeps them off).
#[derive(Debug, Clone)]
pub struct Watchdog {
    at_last_ping: Vec<u64>,
}

impl Watchdog {
    /// Starts from the counts at start-up.
    pub fn new(start: Vec<u64>) -> Watchdog {
        Watchdog {
            at_last_ping: start,
        }
    }

    pub fn check(&mut self, now: Vec<u64>) -> Verdict {
        let stalled: Vec<usize> = self
            .at_last_ping
            .iter()
            .zip(&now)
            .enumerate()
            .filter(|(_, (then, now))| now <= then)
            .map(|(i, _)| i)
            .collect();
        if stalled.is_empty() && now.len() == self.at_last_ping.len() {
            self.at_last_ping = now;
            Verdict::Ping
        } else {
            Verdict::Stalled(stalled)
        }
    }
}

/// Starts the service `watchdog`: WATCHDOG=1 at once, then every `interval` while every
/// worker makes progress (a stall is logged once, and again when it ends).
pub fn spawn(
    services: &mut Services,
    heartbeats: Arc<Heartbeats>,
    notify: Notifier,
    interval: Duration,
) -> std::io::Result<()> {
    if interval < HEARTBEAT * 2 {
        tracing::warn!(
            "WatchdogSec is shorter than {:?}: pings may be missed; use 2s or more",
            HEARTBEAT * 4
        );
    }
    services.spawn("watchdog", move |shutdown| {
        let mut dog = Watchdog::new(heartbeats.snapshot());
        notify.watchdog();
        let mut stalled = false;
        let mut next = Instant::now() + interval;
        while !shutdown.wait_until(next) {
            next += interval;
            match dog.check(heartbeats.snapshot()) {
                Verdict::Ping => {
                    if stalled {
                        tracing::warn!("watchdog: every worker makes progress again");
                        stalled = false;
                    }
                    notify.watchdog();
                }
                Verdict::Stalled(workers) if !stalled => {
                    tracing::error!(
                        ?workers,
                        "watchdog: worker(s) made no progress for {interval:?}; not telling \
                         systemd that all is well (it restarts the server after WatchdogSec)"
                    );
                    stalled = true;
                }
                Verdict::Stalled(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Shutdown;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn pings_only_while_every_worker_moves() {
        let mut dog = Watchdog::new(vec![0, 0, 0]);
        assert_eq!(dog.check(vec![2, 1, 5]), Verdict::Ping);
        // Worker 1 stuck: no ping, however long the others run.
        assert_eq!(dog.check(vec![4, 1, 7]), Verdict::Stalled(vec![1]));
        assert_eq!(dog.check(vec![9, 1, 9]), Verdict::Stalled(vec![1]));
        // It moves again (against the counts of the last ping): pings resume.
        assert_eq!(dog.check(vec![10, 2, 10]), Verdict::Ping);
        assert_eq!(dog.check(vec![10, 3, 11]), Verdict::Stalled(vec![0]));
        assert_eq!(dog.check(vec![11, 3, 11]), Verdict::Ping);
        assert_eq!(dog.check(vec![11, 3, 12]), Verdict::Stalled(vec![0, 1]));
        // No workers at all moving nothing is no reason to stop.
        assert_eq!(Watchdog::new(vec![]).check(vec![]), Verdict::Ping);
    }

    /// The service itself, on real threads and a real datagram socket: pings while both
    /// counters move, none while one of them stands still.
    #[test]
    fn the_service_stops_pinging_when_a_worker_stalls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let beats = Arc::new(Heartbeats::new(2));
        let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut services = Services::new(Shutdown::new());
        let (b, s) = (beats.clone(), stall.clone());
        services
            .spawn("fake-workers", move |shutdown| {
                while !shutdown.wait_timeout(Duration::from_millis(5)) {
                    b.beat(0);
                    if !s.load(Ordering::Relaxed) {
                        b.beat(1);
                    }
                }
            })
            .unwrap();
        let notifier = Notifier::to(path.to_str().unwrap()).unwrap();
        spawn(&mut services, beats, notifier, Duration::from_millis(40)).unwrap();
        let pings_within = |d: Duration| {
            let end = Instant::now() + d;
            let mut n = 0;
            let mut buf = [0u8; 64];
            while Instant::now() < end {
                if let Ok(len) = sock.recv(&mut buf) {
                    assert_eq!(&buf[..len], b"WATCHDOG=1");
                    n += 1;
                }
            }
            n
        };
        assert!(pings_within(Duration::from_millis(400)) >= 4);
        stall.store(true, Ordering::Relaxed);
        // One ping may already be on its way; then silence.
        pings_within(Duration::from_millis(100));
        assert_eq!(pings_within(Duration::from_millis(400)), 0);
        stall.store(false, Ordering::Relaxed);
        assert!(pings_within(Duration::from_millis(400)) >= 3);
        services.stop();
    }
}
