//! The server's own secrets: the JWT signing secret and the key that encrypts upstream credentials at rest.
//!
//! Production takes both from the environment (validated in [`crate::config`]). Development generates
//! them once and keeps them under `$HUB_DATA_DIR/secrets/` (mode 0600), so tokens survive a restart.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use rand::RngExt;

use crate::config::{Config, Secret, parse_key_hex};

/// The resolved secrets.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Signs access tokens.
    pub jwt_secret: Secret<Vec<u8>>,
    /// AES-256 key for upstream credentials at rest.
    pub encryption_key: Secret<[u8; 32]>,
}

impl Keys {
    /// Takes the configured secrets, generating and persisting missing ones in development.
    pub fn resolve(config: &Config) -> anyhow::Result<Self> {
        let dir = config.data_dir.join("secrets");
        let jwt_hex = match &config.jwt_secret {
            Some(secret) => secret.expose().clone(),
            None => load_or_generate(&dir.join("jwt_secret"))?,
        };
        let key_hex = match &config.encryption_key {
            Some(key) => key.expose().clone(),
            None => load_or_generate(&dir.join("encryption_key"))?,
        };
        let encryption_key = parse_key_hex(&key_hex).with_context(|| {
            format!(
                "the stored encryption key in {} is damaged: it must be 64 hexadecimal characters",
                dir.display()
            )
        })?;
        Ok(Self {
            jwt_secret: Secret::new(jwt_hex.into_bytes()),
            encryption_key: Secret::new(encryption_key),
        })
    }

    /// Fresh random keys, for tests and tools that need no persistence.
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::rng().random();
        Self {
            jwt_secret: Secret::new(hex(&rand::rng().random::<[u8; 32]>()).into_bytes()),
            encryption_key: Secret::new(key),
        }
    }
}

fn load_or_generate(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if parse_key_hex(&existing).is_some() {
            return Ok(existing);
        }
        anyhow::bail!(
            "{} does not hold 64 hexadecimal characters; delete it to generate a new one",
            path.display()
        );
    }
    let dir = path
        .parent()
        .context("a secret file needs a parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let value = hex(&rand::rng().random::<[u8; 32]>());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(value.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a development secret");
    Ok(value)
}

/// Bytes from hexadecimal (either case); `None` for odd lengths or other characters.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Lower-case hexadecimal. Cursors and API-key lookups encode on every request, so each byte is two
/// digits pushed rather than a trip through the formatting machinery.
pub fn hex(bytes: &[u8]) -> String {
    let digit = |nibble: u8| char::from_digit(u32::from(nibble), 16).unwrap_or('0');
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(digit(byte >> 4));
        out.push(digit(byte & 0x0f));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexadecimal_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = hex(&bytes);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 4..], "feff");
        assert_eq!(text, text.to_lowercase());
        assert_eq!(from_hex(&text), Some(bytes));
        assert_eq!(from_hex("AbCd"), Some(vec![0xab, 0xcd]));
    }

    #[test]
    fn development_secrets_are_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("jh-secrets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.data_dir = dir.clone();

        let first = Keys::resolve(&config).unwrap();
        let second = Keys::resolve(&config).unwrap();

        assert_eq!(first.jwt_secret.expose(), second.jwt_secret.expose());
        assert_eq!(
            first.encryption_key.expose(),
            second.encryption_key.expose()
        );
        let mode = fs::metadata(dir.join("secrets/jwt_secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
