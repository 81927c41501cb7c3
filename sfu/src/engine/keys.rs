//! The SRTP keys of a connection's DTLS handshake, for the SFU's own send path
//! ([`crate::media::srtp`]).
//!
//! `rtc` keeps its SRTP contexts to itself. What it does expose is the crypto provider each
//! connection runs on (`SettingEngineBuilder::with_crypto_provider`): every connection gets a
//! [`KeyTap`], a provider that hands each call to the default one and notes, on the way, the
//! master keys `rtc` derives its SRTP session keys from.
//!
//! When a DTLS handshake completes, `rtc` makes its local (sending) SRTP context, then its
//! remote one, each from a master key and salt (RFC 5764 §4.2). `rtc-srtp` derives a context's
//! session keys with the AES-CM PRF (RFC 3711 §4.3.3): one block encryption per 16 bytes, keyed
//! with the master key, the first for the encryption key (label 0), whose input block is the
//! master salt itself. Then it makes the session cipher, whose kind names the profile (AES-GCM,
//! or AES-CM with HMAC-SHA1-80, the only CM profile offered). So, per handshake, the tap sees two
//! new master keys, sending side first, each followed by its cipher. The order is `rtc`'s
//! (`DtlsHandler::update_srtp_contexts`): if it ever changed, what the SFU sends would not
//! decrypt, and the round-trip tests (a subscriber's `rtc` decrypting what the SFU sealed) fail.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher, CryptoAlgorithm,
    CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac, PublicKey, RTCCrypto,
    RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher, StreamCipherAlgorithm,
};

use crate::media::srtp::{MasterKey, Profile};

/// A connection's crypto provider: the default one, with the SRTP master keys noted.
pub(crate) struct KeyTap {
    inner: Arc<dyn RTCCryptoProvider>,
    crypto: TapCrypto,
}

struct TapCrypto {
    inner: Arc<dyn RTCCryptoProvider>,
    seen: Mutex<Seen>,
    /// Handshakes whose both keys are known.
    handshakes: AtomicUsize,
}

/// The master keys seen, in order (the last two handshakes' at most).
#[derive(Default)]
struct Seen {
    /// Master keys seen since the connection was made.
    count: usize,
    recent: Vec<Noted>,
}

struct Noted {
    key: Vec<u8>,
    /// The input block of the first derivation (the encryption key's): the master salt, then
    /// zeroes.
    first_block: [u8; 16],
    profile: Option<Profile>,
}

impl KeyTap {
    pub(crate) fn new() -> Result<Arc<KeyTap>, CryptoError> {
        let inner = rtc::crypto::default_provider()?;
        Ok(Arc::new(KeyTap {
            inner: Arc::clone(&inner),
            crypto: TapCrypto {
                inner,
                seen: Mutex::new(Seen::default()),
                handshakes: AtomicUsize::new(0),
            },
        }))
    }

    /// Handshakes completed so far: a change means new keys.
    pub(crate) fn handshakes(&self) -> usize {
        self.crypto.handshakes.load(Ordering::Acquire)
    }

    /// The sending side's master key of the latest handshake.
    pub(crate) fn local_key(&self) -> Option<MasterKey> {
        let seen = self.crypto.seen.lock().unwrap_or_else(|p| p.into_inner());
        let complete = self.crypto.handshakes.load(Ordering::Acquire);
        if complete == 0 {
            return None;
        }
        // The latest complete handshake's first key, as an index into `recent`.
        let first_of_latest = 2 * (complete - 1);
        let offset = seen.count - seen.recent.len();
        let noted = seen.recent.get(first_of_latest.checked_sub(offset)?)?;
        let profile = noted.profile?;
        Some(MasterKey {
            profile,
            key: noted.key.clone(),
            salt: noted.first_block[..profile.salt_len()].to_vec(),
        })
    }

    /// The crypto the tap's own sealing runs on.
    pub(crate) fn primitives(&self) -> &dyn RTCCrypto {
        self.inner.crypto()
    }
}

