//! Torrent data on disk: the layout of pieces over files and batched parallel piece hashing.

pub mod hasher;
pub mod layout;

pub use layout::{DataProblem, FileSlot, Layout, RangeError, Span};
