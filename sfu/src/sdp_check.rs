//! Checks a peer's session descriptions before `rtc` applies them.
//!
//! `rtc` changes a connection's signaling state before it finds most faults of a description
//! (a missing `a=mid`, missing ICE credentials, a bad `a=extmap`), and it answers descriptions
//! that parse but can never connect (a passive DTLS side facing our passive side, an `md5`
//! fingerprint, two sections with one mid, an offer from another connection). This module
//! refuses those first, so that a refused description changes nothing.
//!
//! It reads descriptions with the parser `rtc` uses (`rtc::sdp`) and mirrors how `rtc` reads
//! them (which attribute wins, which sections count), so what passes here is what `rtc`
//! applies. Pure: no connection, no clock; it never mutates anything.

use std::io::Cursor;

use rtc::sdp::description::media::MediaDescription;
use rtc::sdp::description::session::{ATTR_KEY_INACTIVE, SessionDescription};
use rtc::sdp::extmap::ExtMap;

/// Why a description is refused. The text is shown to the peer's user (through the gateway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SdpError {
    #[error("not a session description: {0}")]
    Unparsable(String),
    #[error("the description does not end with a line break: it was cut off")]
    CutOff,
    #[error("the description has no media section")]
    NoMedia,
    #[error("media section {index} has no a=mid")]
    MissingMid { index: usize },
    #[error("a=mid:{0} names two media sections")]
    DuplicateMid(String),
    #[error("no a=ice-ufrag")]
    MissingIceUfrag,
    #[error("no a=ice-pwd")]
    MissingIcePwd,
    #[error("media sections with different a=ice-ufrag or a=ice-pwd")]
    ConflictingIce,
    #[error("a=ice-ufrag must be 4 to 256 ICE characters")]
    BadIceUfrag,
    #[error("a=ice-pwd must be 22 to 256 ICE characters")]
    BadIcePwd,
    #[error("a=candidate:{candidate}: {reason}")]
    BadCandidate { candidate: String, reason: String },
    #[error("a=ice-lite: the SFU is ICE-lite too, nobody would check connectivity")]
    IceLite,
    #[error("no a=fingerprint")]
    MissingFingerprint,
    #[error("media sections with different a=fingerprint")]
    ConflictingFingerprints,
    #[error("a=fingerprint with hash function {0}: only sha-256, sha-384 and sha-512 are accepted")]
    WeakFingerprint(String),
    #[error("a=fingerprint:{0} is not a hash function and its hex digest")]
    BadFingerprint(String),
    #[error("a=setup:{0} in an offer: it must be actpass or active (the SFU is the DTLS server)")]
    BadSetup(String),
    #[error("a=extmap:{value}: {reason} (ids are 1 to 255)")]
    BadExtmap { value: String, reason: String },
    #[error("a=extmap id {id} is mapped twice in media section {mid}")]
    DuplicateExtmapId { id: u16, mid: String },
    #[error("media section {mid}: payload type {format}: {reason}")]
    BadPayloadType {
        mid: String,
        format: String,
        reason: String,
    },
    #[error("media section {mid} was {was} and is now {now}: a mid keeps its kind")]
    KindChanged {
        mid: String,
        was: String,
        now: String,
    },
    #[error("the answer's media sections do not match the offer's ({0})")]
    SectionsMismatch(String),
    #[error("a new connection: send it as a restart")]
    NewConnection,
}

/// What a description is in the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Offer,
    Answer,
}

/// What a description says about its connection, as `rtc` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Description {
    /// ICE username fragment and password.
    pub ice: Option<(String, String)>,
    /// DTLS certificate fingerprint: hash function (lower case) and digest (upper case).
    pub fingerprint: Option<(String, String)>,
    /// The media sections in order.
    pub sections: Vec<Section>,
}

/// One media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub mid: String,
    /// `audio`, `video`, `application`...
    pub kind: String,
}

/// Hash functions accepted in fingerprints, with their digest lengths in bytes.
const HASHES: [(&str, usize); 3] = [("sha-256", 32), ("sha-384", 48), ("sha-512", 64)];

