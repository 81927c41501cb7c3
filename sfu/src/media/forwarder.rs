//! What to do with one packet for one subscriber: drop it, or forward it with which sequence
//! number, timestamp and marker.
//!
//! One [`Forwarder`] per consumer (subscriber x track). It keeps the output stream continuous
//! (sequence numbers without gaps, timestamps moving forward) across simulcast layer switches,
//! pauses and publisher restarts, drops duplicates (Chromium's unrequested RTX probes come back as
//! copies), drops packets of layers not selected and of temporal layers above the limit, and only
//! switches to a new layer on one of its keyframes. Time comes in as an argument.

use std::time::Instant;

/// The VP8 picture numbering of a packet (RFC 7741 payload descriptor): picture id (7 or 15
/// bits wide) and TL0PICIDX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picture {
    pub id: u16,
    /// 15-bit picture id (else 7-bit).
    pub wide: bool,
    pub tl0: Option<u8>,
}

impl Picture {
    fn mask(&self) -> u16 {
        if self.wide { 0x7fff } else { 0x7f }
    }
}

/// A packet as the forwarder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// Simulcast layer (spatial) the packet belongs to; 0 without simulcast.
    pub layer: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// The packet starts a keyframe.
    pub keyframe: bool,
    /// Temporal layer (VP8 TID), if the codec says.
    pub temporal_id: Option<u8>,
    /// VP8 picture numbering, if the descriptor carries a picture id.
    pub picture: Option<Picture>,
}

/// The rewritten fields of a forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// VP8 picture numbering to write (continuous across layer switches, as one stream).
    pub picture: Option<Picture>,
}

/// Why a packet is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The consumer is paused (no layer targeted).
    Paused,
    /// The packet is of a layer that is neither forwarded nor being switched to.
    NotSelectedLayer,
    /// The target layer's packets wait for its keyframe.
    WaitingForKeyframe,
    /// Already forwarded (a retransmission or probe copy).
    Duplicate,
    /// Older than the duplicate-detection window.
    TooOld,
    /// Above the temporal layer limit.
    TemporalLayer,
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Forward(Rewrite),
    Drop(DropReason),
}

/// How far back duplicates are recognised (packets): as far as the retransmission history
/// reaches, so that a repair that needed several NACK rounds is still forwarded (once).
const WINDOW: u16 = 512;
/// Words of the `seen` ring.
const SEEN_WORDS: usize = WINDOW as usize / 64;
/// Sequence offset changes remembered for late packets.
const OFFSET_HISTORY: usize = 8;

/// Per-consumer forwarding state.
#[derive(Debug, Clone)]
pub struct Forwarder {
    /// RTP clock rate of the track (90000 video, 48000 Opus).
    clock_rate: u32,
    /// Layer being forwarded, if any.
    current: Option<u8>,
    /// Layer wanted; `None` pauses.
    target: Option<u8>,
    /// Highest temporal layer forwarded.
    max_temporal: u8,
    /// Output sequence number = input + offset, per range of input sequence numbers.
    /// `offsets[0]` is the newest: (first input sequence it applies to, offset).
    offsets: [(u16, u16); OFFSET_HISTORY],
    offsets_len: usize,
    /// Output timestamp = input + offset for the current layer.
    ts_offset: u32,
    /// Highest input sequence number seen on the current layer.
    highest_in: u16,
    /// A ring of [`WINDOW`] bits indexed by input sequence number: set when that input was
    /// handled (forwarded or deliberately dropped). Bits older than `highest_in - WINDOW` are
    /// stale and cleared as `highest_in` moves over them.
    seen: [u64; SEEN_WORDS],
    /// The last output sequence number and timestamp, and when it was sent.
    last_out: Option<(u16, u32, Instant)>,
    /// Output picture id = input + offset (within its width), TL0PICIDX likewise, for the current
    /// layer: each simulcast layer numbers its pictures on its own.
    picture_offset: u16,
    tl0_offset: u8,
    /// The last output picture numbering.
    last_picture: Option<Picture>,
}

impl Forwarder {
    /// A forwarder targeting `initial_layer` (`None`: paused).
    pub fn new(clock_rate: u32, initial_layer: Option<u8>) -> Forwarder {
        Forwarder {
            clock_rate,
            current: None,
            target: initial_layer,
            max_temporal: u8::MAX,
            offsets: [(0, 0); OFFSET_HISTORY],
            offsets_len: 0,
            ts_offset: 0,
            highest_in: 0,
            seen: [0; SEEN_WORDS],
            last_out: None,
            picture_offset: 0,
            tl0_offset: 0,
            last_picture: None,
        }
    }

