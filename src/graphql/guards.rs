//! Authorization guards for resolvers: `#[graphql(guard = "Scoped(Scope::Read)")]`,
//! `#[graphql(guard = "SessionOnly")]`, `#[graphql(guard = "AdminOnly")]`. A signed-in session may do
//! what its role allows; an API key only what its scopes allow.

use async_graphql::{Context, Guard};

use super::context::ContextExt;
use crate::error::AppError;
use crate::keys::model::Scope;
use crate::users::model::Role;

/// The caller must be authenticated, with a credential that allows the scope.
pub struct Scoped(pub Scope);

impl Guard for Scoped {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        ctx.user()?.require(self.0)?;
        Ok(())
    }
}

/// The caller must have signed in: an API key is refused whatever its scopes.
pub struct SessionOnly(pub &'static str);

impl Guard for SessionOnly {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        ctx.user()?.require_session(self.0)?;
        Ok(())
    }
}

/// The caller must be an administrator (with an API key: one with the admin scope).
pub struct AdminOnly;

impl Guard for AdminOnly {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let user = ctx.user()?;
        if user.role != Role::Admin {
            return Err(AppError::Forbidden("Only administrators may do this.".into()).into());
        }
        user.require(Scope::Admin)?;
        Ok(())
    }
}
