//! The media a shard sends itself: forwarded packets, written and sealed in place in one buffer
//! reused round after round, and handed to the shard to send in batches (`sendmmsg`).

use std::net::SocketAddr;

use rtc::shared::TransportProtocol;

/// Room for one packet: the largest RTP packet forwarded (a publisher's, up to the receive MTU),
/// our header, and the SRTP tag.
pub(crate) const SLOT: usize = 1600;

/// Buffer kept between rounds; a round that needed more gives the rest back after it.
const KEPT: usize = 256 * SLOT;

/// One sealed packet in [`MediaOut`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutPacket {
    start: usize,
    len: usize,
    pub(crate) to: SocketAddr,
    pub(crate) protocol: TransportProtocol,
}

/// The sealed packets of a round, in the order written.
#[derive(Default)]
pub(crate) struct MediaOut {
    buf: Vec<u8>,
    used: usize,
    packets: Vec<OutPacket>,
}

impl MediaOut {
    /// Space for the next packet, [`SLOT`] bytes: what is written there is kept by
    /// [`MediaOut::commit`].
    pub(crate) fn space(&mut self) -> &mut [u8] {
        if self.buf.len() < self.used + SLOT {
            let grown = (2 * self.buf.len()).max(self.used + SLOT).max(64 * SLOT);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.used..self.used + SLOT]
    }

    /// Keeps the first `len` bytes of the last [`MediaOut::space`], to send to `to`.
    pub(crate) fn commit(&mut self, len: usize, to: SocketAddr, protocol: TransportProtocol) {
        debug_assert!(len <= SLOT);
        self.packets.push(OutPacket {
            start: self.used,
            len,
            to,
            protocol,
        });
        self.used += len;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// The packets, in order.
    pub(crate) fn packets(&self) -> &[OutPacket] {
        &self.packets
    }

    /// The bytes of `packet`.
    pub(crate) fn bytes(&self, packet: &OutPacket) -> &[u8] {
        &self.buf[packet.start..packet.start + packet.len]
    }

    /// Forgets the packets (sent or dropped); a buffer grown by a large round shrinks back.
    pub(crate) fn clear(&mut self) {
        self.packets.clear();
        self.used = 0;
        if self.buf.len() > KEPT {
            self.buf.truncate(KEPT);
            self.buf.shrink_to(KEPT);
        }
        if self.packets.capacity() > KEPT / SLOT {
            self.packets.shrink_to(KEPT / SLOT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_keep_their_bytes_in_order_and_the_buffer_shrinks_after_a_burst() {
        let mut out = MediaOut::default();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for i in 0..5000u16 {
            let space = out.space();
            assert_eq!(space.len(), SLOT);
            let len = 100 + usize::from(i % 50);
            space[..2].copy_from_slice(&i.to_be_bytes());
            out.commit(len, to, TransportProtocol::UDP);
        }
        assert_eq!(out.len(), 5000);
        for (i, p) in out.packets().iter().enumerate() {
            let bytes = out.bytes(p);
            assert_eq!(bytes.len(), 100 + i % 50);
            assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), i as u16);
        }
        out.clear();
        assert!(out.is_empty());
        assert!(out.buf.len() <= KEPT && out.buf.capacity() <= KEPT);
    }
}
