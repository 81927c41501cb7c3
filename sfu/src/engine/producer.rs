//! A producer: one published track on this shard, received from its publisher's connection
//! (local) or piped from the shard its publisher is on, and the list of its consumers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::shared::marshal::MarshalSize;

use crate::ids::{ConsumerId, ProducerId, RoomId, TrackKey};
use crate::media::keyframes::KeyframeRequests;
use crate::media::rate::RateMeter;
use crate::media::retransmit::History;

/// Where a producer's packets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The publisher is on this shard: its connection's receiver.
    Local { receiver: RTCRtpReceiverId },
    /// The publisher is on shard `shard`, which pipes the packets here.
    Piped { shard: usize },
}

/// A layer without a packet for this long, while another layer has them, is paused.
pub(crate) const SILENT_AFTER: Duration = Duration::from_millis(700);

/// One published track on this shard.
pub(crate) struct Producer {
    pub(crate) id: ProducerId,
    pub(crate) key: TrackKey,
    pub(crate) room: RoomId,
    pub(crate) kind: RtpCodecKind,
    pub(crate) codec: RTCRtpCodec,
    pub(crate) origin: Origin,
    /// (SSRC, simulcast layer) of its streams (a piped producer knows none).
    pub(crate) ssrcs: Vec<(u32, u8)>,
    /// Keyframe requests, per simulcast layer (a switch needs the keyframe of one layer only).
    pub(crate) keyframes: [KeyframeRequests; 3],
    /// Forwardable extensions as the publisher numbers them: (id, URI). Read on the first packet
    /// of a local producer, carried with piped packets; shared so that forwarding does not copy it.
    pub(crate) extensions: Option<Arc<[(u8, String)]>>,
    /// The publisher's id of the audio level extension.
    pub(crate) audio_level_id: Option<u8>,
    /// Bitrate of each simulcast layer as received (new packets only, not retransmissions).
    pub(crate) rates: [RateMeter; 3],
    /// Highest sequence number seen on each layer.
    highest_seq: [Option<u16>; 3],
    /// Inside a keyframe on each layer (from its first packet to its marker): not counted in
    /// the layer's rate, whose keyframe spikes would otherwise make a layer look dearer than it is.
    in_keyframe: [bool; 3],
    /// When each layer last carried a packet with a payload (keyframes included).
    pub(crate) last_payload: [Option<Instant>; 3],
    /// Paused by the server: its packets go nowhere.
    pub(crate) paused: bool,
    /// Its consumers on this shard (subscribers' and in-process ones).
    pub(crate) consumers: Vec<ConsumerId>,
    /// Its recent packets per layer, to answer subscribers' NACKs (video only).
    pub(crate) history: Option<Box<[History; 3]>>,
}

impl Producer {
    pub(crate) fn new(
        id: ProducerId,
        key: TrackKey,
        room: RoomId,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        origin: Origin,
    ) -> Producer {
        Producer {
            id,
            key,
            room,
            kind,
            codec,
            origin,
            ssrcs: Vec::new(),
            keyframes: Default::default(),
            extensions: None,
            audio_level_id: None,
            rates: Default::default(),
            highest_seq: [None; 3],
            in_keyframe: [false; 3],
            last_payload: [None; 3],
            paused: false,
            consumers: Vec::new(),
            history: (kind == RtpCodecKind::Video).then(Box::default),
        }
    }

    pub(crate) fn video(&self) -> bool {
        self.kind == RtpCodecKind::Video
    }

    /// The simulcast layer of a stream (0 when unknown).
    pub(crate) fn layer_of(&self, ssrc: u32) -> u8 {
        self.ssrcs
            .iter()
            .find(|(s, _)| *s == ssrc)
            .map_or(0, |(_, l)| *l)
    }

    /// The highest layer it has (by its streams, or by the layers packets arrived on).
    pub(crate) fn highest_layer(&self, now: Instant) -> u8 {
        self.ssrcs
            .iter()
            .map(|(_, l)| *l)
            .chain((0..3u8).filter(|l| self.rates[usize::from(*l)].bps(now).is_some()))
            .max()
            .unwrap_or(0)
    }

    /// Counts a packet in its layer's bitrate, unless it is a retransmission (not newer than what
    /// the layer had), part of a keyframe (`keyframe_start`: its first packet), or padding alone
    /// (a browser pads a paused layer's stream to probe bandwidth: that layer carries no video).
    pub(crate) fn count(
        &mut self,
        layer: u8,
        packet: &rtp::Packet,
        keyframe_start: bool,
        now: Instant,
    ) {
        if packet.payload.is_empty() {
            return;
        }
        let l = usize::from(layer.min(2));
        self.last_payload[l] = Some(now);
        let seq = packet.header.sequence_number;
        if self.highest_seq[l].is_some_and(|h| seq.wrapping_sub(h).wrapping_sub(1) >= 0x8000) {
            return;
        }
        self.highest_seq[l] = Some(seq);
        if keyframe_start && self.video() {
            self.in_keyframe[l] = true;
        }
        if self.in_keyframe[l] {
            if packet.header.marker {
                self.in_keyframe[l] = false;
            }
            return;
        }
        self.rates[l].add(packet.header.marshal_size() + packet.payload.len(), now);
    }

    /// Whether `layer` carried nothing for [`SILENT_AFTER`] while another layer did: the
    /// publisher paused it (Chromium stops its top layer when its own estimate falls).
    pub(crate) fn layer_silent(&self, layer: u8, now: Instant) -> bool {
        let recent = |at: &Option<Instant>| {
            at.is_some_and(|t| now.saturating_duration_since(t) < SILENT_AFTER)
        };
        !recent(&self.last_payload[usize::from(layer.min(2))])
            && self.last_payload.iter().any(recent)
    }

    /// A keyframe started on `layer`: requests for it are satisfied.
    pub(crate) fn on_keyframe(&mut self, layer: u8) {
        self.keyframes[usize::from(layer.min(2))].on_keyframe();
    }

    /// When a keyframe request of any layer is next due.
    pub(crate) fn next_keyframe_timeout(&self) -> Option<Instant> {
        self.keyframes
            .iter()
            .filter_map(KeyframeRequests::next_timeout)
            .min()
    }

    /// The layers it has streams for (layer 0 alone for a piped producer or one without simulcast).
    pub(crate) fn layers(&self) -> impl Iterator<Item = u8> + '_ {
        let known = self.ssrcs.iter().map(|(_, l)| *l);
        let any = self.ssrcs.is_empty().then_some(0);
        known.chain(any)
    }

    /// Keeps `packet` of `layer` for retransmission (video only), replacing the oldest.
    pub(crate) fn remember(&mut self, layer: u8, packet: rtp::Packet, now: Instant) {
        if let Some(history) = &mut self.history {
            history[usize::from(layer.min(2))].insert(packet, now);
        }
    }

    /// A packet of `layer` kept for retransmission.
    pub(crate) fn recall(&self, layer: u8, sequence: u16, now: Instant) -> Option<&rtp::Packet> {
        self.history.as_ref()?[usize::from(layer.min(2))].get(sequence, now)
    }
}
