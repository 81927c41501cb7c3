//! Sharing each subscriber's bandwidth estimate among its consumers (the decisions are
//! [`crate::media::allocator`]'s; this commits them to the forwarders), and the periodic review
//! that also keeps in-process consumers on the best layer there is.

use std::time::{Duration, Instant};

use crate::ids::PeerId;
use crate::media::allocator::{self, Need};

use super::Engine;
use super::consumer::{Priority, Sink};

/// How often subscribers' layers are reviewed without feedback.
pub(crate) const REVIEW_INTERVAL: Duration = Duration::from_secs(1);

/// A consumer stays on a layer at least this long before the bandwidth moves it again (unless
/// the path is losing heavily, or the subscriber asked for another layer): a switch costs a
/// keyframe, and keyframes cost bandwidth.
pub(crate) const MIN_LAYER_TIME: Duration = Duration::from_secs(4);

impl Engine {
    /// Reviews every subscriber's layers: layer bitrates change without feedback, and a
    /// subscriber whose consumers are all paused sends no feedback. Its estimate grows as on a
    /// clear path, so that paused consumers are tried again (and cut back at once if the path is
    /// still full). In-process consumers move to the best layer they may take.
    pub(crate) fn review(&mut self, now: Instant) {
        self.next_review = Some(now + REVIEW_INTERVAL);
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.scope_peer(id);
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.feedback_seen && !std::mem::take(&mut peer.fresh_feedback) {
                peer.bwe.on_idle(now);
            }
            self.reallocate(id, now);
        }
        let mut keyframes = Vec::new();
        for c in self.router.consumers.values_mut() {
            let (Sink::Local(_), Some(preferred)) = (&c.sink, c.preferred) else {
                continue;
            };
            let Some(producer) = self.router.producers.get(&c.producer) else {
                continue;
            };
            if !producer.video() {
                continue;
            }
            let target = Some(preferred.min(producer.highest_layer(now)));
            if c.forwarder.target_layer() != target {
                c.forwarder.set_target(target);
                if let Some(layer) = c.forwarder.keyframe_needed() {
                    keyframes.push((c.producer, layer));
                }
            }
        }
        for (pid, layer) in keyframes {
            self.request_keyframe(pid, layer, now);
        }
        self.census();
    }

    /// Each subscriber's estimate and video layers, for metrics.
    fn census(&mut self) {
        let mut census = Vec::with_capacity(self.peers.len());
        for (id, peer) in &self.peers {
            let mut status = crate::stats::SubscriberStatus {
                peer: *id,
                estimate_bps: peer.feedback_seen.then(|| peer.bwe.estimate_bps()),
                video_on_layer: [0; 3],
                video_without_layer: 0,
            };
            for c in peer
                .consumers
                .iter()
                .filter_map(|c| self.router.consumers.get(c))
            {
                if !self
                    .router
                    .producers
                    .get(&c.producer)
                    .is_some_and(|p| p.video())
                {
                    continue;
                }
                match c.forwarder.current_layer() {
                    Some(l) => status.video_on_layer[usize::from(l.min(2))] += 1,
                    None => status.video_without_layer += 1,
                }
            }
            census.push(status);
        }
        self.outputs.push_back(super::Output::Census(census));
    }

    /// Sets the target layer of each of `subscriber`'s video consumers. Until congestion feedback
    /// arrives from the subscriber, the target is its preferred layer; afterwards, the bandwidth
    /// estimate (less what its audio takes) is shared by priority ([`allocator::allocate`]), and
    /// a consumer that gets nothing is paused if the path is losing heavily (otherwise it keeps
    /// its lowest layer). A consumer that must switch asks for a keyframe.
    pub(crate) fn reallocate(&mut self, subscriber: PeerId, now: Instant) {
        let Some(sub) = self.peers.get(&subscriber) else {
            return;
        };
        let speaker = self.router.rooms.get(&sub.room).and_then(|r| r.speaker);
        let mut audio_bps = 0u64;
        let mut needs: Vec<Need> = Vec::new();
        // (consumer, index in `needs` or the fixed target)
        let mut plan = Vec::new();
        for cid in &sub.consumers {
            let Some(c) = self.router.consumers.get(cid) else {
                continue;
            };
            let Some(producer) = self.router.producers.get(&c.producer) else {
                continue;
            };
            if !producer.video() {
                audio_bps += producer.rates[0].bps(now).unwrap_or(0);
                continue;
            }
            // Layers with packets (a producer piped from another shard knows no SSRCs).
            let mut layer_bitrates = [None; 3];
            for (l, rate) in producer.rates.iter().enumerate() {
                layer_bitrates[l] = rate.bps(now);
            }
            let highest = producer.highest_layer(now);
            let Some(preferred) = c.preferred.filter(|_| !c.paused) else {
                plan.push((*cid, Err(None), false));
                continue;
            };
            if !sub.feedback_seen {
                plan.push((*cid, Err(Some(preferred.min(highest))), false));
                continue;
            }
            let priority = if speaker == Some(c.source.peer) {
                c.priority.max(Priority::Pinned)
            } else {
                c.priority
            };
            // The layer forwarded now went silent (a publisher's browser stops its top layer
            // when its own estimate falls) while others go on: waiting would leave the
            // subscriber without video.
            let silent = c
                .forwarder
                .current_layer()
                .is_some_and(|l| producer.layer_silent(l, now));
            plan.push((*cid, Ok(needs.len()), silent));
            needs.push(Need {
                priority: priority as u8,
                layer_bitrates,
                preferred,
                current: c.forwarder.current_layer(),
            });
        }
        let mut allocated = Vec::new();
        let lossy = sub.bwe.lossy(now);
        let congested = sub.bwe.congested(now);
        if !needs.is_empty() {
            // Without congestion seen, there is no known limit: everyone gets what they prefer.
            let mut available = sub
                .bwe
                .limit_bps(now)
                .map_or(u64::MAX, |limit| limit.saturating_sub(audio_bps));
            // A delay signal alone may hold consumers back from going up, never push them below
            // what the path is delivering (a queue that is only noise delivers everything sent;
            // a real bottleneck delivers less, and its consumers come down to it). Loss may.
            if !lossy && let Some(delivered) = sub.bwe.delivered_bps() {
                available = available.max(delivered.saturating_sub(audio_bps));
            }
            allocator::allocate(available, &needs, &mut Vec::new(), &mut allocated);
            // A consumer is paused (it loses its last layer) only when the path loses heavily;
            // a delay trend alone keeps it on its lowest layer.
            if !lossy {
                for (need, out) in needs.iter().zip(allocated.iter_mut()) {
                    if out.is_none() && need.current.is_some() {
                        *out = (0..3u8).find(|l| need.layer_bitrates[usize::from(*l)].is_some());
                    }
                }
            }
        }
        let connected = sub.connected;
        let mut keyframes = Vec::new();
        for (cid, target, silent) in plan {
            let target = match target {
                Ok(n) => allocated[n],
                Err(fixed) => fixed,
            };
            let Some(c) = self.router.consumers.get_mut(&cid) else {
                continue;
            };
            let asked = std::mem::take(&mut c.preference_changed);
            if c.forwarder.target_layer() == target {
                continue;
            }
            // Moved by the bandwidth (not by the subscriber, not down on a congested or losing
            // path, not off a silent layer): not before it has been on its layer for a while.
            let settled = c
                .layer_since
                .is_none_or(|t| now.saturating_duration_since(t) >= MIN_LAYER_TIME);
            let current = c.forwarder.current_layer();
            let down = match (target, current) {
                (Some(t), Some(c)) => t < c,
                (None, Some(_)) => true,
                _ => false,
            };
            let urgent = lossy || silent || (down && congested);
            if !asked && !urgent && !settled && current.is_some() {
                continue;
            }
            c.forwarder.set_target(target);
            // Only for a connected subscriber: a keyframe that arrives before its DTLS is up is
            // lost to it, and the request would hold the stream's next one back by the request
            // interval (500 ms more before a newcomer's first picture). A newcomer asks with its
            // first forwarded packet instead.
            if connected && let Some(layer) = c.forwarder.keyframe_needed() {
                keyframes.push((c.producer, layer));
            }
        }
        for (pid, layer) in keyframes {
            self.request_keyframe(pid, layer, now);
        }
    }
}
