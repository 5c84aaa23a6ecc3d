//! Access tokens already verified, by their exact text: a dashboard sends the same token with every
//! request until it expires, and checking its signature and parsing its claims cost about a tenth of a
//! dashboard read's CPU. Only a token that verified in full is kept, under its whole text, so a token
//! differing in any character is verified on its own; the store holds the one secret that signs every
//! token for the process's life, so a verdict stays true until the token expires, which is checked
//! again on every use. Whether the account, its session version or its session still stand is not
//! kept here: the caller checks those on every request.

use std::sync::Arc;

use chrono::Utc;

use super::tokens::{self, AccessClaims};
use crate::error::AppError;
use crate::kept::Kept;
use crate::secrets::Keys;

/// Tokens per generation: two generations hold at most a few megabytes.
const ENTRIES: usize = 2_048;
/// A longer text is verified every time (the hub's own tokens are about 400 bytes).
const MAX_TOKEN: usize = 1_024;

/// See the module documentation.
pub struct VerifiedTokens {
    keys: Arc<Keys>,
    kept: Kept<Box<str>, Arc<AccessClaims>>,
}

impl VerifiedTokens {
    /// A store for the tokens `keys` signs.
    pub fn new(keys: Arc<Keys>) -> Self {
        Self {
            keys,
            kept: Kept::new(ENTRIES),
        }
    }

    /// The claims of `token`, verified now or when it was last seen; refused as
    /// [`tokens::decode_access_token`] refuses it.
    pub fn claims(&self, token: &str) -> Result<Arc<AccessClaims>, AppError> {
        self.claims_at(token, Utc::now().timestamp())
    }

    /// [`Self::claims`] with a kept token's expiry judged at `now` (Unix seconds).
    fn claims_at(&self, token: &str, now: i64) -> Result<Arc<AccessClaims>, AppError> {
        let keep = token.len() <= MAX_TOKEN;
        if let Some(claims) = keep.then(|| self.kept.get(token)).flatten() {
            if tokens::has_expired(&claims, now) {
                return Err(tokens::expired());
            }
            return Ok(claims);
        }
        let claims = Arc::new(tokens::decode_access_token(&self.keys, token)?);
        if keep {
            self.kept.insert(token.into(), Arc::clone(&claims));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::users::model::{Role, UserId};

    fn token(keys: &Keys, issued: chrono::DateTime<Utc>, ttl_secs: u64) -> String {
        tokens::issue_access_token(
            keys,
            UserId(Uuid::new_v4()),
            Role::User,
            3,
            Uuid::now_v7(),
            issued,
            std::time::Duration::from_secs(ttl_secs),
        )
        .expect("signs")
        .0
    }

    /// A store, its keys, and a token they signed just now for a minute.
    fn store_with_token() -> (Arc<Keys>, VerifiedTokens, String) {
        let keys = Arc::new(Keys::generate());
        let verified = VerifiedTokens::new(Arc::clone(&keys));
        let token = token(&keys, Utc::now(), 60);
        (keys, verified, token)
    }

    #[test]
    fn a_kept_token_answers_its_claims_and_any_other_text_is_verified_on_its_own() {
        let (_, verified, token) = store_with_token();
        let first = verified.claims(&token).expect("verifies");
        assert!(
            verified.kept.get(token.as_str()).is_some(),
            "kept once verified"
        );
        let again = verified.claims(&token).expect("kept");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second use is answered from memory"
        );
        assert_eq!(again.sv, 3);

        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        let refused = verified.claims(&tampered).expect_err("signature");
        assert_eq!(refused.code(), "UNAUTHENTICATED");
        assert!(verified.kept.get(tampered.as_str()).is_none(), "never kept");

        let other_secret = VerifiedTokens::new(Arc::new(Keys::generate()));
        assert!(other_secret.claims(&token).is_err());
    }

    #[test]
    fn a_kept_token_is_refused_once_it_expires() {
        let (keys, verified, token) = store_with_token();
        let claims = verified.claims(&token).expect("valid");
        let last_second = claims.exp + tokens::LEEWAY_SECS;
        assert!(verified.claims_at(&token, last_second).is_ok());
        let refused = verified
            .claims_at(&token, last_second + 1)
            .expect_err("expired while kept");
        assert!(refused.to_string().contains("expired"), "{refused}");

        let expired = self::token(&keys, Utc::now() - Duration::hours(1), 60);
        let refused = verified.claims(&expired).expect_err("expired");
        assert!(refused.to_string().contains("expired"), "{refused}");
        assert!(verified.kept.get(expired.as_str()).is_none(), "never kept");
    }
}
