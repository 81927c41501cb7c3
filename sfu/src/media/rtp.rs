//! RTP headers read and rewritten in place (RFC 3550, RFC 8285 header extensions).
//!
//! A [`Header`] is a view of the fixed fields plus where the extension block and payload start;
//! parsing never allocates and never panics on short or malformed input. Rewriting changes bytes in
//! the caller's buffer: SSRC, payload type, sequence number, timestamp, marker, and the ids of
//! one-byte or two-byte header extensions.

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header (or than what its own fields announce).
    TooShort,
    /// Version is not 2.
    BadVersion,
    /// The padding length is zero or larger than the payload.
    BadPadding,
    /// The extension block overruns the packet.
    BadExtension,
}

/// Fixed RTP header fields and the layout of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Offset and length of the extension data (after the 4-byte extension header), if any.
    pub extensions: Option<(usize, usize)>,
    /// The extension profile (0xBEDE one-byte, 0x100x two-byte).
    pub extension_profile: u16,
    /// Offset of the payload.
    pub payload_offset: usize,
    /// Length of the payload (without padding).
    pub payload_len: usize,
}

/// One-byte header extension profile (RFC 8285 4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// Whether the first byte looks like RTP or RTCP (RFC 7983 demultiplexing: 128..=191).
pub fn is_rtp_or_rtcp(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| (128..=191).contains(b))
}

/// Whether an RTP/RTCP packet is RTCP (payload type 192..=223 in the second byte, RFC 5761).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.get(1).is_some_and(|b| (192..=223).contains(b))
}

impl Header {
    /// Parses the header of `packet`.
    pub fn parse(packet: &[u8]) -> Result<Header, RtpError> {
        if packet.len() < 12 {
            return Err(RtpError::TooShort);
        }
        let b0 = packet[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = usize::from(b0 & 0x0f);
        let mut offset = 12 + 4 * csrc_count;
        if packet.len() < offset {
            return Err(RtpError::TooShort);
        }
        let mut extensions = None;
        let mut extension_profile = 0;
        if has_extension {
            if packet.len() < offset + 4 {
                return Err(RtpError::BadExtension);
            }
            extension_profile = u16::from_be_bytes([packet[offset], packet[offset + 1]]);
            let words = usize::from(u16::from_be_bytes([packet[offset + 2], packet[offset + 3]]));
            let start = offset + 4;
            let end = start + 4 * words;
            if packet.len() < end {
                return Err(RtpError::BadExtension);
            }
            extensions = Some((start, 4 * words));
            offset = end;
        }
        let mut end = packet.len();
        if padding {
            let pad = usize::from(packet[packet.len() - 1]);
            if pad == 0 || offset + pad > packet.len() {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(Header {
            marker: packet[1] & 0x80 != 0,
            payload_type: packet[1] & 0x7f,
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            extensions,
            extension_profile,
            payload_offset: offset,
            payload_len: end - offset,
        })
    }

    /// The payload bytes of `packet` (which this header was parsed from).
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        &packet[self.payload_offset..self.payload_offset + self.payload_len]
    }

    /// The data of extension `id`, if present (one-byte or two-byte form).
    pub fn extension<'a>(&self, packet: &'a [u8], id: u8) -> Option<&'a [u8]> {
        let mut elements = Elements::new(self);
        while let Some(e) = elements.next(packet) {
            if e.id == id {
                return Some(&packet[e.data..e.data + e.len]);
            }
        }
        None
    }
}

/// One header extension element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Element {
    /// Offset of the element's first byte (its id).
    at: usize,
    id: u8,
    /// Offset and length of its data.
    data: usize,
    len: usize,
}

/// Walks the extension elements of a packet. It holds offsets, not the packet, so the caller may
/// change bytes between steps (as [`remap_extension_ids`] does).
struct Elements {
    pos: usize,
    end: usize,
    one_byte: bool,
}

impl Elements {
    fn new(header: &Header) -> Elements {
        let (start, len) = header.extensions.unwrap_or((0, 0));
        let known = header.extension_profile == ONE_BYTE_PROFILE
            || header.extension_profile & 0xfff0 == 0x1000;
        Elements {
            pos: start,
            end: if known { start + len } else { start },
            one_byte: header.extension_profile == ONE_BYTE_PROFILE,
        }
    }

