//! The UDP tracker multiplexer (BEP 15), sans-IO: every UDP announce and scrape of the server
//! goes through one of these and one socket per address family, however many torrents and
//! trackers there are. Time is passed in; datagrams come in through [`Mux::handle_datagram`]
//! and go out through [`Mux::poll_transmit`].
//!
//! Order of calls for a driver: [`Mux::handle_submit`] for new jobs, [`Mux::handle_datagram`]
//! for each received packet, [`Mux::handle_timeout`] when [`Mux::poll_timeout`] is reached;
//! after any of these, drain [`Mux::poll_transmit`] and [`Mux::poll_done`].
//!
//! Connection ids are cached per tracker address for [`CONNECTION_ID_LIFETIME`] and shared: jobs
//! for a tracker that arrive while its connect is in flight wait for that one connect. A
//! request is resent with the same transaction id after `base·2^n` (n = 0, 1, …) up to
//! `max_retries` times, and fails at its own deadline whatever the attempt. A reply from another
//! address, with an unknown transaction id or too short is ignored and counted. A tracker error
//! or a malformed reply fails the job and drops the cached connection id.

use super::scrape::{ScrapeReply, MAX_UDP_BATCH};
use super::udp::{
    announce_request, connect_request, parse_announce, parse_connect, parse_scrape, scrape_request,
    CONNECTION_ID_LIFETIME,
};
use super::{AnnounceRequest, AnnounceResponse, TrackerError};
use crate::metainfo::InfoHash;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a job asks a tracker.
#[derive(Debug, Clone)]
pub enum Query {
    Announce(AnnounceRequest),
    /// At most [`MAX_UDP_BATCH`] torrents (any more are left out).
    Scrape(Vec<InfoHash>),
}

/// What the tracker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Announce(AnnounceResponse),
    Scrape(ScrapeReply),
}

/// The caller's name for a job.
pub type JobId = u64;

enum Phase {
    /// Waiting for the tracker's connect (in `Mux::connects`).
    Connecting,
    /// Request sent with this transaction id and connection id.
    Sent { tid: u32, conn: u64 },
}

struct Job {
    addr: SocketAddr,
    query: Query,
    phase: Phase,
    attempt: u32,
    resend_at: Instant,
    deadline: Instant,
}

struct Connect {
    tid: u32,
    attempt: u32,
    resend_at: Instant,
    waiting: Vec<JobId>,
}

/// Who a transaction id belongs to.
#[derive(Clone, Copy)]
enum Owner {
    Connect(SocketAddr),
    Job(JobId),
}

pub struct Mux {
    base: Duration,
    max_retries: u32,
    rng: u64,
    jobs: HashMap<JobId, Job>,
    connects: HashMap<SocketAddr, Connect>,
    tids: HashMap<u32, Owner>,
    conn_ids: HashMap<SocketAddr, (u64, Instant)>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    done: VecDeque<(JobId, Result<Answer, TrackerError>)>,
    /// Datagrams that matched nothing in flight.
    pub ignored: u64,
}

impl Mux {
    /// `base`: the first resend timeout (BEP 15: 15 s); `seed` seeds transaction ids.
    pub fn new(base: Duration, max_retries: u32, seed: u64) -> Mux {
        Mux {
            base,
            max_retries,
            rng: seed | 1,
            jobs: HashMap::new(),
            connects: HashMap::new(),
            tids: HashMap::new(),
            conn_ids: HashMap::new(),
            out: VecDeque::new(),
            done: VecDeque::new(),
            ignored: 0,
        }
    }

    /// Jobs not finished yet.
    pub fn in_flight(&self) -> usize {
        self.jobs.len()
    }

    fn new_tid(&mut self, owner: Owner) -> u32 {
        loop {
            // xorshift64
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let tid = (self.rng >> 16) as u32;
            if let std::collections::hash_map::Entry::Vacant(e) = self.tids.entry(tid) {
                e.insert(owner);
                return tid;
            }
        }
    }

