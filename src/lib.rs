//! uringseed: a BitTorrent v1 seeding server on io_uring.
//!
//! # Layout
//!
//! Pure parts (no sockets, no threads, no clock; time is passed in):
//! - [`bencode`]: strict, bounded bencode decoder that keeps byte spans (for the info-hash).
//! - [`metainfo`]: .torrent parsing and validation into [`metainfo::Torrent`].
//! - [`bitfield`]: piece bitfields, including the shared one of pieces a torrent may serve.
//! - [`dht`]: the mainline DHT node sans I/O (KRPC codec, routing table, lookups, peer store).
//! - [`wire`]: the peer protocol sans I/O: handshake, message codec, MSE, and the per-peer state
//!   machine ([`wire::Peer`]: `handle_bytes`/`handle_timeout` in, `poll_transmit`/`next_run`
//!   out).
//! - [`utp`]: uTP (BEP 29) sans I/O: the packet codec and one connection's state machine
//!   (reliability, selective acks, RTO, LEDBAT congestion control).
//! - [`choke`]: the seed choker's decisions.
//! - [`superseed`]: BEP 16 super-seeding for one torrent (which piece each peer is offered).
//! - [`peer_source`]: the one entry point for peer addresses to dial (own address, invalid,
//!   blocked, duplicate, redial window, queue bound, dial rate).
//! - [`ratelimit`]: the lock-free byte-rate bucket every upload reserves from; [`quota`]: quota
//!   periods (day, week, month from a reset day) and counts.
//! - [`reasons`]: typed labels (drop and reject reasons, handshake kinds, announce results,
//!   peer sources, choke commands) and lock-free counters over them.
//! - [`webseed`]: the BEP 19 web seed sans I/O (HTTP heads, targets, ranged answers).
//! - [`tracker`] (`Schedule`, the scrape schedule `tracker::scrape::Scrapes`, announce and
//!   scrape reply parsing, the scrape URL) and [`storage::layout`] (piece/file math).
//! - [`publish`]: the web seed and tracker URLs a made torrent names (`serve --public-url`).
//! - [`config`]: the TOML configuration with built-in defaults; [`units`]: byte counts and
//!   rates as operators write them (`10MiB`, `80M`).
//!
//! State and lifecycle:
//! - [`state`]: what every thread shares (`Shared`: config, the torrent table of
//!   `Checking`/`Live`/`Error`/`Paused` states, stats, shutdown, intake), buildable without sockets;
//!   its invariants and lock order are in `src/state/STATE.md`.
//! - [`lifecycle`]: the one shutdown signal and `Services`, which starts every long-running part
//!   on a named thread and joins them at exit.
//! - [`stats`]: process-wide counters and histograms.
//!
//! Parts that do I/O:
//! - [`storage`]: a torrent's data files ([`storage::files::DataFiles`]) and the process's
//!   bounded cache of their descriptors ([`storage::pool`]), parallel hashing, checks with fast
//!   resume, zero-copy mappings, atomic file writes.
//! - [`fsread`]: bounded reads of operator and state files (regular files only, never a FIFO).
//! - [`checker`]: the service that checks torrents and brings them live; [`keeper`]: the quota
//!   keeper (saves the counts, rolls periods over, pauses chokers on a used-up quota).
//! - [`io`]: the only module that uses the tokio-uring crate: listeners, worker threads,
//!   admission, the connection driver, both backends, and the in-memory harness.
//! - [`tracker`] (announcer service, which also scrapes; HTTP/UDP clients), [`metrics`] (Prometheus endpoint, on
//!   [`http`]: hyper with connection, header and time limits, GET/HEAD routes; [`process`]:
//!   the `process_*` metrics with CPU time to the microsecond),
//!   [`notify`] (systemd notifications), [`watchdog`] (worker heartbeats and the systemd
//!   watchdog), [`progress`], [`make`] (`uringseed make`).
//! - [`control`]: the one place torrents are added, removed, paused, resumed, rechecked and
//!   reannounced (its catalog holds what each was added from); [`api`]: the control API, the
//!   qBittorrent-compatible routes and the web page on the one HTTP server, with its token,
//!   path confinement and saved torrents.
//! - [`server`]: assembly: starts every part and returns a handle. [`daemon`]: signals, reload,
//!   the watch directory.
//!
//! # A block request, from socket to file and back
//!
//! 1. A worker thread (`io::worker`, one per core, each with its own io_uring runtime) accepts
//!    the connection, admits it (blocklist, caps) and runs `io::conn::serve` on it.
//! 2. `io::handshake` reads the BitTorrent (or MSE) handshake and looks the info-hash up in the
//!    torrent table (`state::TorrentTable::live`); the connection then holds that torrent's
//!    `Arc<TorrentCtx>` (`state::torrent`).
//! 3. The reader half of `io::conn` reads socket bytes (`io::uring`, through the
//!    `io::stream::Stream` seam) and feeds them to `wire::Peer::handle_bytes`, which decodes
//!    the `request` (`wire::message`), checks it against the layout (`storage::layout`), the
//!    verified pieces (`bitfield`) and the limits, and queues it (or queues a reject).
//! 4. The writer half of `io::conn`, woken, takes the longest contiguous run of queued blocks
//!    (`Peer::next_run`), frames the piece headers (`wire::message`), and fetches the run: from
//!    the page cache without a copy (`TorrentCtx::resident` ->
//!    `storage::files::DataFiles::resident` -> `storage::resident`), or with one io_uring read
//!    on descriptors from the data-file cache (`io::uring`, through the `io::stream::Disk` seam).
//! 5. `io::stream::send_all` writes headers and data in bounded vectored writes (the write-stall
//!    rule lives there), and the writer counts what went out (`stats`, the torrent's
//!    `uploaded`).
//!
//! The connection code is entered once (from the worker) and only calls down: into `wire`,
//! `state`, `storage` and `io::stream`, none of which call back into it or into each other's
//! callers. (Before this shape, `io/conn.rs` also held the stream seam and the send loop, so
//! the handshake and both backends called into it, and the shared state lived in the assembly
//! module that imported `io`.)

pub mod api;
pub mod bencode;
pub mod bitfield;
pub mod blocklist;
pub mod checker;
pub mod choke;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dht;
pub mod fsread;
pub mod http;
pub mod io;
pub mod keeper;
pub mod lifecycle;
pub mod lograte;
pub mod make;
pub mod merkle;
pub mod metainfo;
pub mod metrics;
pub mod notify;
pub mod peer_source;
pub mod process;
pub mod progress;
pub mod publish;
pub mod quota;
pub mod ratelimit;
pub mod reasons;
pub mod server;
pub mod state;
pub mod stats;
pub mod storage;
pub mod superseed;
pub mod tracker;
pub mod tracker_server;
pub mod units;
pub mod utp;
pub mod watchdog;
pub mod webseed;
pub mod wire;
