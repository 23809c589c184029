//! Path MTU probing for one connection: packets start at [`PACKET_SIZE`] (safe on nearly every
//! path) and the largest size that got through is searched up to [`Config::max_packet`]
//! (1,472 bytes for IPv4 over a 1,500-byte MTU, 1,452 for IPv6) by binary search: one probe at
//! a time, a full data packet padded with an extension the peer skips (so a lost probe is resent
//! at the proven size, and no byte waits on a size that does not fit). An acked probe raises the
//! floor; a lost one lowers the ceiling and is not counted as congestion. The socket sets the
//! don't-fragment bit, so a probe too large for the path is dropped rather than fragmented.
//!
//! [`Config::max_packet`]: super::Config::max_packet

use super::{Conn, PACKET_SIZE};
use crate::utp::packet::HEADER_LEN;

/// Largest datagram for IPv4 (1,500 - 20 - 8) and IPv6 (1,500 - 40 - 8).
pub const MAX_PACKET_V4: usize = 1472;
pub const MAX_PACKET_V6: usize = 1452;
/// The search stops when floor and ceiling are this close.
const RESOLUTION: usize = 8;
/// Bytes a padding extension adds besides its content (next-type and length).
const EXT_HEADER: usize = 2;

#[derive(Debug, Clone)]
pub(super) struct Mtu {
    /// Largest datagram known to get through, and the smallest known not to (plus one).
    floor: usize,
    ceiling: usize,
    /// The probe in flight: its sequence number and datagram size.
    probe: Option<(u16, usize)>,
}

impl Mtu {
    pub(super) fn new(max_packet: usize) -> Mtu {
        let ceiling = max_packet.max(HEADER_LEN + 1);
        Mtu {
            floor: PACKET_SIZE.min(ceiling),
            ceiling,
            probe: None,
        }
    }

    /// Payload of a full packet at the proven size.
    pub(super) fn payload(&self) -> usize {
        self.floor - HEADER_LEN
    }

    pub(super) fn packet_size(&self) -> usize {
        self.floor
    }
}

impl Conn {
    /// The padding for a new full data packet `seq` if it should be a probe (and records it).
    pub(super) fn probe_padding(&mut self, seq: u16, payload: usize) -> u8 {
        let m = &mut self.mtu;
        if m.probe.is_some() || m.ceiling - m.floor <= RESOLUTION || payload != m.payload() {
            return 0;
        }
        let size = (m.floor + m.ceiling).div_ceil(2);
        let pad = size - m.floor - EXT_HEADER;
        match u8::try_from(pad) {
            Ok(p) if p > 0 => {
                m.probe = Some((seq, size));
                p
            }
            _ => 0,
        }
    }

    /// After acks or a timeout: settles the probe if it was acked (first transmission) or
    /// declared lost. Returns true when the probe was lost (not a congestion signal).
    pub(super) fn settle_probe(&mut self) -> bool {
        let Some((seq, size)) = self.mtu.probe else {
            return false;
        };
        let Some(s) = self.in_flight.iter().find(|s| s.seq == seq) else {
            // Gone without being seen acked here: it was acked with a later cumulative ack.
            self.mtu.probe = None;
            return false;
        };
        if s.acked && s.transmissions == 1 {
            self.mtu.floor = size;
            self.mtu.probe = None;
            self.stats.packet_size = size;
            false
        } else if s.need_resend || s.transmissions > 1 {
            self.mtu.ceiling = size - 1;
            self.mtu.probe = None;
            true
        } else {
            false
        }
    }
}
