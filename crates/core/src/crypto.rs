//! Secret handling: the master key that encrypts private keys at rest, hashing of token
//! secrets, constant-time comparison and random material.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// 32-byte key encrypting secrets stored in the database (XChaCha20-Poly1305).
#[derive(Clone)]
pub struct MasterKey(chacha20poly1305::Key);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes.into())
    }

    /// Parses a key given as base64 (standard or url-safe) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| Error::invalid("invalid_master_key", "master key is not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::invalid("invalid_master_key", "master key must be 32 bytes"))?;
        Ok(Self(bytes.into()))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_slice())
    }

    /// Encrypts `plain`; `context` binds the ciphertext to its owner (e.g. the key id) so a
    /// row copied to another owner fails to decrypt.
    pub fn seal(&self, plain: &[u8], context: &str) -> Result<String> {
        let cipher = XChaCha20Poly1305::new(&self.0);
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = chacha20poly1305::aead::Payload {
            msg: plain,
            aad: context.as_bytes(),
        };
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| Error::internal("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// A key for one purpose derived from the master key (HMAC-SHA256 of the purpose), so
    /// values keyed with it (e.g. recovery-code hashes) are useless without the master key.
    pub fn derive_key(&self, purpose: &str) -> Result<[u8; 32]> {
        hmac_sha256(self.0.as_slice(), purpose.as_bytes())
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| Error::internal("sealed value is not base64"))?;
        if bytes.len() < 24 {
            return Err(Error::internal("sealed value too short"));
        }
        let (nonce, body) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new(&self.0);
        let payload = chacha20poly1305::aead::Payload {
            msg: body,
            aad: context.as_bytes(),
        };
        cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| Error::internal("cannot decrypt a stored secret: wrong master key?"))
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32]> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| Error::internal("HMAC key of an unusable length"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// Constant-time equality, for comparing secret hashes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A random password of `len` characters from an unambiguous alphabet (about 5.9 bits each).
pub fn random_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| {
            let i = (rng.next_u32() as usize) % ALPHABET.len();
            char::from(ALPHABET[i])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_context() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"secret", "kid-1").unwrap();
        assert_eq!(key.open(&sealed, "kid-1").unwrap(), b"secret");
        assert!(key.open(&sealed, "kid-2").is_err());
        assert!(MasterKey::generate().open(&sealed, "kid-1").is_err());
    }

    #[test]
    fn master_key_parses_its_own_encoding() {
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(&key.to_base64()).unwrap();
        let sealed = key.seal(b"data", "x").unwrap();
        assert_eq!(again.open(&sealed, "x").unwrap(), b"data");
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn ct_eq_compares_length_and_content() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
