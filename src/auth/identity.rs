//! Who is calling, as every layer sees it: resolvers read it from the request, services take it as a
//! parameter. Built from a request's credentials by [`super::caller::authenticate`].

use crate::error::AppError;
use crate::keys::model::{ApiKeyId, Scope, Scopes};
use crate::users::model::{Role, UserId};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credential was presented.
    Anonymous,
    /// A verified credential of an active account.
    User(AuthenticatedUser),
}

/// A caller whose credential was verified on this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub id: UserId,
    /// The role now, read from the database (not the one in the token).
    pub role: Role,
    pub credential: Credential,
    /// Whether the account's email address is verified (read with the role).
    pub email_verified: bool,
}

impl AuthenticatedUser {
    /// The API key the caller used, if any.
    pub fn api_key(&self) -> Option<ApiKeyId> {
        match self.credential {
            Credential::ApiKey { id, .. } => Some(id),
            Credential::AccessToken => None,
        }
    }

    /// The API key the caller used, when it has limits of its own (a request rate or a token budget):
    /// only such keys are counted apart by billing.
    pub fn limited_api_key(&self) -> Option<ApiKeyId> {
        match self.credential {
            Credential::ApiKey {
                id, limited: true, ..
            } => Some(id),
            _ => None,
        }
    }

    /// What the credential allows: a session everything, a key its scopes.
    pub fn allows(&self, scope: Scope) -> bool {
        match self.credential {
            Credential::AccessToken => true,
            Credential::ApiKey { scopes, .. } => scopes.contains(scope),
        }
    }

    /// `FORBIDDEN`, naming the scope, unless the credential allows `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "This API key lacks the {scope} scope; create a key with it, or sign in."
            )))
        }
    }

    /// `FORBIDDEN` when the rules ask for a verified email address (`HUB_REQUIRE_VERIFIED_EMAIL`) and the
    /// account has none yet; `what` is what the caller tried.
    pub fn require_verified_email(&self, required: bool, what: &str) -> Result<(), AppError> {
        if !required || self.email_verified {
            return Ok(());
        }
        Err(AppError::Forbidden(format!(
            "Verify your email address before you {what}: open the link we mailed you, or ask for a new one with `resendVerificationEmail`."
        )))
    }

    /// `FORBIDDEN` unless the caller signed in (an API key is not enough for `what`).
    pub fn require_session(&self, what: &str) -> Result<(), AppError> {
        match self.credential {
            Credential::AccessToken => Ok(()),
            Credential::ApiKey { .. } => Err(AppError::Forbidden(format!(
                "{what} needs a signed-in session, not an API key."
            ))),
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    AccessToken,
    ApiKey {
        id: ApiKeyId,
        scopes: Scopes,
        /// Whether the key has limits of its own (a request rate or a token budget).
        limited: bool,
    },
}
