//! The SFU's own SRTP sealing of the media it forwards (RFC 3711, RFC 7714): each packet is
//! sealed in place in the shard's send buffer, with no allocation.
//!
//! The keys are the ones the connection's DTLS handshake made for `rtc`'s own sending context
//! (see `engine::keys`); the cipher primitives are `rtc`'s crypto provider's (ring). Only the
//! framing is ours: the session-key derivation (RFC 3711 §4.3), the IV, the rollover counter and
//! where the tag goes. Tests prove it against `rtc-srtp`'s decryption.

use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CryptoError, HmacAlgorithm, Mac, RTCCrypto,
    StreamCipher, StreamCipherAlgorithm,
};

/// The SRTP protection profiles the SFU negotiates (AES-GCM preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    AeadAes128Gcm,
    AeadAes256Gcm,
    Aes128CmHmacSha1_80,
}

impl Profile {
    pub fn key_len(self) -> usize {
        match self {
            Profile::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    pub fn salt_len(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80 => 14,
            _ => 12,
        }
    }

    /// Bytes the sealed packet grows by.
    pub fn tag_len(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80 => 10,
            _ => 16,
        }
    }
}

/// A DTLS-SRTP master key and salt, and the profile they are for.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub profile: Profile,
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTP_AUTHENTICATION: u8 = 0x01;
const LABEL_SRTP_SALT: u8 = 0x02;

/// Bytes of the HMAC-SHA1 output the 80-bit tag is cut from.
const SHA1_LEN: usize = 20;

enum Seal {
    Gcm(Box<dyn AeadCipher>),
    Cm {
        ctr: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
    },
}

/// The sending side of one connection's SRTP session, for the SSRCs the SFU writes itself.
pub struct SrtpSender {
    seal: Seal,
    profile: Profile,
    /// The session salt (12 or 14 bytes).
    salt: [u8; 14],
}

impl SrtpSender {
    /// Session keys derived from `master` with `crypto`'s primitives.
    pub fn new(crypto: &dyn RTCCrypto, master: &MasterKey) -> Result<SrtpSender, CryptoError> {
        let profile = master.profile;
        if master.key.len() != profile.key_len() || master.salt.len() != profile.salt_len() {
            return Err(CryptoError::InvalidKeyLength {
                expected: profile.key_len() + profile.salt_len(),
                actual: master.key.len() + master.salt.len(),
            });
        }
        let mut key = [0u8; 32];
        let key = &mut key[..profile.key_len()];
        derive(crypto, master, LABEL_SRTP_ENCRYPTION, key)?;
        let mut salt = [0u8; 14];
        derive(
            crypto,
            master,
            LABEL_SRTP_SALT,
            &mut salt[..profile.salt_len()],
        )?;
        let seal = match profile {
            Profile::AeadAes128Gcm => Seal::Gcm(crypto.new_aead(AeadAlgorithm::Aes128Gcm, key)?),
            Profile::AeadAes256Gcm => Seal::Gcm(crypto.new_aead(AeadAlgorithm::Aes256Gcm, key)?),
            Profile::Aes128CmHmacSha1_80 => {
                let mut auth = [0u8; SHA1_LEN];
                derive(crypto, master, LABEL_SRTP_AUTHENTICATION, &mut auth)?;
                Seal::Cm {
                    ctr: crypto.new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, key)?,
                    mac: crypto.new_hmac(HmacAlgorithm::Sha1, &auth)?,
                }
            }
        };
        key.fill(0);
        Ok(SrtpSender {
            seal,
            profile,
            salt,
        })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Seals the RTP packet in `buf[..len]` (its header `header_len` bytes) in place, its tag
    /// written right after it: returns the sealed length, `len + tag_len`. `buf` must hold it.
    /// `roc` is the packet's rollover counter ([`Rollover::of`]).
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        roc: u32,
    ) -> Result<usize, CryptoError> {
        let tag_len = self.profile.tag_len();
        if len < 12 || header_len < 12 || header_len > len || buf.len() < len + tag_len {
            return Err(CryptoError::OutputTooSmall {
                required: (len + tag_len).max(12 + tag_len),
                actual: buf.len(),
            });
        }
        let (seq, ssrc) = ([buf[2], buf[3]], [buf[8], buf[9], buf[10], buf[11]]);
        match &mut self.seal {
            Seal::Gcm(cipher) => {
                // RFC 7714 §8.1: 00 00 | SSRC | ROC | SEQ, xor the session salt.
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc);
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&seq);
                for (v, s) in iv.iter_mut().zip(&self.salt) {
                    *v ^= s;
                }
                let (header, rest) = buf.split_at_mut(header_len);
                let (payload, tail) = rest.split_at_mut(len - header_len);
                cipher.seal_in_place(&iv, header, payload, &mut tail[..tag_len])?;
            }
            Seal::Cm { ctr, mac } => {
                // RFC 3711 §4.1.1: SSRC · 2^64 xor index · 2^16 xor salt · 2^16.
                let mut iv = [0u8; 16];
                iv[4..8].copy_from_slice(&ssrc);
                iv[8..12].copy_from_slice(&roc.to_be_bytes());
                iv[12..14].copy_from_slice(&seq);
                for (v, s) in iv.iter_mut().zip(&self.salt) {
                    *v ^= s;
                }
                ctr.apply_keystream(&iv, &mut buf[header_len..len])?;
                // RFC 3711 §4.2: HMAC-SHA1 over the packet and the ROC, cut to 80 bits.
                let mut full = [0u8; SHA1_LEN];
                mac.sign(&[&buf[..len], &roc.to_be_bytes()], &mut full)?;
                buf[len..len + tag_len].copy_from_slice(&full[..tag_len]);
            }
        }
        Ok(len + tag_len)
    }
}

