//! Startup (and later) data checks: a queue of torrents in `Checking`, worked by
//! `hashing.parallel_torrents` threads at a lower CPU priority. Each check opens and checks the
//! torrent's files ([`DataFiles`], whose descriptors stay in the bounded cache), trusts the
//! resume record where the files are unchanged, hashes the rest (one open file per hashing
//! thread at a time), saves the record if it changed, and hands the torrent to the
//! table as `Live` (or `Error`), where the workers find it. A torrent removed during its check
//! is cancelled between hash batches; shutdown stops the threads the same way.
//!
//! Finished checks are also written to a [`ReadyLog`] that the server's handle and the daemon
//! follow (`ready:` lines, systemd status). This module starts no sockets.

use crate::lifecycle::{Services, Shutdown};
use crate::metainfo::{InfoHash, Torrent};
use crate::progress::Progress;
use crate::state::{Checking, Shared, TorrentCtx, TorrentSpec};
use crate::storage::files::DataFiles;
use crate::storage::layout::DataProblem;
use crate::storage::resume::ResumeRecord;
use crate::storage::{verify, Layout};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A torrent that finished its check and is now served.
#[derive(Debug, Clone)]
pub struct Ready {
    pub info_hash: InfoHash,
    pub name: String,
    pub pieces: usize,
    pub bad_pieces: usize,
}

/// Every finished check, in order, with waiters.
#[derive(Default)]
pub struct ReadyLog {
    entries: Mutex<(Vec<Ready>, Vec<tokio::sync::mpsc::UnboundedSender<Ready>>)>,
    cv: Condvar,
}

impl ReadyLog {
    fn push(&self, r: Ready) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.1.retain(|tx| tx.send(r.clone()).is_ok());
        e.0.push(r);
        drop(e);
        self.cv.notify_all();
    }

    /// Waits (at most `limit`) until `count` checks have finished; returns those that have.
    pub fn wait_n(&self, count: usize, limit: Duration) -> Vec<Ready> {
        let deadline = Instant::now() + limit;
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while e.0.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            e = self
                .cv
                .wait_timeout(e, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        e.0.clone()
    }

    /// Every check finished from now on (and those before, first).
    pub fn subscribe(&self) -> tokio::sync::mpsc::UnboundedReceiver<Ready> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for r in &e.0 {
            let _ = tx.send(r.clone());
        }
        e.1.push(tx);
        rx
    }
}

struct Job {
    spec: TorrentSpec,
    checking: Arc<Checking>,
}

/// The check queue and its threads.
pub struct Checker {
    shared: Arc<Shared>,
    queue: Mutex<VecDeque<Job>>,
    work: Condvar,
    /// Show a progress bar for each check (one torrent given on the command line).
    progress_bar: bool,
    pub log: ReadyLog,
}

impl Checker {
    /// Starts the checking threads (`checker-N`) as services; `progress_bar` shows each
    /// check's progress on stderr.
    pub fn start(
        shared: Arc<Shared>,
        services: &mut Services,
        progress_bar: bool,
    ) -> std::io::Result<Arc<Checker>> {
        let checker = Arc::new(Checker {
            shared,
            queue: Mutex::new(VecDeque::new()),
            work: Condvar::new(),
            progress_bar,
            log: ReadyLog::default(),
        });
        if let Some(dir) = checker.shared.config.hashing.resume_dir() {
            let n = crate::storage::resume::remove_stale_temps(&dir);
            if n > 0 {
                tracing::info!(
                    "removed {n} temporary file(s) a crash left in {}",
                    dir.display()
                );
            }
        }
        let c = checker.clone();
        services.shutdown().on_trigger(move || {
            c.shared.torrents.cancel_checks();
            // Taken and released so that no thread is between its check and its wait.
            drop(c.queue.lock());
            c.work.notify_all();
        });
        for i in 0..checker.shared.config.hashing.parallel_torrents.max(1) {
            let c = checker.clone();
            services.spawn(format!("checker-{i}"), move |shutdown| c.run(&shutdown))?;
        }
        Ok(checker)
    }

