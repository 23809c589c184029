//! uringseed: a BitTorrent v1 seeding server on io_uring.
//!
//! # Layout
//! - [`bencode`]: strict, bounded bencode decoder that keeps byte spans (for the info-hash).
//! - [`metainfo`]: .torrent parsing and validation into [`metainfo::Torrent`].
//! - [`storage`]: pure piece/file layout math and parallel piece hashing.
//! - [`make`]: building .torrent files (`uringseed make`).
//! - [`config`]: the TOML configuration with built-in defaults.
//! - [`progress`]: progress display for long jobs.

pub mod bencode;
pub mod choke;
pub mod config;
pub mod io;
pub mod make;
pub mod metainfo;
pub mod progress;
pub mod server;
pub mod storage;
pub mod wire;
