//! The mainline DHT (BEP 5, with BEP 32 IPv6, BEP 42 node-id security and BEP 43 read-only
//! nodes), sans I/O: no sockets, no threads, no clock (time is passed in as `Instant`) and no
//! global randomness (the node keeps a PRNG seeded by its caller). The server's driver owns the
//! UDP socket and moves bytes in ([`Node::handle_packet`]) and out ([`Node::poll_transmit`]),
//! calls [`Node::handle_timeout`] at [`Node::poll_timeout`], and reads [`Node::poll_event`].
//!
//! One [`Node`] serves one address family (BEP 32): a dual-stack driver runs two, one per
//! socket, and a query's `want` is answered with that node's family only.
//!
//! - [`krpc`]: the message codec and its bounds.
//! - [`id`]: node ids, the XOR metric, BEP 42 ids, CRC-32C, the seeded PRNG.
//! - [`table`]: the routing table of one address family.
//! - [`store`]: announced peers kept for others and our announce tokens.
//! - [`lookup`]: one iterative `find_node` / `get_peers` lookup.
//! - [`node`]: the node: queries answered, transactions, lookups, maintenance, limits.
//! - [`types`]: the node's configuration, transmits, events, counters and per-IP limiter.
//! - [`service`]: the driver (not sans-IO): the UDP sockets, a thread per family, announcing our
//!   torrents, handing found peers to the intake, and the saved table.

pub mod id;
pub mod krpc;
pub mod lookup;
pub mod node;
pub mod service;
pub mod store;
pub mod table;
pub mod types;

pub use id::NodeId;
pub use node::{Event, Family, Node, NodeConfig, NodeStats, Transmit};
