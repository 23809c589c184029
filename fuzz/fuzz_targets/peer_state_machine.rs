//! The sans-IO peer state machine (`wire::Peer`) driven by arbitrary bytes and operations.
//!
//! The first bytes shape the torrent (piece length, piece count, files including empty and pad
//! files, which pieces we have), the peer's handshake (fast / extension bits) and the limits;
//! the rest is a script of operations: feed a chunk of wire bytes, poll the output, take a run,
//! choke/unchoke, fire a timer. It stops at the first error (the peer would be dropped).
//! Invariants: the request queue never exceeds `max_queued`; every run is non-empty,
//! contiguous, inside the torrent, for pieces we have, and within `max_bytes` unless it is a
//! single block; everything we send parses with our own decoder; rejects only go to fast peers.
//! With flag 0x10 (and a piece length of 16 KiB or more) the torrent has v2 merkle rows, roots
//! `[0x40 + file; 32]`, so that BEP 52 hash requests are answered: a `hashes` reply holds the
//! run and exactly one uncle per proof layer above the run's own subtree; a request below the
//! piece layer waits for a read (answered here with made-up bytes or a failed read: a reject).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringseed::bitfield::SharedBitfield;
use uringseed::metainfo::{FileEntry, FileHashes, InfoHash, Torrent};
use uringseed::storage::Layout;
use uringseed::wire::handshake::{self, Handshake};
use uringseed::wire::hashes::Trees;
use uringseed::wire::message::{self, Decoded, Message};
use uringseed::wire::{Limits, Peer, TorrentView};

struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
}

/// `FUZZ_TRACE=1` prints every operation and its outcome (for checking what a seed reaches).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

const PIECE_LENGTHS: [u64; 8] = [1, 7, 16384, 16385, 32768, 65536, 1 << 20, 4 << 20];