/// Parses `sdp` with `rtc`'s parser.
fn parse(sdp: &str) -> Result<SessionDescription, SdpError> {
    SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| SdpError::Unparsable(e.to_string()))
}

/// What `sdp` says about its connection, without judging it (for descriptions already applied,
/// ours included).
pub(crate) fn describe(sdp: &str) -> Result<Description, SdpError> {
    let parsed = parse(sdp)?;
    Ok(Description {
        ice: ice_credentials(&parsed).ok(),
        fingerprint: fingerprint(&parsed).ok(),
        sections: parsed
            .media_descriptions
            .iter()
            .map(|m| Section {
                mid: mid(m).unwrap_or_default().to_owned(),
                kind: m.media_name.media.clone(),
            })
            .collect(),
    })
}

/// Checks a description from a peer, on its own: everything `rtc` would fail on after changing
/// the connection's state, and what it would accept but can never connect.
pub(crate) fn check(sdp: &str, role: Role) -> Result<Description, SdpError> {
    // RFC 8866: every line ends with a line break. One that does not was cut off.
    if !sdp.ends_with('\n') {
        return Err(SdpError::CutOff);
    }
    let parsed = parse(sdp)?;
    if parsed.media_descriptions.is_empty() {
        return Err(SdpError::NoMedia);
    }
    check_mids(&parsed)?;
    let (ufrag, pwd) = ice_credentials(&parsed)?;
    if !ice_chars(&ufrag, 4) {
        return Err(SdpError::BadIceUfrag);
    }
    if !ice_chars(&pwd, 22) {
        return Err(SdpError::BadIcePwd);
    }
    // As `rtc` reads ice-lite: a session attribute, its key trimmed.
    if parsed.attributes.iter().any(|a| a.key.trim() == "ice-lite") {
        return Err(SdpError::IceLite);
    }
    let fingerprint = fingerprint(&parsed)?;
    check_setup(&parsed, role)?;
    for m in &parsed.media_descriptions {
        check_extmaps(m)?;
        check_payload_types(m)?;
    }
    Ok(Description {
        ice: Some((ufrag, pwd)),
        fingerprint: Some(fingerprint),
        sections: parsed
            .media_descriptions
            .iter()
            .map(|m| Section {
                mid: mid(m).unwrap_or_default().to_owned(),
                kind: m.media_name.media.clone(),
            })
            .collect(),
    })
}

/// Checks a peer's new offer (already [`check`]ed) against the description of its connection
/// now: the same DTLS certificate (another one is another connection, which this one can never
/// reach: DTLS is not renegotiated), and each mid keeps its kind. New ICE credentials with the
/// same certificate are an ICE restart, which `rtc` handles.
pub(crate) fn check_renegotiation(
    current: &Description,
    offer: &Description,
) -> Result<(), SdpError> {
    if current.fingerprint.is_some() && offer.fingerprint != current.fingerprint {
        return Err(SdpError::NewConnection);
    }
    for section in &offer.sections {
        if let Some(was) = current.sections.iter().find(|s| s.mid == section.mid)
            && !was.kind.eq_ignore_ascii_case(&section.kind)
        {
            return Err(SdpError::KindChanged {
                mid: section.mid.clone(),
                was: was.kind.clone(),
                now: section.kind.clone(),
            });
        }
    }
    Ok(())
}

/// Checks a peer's answer (already [`check`]ed) to `offer` (ours) on a connection whose remote
/// side is `current`: one section per offered section, in order, same mids and kinds; the same
/// DTLS certificate and ICE credentials (the SFU never restarts ICE itself).
pub(crate) fn check_answer(
    offer: &Description,
    current: &Description,
    answer: &Description,
) -> Result<(), SdpError> {
    if answer.sections.len() != offer.sections.len() {
        return Err(SdpError::SectionsMismatch(format!(
            "{} offered, {} answered",
            offer.sections.len(),
            answer.sections.len()
        )));
    }
    for (o, a) in offer.sections.iter().zip(&answer.sections) {
        if o.mid != a.mid || !o.kind.eq_ignore_ascii_case(&a.kind) {
            return Err(SdpError::SectionsMismatch(format!(
                "{} {} offered, {} {} answered",
                o.kind, o.mid, a.kind, a.mid
            )));
        }
    }
    if current.fingerprint.is_some() && answer.fingerprint != current.fingerprint
        || current.ice.is_some() && answer.ice != current.ice
    {
        return Err(SdpError::NewConnection);
    }
    Ok(())
}

