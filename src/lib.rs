//! uringseed: a BitTorrent v1 seeding server on io_uring.
//!
//! # Layout
//! - [`bencode`]: strict, bounded bencode decoder that keeps byte spans (for the info-hash).
//! - [`bitfield`]: piece bitfields, including the shared one of pieces a torrent may serve.
//! - [`metainfo`]: .torrent parsing and validation into [`metainfo::Torrent`].
//! - [`storage`]: pure piece/file layout math and parallel piece hashing.
//! - [`make`]: building .torrent files (`uringseed make`).
//! - [`config`]: the TOML configuration with built-in defaults.
//! - [`progress`]: progress display for long jobs.

pub mod bencode;
pub mod bitfield;
pub mod blocklist;
pub mod checker;
pub mod choke;
pub mod config;
pub mod daemon;
pub mod io;
pub mod lifecycle;
pub mod make;
pub mod metainfo;
pub mod metrics;
pub mod notify;
pub mod peer_source;
pub mod progress;
pub mod reasons;
pub mod server;
pub mod state;
pub mod stats;
pub mod storage;
pub mod tracker;
pub mod wire;
