//! Answering subscribers' NACKs from the SFU's own memory.
//!
//! Each video producer keeps its recent packets per layer ([`History`]: a ring indexed by
//! sequence number, the packets moved in after forwarding, so keeping them costs no copy), and
//! each consumer remembers how it rewrote what it sent ([`SentLog`]: output sequence number ->
//! layer, input sequence number, rewritten timestamp and marker; plain integers). A NACK for an
//! output sequence number finds the rewrite in the consumer's log and the packet in the
//! producer's history; the packet is sent again with the same rewrite and a fresh transport-wide
//! sequence number, so that the bandwidth estimator sees the retransmitted bytes.

use std::time::{Duration, Instant};

use rtc::rtp;

use crate::media::forwarder::Rewrite;

/// How long a packet stays retransmittable.
pub const MAX_AGE: Duration = Duration::from_millis(1000);

/// Packets kept per layer (a power of two): a second of a 1 Mbit/s layer is about 100 packets,
/// of a 2.5 Mbit/s one about 250.
const HISTORY_SLOTS: usize = 512;

/// Output sequence numbers remembered per consumer (a power of two): 2 s of a 2.5 Mbit/s
/// layer, beyond [`MAX_AGE`], so as deep as a repair can go.
const SENT_SLOTS: usize = 512;

/// The recent packets of one stream, by sequence number.
#[derive(Default)]
pub struct History {
    /// Allocated on first use: (sequence number, when stored, packet).
    slots: Vec<Option<(u16, Instant, rtp::Packet)>>,
}

impl History {
    /// Keeps `packet`, replacing what was in its slot.
    pub fn insert(&mut self, packet: rtp::Packet, now: Instant) {
        if self.slots.is_empty() {
            self.slots.resize_with(HISTORY_SLOTS, || None);
        }
        let seq = packet.header.sequence_number;
        self.slots[usize::from(seq) & (HISTORY_SLOTS - 1)] = Some((seq, now, packet));
    }

    /// The packet with `sequence`, if still held and younger than [`MAX_AGE`].
    pub fn get(&self, sequence: u16, now: Instant) -> Option<&rtp::Packet> {
        match self
            .slots
            .get(usize::from(sequence) & (HISTORY_SLOTS - 1))?
        {
            Some((seq, at, packet))
                if *seq == sequence && now.saturating_duration_since(*at) <= MAX_AGE =>
            {
                Some(packet)
            }
            _ => None,
        }
    }
}

/// How a consumer rewrote one packet it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The simulcast layer and input sequence number it came from.
    pub layer: u8,
    pub input_sequence: u16,
    pub rewrite: Rewrite,
}

/// What one consumer sent recently, by output sequence number.
#[derive(Default)]
pub struct SentLog {
    /// Allocated on first use.
    slots: Vec<Option<Sent>>,
}

impl SentLog {
    pub fn record(&mut self, sent: Sent) {
        if self.slots.is_empty() {
            self.slots.resize(SENT_SLOTS, None);
        }
        self.slots[usize::from(sent.rewrite.sequence) & (SENT_SLOTS - 1)] = Some(sent);
    }

    /// What was sent as `output_sequence`, if still remembered.
    pub fn find(&self, output_sequence: u16) -> Option<Sent> {
        self.slots
            .get(usize::from(output_sequence) & (SENT_SLOTS - 1))
            .copied()
            .flatten()
            .filter(|s| s.rewrite.sequence == output_sequence)
    }
}

/// The sequence numbers a NACK names (RFC 4585 generic NACK: a packet id and a bitmask of the 16
/// following), in order.
pub fn nacked(pairs: impl IntoIterator<Item = (u16, u16)>, out: &mut Vec<u16>) {
    for (packet_id, lost_packets) in pairs {
        out.push(packet_id);
        for bit in 0..16u16 {
            if lost_packets & (1 << bit) != 0 {
                out.push(packet_id.wrapping_add(bit + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16) -> rtp::Packet {
        let mut p = rtp::Packet::default();
        p.header.sequence_number = seq;
        p.payload = bytes::Bytes::from(vec![seq as u8; 3]);
        p
    }

    #[test]
    fn history_returns_a_packet_until_it_is_replaced_or_too_old() {
        let t0 = Instant::now();
        let mut h = History::default();
        assert!(h.get(7, t0).is_none());
        h.insert(packet(7), t0);
        assert_eq!(h.get(7, t0).unwrap().header.sequence_number, 7);
        assert!(h.get(8, t0).is_none());
        // The slot of 7 is taken by 7 + 512.
        h.insert(packet(7 + HISTORY_SLOTS as u16), t0);
        assert!(h.get(7, t0).is_none());
        let later = 7 + HISTORY_SLOTS as u16;
        assert!(h.get(later, t0 + MAX_AGE).is_some());
        assert!(
            h.get(later, t0 + MAX_AGE + Duration::from_millis(1))
                .is_none()
        );
    }

    #[test]
    fn the_log_finds_a_rewrite_by_output_sequence_across_wraparound() {
        let mut log = SentLog::default();
        let sent = |out: u16, input: u16| Sent {
            layer: 2,
            input_sequence: input,
            rewrite: Rewrite {
                sequence: out,
                timestamp: 90,
                marker: true,
                picture: None,
            },
        };
        log.record(sent(65_535, 10));
        log.record(sent(0, 11));
        assert_eq!(log.find(65_535), Some(sent(65_535, 10)));
        assert_eq!(log.find(0), Some(sent(0, 11)));
        assert_eq!(log.find(1), None);
        // A slot reused by a later output number no longer answers for the old one.
        log.record(sent(0u16.wrapping_add(SENT_SLOTS as u16), 12));
        assert_eq!(log.find(0), None);
    }

    #[test]
    fn a_nack_names_its_packet_id_and_every_bit_of_its_mask() {
        let mut out = Vec::new();
        nacked([(65_534, 0b101), (10, 0)], &mut out);
        assert_eq!(out, vec![65_534, 65_535, 1, 10]);
    }
}