/// The section's mid, as `rtc` reads it (the first `a=mid`).
fn mid(m: &MediaDescription) -> Option<&str> {
    m.attributes
        .iter()
        .find(|a| a.key == "mid")
        .and_then(|a| a.value.as_deref())
}

/// Every section has a mid, and no two the same.
fn check_mids(parsed: &SessionDescription) -> Result<(), SdpError> {
    let mut seen: Vec<&str> = Vec::with_capacity(parsed.media_descriptions.len());
    for (index, m) in parsed.media_descriptions.iter().enumerate() {
        let mid = mid(m)
            .filter(|v| !v.is_empty())
            .ok_or(SdpError::MissingMid { index })?;
        if seen.contains(&mid) {
            return Err(SdpError::DuplicateMid(mid.to_owned()));
        }
        seen.push(mid);
    }
    Ok(())
}

/// ICE credentials as `rtc` extracts them (`extract_ice_details`): the session's, else those of
/// the first section that is not inactive, else of the first inactive one; the sections that
/// are not inactive must agree; their candidates must parse.
fn ice_credentials(parsed: &SessionDescription) -> Result<(String, String), SdpError> {
    let mut ufrag = parsed.attribute("ice-ufrag").map(String::as_str);
    let mut pwd = parsed.attribute("ice-pwd").map(String::as_str);
    let (mut backup_ufrag, mut backup_pwd) = (None, None);
    for m in &parsed.media_descriptions {
        let (u, p) = (
            m.attribute("ice-ufrag").flatten(),
            m.attribute("ice-pwd").flatten(),
        );
        if m.attribute(ATTR_KEY_INACTIVE).is_some() {
            backup_ufrag = backup_ufrag.or(u);
            backup_pwd = backup_pwd.or(p);
            continue;
        }
        ufrag = ufrag.or(u);
        pwd = pwd.or(p);
        if u.is_some() && u != ufrag || p.is_some() && p != pwd {
            return Err(SdpError::ConflictingIce);
        }
        for a in m.attributes.iter().filter(|a| a.is_ice_candidate()) {
            if let Some(value) = &a.value
                && let Err(e) = rtc::ice::candidate::unmarshal_candidate(value)
            {
                return Err(SdpError::BadCandidate {
                    candidate: value.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
    let ufrag = ufrag.or(backup_ufrag).ok_or(SdpError::MissingIceUfrag)?;
    let pwd = pwd.or(backup_pwd).ok_or(SdpError::MissingIcePwd)?;
    Ok((ufrag.to_owned(), pwd.to_owned()))
}

/// RFC 8839: `ice-char` is ALPHA / DIGIT / "+" / "/"; at least `min`, at most 256 of them.
fn ice_chars(value: &str, min: usize) -> bool {
    (min..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The DTLS fingerprint as `rtc` extracts it (`extract_fingerprint`: the session's and each
/// section's first, all equal, "hash digest"), with an accepted hash function and a digest of
/// its length.
fn fingerprint(parsed: &SessionDescription) -> Result<(String, String), SdpError> {
    let mut all: Vec<&str> = Vec::new();
    if let Some(f) = parsed.attribute("fingerprint") {
        all.push(f);
    }
    for m in &parsed.media_descriptions {
        if let Some(f) = m.attribute("fingerprint").flatten() {
            all.push(f);
        }
    }
    let first = *all.first().ok_or(SdpError::MissingFingerprint)?;
    if all.iter().any(|f| *f != first) {
        return Err(SdpError::ConflictingFingerprints);
    }
    let parts: Vec<&str> = first.split(' ').collect();
    let [hash, digest] = parts[..] else {
        return Err(SdpError::BadFingerprint(first.to_owned()));
    };
    let hash = hash.to_ascii_lowercase();
    let Some(&(_, len)) = HASHES.iter().find(|(name, _)| *name == hash) else {
        return Err(SdpError::WeakFingerprint(hash));
    };
    let bytes: Vec<&str> = digest.split(':').collect();
    let hex = |b: &&str| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit());
    if bytes.len() != len || !bytes.iter().all(hex) {
        return Err(SdpError::BadFingerprint(first.to_owned()));
    }
    Ok((hash, digest.to_ascii_uppercase()))
}

/// The SFU answers as the DTLS server (`passive`): an offer must let the peer be the client
/// (`actpass` or `active`). `rtc` reads only the sections' `a=setup`; every one is checked.
///
/// Answers are not checked: they only answer server offers, made once the first exchange has
/// settled the DTLS roles, and `rtc` reads `a=setup` only in that first exchange (webrtc-rs
/// clients answer a server's re-offer `passive` although they stay the DTLS client).
fn check_setup(parsed: &SessionDescription, role: Role) -> Result<(), SdpError> {
    if role == Role::Answer {
        return Ok(());
    }
    for m in &parsed.media_descriptions {
        for a in m.attributes.iter().filter(|a| a.key == "setup") {
            let value = a.value.as_deref().unwrap_or("");
            if value != "actpass" && value != "active" {
                return Err(SdpError::BadSetup(value.to_owned()));
            }
        }
    }
    Ok(())
}

/// Every `a=extmap` parses as `rtc` parses it (`ExtMap::unmarshal`: an id of 1 to 255, a known
/// direction, a URI), and no id is mapped twice in a section.
fn check_extmaps(m: &MediaDescription) -> Result<(), SdpError> {
    let mut ids: Vec<u16> = Vec::new();
    for a in m.attributes.iter().filter(|a| a.key == "extmap") {
        let line = a.to_string();
        let value = a.value.clone().unwrap_or_default();
        let map = ExtMap::unmarshal(&mut Cursor::new(line.as_bytes())).map_err(|e| {
            SdpError::BadExtmap {
                value: value.clone(),
                reason: e.to_string(),
            }
        })?;
        if ids.contains(&map.value) {
            return Err(SdpError::DuplicateExtmapId {
                id: map.value,
                mid: mid(m).unwrap_or_default().to_owned(),
            });
        }
        ids.push(map.value);
    }
    Ok(())
}

/// Each payload type of an audio or video section is a number with a codec, as `rtc` reads them
/// (`codecs_from_media_description`), and an RTX codec's `apt` is a payload type.
fn check_payload_types(m: &MediaDescription) -> Result<(), SdpError> {
    let kind = m.media_name.media.to_ascii_lowercase();
    if kind != "audio" && kind != "video" {
        return Ok(());
    }
    let bad = |format: &str, reason: &str| SdpError::BadPayloadType {
        mid: mid(m).unwrap_or_default().to_owned(),
        format: format.to_owned(),
        reason: reason.to_owned(),
    };
    let single = SessionDescription {
        media_descriptions: vec![m.clone()],
        ..Default::default()
    };
    for format in &m.media_name.formats {
        let pt: u8 = format.parse().map_err(|_| bad(format, "not a number"))?;
        match single.get_codec_for_payload_type(pt) {
            Ok(codec) => {
                if let Some(apt) = fmtp_parameter(&codec.fmtp, "apt")
                    && apt.parse::<u8>().is_err()
                {
                    return Err(bad(format, "its apt is not a payload type"));
                }
            }
            // `rtc` skips payload type 0 without a codec.
            Err(_) if pt == 0 => {}
            Err(_) => return Err(bad(format, "no a=rtpmap")),
        }
    }
    Ok(())
}

/// A parameter of an `a=fmtp` line, read as `rtc` reads it (its `fmtp::parse` is private):
/// `key=value` pairs split on `;`, keys trimmed and case-insensitive, the last one winning.
fn fmtp_parameter<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(';').rev().find_map(|p| {
        let mut kv = p.trim().splitn(2, '=');
        let k = kv.next()?;
        k.eq_ignore_ascii_case(key).then(|| kv.next().unwrap_or(""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser's offer: audio and video, bundled, ICE and DTLS as browsers write them.
    use crate::fuzz::OFFER;

    fn offer_with(from: &str, to: &str) -> String {
        let changed = OFFER.replace(from, to);
        assert_ne!(changed, OFFER, "{from:?} is in the offer");
        changed
    }

    fn refused(sdp: &str) -> SdpError {
        check(sdp, Role::Offer).expect_err("refused")
    }

    #[test]
    fn a_browser_offer_passes_and_is_described() {
        let d = check(OFFER, Role::Offer).unwrap();
        assert_eq!(
            d.ice,
            Some(("EsAw".into(), "P2uYro0UCOQ4zxjKXaWCBui1".into()))
        );
        let (hash, digest) = d.fingerprint.unwrap();
        assert_eq!(hash, "sha-256");
        assert!(digest.starts_with("D2:FA"));
        let sections: Vec<(&str, &str)> = d
            .sections
            .iter()
            .map(|s| (s.mid.as_str(), s.kind.as_str()))
            .collect();
        assert_eq!(sections, [("0", "audio"), ("1", "video")]);
        assert_eq!(describe(OFFER).unwrap(), check(OFFER, Role::Offer).unwrap());
    }

    #[test]
    fn garbage_and_a_description_cut_off_are_refused() {
        assert!(matches!(refused("hello\r\n"), SdpError::Unparsable(_)));
        assert!(matches!(refused(""), SdpError::CutOff));
        for cut in [OFFER.find("a=fingerprint").unwrap() + 10, OFFER.len() - 3] {
            assert_eq!(refused(&OFFER[..cut]), SdpError::CutOff);
        }
        // Cut at a line break in the middle of the second section: its mid is gone.
        let cut = OFFER.find("a=mid:1").unwrap();
        assert_eq!(refused(&OFFER[..cut]), SdpError::MissingMid { index: 1 });
    }

    #[test]
    fn no_media_section_is_refused() {
        let cut = OFFER.find("m=audio").unwrap();
        assert_eq!(refused(&OFFER[..cut]), SdpError::NoMedia);
    }

    #[test]
    fn mids_are_required_and_unique() {
        assert_eq!(
            refused(&offer_with("a=mid:0\r\n", "")),
            SdpError::MissingMid { index: 0 }
        );
        assert_eq!(
            refused(&offer_with("a=mid:0\r\n", "a=mid:\r\n")),
            SdpError::MissingMid { index: 0 }
        );
        let twice = refused(&offer_with("a=mid:1\r\n", "a=mid:0\r\n"));
        assert_eq!(twice, SdpError::DuplicateMid("0".into()));
        assert!(twice.to_string().contains("mid:0"));
    }

    #[test]
    fn ice_credentials_are_required_agreeing_and_well_formed() {
        let no_ufrag = OFFER.replace("a=ice-ufrag:EsAw\r\n", "");
        assert_eq!(refused(&no_ufrag), SdpError::MissingIceUfrag);
        let no_pwd = OFFER.replace("a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n", "");
        assert_eq!(refused(&no_pwd), SdpError::MissingIcePwd);
        // One section's are enough, as for `rtc`.
        let once = OFFER.replacen("a=ice-ufrag:EsAw\r\n", "", 1);
        assert!(check(&once, Role::Offer).is_ok());
        let conflicting = OFFER.replacen("a=ice-ufrag:EsAw", "a=ice-ufrag:Zzzz", 1);
        assert_eq!(refused(&conflicting), SdpError::ConflictingIce);
        let short = OFFER.replace("a=ice-ufrag:EsAw", "a=ice-ufrag:Es");
        assert_eq!(refused(&short), SdpError::BadIceUfrag);
        let colon = OFFER.replace("a=ice-ufrag:EsAw", "a=ice-ufrag:Es:Aw");
        assert_eq!(refused(&colon), SdpError::BadIceUfrag);
        let short = OFFER.replace("P2uYro0UCOQ4zxjKXaWCBui1", "short");
        assert_eq!(refused(&short), SdpError::BadIcePwd);
    }

    #[test]
    fn a_candidate_rtc_cannot_parse_is_refused() {
        let bad = offer_with("typ host", "typ nonsense");
        assert!(matches!(refused(&bad), SdpError::BadCandidate { .. }));
        let bad = offer_with("127.0.0.1 50000", "127.0.0.1 70000");
        assert!(matches!(refused(&bad), SdpError::BadCandidate { .. }));
    }

    #[test]
    fn an_ice_lite_peer_is_refused() {
        let lite = offer_with("a=msid-semantic", "a=ice-lite\r\na=msid-semantic");
        assert_eq!(refused(&lite), SdpError::IceLite);
    }

    #[test]
    fn fingerprints_must_be_sha2_well_formed_and_agree() {
        let none: String = OFFER
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(refused(&none), SdpError::MissingFingerprint);
        let md5 = OFFER.replace(
            "sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F",
            "md5 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24",
        );
        let e = refused(&md5);
        assert_eq!(e, SdpError::WeakFingerprint("md5".into()));
        assert!(e.to_string().contains("md5"));
        let sha1 = OFFER.replace("sha-256 ", "SHA-1 ");
        assert_eq!(refused(&sha1), SdpError::WeakFingerprint("sha-1".into()));
        let upper = OFFER.replace("sha-256 ", "SHA-256 ");
        assert!(check(&upper, Role::Offer).is_ok());
        let short = OFFER.replace(":E6:0F\r\n", "\r\n");
        assert!(matches!(refused(&short), SdpError::BadFingerprint(_)));
        let not_hex = OFFER.replace(":E6:0F\r\n", ":E6:0G\r\n");
        assert!(matches!(refused(&not_hex), SdpError::BadFingerprint(_)));
        let conflicting = OFFER.replacen(":E6:0F\r\n", ":E6:0E\r\n", 1);
        assert_eq!(refused(&conflicting), SdpError::ConflictingFingerprints);
    }

    #[test]
    fn a_passive_or_holding_dtls_side_is_refused() {
        for setup in ["passive", "holdconn", ""] {
            let sdp = OFFER.replace("a=setup:actpass", &format!("a=setup:{setup}"));
            let e = refused(&sdp);
            assert!(matches!(e, SdpError::BadSetup(_)), "{setup}: {e}");
            assert!(e.to_string().contains(&format!("a=setup:{setup} ")), "{e}");
        }
        // Only the second section says passive: `rtc` would take the first, but it is refused.
        let second = OFFER.replacen("a=setup:actpass", "a=setup:active", 1);
        let second = second.replace("a=setup:actpass", "a=setup:passive");
        assert!(matches!(refused(&second), SdpError::BadSetup(_)));
        let active = OFFER.replace("a=setup:actpass", "a=setup:active");
        assert!(check(&active, Role::Offer).is_ok());
        // Answers come after the roles are settled: not checked.
        let passive = OFFER.replace("a=setup:actpass", "a=setup:passive");
        assert!(check(&passive, Role::Answer).is_ok());
    }

    #[test]
    fn extmaps_must_parse_with_ids_from_1_to_255_once_per_section() {
        for (id, ok) in [(0, false), (1, true), (14, true), (15, true), (255, true)] {
            let sdp = OFFER.replace("a=extmap:1 ", &format!("a=extmap:{id} "));
            assert_eq!(check(&sdp, Role::Offer).is_ok(), ok, "id {id}");
        }
        for id in ["256", "300", "70000", "x"] {
            let sdp = OFFER.replace("a=extmap:1 ", &format!("a=extmap:{id} "));
            let e = refused(&sdp);
            assert!(matches!(e, SdpError::BadExtmap { .. }), "{id}: {e}");
            assert!(e.to_string().contains(&format!("a=extmap:{id} ")), "{e}");
        }
        let direction = OFFER.replace("a=extmap:1 ", "a=extmap:1/sideways ");
        assert!(matches!(refused(&direction), SdpError::BadExtmap { .. }));
        let twice = offer_with(
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:1 urn:3gpp:video-orientation\r\n",
        );
        assert_eq!(
            refused(&twice),
            SdpError::DuplicateExtmapId {
                id: 1,
                mid: "0".into()
            }
        );
    }

    #[test]
    fn payload_types_need_a_codec() {
        // Payload type 98 has no a=rtpmap (nor any other line).
        let no_rtpmap = offer_with("SAVPF 96 97", "SAVPF 96 97 98");
        assert!(matches!(
            refused(&no_rtpmap),
            SdpError::BadPayloadType { .. }
        ));
        let not_a_number = OFFER.replace("SAVPF 96 97", "SAVPF 96 x");
        assert!(matches!(
            refused(&not_a_number),
            SdpError::BadPayloadType { .. }
        ));
        let bad_apt = OFFER.replace("apt=96", "apt=video");
        assert!(matches!(refused(&bad_apt), SdpError::BadPayloadType { .. }));
        assert_eq!(fmtp_parameter("a=1; APT = 2;apt=96", "apt"), Some("96"));
        assert_eq!(fmtp_parameter("minptime=10", "apt"), None);
    }

    #[test]
    fn a_renegotiation_keeps_the_certificate_and_the_kinds() {
        let current = check(OFFER, Role::Offer).unwrap();
        // More sections, new ICE credentials (an ICE restart): fine.
        let restart = OFFER
            .replace("a=ice-ufrag:EsAw", "a=ice-ufrag:NewU")
            .replace("P2uYro0UCOQ4zxjKXaWCBui1", "NewPasswordNewPassword12");
        let restart = check(&restart, Role::Offer).unwrap();
        assert_eq!(check_renegotiation(&current, &restart), Ok(()));
        // Another certificate: another connection.
        let other = check(&OFFER.replace(":E6:0F\r\n", ":E6:0E\r\n"), Role::Offer).unwrap();
        let e = check_renegotiation(&current, &other).unwrap_err();
        assert_eq!(e, SdpError::NewConnection);
        assert_eq!(e.to_string(), "a new connection: send it as a restart");
        // Swapped kinds.
        let swapped = OFFER
            .replace("a=mid:0", "a=mid:X")
            .replace("a=mid:1", "a=mid:0")
            .replace("a=mid:X", "a=mid:1")
            .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 1 0");
        let swapped = check(&swapped, Role::Offer).unwrap();
        let e = check_renegotiation(&current, &swapped).unwrap_err();
        assert!(matches!(e, SdpError::KindChanged { .. }), "{e}");
        assert!(e.to_string().contains("was video and is now audio"), "{e}");
    }

    #[test]
    fn an_answer_matches_the_offer_and_the_connection() {
        let ours = describe(OFFER).unwrap();
        let current = describe(OFFER).unwrap();
        let answer = OFFER.replace("a=setup:actpass", "a=setup:active");
        let answer = check(&answer, Role::Answer).unwrap();
        assert_eq!(check_answer(&ours, &current, &answer), Ok(()));
        let fewer = OFFER
            .replace("a=setup:actpass", "a=setup:active")
            .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
        let fewer = &fewer[..fewer.find("m=video").unwrap()];
        let fewer = check(fewer, Role::Answer).unwrap();
        assert!(matches!(
            check_answer(&ours, &current, &fewer),
            Err(SdpError::SectionsMismatch(_))
        ));
        let other = OFFER
            .replace("a=setup:actpass", "a=setup:active")
            .replace(":E6:0F\r\n", ":E6:0E\r\n");
        let other = check(&other, Role::Answer).unwrap();
        assert_eq!(
            check_answer(&ours, &current, &other),
            Err(SdpError::NewConnection)
        );
    }
}
