//! Synthetic media: VP8 frames cut into RTP payloads with a real payload descriptor (RFC 7741:
//! picture id, start bit) and a real frame header on keyframes (RFC 6386 9.1: the key frame bit,
//! the start code `9d 01 2a`, width and height), Opus-sized audio. No picture is encoded: the
//! SFU only reads the descriptor and the frame tag, and so does the receiving side here.

/// Bytes of a VP8 RTP payload at most (descriptor included), below a 1200-byte MTU with the
/// RTP header, extensions and SRTP tag.
pub const MAX_PAYLOAD: usize = 1100;

/// Bytes of the descriptor this writes: X, S/PID, then I with a 15-bit picture id.
const DESCRIPTOR: usize = 4;

/// One simulcast layer (or the only one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layer {
    /// `q`, `h`, `f`; empty without simulcast.
    pub rid: &'static str,
    pub width: u16,
    pub height: u16,
    /// Target bitrate, bits per second.
    pub bitrate: u32,
}

/// How big a keyframe is next to a delta frame.
pub const KEYFRAME_SCALE: usize = 3;

impl Layer {
    /// Bytes of a delta frame and of a keyframe so that the layer averages its bitrate with a
    /// keyframe every `gop` frames.
    pub fn frame_sizes(&self, fps: u32, gop: u32) -> (usize, usize) {
        let per_frame = f64::from(self.bitrate) / 8.0 / f64::from(fps);
        let gop = f64::from(gop.max(1));
        let delta = per_frame * gop / (gop - 1.0 + KEYFRAME_SCALE as f64);
        let delta = (delta as usize).max(16);
        (delta, delta * KEYFRAME_SCALE)
    }
}

/// The RTP payloads of one VP8 frame of `size` bytes (frame data, descriptors not counted),
/// picture id `picture_id` (15 bits). The last payload ends the frame (the marker bit).
pub fn vp8_frame(size: usize, keyframe: bool, picture_id: u16, layer: &Layer) -> Vec<Vec<u8>> {
    let mut frame = vec![0u8; size.max(10)];
    // Frame tag (RFC 6386 9.1): bit 0 the inverse key frame flag, bits 1-3 version 0, bit 4
    // show_frame, bits 5-23 the first partition's size.
    let first_partition = (frame.len() as u32 - 10).min(0x7_ffff);
    let tag = (first_partition << 5) | (1 << 4) | u32::from(!keyframe);
    frame[..3].copy_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        frame[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
        frame[6..8].copy_from_slice(&(layer.width & 0x3fff).to_le_bytes());
        frame[8..10].copy_from_slice(&(layer.height & 0x3fff).to_le_bytes());
    }
    for (i, b) in frame.iter_mut().enumerate().skip(10) {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    let pid = picture_id & 0x7fff;
    frame
        .chunks(MAX_PAYLOAD - DESCRIPTOR)
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = Vec::with_capacity(DESCRIPTOR + chunk.len());
            // X=1, N=0, S on the first packet, partition index 0.
            p.push(if i == 0 { 0x90 } else { 0x80 });
            p.push(0x80); // I: a picture id follows
            p.push(0x80 | (pid >> 8) as u8); // M: 15 bits
            p.push(pid as u8);
            p.extend_from_slice(chunk);
            p
        })
        .collect()
}

/// What a receiver reads of a VP8 payload: whether a keyframe starts in it and, if so, its width.
#[derive(Debug, PartialEq, Eq)]
pub struct Vp8Start {
    pub keyframe: bool,
    pub width: Option<u16>,
}

/// Reads the descriptor and, on the first packet of a frame, the frame tag. `None` when the
/// packet does not start a frame or is malformed.
pub fn vp8_start(payload: &[u8]) -> Option<Vp8Start> {
    let b0 = *payload.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let b1 = *payload.get(i)?;
        i += 1;
        if b1 & 0x80 != 0 {
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if b1 & 0x40 != 0 {
            i += 1;
        }
        if b1 & 0x30 != 0 {
            i += 1;
        }
    }
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return None;
    }
    let frame = payload.get(i..)?;
    let keyframe = frame.first()? & 0x01 == 0;
    let width = (keyframe && frame.get(3..6) == Some(&[0x9d, 0x01, 0x2a]))
        .then(|| {
            frame
                .get(6..8)
                .map(|w| u16::from_le_bytes([w[0], w[1]]) & 0x3fff)
        })
        .flatten();
    Some(Vp8Start { keyframe, width })
}

