//! The receiving side of a connection: sequence checks, the bounded reorder buffer, in-order
//! delivery, the peer's FIN, and the selective ack we send when packets are missing.

use super::{seq_lt, Conn, MAX_REORDER_DISTANCE, MAX_SACK_BYTES};
use crate::utp::packet::{Packet, Type};

impl Conn {
    /// Selective ack over the reorder buffer: bit i = `ack_nr + 2 + i` held.
    pub(super) fn sack(&self) -> Option<Vec<u8>> {
        let last = *self
            .reorder
            .keys()
            .max_by_key(|s| s.wrapping_sub(self.ack_nr))?;
        let span = usize::from(last.wrapping_sub(self.ack_nr).wrapping_sub(2)) + 1;
        let bytes = span.div_ceil(8).next_multiple_of(4).min(MAX_SACK_BYTES);
        let mut mask = vec![0u8; bytes];
        for &s in self.reorder.keys() {
            let i = usize::from(s.wrapping_sub(self.ack_nr).wrapping_sub(2));
            if i < bytes * 8 {
                mask[i / 8] |= 1 << (i % 8);
            }
        }
        Some(mask)
    }

    pub(super) fn handle_data(&mut self, p: &Packet) {
        self.ack_pending = true;
        let d = p.seq_nr.wrapping_sub(self.ack_nr);
        if d == 0 || d >= 0x8000 || self.reorder.contains_key(&p.seq_nr) {
            self.stats.duplicate_packets += 1;
            return;
        }
        let past_fin = self.peer_fin.is_some_and(|f| seq_lt(f, p.seq_nr));
        if d > MAX_REORDER_DISTANCE
            || p.payload.len() > self.window() as usize
            || past_fin
            || (p.ty == Type::Fin && self.peer_fin.is_some_and(|f| f != p.seq_nr))
        {
            self.stats.out_of_window += 1;
            return;
        }
        if p.ty == Type::Fin {
            self.peer_fin = Some(p.seq_nr);
        }
        if d == 1 {
            self.deliver(p.ty, &p.payload);
            loop {
                let next = self.ack_nr.wrapping_add(1);
                let Some((ty, data)) = self.reorder.remove(&next) else {
                    break;
                };
                self.reorder_bytes -= data.len();
                self.deliver(ty, &data);
            }
        } else {
            self.reorder_bytes += p.payload.len();
            self.reorder.insert(p.seq_nr, (p.ty, p.payload.clone()));
        }
    }

    pub(super) fn deliver(&mut self, ty: Type, data: &[u8]) {
        self.ack_nr = self.ack_nr.wrapping_add(1);
        self.recv_buf.extend(data);
        self.stats.bytes_received += data.len() as u64;
        if ty == Type::Fin {
            self.peer_fin_done = true;
        }
    }
}