    /// Adds a torrent in `Checking` and queues its check; false if its info-hash is already in
    /// the table.
    pub fn add(&self, spec: TorrentSpec) -> bool {
        let Some(checking) = self.shared.torrents.begin_check(&spec.torrent) else {
            return false;
        };
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Job { spec, checking });
        self.work.notify_one();
        true
    }

    fn run(&self, shutdown: &Shutdown) {
        lower_priority();
        loop {
            let job = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if shutdown.is_triggered() {
                        return;
                    }
                    if let Some(job) = q.pop_front() {
                        break job;
                    }
                    q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.check_one(job);
        }
    }

    fn check_one(&self, job: Job) {
        let Job { spec, checking } = job;
        let ih = spec.torrent.info_hash;
        if checking.cancel.load(Ordering::Acquire) {
            return;
        }
        let show_progress = self.progress_bar;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_and_open(&self.shared, spec, &checking, show_progress)
        }))
        .map_err(|_| "the data check failed unexpectedly (see the log)".to_string());
        if checking.cancel.load(Ordering::Acquire) {
            return;
        }
        let ready = result.as_ref().ok().map(|ctx| {
            let pieces = ctx.view.layout.num_pieces();
            Ready {
                info_hash: ih,
                name: ctx.name.clone(),
                pieces,
                bad_pieces: pieces - ctx.view.have.count(),
            }
        });
        if let Err(e) = &result {
            tracing::error!(torrent = %checking.name, info_hash = %ih, "{e}");
        }
        if self.shared.torrents.finish_check(&ih, &checking, result) {
            if let Some(r) = ready {
                tracing::info!(torrent = %r.name, info_hash = %r.info_hash, "seeding");
                self.log.push(r);
            }
        }
    }
}

fn lower_priority() {
    crate::lifecycle::lower_thread_priority(10);
}

/// Opens a torrent's files, checks its data against them (trusting its resume record where the
/// files are unchanged), saves the new record and builds its serving state.
fn check_and_open(
    shared: &Shared,
    spec: TorrentSpec,
    checking: &Checking,
    show_progress: bool,
) -> TorrentCtx {
    let t = &spec.torrent;
    let layout = Layout::new(t);
    let files = Arc::new(DataFiles::open(&layout, &spec.data_dir));
    let have = if spec.just_hashed && !spec.force_check {
        // Hashed moments ago by `make`; the files it opened are the ones served.
        let problems = files.problems();
        warn_problems(&t.name, &problems);
        let mut unusable = vec![false; layout.files().len()];
        for p in &problems {
            unusable[p.file] = true;
        }
        let mut have = vec![0u8; t.num_pieces().div_ceil(8)];
        for piece in 0..t.num_pieces() {
            let r = layout.piece_range(piece).expect("piece in range");
            if !layout
                .spans(r.start, r.end - r.start)
                .any(|s| unusable[s.file])
            {
                crate::bitfield::set(&mut have, piece);
            }
        }
        have
    } else {
        check(
            shared,
            t,
            &layout,
            &files,
            checking,
            show_progress,
            spec.force_check,
        )
    };
    let upload = shared.torrent_upload(&t.info_hash, &spec.limits);
    use crate::config::SuperSeedMode;
    let mode = match spec.limits.super_seed {
        Some(true) => SuperSeedMode::On,
        Some(false) => SuperSeedMode::Off,
        None => shared.config.seeding.super_seed,
    };
    let ctx = TorrentCtx::new(&shared.config, t, spec.data_dir, files, &have, upload)
        .super_seeding(mode, Instant::now());
    ctx.set_slots(shared.upload_slots());
    if shared.upload.paused() || ctx.upload.paused() {
        // A quota is used up with no rate left: it comes up with every peer choked.
        ctx.set_paused(true, Instant::now());
    }
    ctx
}

