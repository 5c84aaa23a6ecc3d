//! Credentials as strings: access JWTs, and opaque random tokens (refresh tokens, mail tokens, API keys)
//! that are shown once and stored only as SHA-256 hashes.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::AppError;
use crate::secrets::{Keys, hex};
use crate::users::model::{Role, UserId};

const ISSUER: &str = "joyfull-hub";

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: String,
    /// `USER` or `ADMIN` at issue time (the current role is read from the database on use).
    pub role: String,
    pub exp: i64,
    pub iat: i64,
    /// Unique per token.
    pub jti: String,
    /// The account's session version at issue time; a password change makes older tokens invalid.
    pub sv: i32,
    pub iss: String,
    /// The session (refresh-token family) the token belongs to; logging out ends it at once.
    #[serde(default)]
    pub sid: Option<String>,
}

/// Signs an access token valid from `now` for `ttl`; returns it with its expiry.
pub fn issue_access_token(
    keys: &Keys,
    user: UserId,
    role: Role,
    session_version: i32,
    session: Uuid,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> Result<(String, DateTime<Utc>), AppError> {
    let expires_at = now + Duration::from_std(ttl).map_err(AppError::internal)?;
    let claims = AccessClaims {
        sub: user.0.to_string(),
        role: role.as_db().to_owned(),
        exp: expires_at.timestamp(),
        iat: now.timestamp(),
        jti: Uuid::new_v4().to_string(),
        sv: session_version,
        iss: ISSUER.to_owned(),
        sid: Some(session.to_string()),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(keys.jwt_secret.expose()),
    )
    .map_err(AppError::internal)?;
    Ok((token, expires_at))
}

/// Seconds past its expiry that an access token is still accepted (clocks of instances differ).
pub const LEEWAY_SECS: i64 = 5;

/// What every access token must satisfy besides its signature.
static VALIDATION: LazyLock<Validation> = LazyLock::new(|| {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS.unsigned_abs();
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "sub", "iat", "iss"]);
    validation
});

/// Verifies signature, issuer and expiry. Any failure is `UNAUTHENTICATED`, with a message that says
/// what to do rather than what was wrong inside.
pub fn decode_access_token(keys: &Keys, token: &str) -> Result<AccessClaims, AppError> {
    jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_secret(keys.jwt_secret.expose()),
        &VALIDATION,
    )
    .map(|data| data.claims)
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => expired(),
        _ => AppError::Unauthenticated("The access token is not valid: log in again.".into()),
    })
}

/// Whether claims that verified have expired by `now` (Unix seconds), as the decoder judges it.
pub fn has_expired(claims: &AccessClaims, now: i64) -> bool {
    claims.exp.saturating_add(LEEWAY_SECS) < now
}

/// The refusal of an expired access token.
pub fn expired() -> AppError {
    AppError::Unauthenticated("Your access token has expired: refresh it or log in again.".into())
}

/// A fresh opaque token `prefix` + 64 hex characters (32 random bytes), with its storage hash.
pub fn random_token(prefix: &str) -> (String, Vec<u8>) {
    let bytes: [u8; 32] = rand::rng().random();
    let token = format!("{prefix}{}", hex(&bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// The SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_token_round_trips_and_a_tampered_one_is_refused() {
        let keys = Keys::generate();
        let user = UserId(Uuid::new_v4());
        let (token, _) = issue_access_token(
            &keys,
            user,
            Role::Admin,
            0,
            Uuid::now_v7(),
            Utc::now(),
            std::time::Duration::from_secs(60),
        )
        .unwrap();

        let claims = decode_access_token(&keys, &token).unwrap();
        assert_eq!(claims.sub, user.0.to_string());
        assert_eq!(claims.role, "ADMIN");

        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            decode_access_token(&keys, &tampered).unwrap_err().code(),
            "UNAUTHENTICATED"
        );
        assert!(decode_access_token(&Keys::generate(), &token).is_err());
    }

    #[test]
    fn an_expired_access_token_is_refused() {
        let keys = Keys::generate();
        let issued = Utc::now() - Duration::hours(1);
        let (token, _) = issue_access_token(
            &keys,
            UserId(Uuid::new_v4()),
            Role::User,
            0,
            Uuid::now_v7(),
            issued,
            std::time::Duration::from_secs(900),
        )
        .unwrap();
        let err = decode_access_token(&keys, &token).unwrap_err();
        assert!(err.to_string().contains("expired"));
    }

    #[test]
    fn random_tokens_are_long_prefixed_and_hashed() {
        let (token, hash) = random_token("jhk_");
        assert!(token.starts_with("jhk_"));
        assert_eq!(token.len(), 4 + 64);
        assert_eq!(hash, hash_token(&token));
        assert_ne!(random_token("jhk_").0, token);
    }
}
