//! Authorization guards for resolvers: `#[graphql(guard = "LoggedIn")]`, `#[graphql(guard = "AdminOnly")]`.

use async_graphql::{Context, Guard};

use super::context::ContextExt;
use crate::error::AppError;
use crate::users::model::Role;

/// The caller must be authenticated.
pub struct LoggedIn;

impl Guard for LoggedIn {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        ctx.user()?;
        Ok(())
    }
}

/// The caller must be an administrator.
pub struct AdminOnly;

impl Guard for AdminOnly {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if ctx.user()?.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden("Only administrators may do this.".into()).into())
        }
    }
}
