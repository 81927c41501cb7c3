//! Reception reports that keep a publisher's simulcast streams identifiable across
//! renegotiations.
//!
//! A browser sends a simulcast layer's SSRC undeclared: its packets name their section and layer
//! in the `mid` and `rid` header extensions, and `rtc` binds the SSRC to its layer from the first
//! of them. libwebrtc stops writing those two extensions once a reception report block
//! acknowledges the SSRC. `rtc` forgets its bindings on every renegotiation of the connection
//! (it describes each simulcast section afresh, its SSRCs unknown again), so a publisher whose
//! connection is renegotiated after that point (someone else starts publishing, a screen share
//! is added) has its video dropped by `rtc` from then on: nothing in its packets says any more
//! what they are. Withholding the report blocks of received video keeps the browser naming every
//! packet (a few bytes each), and `rtc` binds the SSRC again from the next packet after a
//! renegotiation.
//!
//! Audio keeps its report blocks (its SSRC is declared in the SDP, and they give the browser
//! the round-trip time); video's loss is reported to the browser by transport-wide congestion
//! feedback, which is unaffected.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet as IPacket, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;

/// Removes the report blocks of received video streams from outgoing receiver and sender
/// reports. Placed wire-ward of the report generators.
#[derive(Default)]
pub(crate) struct WithholdVideoReports {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    /// SSRCs of the video streams this connection receives.
    video: Vec<u32>,
}

impl WithholdVideoReports {
    fn withhold(&self, packets: &mut [Box<dyn rtc::rtcp::Packet>]) {
        for p in packets.iter_mut() {
            let any = p.as_any();
            if let Some(rr) = any.downcast_ref::<ReceiverReport>()
                && rr.reports.iter().any(|r| self.video.contains(&r.ssrc))
            {
                let mut rr = rr.clone();
                rr.reports.retain(|r| !self.video.contains(&r.ssrc));
                *p = Box::new(rr);
            } else if let Some(sr) = any.downcast_ref::<SenderReport>()
                && sr.reports.iter().any(|r| self.video.contains(&r.ssrc))
            {
                let mut sr = sr.clone();
                sr.reports.retain(|r| !self.video.contains(&r.ssrc));
                *p = Box::new(sr);
            }
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for WithholdVideoReports {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if !self.video.is_empty()
            && let IPacket::Rtcp(packets) = &mut msg.message.packet
        {
            self.withhold(packets);
        }
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for WithholdVideoReports {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        // `rtc` binds a simulcast layer again after each renegotiation.
        if info.mime_type.to_ascii_lowercase().starts_with("video/")
            && !self.video.contains(&info.ssrc)
        {
            self.video.push(info.ssrc);
        }
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.video.retain(|s| *s != info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::reception_report::ReceptionReport;
    use rtc::shared::TransportContext;
    use rtc::shared::TransportMessage;

    fn stream(ssrc: u32, mime: &str) -> StreamInfo {
        StreamInfo {
            ssrc,
            mime_type: mime.into(),
            ..Default::default()
        }
    }

    fn block(ssrc: u32) -> ReceptionReport {
        ReceptionReport {
            ssrc,
            ..Default::default()
        }
    }

    fn blocks(msg: &TaggedPacket) -> Vec<Vec<u32>> {
        let IPacket::Rtcp(packets) = &msg.message.packet else {
            panic!("RTCP expected");
        };
        packets
            .iter()
            .map(|p| {
                let any = p.as_any();
                let reports = any
                    .downcast_ref::<ReceiverReport>()
                    .map(|r| r.reports.clone())
                    .or_else(|| {
                        any.downcast_ref::<SenderReport>()
                            .map(|s| s.reports.clone())
                    })
                    .expect("a report");
                reports.iter().map(|r| r.ssrc).collect()
            })
            .collect()
    }

    #[test]
    fn reports_leave_out_received_video_and_keep_audio() {
        let mut w = WithholdVideoReports::default();
        w.bind_remote_stream(&stream(10, "video/VP8"));
        w.bind_remote_stream(&stream(11, "video/VP8"));
        w.bind_remote_stream(&stream(20, "audio/opus"));
        // Bound again after a renegotiation: still one entry.
        w.bind_remote_stream(&stream(10, "video/VP8"));
        let rr = ReceiverReport {
            ssrc: 1,
            reports: vec![block(10), block(20), block(11)],
            ..Default::default()
        };
        let sr = SenderReport {
            ssrc: 2,
            reports: vec![block(11), block(20)],
            ..Default::default()
        };
        let packets: Vec<Box<dyn rtc::rtcp::Packet>> = vec![Box::new(rr), Box::new(sr)];
        let msg = TransportMessage {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(IPacket::Rtcp(packets)),
        };
        w.handle_write(msg).unwrap();
        let out = w.poll_write().expect("the reports go on");
        assert_eq!(blocks(&out), vec![vec![20], vec![20]]);
        // A video stream no longer received is reported again if bound anew as audio would be.
        w.unbind_remote_stream(&stream(11, "video/VP8"));
        assert_eq!(w.video, vec![10]);
    }
}
