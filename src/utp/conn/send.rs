//! The sending side of a connection: packets cut from the send buffer (at the size the MTU
//! search has proven, a probe now and then), what goes out next and in what order
//! (retransmissions, new data within the congestion and peer windows, FIN, bare acks), and the
//! header every packet carries.

use super::{Conn, Sent, State};
use crate::utp::packet::{Packet, Type};
use std::time::Instant;

impl Conn {
    pub(super) fn push_sent(&mut self, ty: Type, payload: Vec<u8>) {
        let seq = self.seq_nr;
        self.seq_nr = self.seq_nr.wrapping_add(1);
        self.in_flight_payload += payload.len();
        self.resend_hint = true;
        self.in_flight.push_back(Sent {
            seq,
            ty,
            payload,
            sent_at: self.epoch,
            order: 0,
            transmissions: 0,
            need_resend: true,
            acked: false,
            padding: 0,
        });
    }

    pub(super) fn cost(s: &Sent) -> usize {
        s.payload.len().max(1)
    }

    fn header(&self, ty: Type, seq: u16, now: Instant) -> Packet {
        let mut p = Packet::new(
            ty,
            if ty == Type::Syn {
                self.recv_id
            } else {
                self.send_id
            },
        );
        p.timestamp_us = self.micros(now);
        p.timestamp_diff_us = self.reply_micro;
        p.wnd_size = self.window();
        p.seq_nr = seq;
        p.ack_nr = self.ack_nr;
        p
    }

    /// The next datagram to send, if any: retransmissions first, then new data within the
    /// congestion and peer windows, then FIN, then a bare ack (with a selective ack when
    /// packets are missing).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.state == State::Reset {
            return None;
        }
        if self.ack_pending && (!self.reorder.is_empty() || self.state == State::SynRecv) {
            return Some(self.bare_ack(now));
        }
        let limit = (self.cwnd as usize).min(self.peer_wnd as usize);
        // Retransmissions and not-yet-sent SYN/FIN, oldest first.
        let pos = if self.resend_hint {
            let pos = self
                .in_flight
                .iter()
                .position(|s| s.need_resend && !s.acked);
            self.resend_hint = pos.is_some();
            pos
        } else {
            None
        };
        if let Some(i) = pos {
            let cost = Conn::cost(&self.in_flight[i]);
            // The oldest packet holds everything up: it goes whatever the window.
            if i == 0 || self.flight_bytes == 0 || self.flight_bytes + cost <= limit {
                return Some(self.send_at(i, now));
            }
        }
        if matches!(
            self.state,
            State::SynRecv | State::Connected | State::FinSent
        ) {
            if !self.send_buf.is_empty() && pos.is_none() {
                let room = limit.saturating_sub(self.flight_bytes);
                let n = self.send_buf.len().min(self.mtu.payload());
                if self.flight_bytes == 0 || n <= room {
                    // Copied slice by slice (a byte iterator here was a third of the CPU).
                    let mut payload = Vec::with_capacity(n);
                    let (front, back) = self.send_buf.as_slices();
                    let from_front = n.min(front.len());
                    payload.extend_from_slice(&front[..from_front]);
                    payload.extend_from_slice(&back[..n - from_front]);
                    self.send_buf.drain(..n);
                    let seq = self.seq_nr;
                    self.push_sent(Type::Data, payload);
                    let i = self.in_flight.len() - 1;
                    self.in_flight[i].padding = self.probe_padding(seq, n);
                    return Some(self.send_at(i, now));
                }
            }
            if self.close_requested && !self.fin_queued && self.send_buf.is_empty() {
                self.fin_queued = true;
                self.state = State::FinSent;
                self.push_sent(Type::Fin, Vec::new());
                let i = self.in_flight.len() - 1;
                return Some(self.send_at(i, now));
            }
        }
        if self.ack_pending {
            return Some(self.bare_ack(now));
        }
        None
    }

    fn bare_ack(&mut self, now: Instant) -> Vec<u8> {
        self.ack_pending = false;
        // Until the initiator confirms, our STATE answers its SYN and must carry the first
        // sequence number even if data went out since (it sets its ack from it).
        let seq = if self.state == State::SynRecv {
            self.cfg.initial_seq
        } else {
            self.seq_nr
        };
        let mut p = self.header(Type::State, seq, now);
        p.sack = self.sack();
        self.stats.packets_sent += 1;
        p.encode()
    }

    pub(super) fn send_at(&mut self, i: usize, now: Instant) -> Vec<u8> {
        let (ty, seq) = (self.in_flight[i].ty, self.in_flight[i].seq);
        let mut p = self.header(ty, seq, now);
        let s = &mut self.in_flight[i];
        if s.transmissions == 0 {
            p.padding = s.padding;
        }
        if s.transmissions > 0 {
            self.stats.retransmits += 1;
            self.stats.bytes_resent += s.payload.len() as u64;
        }
        s.transmissions += 1;
        s.sent_at = now;
        self.sends += 1;
        s.order = self.sends;
        s.need_resend = false;
        self.flight_bytes += Conn::cost(s);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += s.payload.len() as u64;
        if self.reorder.is_empty() {
            // The data packet carries the ack; a selective ack still needs its own STATE.
            self.ack_pending = false;
        }
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rto);
        }
        p.encode_with(&self.in_flight[i].payload)
    }
}
