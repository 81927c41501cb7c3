//! Sharing one subscriber's available bandwidth among its consumers, by priority, in two phases
//! (as mediasoup's transport does): first every consumer in priority order gets its lowest layer
//! if it fits; then, while bandwidth remains, consumers move up: higher priorities first, as far
//! as they want, equal priorities together one layer at a time. A consumer that gets nothing is
//! paused. Hysteresis both ways, so allocations do not flap around a threshold: an upgrade needs
//! 10 % of headroom, and the layer a consumer is on is kept until it is 25 % over what is left.
//!
//! Data in, data out: the caller commits the result (sets forwarder targets).

/// Extra headroom an upgrade needs beyond the layer's bitrate (10 %).
pub const UPGRADE_MARGIN: f64 = 1.10;
/// How far a layer's bitrate may exceed the bandwidth left before a consumer already on it
/// is moved down (25 %): layer bitrates are measured, and they jitter.
pub const KEEP_TOLERANCE: f64 = 1.25;

/// What one consumer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// Higher is served first (speaker or pinned > grid > thumbnail).
    pub priority: u8,
    /// Measured bitrate of each layer (bits per second); `None` for a layer not being sent.
    pub layer_bitrates: [Option<u64>; 3],
    /// The highest layer the subscriber wants (from its tile size).
    pub preferred: u8,
    /// The layer it is forwarded now, if any.
    pub current: Option<u8>,
}

impl Need {
    /// What moving to (or staying on) `layer` requires to be left: more than its bitrate for an
    /// upgrade, less for the layer it is on now (hysteresis both ways).
    fn cost(&self, layer: u8) -> Option<u64> {
        let bps = self.bitrate(layer)?;
        Some(match self.current {
            Some(c) if layer == c => (bps as f64 / KEEP_TOLERANCE) as u64,
            Some(c) if layer < c => bps,
            _ => (bps as f64 * UPGRADE_MARGIN) as u64,
        })
    }

    fn bitrate(&self, layer: u8) -> Option<u64> {
        self.layer_bitrates[usize::from(layer)]
    }

    fn layers(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=self.preferred.min(2)).filter(|l| self.layer_bitrates[usize::from(*l)].is_some())
    }
}

