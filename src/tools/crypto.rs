//! AES-256-GCM for upstream credentials at rest, keyed by `HUB_ENCRYPTION_KEY`. The header name is the
//! associated data, so a ciphertext cannot be moved to another header unnoticed.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit};
use rand::RngExt;

use crate::error::AppError;
use crate::secrets::{from_hex, hex};

/// `(nonce, ciphertext)`, both hexadecimal.
pub fn encrypt(
    key: &[u8; 32],
    associated: &str,
    plaintext: &str,
) -> Result<(String, String), AppError> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let nonce_bytes: [u8; 12] = rand::rng().random();
    let nonce = aes_gcm::Nonce::from(nonce_bytes);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext.as_bytes(),
                aad: associated.as_bytes(),
            },
        )
        .map_err(|_| AppError::internal(anyhow::anyhow!("encryption failed")))?;
    Ok((hex(&nonce_bytes), hex(&ciphertext)))
}

pub fn decrypt(
    key: &[u8; 32],
    associated: &str,
    nonce: &str,
    ciphertext: &str,
) -> Result<String, AppError> {
    let damaged = || {
        AppError::internal(anyhow::anyhow!(
            "a stored secret cannot be decrypted (wrong HUB_ENCRYPTION_KEY?)"
        ))
    };
    let nonce: [u8; 12] = from_hex(nonce)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(damaged)?;
    let ciphertext = from_hex(ciphertext).ok_or_else(damaged)?;
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let plaintext = cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: &ciphertext,
                aad: associated.as_bytes(),
            },
        )
        .map_err(|_| damaged())?;
    String::from_utf8(plaintext).map_err(|_| damaged())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_and_is_bound_to_its_header_and_key() {
        let key = [7u8; 32];
        let (nonce, ciphertext) = encrypt(&key, "authorization", "Bearer sk-live-123").unwrap();

        assert!(!ciphertext.contains("sk-live"));
        assert_eq!(
            decrypt(&key, "authorization", &nonce, &ciphertext).unwrap(),
            "Bearer sk-live-123"
        );
        assert!(decrypt(&key, "x-other", &nonce, &ciphertext).is_err());
        assert!(decrypt(&[8u8; 32], "authorization", &nonce, &ciphertext).is_err());
        assert_ne!(
            encrypt(&key, "authorization", "Bearer sk-live-123")
                .unwrap()
                .0,
            nonce
        );
    }
}
