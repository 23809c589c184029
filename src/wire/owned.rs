//! The parts of a received message the peer state machine acts on, copied out of the receive
//! buffer so that the buffer can be drained while they are handled. Sans I/O.

use super::message::{Block, HashRange, Message};
use crate::bitfield;

/// The parts of a message the state machine acts on, detached from the input buffer.
pub(super) enum Owned {
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Shape),
    HaveAll,
    Request(Block),
    Cancel(Block),
    /// An extended message: our id and a copy of its payload (at most the message cap).
    Extended(u8, Vec<u8>),
    HashRequest(HashRange),
    Other,
}

/// What a peer's bitfield says.
pub(super) enum Shape {
    /// Wrong length or spare bits set.
    Invalid,
    Full,
    /// Its bits (copied: kept only while super-seeding).
    Partial(Vec<u8>),
}

impl Owned {
    pub(super) fn from(msg: &Message<'_>, pieces: usize) -> Owned {
        match msg {
            Message::Interested => Owned::Interested,
            Message::NotInterested => Owned::NotInterested,
            Message::Have(i) => Owned::Have(*i),
            Message::Request(b) => Owned::Request(*b),
            Message::Cancel(b) => Owned::Cancel(*b),
            Message::Bitfield(bits) if !bitfield::valid(bits, pieces) => {
                Owned::Bitfield(Shape::Invalid)
            }
            Message::Bitfield(bits) if bits[..] == bitfield::full(pieces)[..] => {
                Owned::Bitfield(Shape::Full)
            }
            Message::Bitfield(bits) => Owned::Bitfield(Shape::Partial(bits.to_vec())),
            Message::HaveAll => Owned::HaveAll,
            Message::Extended { id, payload } => Owned::Extended(*id, payload.to_vec()),
            Message::HashRequest(r) => Owned::HashRequest(*r),
            _ => Owned::Other,
        }
    }
}