impl RTCCryptoProvider for KeyTap {
    fn name(&self) -> &'static str {
        "sfu-key-tap"
    }
    fn crypto(&self) -> &dyn RTCCrypto {
        &self.crypto
    }
    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl TapCrypto {
    fn note_block(&self, key: &[u8], block: &[u8]) {
        if block.len() != 16 {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.recent.last().is_some_and(|n| n.key == key) {
            return;
        }
        let mut first_block = [0u8; 16];
        first_block.copy_from_slice(block);
        seen.count += 1;
        seen.recent.push(Noted {
            key: key.to_vec(),
            first_block,
            profile: None,
        });
        if seen.recent.len() > 4 {
            seen.recent.remove(0);
        }
    }

    /// A session cipher was made: it names the profile of the last master key, if not yet known.
    fn note_cipher(&self, profile: Profile) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let count = seen.count;
        let Some(last) = seen.recent.last_mut() else {
            return;
        };
        if last.profile.is_some() {
            return;
        }
        last.profile = Some(profile);
        // The second key of a handshake (the receiving side's) completes it.
        if count.is_multiple_of(2) {
            self.handshakes.store(count / 2, Ordering::Release);
        }
    }
}

impl RTCCrypto for TapCrypto {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }
    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }
    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.note_block(key, block);
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }
    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }
    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        if algorithm == StreamCipherAlgorithm::Aes128Ctr {
            self.note_cipher(Profile::Aes128CmHmacSha1_80);
        }
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }
    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        match algorithm {
            AeadAlgorithm::Aes128Gcm => self.note_cipher(Profile::AeadAes128Gcm),
            AeadAlgorithm::Aes256Gcm => self.note_cipher(Profile::AeadAes256Gcm),
            _ => {}
        }
        self.inner.crypto().new_aead(algorithm, key)
    }
    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }
    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn rtc::crypto::ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }
    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }
    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }
    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::srtp::SrtpSender;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    /// What `rtc` does when a handshake completes: its sending context, then its receiving one,
    /// on the connection's provider. The sending one is returned.
    fn handshake(
        tap: &Arc<KeyTap>,
        profile: ProtectionProfile,
        local: &MasterKey,
        remote: &MasterKey,
    ) -> Context {
        let ours =
            Context::new(&local.key, &local.salt, profile, None, None, tap.crypto()).unwrap();
        Context::new(&remote.key, &remote.salt, profile, None, None, tap.crypto()).unwrap();
        ours
    }

    fn key(profile: Profile, seed: u8) -> MasterKey {
        MasterKey {
            profile,
            key: (0..profile.key_len() as u8)
                .map(|i| i.wrapping_mul(seed) ^ seed)
                .collect(),
            salt: (0..profile.salt_len() as u8)
                .map(|i| i.wrapping_add(seed))
                .collect(),
        }
    }

    #[test]
    fn the_sending_key_of_each_handshake_is_found() {
        for (ours, theirs) in [
            (Profile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm),
            (Profile::AeadAes256Gcm, ProtectionProfile::AeadAes256Gcm),
            (
                Profile::Aes128CmHmacSha1_80,
                ProtectionProfile::Aes128CmHmacSha1_80,
            ),
        ] {
            let tap = KeyTap::new().unwrap();
            assert_eq!(tap.handshakes(), 0);
            assert!(tap.local_key().is_none());
            let (local, remote) = (key(ours, 3), key(ours, 5));
            let mut rtc_sending = handshake(&tap, theirs, &local, &remote);
            assert_eq!(tap.handshakes(), 1);
            assert_eq!(tap.local_key(), Some(local.clone()), "{ours:?}");
            // Sealed by the SFU with the key found, a packet is what `rtc` itself would send.
            let mut sender = SrtpSender::new(tap.primitives(), &local).unwrap();
            let plain: Vec<u8> = [0x80, 0x60, 0x01, 0x02, 0, 0, 0x10, 0, 0, 0, 0, 9]
                .into_iter()
                .chain(0..200u8)
                .collect();
            let expected = rtc_sending.encrypt_rtp(&plain).unwrap();
            let mut buf = plain.clone();
            buf.resize(plain.len() + 16, 0);
            let sealed = sender.seal(&mut buf, 12, plain.len(), 0).unwrap();
            assert_eq!(&buf[..sealed], &expected[..], "{ours:?}");
            // A DTLS restart: a new handshake on the same connection gives new keys.
            let (local, remote) = (key(ours, 7), key(ours, 9));
            handshake(&tap, theirs, &local, &remote);
            assert_eq!(tap.handshakes(), 2);
            assert_eq!(tap.local_key(), Some(local), "{ours:?} after a restart");
            for seed in [11, 13, 15] {
                handshake(&tap, theirs, &key(ours, seed), &key(ours, seed + 100));
            }
            assert_eq!(tap.handshakes(), 5);
            assert_eq!(tap.local_key(), Some(key(ours, 15)));
        }
    }
}
