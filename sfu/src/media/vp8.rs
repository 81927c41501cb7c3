//! The VP8 RTP payload descriptor (RFC 7741 section 4.2): keyframes, temporal layers, picture ids.
//!
//! Read without allocating; malformed descriptors are errors, never panics.

/// What the forwarder needs from one VP8 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Info {
    /// First packet of a frame (S bit set, partition 0).
    pub start_of_frame: bool,
    /// A keyframe starts in this packet (only known on the first packet of the frame).
    pub keyframe: bool,
    /// 7- or 15-bit picture id, if present.
    pub picture_id: Option<u16>,
    /// Whether the picture id is 15 bits (M bit).
    pub picture_id_15bit: bool,
    /// TL0PICIDX, if present.
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer id (0 = base), if present.
    pub temporal_id: Option<u8>,
    /// Layer sync bit: this frame depends only on the base layer.
    pub layer_sync: bool,
    /// Offset of the picture id field in the payload, for rewriting.
    pub picture_id_offset: Option<usize>,
    /// Offset of TL0PICIDX in the payload, for rewriting.
    pub tl0_pic_idx_offset: Option<usize>,
}

/// A payload too short for the descriptor it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Error;

/// Parses the descriptor at the start of an RTP payload.
pub fn parse(payload: &[u8]) -> Result<Vp8Info, Vp8Error> {
    let b0 = *payload.first().ok_or(Vp8Error)?;
    let mut info = Vp8Info::default();
    let extended = b0 & 0x80 != 0;
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    let mut i = 1;
    if extended {
        let b1 = *payload.get(i).ok_or(Vp8Error)?;
        i += 1;
        let (has_pid, has_tl0, has_tid, has_key_idx) = (
            b1 & 0x80 != 0,
            b1 & 0x40 != 0,
            b1 & 0x20 != 0,
            b1 & 0x10 != 0,
        );
        if has_pid {
            let p0 = *payload.get(i).ok_or(Vp8Error)?;
            info.picture_id_offset = Some(i);
            if p0 & 0x80 != 0 {
                let p1 = *payload.get(i + 1).ok_or(Vp8Error)?;
                info.picture_id = Some(u16::from(p0 & 0x7f) << 8 | u16::from(p1));
                info.picture_id_15bit = true;
                i += 2;
            } else {
                info.picture_id = Some(u16::from(p0));
                i += 1;
            }
        }
        if has_tl0 {
            info.tl0_pic_idx = Some(*payload.get(i).ok_or(Vp8Error)?);
            info.tl0_pic_idx_offset = Some(i);
            i += 1;
        }
        if has_tid || has_key_idx {
            let t = *payload.get(i).ok_or(Vp8Error)?;
            if has_tid {
                info.temporal_id = Some(t >> 6);
                info.layer_sync = t & 0x20 != 0;
            }
            i += 1;
        }
    }
    info.start_of_frame = start && partition == 0;
    if info.start_of_frame {
        // The VP8 frame header's first bit is the inverse key frame flag (RFC 6386 9.1).
        let frame = *payload.get(i).ok_or(Vp8Error)?;
        info.keyframe = frame & 0x01 == 0;
    }
    Ok(info)
}

/// Writes a picture id (15-bit form keeps 15 bits, 7-bit form 7) at the parsed offset.
pub fn set_picture_id(payload: &mut [u8], info: &Vp8Info, picture_id: u16) {
    if let Some(at) = info.picture_id_offset {
        if info.picture_id_15bit {
            payload[at] = 0x80 | ((picture_id >> 8) as u8 & 0x7f);
            payload[at + 1] = picture_id as u8;
        } else {
            payload[at] = picture_id as u8 & 0x7f;
        }
    }
}

/// Writes TL0PICIDX at the parsed offset.
pub fn set_tl0_pic_idx(payload: &mut [u8], info: &Vp8Info, value: u8) {
    if let Some(at) = info.tl0_pic_idx_offset {
        payload[at] = value;
    }
}

/// `payload` with the picture id and TL0PICIDX of `picture`, when they differ from what it
/// carries (`info`: its parsed descriptor): a copy, since the payload is shared by every
/// subscriber. `None` when nothing changes.
pub fn renumbered(
    payload: &bytes::Bytes,
    info: &Vp8Info,
    picture: &crate::media::forwarder::Picture,
) -> Option<bytes::Bytes> {
    if info.picture_id == Some(picture.id) && info.tl0_pic_idx == picture.tl0 {
        return None;
    }
    let mut copy = bytes::BytesMut::from(&payload[..]);
    renumber(&mut copy, info, picture);
    Some(copy.freeze())
}

