//! Who is calling, as every layer sees it: resolvers read it from the request, services take it as a
//! parameter. Built from a request's credentials by [`super::caller::authenticate`].

use crate::keys::model::ApiKeyId;
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
}

impl AuthenticatedUser {
    /// The API key the caller used, if any.
    pub fn api_key(&self) -> Option<ApiKeyId> {
        match self.credential {
            Credential::ApiKey(id) => Some(id),
            Credential::AccessToken => None,
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    AccessToken,
    ApiKey(ApiKeyId),
}