/// Made-up merkle rows for every non-empty, non-pad file: root `[0x40 + i; 32]`, one node per
/// piece the file touches (none for a file within one piece).
fn v2_trees(t: &Torrent) -> Trees {
    let mut offset = 0u64;
    let mut files = Vec::new();
    for (i, f) in t.files.iter().enumerate() {
        if f.length > 0 && !f.pad {
            let first = offset / t.piece_length;
            let last = (offset + f.length - 1) / t.piece_length;
            let n = (last - first + 1) as usize;
            files.push((first * t.piece_length, FileHashes {
                root: [0x40 + i as u8; 32],
                layer: if n > 1 {
                    (0..n).map(|k| [k as u8; 32]).collect()
                } else {
                    Vec::new()
                },
                length: f.length,
            }));
        }
        offset += f.length;
    }
    Trees::build(
        InfoHash([3; 20]),
        t.piece_length,
        files.iter().map(|(at, f)| (*at, f)),
    )
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };

    // The torrent.
    let piece_length = PIECE_LENGTHS[usize::from(input.byte() % 8)];
    let pieces = 1 + u64::from(input.byte() % 40);
    let short = u64::from(input.u16()) % piece_length; // bytes missing from the last piece
    let total = pieces * piece_length - short;
    let nfiles = 1 + usize::from(input.byte() % 4);
    let mut files = Vec::new();
    let mut left = total;
    for i in 0..nfiles {
        let len = if i + 1 == nfiles {
            left
        } else {
            (u64::from(input.u16()) * 97).min(left)
        };
        left -= len;
        files.push(FileEntry {
            path: vec![format!("f{i}")],
            length: len,
            pad: i + 1 != nfiles && input.byte() & 1 == 1,
        });
    }
    let torrent = Torrent {
        info_hash: InfoHash([1; 20]),
        name: "t".into(),
        piece_length,
        piece_hashes: vec![[0; 20]; pieces as usize],
        files,
        single_file: nfiles == 1,
        total_length: total,
        private: false,
        source: None,
        announce: None,
        trackers: vec![],
        comment: None,
        created_by: None,
        creation_date: None,
        info_bytes: Vec::new(),
        v2: None,
    };
    let layout = Layout::new(&torrent);
    assert_eq!(layout.num_pieces(), pieces as usize);
    let have_all = input.byte() & 1 == 0;
    let mut have = uringseed::bitfield::full(pieces as usize);
    if !have_all {
        let mask = input.take(have.len());
        for (h, m) in have.iter_mut().zip(mask) {
            *h &= *m;
        }
    }
    let metadata = (input.byte() & 1 == 0).then(|| bytes::Bytes::from(vec![0x64u8; 40_000]));

    // The peer and the limits.
    let flags = input.byte();
    let view = Arc::new(TorrentView {
        info_hash: torrent.info_hash,
        pex: metadata.is_some(),
        metadata,
        layout,
        have: SharedBitfield::from_bytes(&have, pieces as usize),
        v2: (flags & 0x10 != 0 && piece_length >= 16384).then(|| v2_trees(&torrent)),
    });
    let mut theirs = Handshake::ours(InfoHash([1; 20]), [9; 20]);
    theirs.reserved = [0; 8];
    if flags & 1 != 0 {
        theirs.reserved[handshake::reserved::FAST.0] |= handshake::reserved::FAST.1;
    }
    if flags & 2 != 0 {
        theirs.reserved[handshake::reserved::EXTENSION.0] |= handshake::reserved::EXTENSION.1;
    }
    let send_handshake = flags & 4 != 0;
    let fast = theirs.has(handshake::reserved::FAST);
    let limits = Limits {
        max_request: [1, 16384, 16385, 131072][usize::from(input.byte() % 4)],
        max_queued: 1 + usize::from(input.byte() % 8),
        max_control_bytes: 64 + usize::from(input.u16() % 4096),
        idle_timeout: Duration::from_millis(1 + u64::from(input.u16()) * 50),
        listen_port: input.u16(),
        remote_ip: Some(std::net::IpAddr::from([10, 0, 0, 1])),
        super_seed: flags & 8 != 0,
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut peer = Peer::new(
        view.clone(),
        limits.clone(),
        &theirs,
        [2; 20],
        send_handshake,
        now,
    );
    let mut first_output = send_handshake;

    let pl = view.layout.piece_length();
    for _ in 0..10_000 {
        if input.data.is_empty() {
            break;
        }
        let op = input.byte();
        now += Duration::from_millis(u64::from(op >> 4) * 37);
        let result = match op % 8 {
            // Wire bytes, in chunks of any size (messages split anywhere).
            0..=2 => {
                let n = usize::from(input.byte());
                let chunk = input.take(n);
                peer.handle_bytes(now, chunk)
            }
            3 => {
                // A hash request below the piece layer waits for data: made-up bytes (they
                // match no piece layer, so the answer is a reject) or a failed read.
                if let Some(job) = peer.take_leaf_job() {
                    assert!(view.v2.is_some() && job.len as u64 <= (8 << 20).max(pl));
                    let data = (job.len <= 1 << 20).then(|| vec![0u8; job.len]);
                    let got = peer.answer_leaf_job(&job, data.as_deref());
                    assert_ne!(got, uringseed::reasons::HashReply::Served);
                }
                if let Some(out) = peer.poll_transmit() {
                    let mut at = 0;
                    if first_output {
                        let hs = Handshake::decode(&out).expect("our handshake");
                        assert!(hs.is_some());
                        at = handshake::HANDSHAKE_LEN;
                    }
                    while at < out.len() {
                        match message::decode(&out[at..], 1 << 20) {
                            Ok(Decoded::Message(m, used)) => {
                                if matches!(
                                    m,
                                    Message::Reject(_) | Message::HaveAll | Message::HaveNone
                                ) {
                                    assert!(fast, "BEP 6 message {m:?} sent to a peer without it");
                                }
                                if let Message::Hashes { range, hashes } = m {
                                    assert!(view.v2.is_some(), "hashes for a v1 torrent");
                                    let run = range.length;
                                    assert!(run.is_power_of_two() && (2..=512).contains(&run));
                                    let uncles =
                                        range.proof_layers.saturating_sub(run.trailing_zeros() - 1);
                                    assert_eq!(hashes.len(), 32 * (run + uncles) as usize);
                                }
                                at += used;
                            }
                            other => panic!("we sent bytes we cannot parse: {other:?}"),
                        }
                    }
                    peer.on_sent(now);
                }
                first_output = false;
                Ok(())
            }
            4 | 5 => {
                let max_bytes = u64::from(input.u16()) * 64;
                let run = peer.next_run(max_bytes);
                if trace() {
                    eprintln!("next_run({max_bytes}) -> {run:?}");
                }
                if let Some(run) = run {
                    assert!(!run.blocks.is_empty());
                    assert!(
                        run.blocks.len() == 1 || run.len <= max_bytes,
                        "run over max_bytes"
                    );
                    let mut expect = run.start;
                    for b in &run.blocks {
                        let offset = u64::from(b.index) * pl + u64::from(b.begin);
                        assert_eq!(offset, expect, "run {run:?} is not contiguous");
                        assert!(b.length <= limits.max_request);
                        assert!(
                            view.layout
                                .block_spans(b.index as usize, b.begin.into(), b.length.into())
                                .is_ok(),
                            "block {b:?} outside the torrent"
                        );
                        assert!(
                            view.has_piece(b.index as usize),
                            "block {b:?} of a piece we lack"
                        );
                        expect += u64::from(b.length);
                    }
                    assert_eq!(expect, run.start + run.len);
                    assert!(run.start + run.len <= view.layout.total_length());
                }
                Ok(())
            }
            6 => {
                let choke = input.byte() & 1 == 1;
                peer.set_choking(choke);
                if choke {
                    assert_eq!(peer.queued_requests(), 0);
                }
                assert_eq!(peer.is_choking(), choke);
                Ok(())
            }
            _ => {
                if input.byte() & 1 == 1 {
                    now = now.max(peer.next_timeout());
                }
                peer.handle_timeout(now)
            }
        };
        let events = peer.take_events();
        if trace() {
            eprintln!(
                "op {} -> {result:?} events {events:?} queued {}",
                op % 8,
                peer.queued_requests()
            );
        }
        assert!(
            peer.queued_requests() <= limits.max_queued,
            "{} queued, limit {}",
            peer.queued_requests(),
            limits.max_queued
        );
        if result.is_err() {
            break;
        }
    }
});
