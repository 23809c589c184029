//! The BitTorrent peer wire protocol, sans I/O: handshake, message codec and the per-peer state
//! machine. Nothing here touches sockets or reads the clock; time is passed in.

pub mod extension;
pub mod handshake;
pub mod hashes;
pub mod message;
pub mod metadata;
pub mod mse;
mod owned;
pub mod peer;
pub mod pex;

pub use handshake::Handshake;
pub use message::{Block, Message};
pub use peer::{DropReason, Event, Limits, Peer, Run, TorrentView};