/// Writes the picture id and TL0PICIDX of `picture` into `payload` (a copy of the packet's, whose
/// parsed descriptor is `info`) where they differ.
pub fn renumber(payload: &mut [u8], info: &Vp8Info, picture: &crate::media::forwarder::Picture) {
    if info.picture_id != Some(picture.id) {
        set_picture_id(payload, info, picture.id);
    }
    if let Some(tl0) = picture.tl0.filter(|_| info.tl0_pic_idx != picture.tl0) {
        set_tl0_pic_idx(payload, info, tl0);
    }
}

impl Vp8Info {
    /// The picture numbering the forwarder keeps continuous, if the descriptor has a picture id.
    pub fn picture(&self) -> Option<crate::media::forwarder::Picture> {
        Some(crate::media::forwarder::Picture {
            id: self.picture_id?,
            wide: self.picture_id_15bit,
            tl0: self.tl0_pic_idx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframe_with_every_extension_field() {
        // X=1 S=1 PID=0 | I L T K | M + 15-bit picture id 0x1234 | TL0PICIDX 7 | TID 2, Y=1 | frame byte (P=0)
        let p = [0x90, 0xf0, 0x80 | 0x12, 0x34, 7, 0b1010_0000, 0x00, 0xff];
        let info = parse(&p).unwrap();
        assert_eq!(
            info,
            Vp8Info {
                start_of_frame: true,
                keyframe: true,
                picture_id: Some(0x1234),
                picture_id_15bit: true,
                tl0_pic_idx: Some(7),
                temporal_id: Some(2),
                layer_sync: true,
                picture_id_offset: Some(2),
                tl0_pic_idx_offset: Some(4),
            }
        );
    }

    #[test]
    fn delta_frames_and_continuation_packets_are_not_keyframes() {
        assert!(!parse(&[0x10, 0x01]).unwrap().keyframe, "P=1: interframe");
        let cont = parse(&[0x00, 0x00]).unwrap();
        assert!(
            !cont.start_of_frame && !cont.keyframe,
            "not the first packet of a frame"
        );
        let seven = parse(&[0x80, 0x80, 0x05, 0x01]).unwrap();
        assert_eq!((seven.picture_id, seven.picture_id_15bit), (Some(5), false));
    }

    #[test]
    fn truncated_descriptors_are_errors() {
        let full = [0x90u8, 0xf0, 0x92, 0x34, 7, 0xa0, 0x00];
        for n in 0..full.len() {
            assert_eq!(parse(&full[..n]), Err(Vp8Error), "length {n}");
        }
    }

    #[test]
    fn picture_id_and_tl0_are_rewritten_in_place() {
        let mut p = [0x90, 0xc0, 0x80, 0x01, 3, 0x00];
        let info = parse(&p).unwrap();
        set_picture_id(&mut p, &info, 0x7abc);
        set_tl0_pic_idx(&mut p, &info, 200);
        let again = parse(&p).unwrap();
        assert_eq!(
            (again.picture_id, again.tl0_pic_idx),
            (Some(0x7abc), Some(200))
        );
    }

    #[test]
    fn renumbering_writes_the_picture_id_and_tl0_into_a_copy() {
        // X=1 S=1 PID=0 | I L | M + 15-bit picture id 0x1234 | TL0PICIDX 7 | frame byte (P=0)
        let original = bytes::Bytes::from_static(&[0x90, 0xc0, 0x92, 0x34, 7, 0x00, 0xaa]);
        let info = parse(&original).unwrap();
        let same = crate::media::forwarder::Picture {
            id: 0x1234,
            wide: true,
            tl0: Some(7),
        };
        assert_eq!(
            renumbered(&original, &info, &same),
            None,
            "nothing to change"
        );
        let moved = crate::media::forwarder::Picture {
            id: 0x7ffe,
            wide: true,
            tl0: Some(200),
        };
        let copy = renumbered(&original, &info, &moved).expect("a copy");
        let again = parse(&copy).unwrap();
        assert_eq!(again.picture_id, Some(0x7ffe));
        assert!(again.picture_id_15bit);
        assert_eq!(again.tl0_pic_idx, Some(200));
        assert!(again.keyframe);
        assert_eq!(&copy[5..], &original[5..], "the frame is untouched");
        assert_eq!(
            original[2..4],
            [0x92, 0x34],
            "the shared payload is untouched"
        );
    }
}