/// The layer each consumer gets (same order as `needs`), `None` to pause it. Returns the bits per
/// second left over. `order` is scratch space (reused to avoid allocating).
pub fn allocate(
    available_bps: u64,
    needs: &[Need],
    order: &mut Vec<usize>,
    out: &mut Vec<Option<u8>>,
) -> u64 {
    order.clear();
    order.extend(0..needs.len());
    order.sort_by_key(|&i| std::cmp::Reverse(needs[i].priority));
    out.clear();
    out.resize(needs.len(), None);
    let mut left = available_bps;

    // Phase 1: the lowest layer for everyone who fits, by priority.
    for &i in order.iter() {
        let need = &needs[i];
        if let Some(lowest) = need.layers().next()
            && let (Some(cost), Some(bps)) = (need.cost(lowest), need.bitrate(lowest))
            && cost <= left
        {
            out[i] = Some(lowest);
            left = left.saturating_sub(bps);
        }
    }
    // Phase 2: higher priorities climb first, as far as they want; consumers of equal priority
    // climb together, one layer at a time.
    let mut group_start = 0;
    while group_start < order.len() {
        let priority = needs[order[group_start]].priority;
        let group_end = order[group_start..]
            .iter()
            .position(|&i| needs[i].priority != priority)
            .map_or(order.len(), |n| group_start + n);
        loop {
            let mut changed = false;
            for &i in &order[group_start..group_end] {
                let need = &needs[i];
                let Some(have) = out[i] else { continue };
                let Some(next) = need.layers().find(|l| *l > have) else {
                    continue;
                };
                let (Some(cost), Some(have_bps), Some(next_bps)) =
                    (need.cost(next), need.bitrate(have), need.bitrate(next))
                else {
                    continue;
                };
                if cost.saturating_sub(have_bps) <= left {
                    out[i] = Some(next);
                    left = left.saturating_sub(next_bps.saturating_sub(have_bps));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        group_start = group_end;
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    const KBPS: u64 = 1000;

    fn sim(priority: u8, preferred: u8, current: Option<u8>) -> Need {
        Need {
            priority,
            layer_bitrates: [Some(150 * KBPS), Some(500 * KBPS), Some(1500 * KBPS)],
            preferred,
            current,
        }
    }

    fn run(available: u64, needs: &[Need]) -> (Vec<Option<u8>>, u64) {
        let (mut order, mut out) = (Vec::new(), Vec::new());
        let left = allocate(available, needs, &mut order, &mut out);
        (out, left)
    }

    #[test]
    fn plenty_of_bandwidth_gives_everyone_their_preferred_layer() {
        let needs = [sim(2, 2, Some(2)), sim(1, 0, Some(0)), sim(1, 1, Some(1))];
        assert_eq!(
            run(10_000 * KBPS, &needs),
            (vec![Some(2), Some(0), Some(1)], 10_000 * KBPS - 2150 * KBPS)
        );
    }

    #[test]
    fn the_speaker_is_served_first_then_the_rest_step_up() {
        // 2 Mbps: everyone gets the low layer (450k), then the speaker climbs to 1.5M (1.8M total),
        // the others cannot afford 500k.
        let needs = [sim(1, 2, Some(0)), sim(3, 2, Some(2)), sim(1, 2, Some(0))];
        let (layers, left) = run(2000 * KBPS, &needs);
        assert_eq!(layers, vec![Some(0), Some(2), Some(0)]);
        assert_eq!(left, 2000 * KBPS - 1800 * KBPS);
    }

    #[test]
    fn without_room_for_everyone_low_priority_consumers_are_paused() {
        let needs = [sim(1, 2, Some(0)), sim(3, 2, Some(0)), sim(2, 2, Some(0))];
        // 320 kbps: the two highest priorities get the low layer; the thumbnail is paused.
        assert_eq!(run(320 * KBPS, &needs).0, vec![None, Some(0), Some(0)]);
    }

    #[test]
    fn upgrades_need_headroom_but_keeping_a_layer_does_not() {
        // Exactly 500k available: a consumer already on layer 1 keeps it...
        assert_eq!(run(500 * KBPS, &[sim(1, 2, Some(1))]).0, vec![Some(1)]);
        // ...one on layer 0 does not go up to it without the 10 % margin.
        assert_eq!(run(500 * KBPS, &[sim(1, 2, Some(0))]).0, vec![Some(0)]);
        assert_eq!(run(560 * KBPS, &[sim(1, 2, Some(0))]).0, vec![Some(1)]);
    }

    #[test]
    fn a_layer_is_kept_until_it_is_a_quarter_over_the_bandwidth() {
        // Layer 1 is 500k: kept down to 400k available, left below that.
        assert_eq!(run(400 * KBPS, &[sim(1, 2, Some(1))]).0, vec![Some(1)]);
        assert_eq!(run(399 * KBPS, &[sim(1, 2, Some(1))]).0, vec![Some(0)]);
        // The same for the lowest layer: kept at 120k, paused below.
        assert_eq!(run(120 * KBPS, &[sim(1, 2, Some(0))]).0, vec![Some(0)]);
        assert_eq!(run(119 * KBPS, &[sim(1, 2, Some(0))]).0, vec![None]);
    }

    #[test]
    fn equal_priorities_climb_together() {
        let needs = [sim(1, 2, Some(0)), sim(1, 2, Some(0))];
        // 1.2 Mbps: both reach layer 1 (1 Mbps) rather than one reaching layer 2.
        assert_eq!(run(1200 * KBPS, &needs).0, vec![Some(1), Some(1)]);
    }

    #[test]
    fn missing_layers_are_skipped() {
        let mut n = sim(1, 2, None);
        n.layer_bitrates = [None, Some(500 * KBPS), Some(1500 * KBPS)];
        assert_eq!(run(700 * KBPS, &[n]).0, vec![Some(1)]);
    }
}