    fn next(&mut self, packet: &[u8]) -> Option<Element> {
        while self.pos < self.end {
            let at = self.pos;
            let first = packet[at];
            if first == 0 {
                self.pos += 1; // padding
                continue;
            }
            let (id, data, len) = if self.one_byte {
                if first >> 4 == 15 {
                    self.pos = self.end; // reserved id: stop parsing (RFC 8285 4.2)
                    return None;
                }
                (first >> 4, at + 1, usize::from(first & 0x0f) + 1)
            } else {
                if at + 2 > self.end {
                    self.pos = self.end;
                    return None;
                }
                (first, at + 2, usize::from(packet[at + 1]))
            };
            if data + len > self.end {
                self.pos = self.end;
                return None;
            }
            self.pos = data + len;
            return Some(Element { at, id, data, len });
        }
        None
    }
}

/// Sets the fields a forwarded packet gets on its way to one subscriber.
pub fn rewrite(
    packet: &mut [u8],
    ssrc: u32,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    marker: bool,
) {
    debug_assert!(packet.len() >= 12, "rewrite needs a parsed packet");
    packet[1] = (if marker { 0x80 } else { 0 }) | (payload_type & 0x7f);
    packet[2..4].copy_from_slice(&sequence.to_be_bytes());
    packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Maps header extension ids from the publisher's numbering to a subscriber's. `map[id]` is the new
/// id, or 0 to blank the element out (turned into padding, so the packet length stays the same).
pub fn remap_extension_ids(packet: &mut [u8], header: &Header, map: &[u8; 256]) {
    let mut elements = Elements::new(header);
    while let Some(e) = elements.next(packet) {
        let new = map[usize::from(e.id)];
        let fits = if elements.one_byte {
            (1..=14).contains(&new)
        } else {
            new != 0
        };
        if !fits {
            packet[e.at..e.data + e.len].fill(0);
        } else if elements.one_byte {
            packet[e.at] = (new << 4) | (packet[e.at] & 0x0f);
        } else {
            packet[e.at] = new;
        }
    }
}

/// The fixed fields of a packet to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
}