/// Opus packets: 20 ms each.
pub const OPUS_PACKETS_PER_SECOND: u32 = 50;
/// 48 kHz clock, 20 ms.
pub const OPUS_TIMESTAMP_STEP: u32 = 960;
/// About 32 kbit/s.
pub const OPUS_PAYLOAD: usize = 80;

/// The layers of a publisher's camera: three (`q`, `h`, `f` at quarter, half and full size) or
/// one at full size.
pub fn layers(simulcast: bool, bitrates_kbps: &[u32; 3], single_kbps: u32) -> Vec<Layer> {
    if simulcast {
        vec![
            Layer {
                rid: "q",
                width: 320,
                height: 180,
                bitrate: bitrates_kbps[0] * 1000,
            },
            Layer {
                rid: "h",
                width: 640,
                height: 360,
                bitrate: bitrates_kbps[1] * 1000,
            },
            Layer {
                rid: "f",
                width: 1280,
                height: 720,
                bitrate: bitrates_kbps[2] * 1000,
            },
        ]
    } else {
        vec![Layer {
            rid: "",
            width: 1280,
            height: 720,
            bitrate: single_kbps * 1000,
        }]
    }
}

/// RTP packets per second a layer sends on average (delta and keyframes).
pub fn packets_per_second(layer: &Layer, fps: u32, gop: u32) -> f64 {
    let (delta, key) = layer.frame_sizes(fps, gop);
    let per = |size: usize| size.max(10).div_ceil(MAX_PAYLOAD - DESCRIPTOR) as f64;
    let gop = f64::from(gop.max(1));
    f64::from(fps) * (per(delta) * (gop - 1.0) + per(key)) / gop
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Layer = Layer {
        rid: "f",
        width: 1280,
        height: 720,
        bitrate: 1_200_000,
    };

    #[test]
    fn a_keyframe_reads_back_as_a_keyframe_with_its_size() {
        let packets = vp8_frame(5000, true, 0x1234, &FULL);
        assert_eq!(packets.len(), 5000usize.div_ceil(MAX_PAYLOAD - 4));
        assert!(packets.iter().all(|p| p.len() <= MAX_PAYLOAD));
        assert_eq!(
            vp8_start(&packets[0]),
            Some(Vp8Start {
                keyframe: true,
                width: Some(1280)
            })
        );
        assert_eq!(vp8_start(&packets[1]), None, "not the start of a frame");
        assert_eq!(&packets[0][2..4], &[0x80 | 0x12, 0x34], "15-bit picture id");
        let delta = vp8_frame(600, false, 1, &FULL);
        assert_eq!(
            vp8_start(&delta[0]),
            Some(Vp8Start {
                keyframe: false,
                width: None
            })
        );
    }

    #[test]
    fn the_sfu_reads_the_same_descriptor() {
        let packets = vp8_frame(3000, true, 77, &FULL);
        let info = sfu::media::vp8::parse(&packets[0]).expect("a valid descriptor");
        assert!(info.start_of_frame && info.keyframe);
        assert_eq!(info.picture_id, Some(77));
        let later = sfu::media::vp8::parse(&packets[1]).expect("a valid descriptor");
        assert!(!later.start_of_frame);
    }

    #[test]
    fn frame_sizes_average_the_bitrate() {
        let (fps, gop) = (30, 60);
        let (delta, key) = FULL.frame_sizes(fps, gop);
        let bits_per_second =
            ((delta * (gop as usize - 1) + key) * 8) as f64 * f64::from(fps) / f64::from(gop);
        assert!(
            (bits_per_second / 1_200_000.0 - 1.0).abs() < 0.01,
            "{bits_per_second}"
        );
    }
}
