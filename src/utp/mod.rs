//! uTP (BEP 29, the uTorrent transport protocol) sans I/O: no sockets, no threads, no clock
//! (time is passed in as `Instant`). A driver owns the UDP socket, feeds decoded packets to a
//! [`Conn`] and sends what [`Conn::poll_transmit`] returns.
//!
//! - [`packet`]: the header and extension codec, and telling uTP from DHT traffic.
//! - [`conn`]: one connection: handshake, reliability, selective acks, RTO, LEDBAT.
//! - [`socket`]: many connections on one port: routing, accept caps, RESETs, events.
//! - [`status`]: the counters the I/O driver fills and metrics and the API read.

pub mod conn;
pub mod packet;
#[cfg(test)]
mod sim_tests;
pub mod socket;
pub mod status;

pub use conn::{Config, Conn, ConnError, ConnStats, State};
pub use packet::{decode, looks_like_utp, Packet, PacketError, Type};
pub use socket::{Event, Handle, Socket, SocketConfig, SocketStats, Totals};
pub use status::UtpStatus;
