//! Acknowledgements arriving at a connection: cumulative and selective acks, loss detection
//! (three duplicate acks; a packet with [`SACK_LOSS_THRESHOLD`] later ones sacked, one of them
//! sent after it), the RTT estimate and RTO (RFC 6298), and LEDBAT's window (RFC 6817).

use super::{
    seq_lt, Conn, Sent, BASE_BUCKET, BASE_BUCKETS, MAX_RTO, MIN_RTO, SACK_LOSS_THRESHOLD,
    TARGET_DELAY_US,
};
use crate::utp::packet::{Packet, Type};
use std::time::{Duration, Instant};

impl Conn {
    pub(super) fn handle_ack(&mut self, p: &Packet, now: Instant) {
        let mut acked_bytes = 0usize;
        let mut rtt_sample = None;
        let mut newly = false;
        // Cumulative ack.
        for s in self.in_flight.iter_mut() {
            if !seq_lt(p.ack_nr, s.seq) && seq_lt(s.seq, self.seq_nr) && !s.acked {
                Conn::mark_acked(
                    s,
                    &mut acked_bytes,
                    &mut self.flight_bytes,
                    &mut rtt_sample,
                    now,
                );
                newly = true;
            }
        }
        // Selective ack.
        let mut last_sacked = 0u64;
        let mut sacked_after = 0usize;
        let mut lost = 0usize;
        if let Some(mask) = &p.sack {
            for s in self.in_flight.iter_mut().rev() {
                let d = usize::from(s.seq.wrapping_sub(p.ack_nr).wrapping_sub(2));
                if d < mask.len() * 8 && mask[d / 8] & (1 << (d % 8)) != 0 {
                    if !s.acked {
                        let flight = &mut self.flight_bytes;
                        Conn::mark_acked(s, &mut acked_bytes, flight, &mut rtt_sample, now);
                        newly = true;
                    }
                    sacked_after += 1;
                    last_sacked = last_sacked.max(s.order);
                } else if !s.acked
                    && !s.need_resend
                    && sacked_after >= SACK_LOSS_THRESHOLD
                    && last_sacked > s.order
                {
                    // Packets after it arrived, one of them sent after it was: lost.
                    s.need_resend = true;
                    self.flight_bytes -= Conn::cost(s);
                    self.stats.fast_retransmits += 1;
                    self.resend_hint = true;
                    lost += 1;
                }
            }
        }
        // Before acked packets go: a probe's fate is read from its entry.
        let probe_lost = self.settle_probe();
        while self.in_flight.front().is_some_and(|s| s.acked) {
            let s = self.in_flight.pop_front().expect("front");
            self.in_flight_payload -= s.payload.len();
        }
        // Duplicate acks.
        if p.ack_nr == self.last_ack && !newly && p.ty == Type::State {
            self.dup_acks += 1;
            if self.dup_acks == 3 {
                if let Some(s) = self.in_flight.front_mut().filter(|s| !s.need_resend) {
                    s.need_resend = true;
                    self.flight_bytes -= Conn::cost(s);
                    self.stats.fast_retransmits += 1;
                    self.resend_hint = true;
                    lost += 1;
                }
            }
        } else if seq_lt(self.last_ack, p.ack_nr) && !seq_lt(self.seq_nr, p.ack_nr) {
            self.last_ack = p.ack_nr;
            self.dup_acks = 0;
        }
        // A lost MTU probe says the path is narrower, not congested.
        if lost > usize::from(probe_lost) {
            self.loss_cut(now);
        }
        if let Some(r) = rtt_sample {
            self.rtt_update(r);
        }
        if newly {
            self.consecutive_timeouts = 0;
            self.stats.bytes_acked += acked_bytes as u64;
            if acked_bytes > 0 {
                self.ledbat(p.timestamp_diff_us, acked_bytes, now);
            }
            self.rto_deadline = if self.in_flight.is_empty() {
                None
            } else {
                Some(now + self.rto)
            };
        }
    }

    pub(super) fn mark_acked(
        s: &mut Sent,
        acked: &mut usize,
        flight: &mut usize,
        rtt: &mut Option<Duration>,
        now: Instant,
    ) {
        s.acked = true;
        *acked += s.payload.len();
        if !s.need_resend {
            *flight -= Conn::cost(s);
        }
        // Karn: only packets sent once give RTT samples.
        if s.transmissions == 1 {
            *rtt = Some(now.saturating_duration_since(s.sent_at));
        }
    }

    /// Halves cwnd at most once per RTT (floor: one packet).
    pub(super) fn loss_cut(&mut self, now: Instant) {
        let rtt = Duration::from_micros(self.srtt_us.unwrap_or(1e6) as u64);
        if self
            .last_cut
            .is_some_and(|t| now.saturating_duration_since(t) < rtt)
        {
            return;
        }
        self.last_cut = Some(now);
        self.stats.loss_cuts += 1;
        self.cwnd = (self.cwnd / 2.0).max(self.mtu.payload() as f64);
        self.stats.cwnd = self.cwnd as usize;
    }

    pub(super) fn rtt_update(&mut self, r: Duration) {
        let r = r.as_micros() as f64;
        match self.srtt_us {
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2.0;
            }
            Some(srtt) => {
                self.rttvar_us = 0.75 * self.rttvar_us + 0.25 * (srtt - r).abs();
                self.srtt_us = Some(0.875 * srtt + 0.125 * r);
            }
        }
        let srtt = self.srtt_us.unwrap_or(r);
        let rto = Duration::from_micros((srtt + 4.0 * self.rttvar_us) as u64);
        self.rto = rto.clamp(MIN_RTO, MAX_RTO);
        self.stats.rto = self.rto;
        self.stats.srtt = Some(Duration::from_micros(srtt as u64));
    }

    /// LEDBAT: `delay` is the peer's measure of our packet's one-way delay (its clock minus
    /// ours, so it includes a constant offset that the base delay removes).
    pub(super) fn ledbat(&mut self, delay: u32, acked_bytes: usize, now: Instant) {
        if now.saturating_duration_since(self.bucket_start) >= BASE_BUCKET
            || self.base_delays.is_empty()
        {
            self.bucket_start = now;
            self.base_delays.push_back(delay);
            if self.base_delays.len() > BASE_BUCKETS {
                self.base_delays.pop_front();
            }
        }
        let last = self.base_delays.back_mut().expect("a bucket");
        if delay.wrapping_sub(*last) >= 0x8000_0000 {
            *last = delay;
        }
        // Delay above the smallest bucket minimum (wrapping: a minimum "above" the sample
        // counts as zero).
        let queuing = self
            .base_delays
            .iter()
            .map(|&b| delay.wrapping_sub(b))
            .filter(|&q| q < 0x8000_0000)
            .max()
            .unwrap_or(0)
            .min(10 * TARGET_DELAY_US);
        self.stats.queuing_delay_us = queuing;
        let off_target =
            (f64::from(TARGET_DELAY_US) - f64::from(queuing)) / f64::from(TARGET_DELAY_US);
        // GAIN 1: over one RTT (about cwnd bytes acked) cwnd moves by at most one packet.
        let mss = self.mtu.payload() as f64;
        self.cwnd += off_target.clamp(-1.0, 1.0) * acked_bytes as f64 * mss / self.cwnd;
        let cap = self.cfg.send_buffer.max(self.mtu.payload()) as f64;
        self.cwnd = self.cwnd.clamp(mss, cap);
        self.stats.cwnd = self.cwnd as usize;
    }
}