/// The AES-CM key derivation of RFC 3711 §4.3.3 (key derivation rate 0), as DTLS-SRTP uses it
/// for every profile (RFC 7714 §11 for AES-GCM): the salt's bytes, the label xored into byte 7,
/// a block counter in the last two bytes, encrypted with the master key.
fn derive(
    crypto: &dyn RTCCrypto,
    master: &MasterKey,
    label: u8,
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let algorithm = if master.key.len() == 32 {
        BlockCipherAlgorithm::Aes256
    } else {
        BlockCipherAlgorithm::Aes128
    };
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = [0u8; 16];
        block[..master.salt.len()].copy_from_slice(&master.salt);
        block[7] ^= label;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        crypto.block_encrypt(algorithm, &master.key, &mut block)?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

/// The rollover counter of one outgoing SSRC (RFC 3711 §3.3.1): how many times its sequence
/// numbers wrapped. A packet sent again (a NACK's answer) from before the last wrap gets the
/// counter it was first sent with.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rollover {
    highest: Option<u16>,
    roc: u32,
}

impl Rollover {
    /// The counter for a packet with `sequence`, remembered when it is the newest so far.
    pub fn of(&mut self, sequence: u16) -> u32 {
        let Some(highest) = self.highest else {
            self.highest = Some(sequence);
            return self.roc;
        };
        let ahead = sequence.wrapping_sub(highest);
        if ahead == 0 {
            self.roc
        } else if ahead < 0x8000 {
            if sequence < highest {
                self.roc = self.roc.wrapping_add(1);
            }
            self.highest = Some(sequence);
            self.roc
        } else if sequence > highest {
            self.roc.wrapping_sub(1)
        } else {
            self.roc
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::Unmarshal;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    fn master(profile: Profile) -> MasterKey {
        MasterKey {
            profile,
            key: (0..profile.key_len() as u8)
                .map(|i| i.wrapping_mul(37))
                .collect(),
            salt: (0..profile.salt_len() as u8)
                .map(|i| i.wrapping_mul(11) ^ 0x5a)
                .collect(),
        }
    }

    /// `rtc-srtp`'s receiving context for `master`: what a subscriber decrypts with.
    fn receiver(master: &MasterKey) -> Context {
        let provider = rtc::crypto::default_provider().unwrap();
        let profile = match master.profile {
            Profile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            Profile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
            Profile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        };
        Context::new(
            &master.key,
            &master.salt,
            profile,
            None,
            None,
            provider.crypto(),
        )
        .unwrap()
    }

    /// An RTP packet with a one-byte header extension, in a buffer with room for a tag.
    fn packet(seq: u16, payload_len: usize) -> (Vec<u8>, usize, usize) {
        let mut buf = vec![0x90, 0x60];
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        buf.extend_from_slice(&0xcafe_f00du32.to_be_bytes());
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x42, 0, 0]);
        let header_len = buf.len();
        buf.extend((0..payload_len).map(|i| i as u8));
        let len = buf.len();
        buf.resize(len + 16, 0);
        (buf, header_len, len)
    }

