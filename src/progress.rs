//! A byte-count progress display on stderr for long jobs (hashing, verification).
//!
//! On a terminal it redraws one line with a bar, percentage and rate; otherwise it prints a
//! plain log line every ten seconds so service logs show the job is alive.
//!
//! It owns the display only; the job counts its own progress.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running progress reporter; call [`Progress::finish`] when the job is done.
pub struct Progress {
    pub done: Arc<AtomicU64>,
    /// Dropped (or sent to) by `finish`: ends the reporter at once.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting progress of `label` towards `total` bytes. Prints nothing when `quiet`.
    pub fn start(label: &str, total: u64, quiet: bool) -> Progress {
        Progress::follow(label, total, quiet, Arc::new(AtomicU64::new(0)))
    }

    /// Like [`Progress::start`], counting in `done` (shared with whoever reports the job).
    pub fn follow(label: &str, total: u64, quiet: bool, done: Arc<AtomicU64>) -> Progress {
        let (stop, stopped) = mpsc::channel();
        let thread = (!quiet).then(|| {
            let (done, label) = (done.clone(), label.to_string());
            std::thread::spawn(move || report(&label, total, &done, &stopped))
        });
        Progress {
            done,
            stop: Some(stop),
            thread,
        }
    }

    pub fn finish(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn report(label: &str, total: u64, done: &AtomicU64, stopped: &mpsc::Receiver<()>) {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let tick = if tty {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(10)
    };
    let mut drawn = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
        let line = render(
            label,
            done.load(Ordering::Relaxed),
            total,
            started.elapsed(),
        );
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r{line}");
            drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
    if drawn {
        let line = render(
            label,
            done.load(Ordering::Relaxed),
            total,
            started.elapsed(),
        );
        let _ = writeln!(std::io::stderr(), "\r{line}");
    }
}

/// One progress line: label, bar, percent, bytes and rate.
pub fn render(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let frac = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((frac * WIDTH as f64) as u64).min(WIDTH) as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3) / 1e6;
    format!(
        "{label} [{}{}] {:5.1}% {}/{} MB {rate:.0} MB/s",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        frac * 100.0,
        done / 1_000_000,
        total / 1_000_000,
    )
}