    fn wait(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1 << attempt.min(16))
    }

    /// A new job for the tracker at `addr`, to be answered by `deadline`.
    pub fn handle_submit(
        &mut self,
        id: JobId,
        addr: SocketAddr,
        query: Query,
        deadline: Instant,
        now: Instant,
    ) {
        let mut job = Job {
            addr,
            query,
            phase: Phase::Connecting,
            attempt: 0,
            resend_at: deadline,
            deadline,
        };
        match self.conn_ids.get(&addr) {
            Some(&(conn, at)) if now.duration_since(at) < CONNECTION_ID_LIFETIME => {
                self.send_request(id, &mut job, conn, now);
            }
            _ => {
                if let Some(c) = self.connects.get_mut(&addr) {
                    c.waiting.push(id);
                } else {
                    let tid = self.new_tid(Owner::Connect(addr));
                    self.out.push_back((addr, connect_request(tid).to_vec()));
                    self.connects.insert(
                        addr,
                        Connect {
                            tid,
                            attempt: 0,
                            resend_at: now + self.wait(0),
                            waiting: vec![id],
                        },
                    );
                }
            }
        }
        self.jobs.insert(id, job);
    }

    fn packet(job: &Job, conn: u64, tid: u32) -> Vec<u8> {
        match &job.query {
            Query::Announce(req) => announce_request(conn, tid, req).to_vec(),
            Query::Scrape(hashes) => scrape_request(conn, tid, hashes),
        }
    }

    fn send_request(&mut self, id: JobId, job: &mut Job, conn: u64, now: Instant) {
        let tid = self.new_tid(Owner::Job(id));
        job.phase = Phase::Sent { tid, conn };
        job.attempt = 0;
        job.resend_at = now + self.wait(0);
        self.out.push_back((job.addr, Self::packet(job, conn, tid)));
    }

    fn finish(&mut self, id: JobId, result: Result<Answer, TrackerError>) {
        if let Some(job) = self.jobs.remove(&id) {
            if let Phase::Sent { tid, .. } = job.phase {
                self.tids.remove(&tid);
            }
            self.done.push_back((id, result));
        }
    }

    /// A datagram from `from`.
    pub fn handle_datagram(&mut self, from: SocketAddr, p: &[u8], now: Instant) {
        let owner = (p.len() >= 8)
            .then(|| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
            .and_then(|tid| self.tids.get(&tid).map(|o| (tid, *o)));
        match owner {
            Some((tid, Owner::Connect(addr))) if addr == from => {
                self.connect_reply(addr, tid, p, now)
            }
            Some((tid, Owner::Job(id))) if self.jobs.get(&id).map(|j| j.addr) == Some(from) => {
                self.job_reply(id, tid, p)
            }
            _ => self.ignored += 1,
        }
    }

    fn connect_reply(&mut self, addr: SocketAddr, tid: u32, p: &[u8], now: Instant) {
        let result = parse_connect(p, tid);
        if matches!(result, Ok(None)) {
            self.ignored += 1;
            return;
        }
        self.tids.remove(&tid);
        let waiting = self.connects.remove(&addr).map(|c| c.waiting);
        let waiting = waiting.unwrap_or_default();
        match result {
            Ok(Some(conn)) => {
                self.conn_ids.insert(addr, (conn, now));
                for id in waiting {
                    if let Some(mut job) = self.jobs.remove(&id) {
                        self.send_request(id, &mut job, conn, now);
                        self.jobs.insert(id, job);
                    }
                }
            }
            Err(e) => {
                for id in waiting {
                    self.finish(id, Err(e.clone()));
                }
            }
            Ok(None) => unreachable!("handled above"),
        }
    }

    fn job_reply(&mut self, id: JobId, tid: u32, p: &[u8]) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let result = match &job.query {
            Query::Announce(_) => {
                parse_announce(p, tid, job.addr.is_ipv6()).map(|r| r.map(Answer::Announce))
            }
            Query::Scrape(hashes) => {
                let asked = &hashes[..hashes.len().min(MAX_UDP_BATCH)];
                parse_scrape(p, tid, asked.len()).map(|r| {
                    r.map(|counts| {
                        Answer::Scrape(ScrapeReply {
                            files: asked.iter().copied().zip(counts).collect(),
                            min_request_interval: None,
                            skipped: 0,
                        })
                    })
                })
            }
        };
        match result {
            Ok(None) => self.ignored += 1,
            Ok(Some(answer)) => self.finish(id, Ok(answer)),
            Err(e) => {
                // A stale or refused connection id must not be reused.
                self.conn_ids.remove(&job.addr);
                self.finish(id, Err(e));
            }
        }
    }

    /// Resends what is due and fails what ran out of time or tries.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let addr = self.jobs[&id].addr;
            self.finish(id, Err(no_reply(addr, "before the deadline")));
        }
        // Connects: resend, or give up and fail their waiting jobs.
        let due: Vec<SocketAddr> = self
            .connects
            .iter()
            .filter(|(_, c)| c.resend_at <= now)
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            let c = self.connects.get_mut(&addr).expect("due connect");
            c.waiting.retain(|id| self.jobs.contains_key(id));
            if c.attempt >= self.max_retries || c.waiting.is_empty() {
                let c = self.connects.remove(&addr).expect("due connect");
                self.tids.remove(&c.tid);
                for id in c.waiting {
                    self.finish(id, Err(no_reply(addr, "to connect")));
                }
                continue;
            }
            c.attempt += 1;
            c.resend_at = now + self.base.saturating_mul(1 << c.attempt.min(16));
            self.out.push_back((addr, connect_request(c.tid).to_vec()));
        }
        let due: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.phase, Phase::Sent { .. }) && j.resend_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let job = self.jobs.get_mut(&id).expect("due job");
            let Phase::Sent { tid, conn } = job.phase else {
                continue;
            };
            if job.attempt >= self.max_retries {
                let addr = job.addr;
                self.finish(id, Err(no_reply(addr, "to the request")));
                continue;
            }
            job.attempt += 1;
            job.resend_at = now + self.base.saturating_mul(1 << job.attempt.min(16));
            let packet = Self::packet(job, conn, tid);
            self.out.push_back((job.addr, packet));
        }
        self.conn_ids
            .retain(|_, (_, at)| now.duration_since(*at) < CONNECTION_ID_LIFETIME);
    }

    /// When [`Mux::handle_timeout`] should next run (None: nothing in flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let jobs = self.jobs.values().map(|j| match j.phase {
            Phase::Sent { .. } => j.resend_at.min(j.deadline),
            Phase::Connecting => j.deadline,
        });
        let connects = self.connects.values().map(|c| c.resend_at);
        jobs.chain(connects).min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next finished job.
    pub fn poll_done(&mut self) -> Option<(JobId, Result<Answer, TrackerError>)> {
        self.done.pop_front()
    }

    /// A job the driver could not send (e.g. no socket for its family): fail it now.
    pub fn handle_send_error(&mut self, addr: SocketAddr, why: &str) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.addr == addr)
            .map(|(id, _)| *id)
            .collect();
        if let Some(c) = self.connects.remove(&addr) {
            self.tids.remove(&c.tid);
        }
        for id in ids {
            self.finish(id, Err(TrackerError::Transport(format!("UDP send: {why}"))));
        }
    }
}

fn no_reply(addr: SocketAddr, what: &str) -> TrackerError {
    TrackerError::Transport(format!("no reply from {addr} {what}"))
}

#[cfg(test)]
#[path = "udp_mux_tests.rs"]
mod tests;