    /// The layer forwarded now.
    pub fn current_layer(&self) -> Option<u8> {
        self.current
    }

    /// Output timestamp minus input timestamp on the layer forwarded now (`None` when none is):
    /// maps a publisher's RTP time (of a sender report) onto the output timeline.
    pub fn timestamp_offset(&self) -> Option<u32> {
        self.current.map(|_| self.ts_offset)
    }

    /// The layer wanted.
    pub fn target_layer(&self) -> Option<u8> {
        self.target
    }

    /// Sets the wanted layer (`None` pauses at once; resuming waits for a keyframe).
    pub fn set_target(&mut self, layer: Option<u8>) {
        self.target = layer;
        if layer.is_none() {
            self.current = None;
        }
    }

    /// Forward temporal layers up to and including `tid`.
    pub fn set_max_temporal(&mut self, tid: u8) {
        self.max_temporal = tid;
    }

    /// The layer a keyframe is needed from before forwarding can (re)start or switch, if any.
    pub fn keyframe_needed(&self) -> Option<u8> {
        match (self.target, self.current) {
            (Some(t), c) if c != Some(t) => Some(t),
            _ => None,
        }
    }

    /// The publisher restarted its stream (new SSRC, sequence numbers from elsewhere): continue
    /// the output from where it was at the next keyframe.
    pub fn reset_source(&mut self) {
        self.current = None;
    }

    /// Decides what to do with `p`, arrived at `now`.
    pub fn handle(&mut self, p: &PacketInfo, now: Instant) -> Decision {
        let Some(target) = self.target else {
            return Decision::Drop(DropReason::Paused);
        };
        if p.layer != self.current.unwrap_or(u8::MAX) {
            if p.layer != target {
                return Decision::Drop(DropReason::NotSelectedLayer);
            }
            if !p.keyframe {
                return Decision::Drop(DropReason::WaitingForKeyframe);
            }
            self.switch_to(p, now);
        }
        self.in_layer(p, now)
    }

