//! Torrent data on disk: the layout of pieces over files, batched parallel piece hashing,
//! checking data against a torrent, fast-resume records, and sending from the page cache.
//!
//! Nothing in it knows about peers, sockets or the server's state.

pub mod atomic;
pub mod files;
pub mod hasher;
pub mod layout;
pub mod mapped;
pub mod pool;
pub mod resident;
pub mod resume;
pub mod verify;

pub use layout::{DataProblem, FileSlot, Layout, RangeError, Span};