    #[test]
    fn every_profile_is_opened_by_rtc_srtp_across_a_sequence_wrap() {
        for profile in [
            Profile::AeadAes128Gcm,
            Profile::AeadAes256Gcm,
            Profile::Aes128CmHmacSha1_80,
        ] {
            let master = master(profile);
            let provider = rtc::crypto::default_provider().unwrap();
            let mut sender = SrtpSender::new(provider.crypto(), &master).unwrap();
            let mut theirs = receiver(&master);
            let mut rollover = Rollover::default();
            for seq in (65_530u16..=65_535).chain(0..6) {
                let (mut buf, header_len, len) = packet(seq, 100 + usize::from(seq % 7));
                let plain = buf[..len].to_vec();
                let sealed = sender
                    .seal(&mut buf, header_len, len, rollover.of(seq))
                    .unwrap();
                assert_eq!(sealed, len + profile.tag_len());
                assert_ne!(
                    buf[header_len..len],
                    plain[header_len..],
                    "{profile:?} encrypts"
                );
                let opened = theirs.decrypt_rtp(&buf[..sealed]).unwrap_or_else(|e| {
                    panic!("{profile:?}: seq {seq} does not open: {e}");
                });
                assert_eq!(&opened[..], &plain[..], "{profile:?}: seq {seq}");
                let header = rtc::rtp::header::Header::unmarshal(&mut &opened[..]).unwrap();
                assert_eq!(header.sequence_number, seq);
            }
        }
    }

    #[test]
    fn a_tampered_packet_does_not_open() {
        for profile in [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80] {
            let master = master(profile);
            let provider = rtc::crypto::default_provider().unwrap();
            let mut sender = SrtpSender::new(provider.crypto(), &master).unwrap();
            let (mut buf, header_len, len) = packet(7, 50);
            let sealed = sender.seal(&mut buf, header_len, len, 0).unwrap();
            buf[header_len + 3] ^= 1;
            assert!(receiver(&master).decrypt_rtp(&buf[..sealed]).is_err());
        }
    }

    #[test]
    fn a_buffer_without_room_for_the_tag_is_refused() {
        let master = master(Profile::AeadAes128Gcm);
        let provider = rtc::crypto::default_provider().unwrap();
        let mut sender = SrtpSender::new(provider.crypto(), &master).unwrap();
        let (mut buf, header_len, len) = packet(1, 20);
        assert!(
            sender
                .seal(&mut buf[..len + 8], header_len, len, 0)
                .is_err()
        );
        assert!(sender.seal(&mut buf, header_len, 8, 0).is_err());
    }

    #[test]
    fn the_rollover_counter_follows_wraps_and_answers_late_resends() {
        let mut r = Rollover::default();
        assert_eq!(r.of(65_000), 0);
        assert_eq!(r.of(65_535), 0);
        assert_eq!(r.of(3), 1, "wrapped");
        assert_eq!(r.of(65_534), 0, "a resend from before the wrap");
        assert_eq!(r.of(2), 1, "a resend after it");
        assert_eq!(r.of(30_000), 1);
        assert_eq!(r.of(60_000), 1);
        assert_eq!(r.of(100), 2);
    }
}