/// Most lines of one kind a torrent's check logs; the rest are counted in one more line, so a
/// torrent of a million missing files writes a dozen lines, not millions.
const MAX_LINES: usize = 10;

/// The data problems (missing or wrong-sized files) of one torrent, at most [`MAX_LINES`].
fn warn_problems(torrent: &str, problems: &[DataProblem]) {
    for p in problems.iter().take(MAX_LINES) {
        tracing::warn!(torrent = %torrent, "data: {p}; its pieces will not be served");
    }
    if problems.len() > MAX_LINES {
        tracing::warn!(torrent = %torrent, "and {} more files missing or of the wrong size; their pieces will not be served (`uringseed verify` lists them all)", problems.len() - MAX_LINES);
    }
}

fn check(
    shared: &Shared,
    t: &Torrent,
    layout: &Layout,
    files: &DataFiles,
    checking: &Checking,
    show_progress: bool,
    force: bool,
) -> Vec<u8> {
    let config = &shared.config;
    let stats = &shared.stats;
    let resume_dir = config.hashing.resume_dir();
    // A recheck hashes everything; its result replaces the record.
    let previous =
        resume_dir.as_deref().filter(|_| !force).and_then(|dir| {
            match ResumeRecord::load(
                dir,
                &t.info_hash,
                t.hash_kind(),
                layout.files().len(),
                t.num_pieces(),
            ) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(torrent = %t.name, "ignoring resume record: {e}");
                    None
                }
            }
        });
    let started = Instant::now();
    let progress = Progress::follow(
        &format!("checking {}", t.name),
        t.total_length,
        !show_progress,
        checking.done_bytes.clone(),
    );
    let report = verify::check(
        t,
        layout,
        files,
        previous.as_ref(),
        config.hashing.threads,
        &checking.done_bytes,
        &checking.cancel,
    );
    progress.finish();
    if checking.cancel.load(Ordering::Acquire) {
        // Removed, or shutting down: the report is incomplete and must not be recorded.
        return report.have;
    }
    stats
        .hash_bytes
        .fetch_add(report.hashed_bytes, Ordering::Relaxed);
    stats
        .hash_pieces
        .fetch_add(report.hashed_pieces as u64, Ordering::Relaxed);
    stats
        .hash_failed_pieces
        .fetch_add(report.bad_pieces.len() as u64, Ordering::Relaxed);
    warn_problems(&t.name, &report.problems);
    // Files with a problem were named above; their pieces are bad without being hashed.
    let mut named = vec![false; layout.files().len()];
    for p in &report.problems {
        named[p.file] = true;
    }
    let bad: Vec<(usize, usize)> = report
        .bad_files(layout)
        .into_iter()
        .filter(|(f, _)| !named[*f])
        .collect();
    for (file, n) in bad.iter().take(MAX_LINES) {
        tracing::warn!(torrent = %t.name, "{}: {n} bad piece(s), not served", files.path(*file).display());
    }
    if bad.len() > MAX_LINES {
        tracing::warn!(torrent = %t.name, "and {} more files with bad pieces (`uringseed verify` lists them all)", bad.len() - MAX_LINES);
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        torrent = %t.name, info_hash = %t.info_hash, pieces = t.num_pieces(),
        hashed = report.hashed_pieces, bad = report.bad_pieces.len(),
        "checked data in {secs:.2} s"
    );
    // An unchanged record (a fast resume that found every file as recorded) is not rewritten:
    // two fsyncs per torrent made a restart of 10,000 torrents take a minute.
    if let Some(dir) = resume_dir.filter(|_| previous.as_ref() != Some(&report.record)) {
        if let Err(e) = report.record.save(&dir) {
            tracing::warn!(torrent = %t.name, "cannot save resume record in {}: {e}", dir.display());
        }
    }
    report.have
}