    /// Starts forwarding `p.layer` from keyframe `p`, continuing the output stream.
    fn switch_to(&mut self, p: &PacketInfo, now: Instant) {
        let (seq_offset, ts_offset) = match self.last_out {
            None => (0, 0),
            Some((seq, ts, at)) => {
                // The next output sequence number follows the last one; the timestamp advances by
                // the wall-clock time since the last packet (at least one tick).
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate))
                    .round()
                    .max(1.0) as u32;
                (
                    seq.wrapping_add(1).wrapping_sub(p.sequence),
                    ts.wrapping_add(ticks).wrapping_sub(p.timestamp),
                )
            }
        };
        // The new layer's keyframe is the picture after the last one sent; a keyframe is a base
        // layer picture, so its TL0PICIDX follows the last one too.
        (self.picture_offset, self.tl0_offset) = match (self.last_picture, p.picture) {
            (Some(last), Some(picture)) => (
                last.id.wrapping_add(1).wrapping_sub(picture.id) & picture.mask(),
                match (last.tl0, picture.tl0) {
                    (Some(a), Some(b)) => a.wrapping_add(1).wrapping_sub(b),
                    _ => 0,
                },
            ),
            _ => (0, 0),
        };
        self.current = Some(p.layer);
        self.ts_offset = ts_offset;
        self.offsets = [(p.sequence, seq_offset); OFFSET_HISTORY];
        self.offsets_len = 1;
        self.highest_in = p.sequence.wrapping_sub(1);
        // Packets of this layer from before its keyframe are not ours to send (the output
        // sequence before the switch belongs to the previous layer).
        self.seen = [!0; SEEN_WORDS];
    }

    fn in_layer(&mut self, p: &PacketInfo, now: Instant) -> Decision {
        let diff = p.sequence.wrapping_sub(self.highest_in) as i16;
        let in_order = diff > 0;
        if in_order {
            // The positions passed over are new inputs: forget what they held a ring ago.
            if diff as u16 >= WINDOW {
                self.seen = [0; SEEN_WORDS];
            } else {
                for i in 1..diff as u16 {
                    self.clear_seen(self.highest_in.wrapping_add(i));
                }
            }
            self.mark_seen(p.sequence);
            self.highest_in = p.sequence;
        } else {
            if diff.unsigned_abs() >= WINDOW {
                return Decision::Drop(DropReason::TooOld);
            }
            if self.is_seen(p.sequence) {
                return Decision::Drop(DropReason::Duplicate);
            }
            self.mark_seen(p.sequence);
        }
        if p.temporal_id.is_some_and(|t| t > self.max_temporal) {
            if in_order {
                // Close the gap: later packets move down by one.
                let offset = self.offset_for(p.sequence).wrapping_sub(1);
                self.push_offset(p.sequence.wrapping_add(1), offset);
            }
            return Decision::Drop(DropReason::TemporalLayer);
        }
        let rewrite = Rewrite {
            sequence: p.sequence.wrapping_add(self.offset_for(p.sequence)),
            timestamp: p.timestamp.wrapping_add(self.ts_offset),
            marker: p.marker,
            picture: p.picture.map(|picture| Picture {
                id: picture.id.wrapping_add(self.picture_offset) & picture.mask(),
                wide: picture.wide,
                tl0: picture.tl0.map(|t| t.wrapping_add(self.tl0_offset)),
            }),
        };
        let newer = match self.last_out {
            None => true,
            Some((seq, _, _)) => (rewrite.sequence.wrapping_sub(seq) as i16) > 0,
        };
        if newer {
            self.last_out = Some((rewrite.sequence, rewrite.timestamp, now));
            if rewrite.picture.is_some() {
                self.last_picture = rewrite.picture;
            }
        }
        Decision::Forward(rewrite)
    }

    fn is_seen(&self, seq: u16) -> bool {
        let i = usize::from(seq % WINDOW);
        self.seen[i / 64] & (1 << (i % 64)) != 0
    }

    fn mark_seen(&mut self, seq: u16) {
        let i = usize::from(seq % WINDOW);
        self.seen[i / 64] |= 1 << (i % 64);
    }

    fn clear_seen(&mut self, seq: u16) {
        let i = usize::from(seq % WINDOW);
        self.seen[i / 64] &= !(1 << (i % 64));
    }

    /// The offset that applies to input sequence number `seq`.
    fn offset_for(&self, seq: u16) -> u16 {
        for &(from, offset) in &self.offsets[..self.offsets_len] {
            if (seq.wrapping_sub(from) as i16) >= 0 {
                return offset;
            }
        }
        // Older than every remembered change: the oldest offset is the best guess.
        self.offsets[self.offsets_len - 1].1
    }

    fn push_offset(&mut self, from: u16, offset: u16) {
        self.offsets.copy_within(0..OFFSET_HISTORY - 1, 1);
        self.offsets[0] = (from, offset);
        self.offsets_len = (self.offsets_len + 1).min(OFFSET_HISTORY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pkt(layer: u8, sequence: u16, timestamp: u32, keyframe: bool) -> PacketInfo {
        PacketInfo {
            layer,
            sequence,
            timestamp,
            marker: false,
            keyframe,
            temporal_id: None,
            picture: None,
        }
    }

    fn fwd(sequence: u16, timestamp: u32) -> Decision {
        Decision::Forward(Rewrite {
            sequence,
            timestamp,
            marker: false,
            picture: None,
        })
    }

    #[test]
    fn waits_for_a_keyframe_then_passes_packets_through() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        assert_eq!(f.keyframe_needed(), Some(0));
        assert_eq!(
            f.handle(&pkt(0, 10, 1000, false), t0),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        assert_eq!(f.handle(&pkt(0, 11, 4000, true), t0), fwd(11, 4000));
        assert_eq!(f.keyframe_needed(), None);
        assert_eq!(f.handle(&pkt(0, 12, 4000, false), t0), fwd(12, 4000));
        assert_eq!(
            f.handle(&pkt(1, 500, 9, true), t0),
            Decision::Drop(DropReason::NotSelectedLayer)
        );
    }

    #[test]
    fn duplicates_are_dropped_and_late_packets_forwarded_once() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        f.handle(&pkt(0, 100, 0, true), t0);
        f.handle(&pkt(0, 102, 0, false), t0);
        assert_eq!(
            f.handle(&pkt(0, 102, 0, false), t0),
            Decision::Drop(DropReason::Duplicate)
        );
        assert_eq!(
            f.handle(&pkt(0, 101, 0, false), t0),
            fwd(101, 0),
            "late but new"
        );
        assert_eq!(
            f.handle(&pkt(0, 101, 0, false), t0),
            Decision::Drop(DropReason::Duplicate)
        );
        assert_eq!(
            f.handle(&pkt(0, 100, 0, false), t0),
            Decision::Drop(DropReason::Duplicate)
        );
        f.handle(&pkt(0, 200 + WINDOW, 0, false), t0);
        assert_eq!(
            f.handle(&pkt(0, 130, 0, false), t0),
            Decision::Drop(DropReason::TooOld)
        );
    }

    /// A packet lost on the way in comes back by NACK, maybe after several tries: hundreds of
    /// packets later on a busy layer. It is forwarded once (the subscriber is still asking for
    /// it), never dropped as too old while the retransmission history could still hold it.
    #[test]
    fn a_repair_that_comes_late_is_forwarded_once() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        f.handle(&pkt(0, 1000, 0, true), t0);
        for seq in 1002..1400 {
            assert!(matches!(
                f.handle(&pkt(0, seq, 0, false), t0),
                Decision::Forward(_)
            ));
        }
        assert_eq!(
            f.handle(&pkt(0, 1001, 0, false), t0),
            fwd(1001, 0),
            "late repair"
        );
        assert_eq!(
            f.handle(&pkt(0, 1001, 0, false), t0),
            Decision::Drop(DropReason::Duplicate)
        );
        assert_eq!(
            f.handle(&pkt(0, 1399, 0, false), t0),
            Decision::Drop(DropReason::Duplicate)
        );
        assert!(
            !matches!(f.handle(&pkt(0, 999, 0, false), t0), Decision::Forward(_)),
            "a packet from before the keyframe it started on is not forwarded"
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        assert_eq!(
            f.handle(&pkt(0, 65535, u32::MAX, true), t0),
            fwd(65535, u32::MAX)
        );
        assert_eq!(f.handle(&pkt(0, 0, 2999, false), t0), fwd(0, 2999));
        assert_eq!(
            f.handle(&pkt(0, 65535, u32::MAX, false), t0),
            Decision::Drop(DropReason::Duplicate)
        );
    }

    #[test]
    fn a_layer_switch_happens_on_the_target_keyframe_and_keeps_the_output_continuous() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        f.handle(&pkt(0, 1000, 50_000, true), t0);
        assert_eq!(
            f.handle(&pkt(0, 1001, 53_000, false), t0 + Duration::from_millis(33)),
            fwd(1001, 53_000)
        );
        f.set_target(Some(2));
        assert_eq!(f.keyframe_needed(), Some(2));
        // Until layer 2's keyframe, layer 0 keeps flowing and layer 2 waits.
        assert_eq!(
            f.handle(
                &pkt(2, 7000, 900_000, false),
                t0 + Duration::from_millis(40)
            ),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        assert_eq!(
            f.handle(&pkt(0, 1002, 56_000, false), t0 + Duration::from_millis(66)),
            fwd(1002, 56_000)
        );
        // Layer 2's keyframe 34 ms later: sequence continues at 1003; timestamp advances 34 ms (3060 ticks).
        assert_eq!(
            f.handle(
                &pkt(2, 7001, 903_000, true),
                t0 + Duration::from_millis(100)
            ),
            fwd(1003, 59_060)
        );
        assert_eq!(f.current_layer(), Some(2));
        assert_eq!(
            f.handle(
                &pkt(2, 7002, 906_000, false),
                t0 + Duration::from_millis(133)
            ),
            fwd(1004, 62_060)
        );
        // The old layer is not selected any more.
        assert_eq!(
            f.handle(
                &pkt(0, 1003, 59_000, false),
                t0 + Duration::from_millis(133)
            ),
            Decision::Drop(DropReason::NotSelectedLayer)
        );
    }

    #[test]
    fn pause_and_resume_continue_the_sequence() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(48_000, Some(0));
        f.handle(&pkt(0, 10, 960, true), t0);
        f.set_target(None);
        assert_eq!(
            f.handle(&pkt(0, 11, 1920, true), t0),
            Decision::Drop(DropReason::Paused)
        );
        f.set_target(Some(0));
        assert_eq!(f.keyframe_needed(), Some(0));
        // One second later, input has moved on by 50 packets; output continues at 11.
        assert_eq!(
            f.handle(&pkt(0, 60, 48_960, true), t0 + Duration::from_secs(1)),
            fwd(11, 960 + 48_000)
        );
    }

    #[test]
    fn a_publisher_restart_continues_the_output() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        f.handle(&pkt(0, 40_000, 7, true), t0);
        f.reset_source();
        // The new stream starts at random values; output continues at 40_001 and 10 ms later.
        assert_eq!(
            f.handle(&pkt(0, 3, 123_456, true), t0 + Duration::from_millis(10)),
            fwd(40_001, 7 + 900)
        );
        assert_eq!(
            f.handle(&pkt(0, 4, 126_456, false), t0 + Duration::from_millis(43)),
            fwd(40_002, 7 + 900 + 3000)
        );
    }

    #[test]
    fn dropped_temporal_layers_leave_no_sequence_gap() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        f.set_max_temporal(0);
        let tl = |seq: u16, tid: u8| PacketInfo {
            layer: 0,
            sequence: seq,
            timestamp: u32::from(seq),
            marker: false,
            keyframe: seq == 1,
            temporal_id: Some(tid),
            picture: None,
        };
        assert_eq!(f.handle(&tl(1, 0), t0), fwd(1, 1));
        assert_eq!(
            f.handle(&tl(2, 1), t0),
            Decision::Drop(DropReason::TemporalLayer)
        );
        assert_eq!(f.handle(&tl(3, 0), t0), fwd(2, 3));
        assert_eq!(
            f.handle(&tl(4, 1), t0),
            Decision::Drop(DropReason::TemporalLayer)
        );
        assert_eq!(
            f.handle(&tl(5, 1), t0),
            Decision::Drop(DropReason::TemporalLayer)
        );
        assert_eq!(f.handle(&tl(6, 0), t0), fwd(3, 6));
        // A late base-layer packet from before the drops keeps its own mapping.
        assert_eq!(
            f.handle(&tl(4, 1), t0),
            Decision::Drop(DropReason::Duplicate)
        );
    }

    #[test]
    fn late_packets_use_the_offset_of_their_time() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        f.set_max_temporal(0);
        let tl = |seq: u16, tid: u8| PacketInfo {
            layer: 0,
            sequence: seq,
            timestamp: 0,
            marker: false,
            keyframe: seq == 1,
            temporal_id: Some(tid),
            picture: None,
        };
        f.handle(&tl(1, 0), t0);
        // 2 is missing for now; 3 is a dropped TL1 packet; 4 forwarded.
        assert_eq!(
            f.handle(&tl(3, 1), t0),
            Decision::Drop(DropReason::TemporalLayer)
        );
        assert_eq!(
            f.handle(&tl(4, 0), t0),
            Decision::Forward(Rewrite {
                sequence: 3,
                timestamp: 0,
                marker: false,
                picture: None,
            })
        );
        // 2 arrives late: before the drop, so offset 0 applies.
        assert_eq!(
            f.handle(&tl(2, 0), t0),
            Decision::Forward(Rewrite {
                sequence: 2,
                timestamp: 0,
                marker: false,
                picture: None,
            })
        );
    }

    /// Each simulcast layer numbers its pictures on its own; across a switch the subscriber must
    /// see one stream: the new layer's keyframe is the picture after the last one sent, and its
    /// TL0PICIDX the next base-layer index.
    #[test]
    fn vp8_picture_ids_and_tl0_continue_across_a_layer_switch() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, Some(0));
        let packet = |layer: u8, seq: u16, keyframe: bool, id: u16, tl0: u8| PacketInfo {
            layer,
            sequence: seq,
            timestamp: u32::from(seq) * 3000,
            marker: true,
            keyframe,
            temporal_id: Some(0),
            picture: Some(Picture {
                id,
                wide: true,
                tl0: Some(tl0),
            }),
        };
        let picture = |d: Decision| match d {
            Decision::Forward(r) => r.picture.map(|p| (p.id, p.tl0)),
            Decision::Drop(_) => panic!("dropped"),
        };
        // Layer 0 numbers from 32_765 (wrapping at 15 bits), TL0PICIDX from 254.
        assert_eq!(
            picture(f.handle(&packet(0, 1, true, 32_765, 254), t0)),
            Some((32_765, Some(254)))
        );
        assert_eq!(
            picture(f.handle(&packet(0, 2, false, 32_766, 255), t0)),
            Some((32_766, Some(255)))
        );
        f.set_target(Some(2));
        // Layer 2 numbers from 7, TL0PICIDX from 90; its keyframe follows on.
        assert_eq!(
            f.handle(&packet(2, 500, false, 6, 89), t0),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        assert_eq!(
            picture(f.handle(&packet(2, 501, true, 7, 90), t0)),
            Some((32_767, Some(0)))
        );
        assert_eq!(
            picture(f.handle(&packet(2, 502, false, 8, 91), t0)),
            Some((0, Some(1)))
        );
        // A 7-bit picture id wraps at 128.
        let mut narrow = Forwarder::new(90_000, Some(0));
        let small = |layer: u8, seq: u16, keyframe: bool, id: u16| PacketInfo {
            picture: Some(Picture {
                id,
                wide: false,
                tl0: None,
            }),
            ..packet(layer, seq, keyframe, 0, 0)
        };
        assert_eq!(
            picture(narrow.handle(&small(0, 1, true, 127), t0)),
            Some((127, None))
        );
        narrow.set_target(Some(1));
        assert_eq!(
            picture(narrow.handle(&small(1, 9, true, 40), t0)),
            Some((0, None))
        );
    }
}