/// Builds a packet for tests and benches: header with an optional one-byte extension block.
/// Does not allocate when `out` has the capacity.
pub fn build(out: &mut Vec<u8>, f: Fields, extensions: &[(u8, &[u8])], payload: &[u8]) {
    let Fields {
        payload_type,
        sequence,
        timestamp,
        ssrc,
        marker,
    } = f;
    out.clear();
    out.push(0x80 | if extensions.is_empty() { 0 } else { 0x10 });
    out.push((if marker { 0x80 } else { 0 }) | payload_type);
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if !extensions.is_empty() {
        out.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
        let length_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let start = out.len();
        for (id, data) in extensions {
            out.push((id << 4) | (data.len() as u8 - 1));
            out.extend_from_slice(data);
        }
        while !(out.len() - start).is_multiple_of(4) {
            out.push(0);
        }
        let words = ((out.len() - start) / 4) as u16;
        out[length_at..length_at + 2].copy_from_slice(&words.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_extensions_and_payload() {
        let mut p = Vec::new();
        build(
            &mut p,
            Fields {
                payload_type: 96,
                sequence: 65535,
                timestamp: 0xdead_beef,
                ssrc: 0x1234_5678,
                marker: true,
            },
            &[(1, &[0x90]), (3, &[1, 2, 3])],
            b"hello",
        );
        let h = Header::parse(&p).unwrap();
        assert_eq!(
            (h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc),
            (true, 96, 65535, 0xdead_beef, 0x1234_5678)
        );
        assert_eq!(h.payload(&p), b"hello");
        assert_eq!(h.extension(&p, 1), Some(&[0x90][..]));
        assert_eq!(h.extension(&p, 3), Some(&[1, 2, 3][..]));
        assert_eq!(h.extension(&p, 2), None);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        assert_eq!(Header::parse(&[0x80; 11]), Err(RtpError::TooShort));
        assert_eq!(Header::parse(&[0x40; 12]), Err(RtpError::BadVersion));
        let mut csrc = vec![0x8f, 96];
        csrc.resize(20, 0);
        assert_eq!(
            Header::parse(&csrc),
            Err(RtpError::TooShort),
            "15 CSRCs announced, 2 present"
        );
        let mut p = Vec::new();
        build(
            &mut p,
            Fields {
                payload_type: 96,
                sequence: 1,
                timestamp: 1,
                ssrc: 1,
                marker: false,
            },
            &[(1, &[1])],
            b"x",
        );
        p.truncate(15);
        assert_eq!(Header::parse(&p), Err(RtpError::BadExtension));
        let mut pad = Vec::new();
        build(
            &mut pad,
            Fields {
                payload_type: 96,
                sequence: 1,
                timestamp: 1,
                ssrc: 1,
                marker: false,
            },
            &[],
            &[1, 2, 0],
        );
        pad[0] |= 0x20;
        assert_eq!(
            Header::parse(&pad),
            Err(RtpError::BadPadding),
            "padding length 0"
        );
        // Every truncation and every single-byte corruption of a valid packet parses or errors.
        let mut good = Vec::new();
        build(
            &mut good,
            Fields {
                payload_type: 96,
                sequence: 7,
                timestamp: 9,
                ssrc: 11,
                marker: true,
            },
            &[(1, &[0x90]), (2, &[1, 2])],
            &[0xaa; 20],
        );
        for n in 0..good.len() {
            let _ = Header::parse(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0x00, 0xff, 0x10, 0x2f] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Ok(h) = Header::parse(&bad) {
                    let _ = h.extension(&bad, 1);
                    let mut m = [0u8; 256];
                    m[1] = 4;
                    remap_extension_ids(&mut bad, &h, &m);
                }
            }
        }
    }

    #[test]
    fn rewrite_changes_only_the_named_fields() {
        let mut p = Vec::new();
        build(
            &mut p,
            Fields {
                payload_type: 96,
                sequence: 100,
                timestamp: 1000,
                ssrc: 1,
                marker: false,
            },
            &[(1, &[0x90])],
            b"payload",
        );
        rewrite(&mut p, 0xabcd, 102, 7, 77, true);
        let h = Header::parse(&p).unwrap();
        assert_eq!(
            (h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc),
            (true, 102, 7, 77, 0xabcd)
        );
        assert_eq!(h.payload(&p), b"payload");
        assert_eq!(h.extension(&p, 1), Some(&[0x90][..]));
    }

    #[test]
    fn extension_ids_are_remapped_or_blanked() {
        let mut p = Vec::new();
        build(
            &mut p,
            Fields {
                payload_type: 96,
                sequence: 1,
                timestamp: 1,
                ssrc: 1,
                marker: false,
            },
            &[(1, &[0x90]), (3, &[1, 2, 3]), (5, &[9])],
            b"x",
        );
        let h = Header::parse(&p).unwrap();
        let mut map = [0u8; 256];
        map[1] = 10;
        map[3] = 4;
        // 5 has no counterpart at the subscriber: blanked.
        remap_extension_ids(&mut p, &h, &map);
        let h2 = Header::parse(&p).unwrap();
        assert_eq!(h2.extension(&p, 10), Some(&[0x90][..]));
        assert_eq!(h2.extension(&p, 4), Some(&[1, 2, 3][..]));
        assert_eq!(h2.extension(&p, 1), None);
        assert_eq!(h2.extension(&p, 5), None);
        assert_eq!(h2.payload(&p), b"x");
    }

    #[test]
    fn demultiplexing_by_first_bytes() {
        let mut p = Vec::new();
        build(
            &mut p,
            Fields {
                payload_type: 96,
                sequence: 1,
                timestamp: 1,
                ssrc: 1,
                marker: false,
            },
            &[],
            b"",
        );
        assert!(is_rtp_or_rtcp(&p) && !is_rtcp(&p));
        let rtcp_pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(is_rtp_or_rtcp(&rtcp_pli) && is_rtcp(&rtcp_pli));
        assert!(!is_rtp_or_rtcp(&[0x00, 0x01])); // STUN
        assert!(!is_rtp_or_rtcp(&[22, 254])); // DTLS
    }
}
