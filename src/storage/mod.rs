//! Torrent data on disk: the layout of pieces over files, batched parallel piece hashing,
//! checking data against a torrent, and fast-resume records.

pub mod hasher;
pub mod layout;
pub mod mapped;
pub mod resume;
pub mod verify;

pub use layout::{DataProblem, FileSlot, Layout, RangeError, Span};
