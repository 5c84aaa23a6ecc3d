//! What every resolver can know about the request it serves, and a small trait to reach it without
//! `data_unchecked`.

use std::net::IpAddr;

use async_graphql::Context;

use crate::app::AppState;
use crate::audit::service::Actor;
use crate::auth::identity::{AuthenticatedUser, Caller};
use crate::error::AppError;

/// Per-request data: inserted by the HTTP and WebSocket handlers into every GraphQL request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The `x-request-id` of the HTTP request (or of the WebSocket upgrade).
    pub request_id: String,
    pub caller: Caller,
    /// The peer address of the connection.
    pub client_ip: Option<IpAddr>,
}

/// Typed access to the shared state and the request context from a resolver.
pub trait ContextExt {
    /// The application state (pool, configuration, keys).
    fn app(&self) -> Result<&AppState, AppError>;
    /// The request's context (caller, request id).
    fn request(&self) -> Result<&RequestContext, AppError>;
    /// The authenticated caller, or `UNAUTHENTICATED`.
    fn user(&self) -> Result<&AuthenticatedUser, AppError> {
        match &self.request()?.caller {
            Caller::User(user) => Ok(user),
            Caller::Anonymous => Err(AppError::Unauthenticated(
                "Log in (or send an API key) to do this.".into(),
            )),
        }
    }
    /// The authenticated caller and this request, for the audit trail.
    fn actor(&self) -> Result<Actor, AppError> {
        Ok(Actor {
            user_id: Some(self.user()?.id.0),
            request_id: Some(self.request()?.request_id.clone()),
        })
    }
}

impl ContextExt for Context<'_> {
    fn app(&self) -> Result<&AppState, AppError> {
        self.data::<AppState>().map_err(|e| {
            AppError::internal(anyhow::anyhow!("application state missing: {}", e.message))
        })
    }

    fn request(&self) -> Result<&RequestContext, AppError> {
        self.data::<RequestContext>().map_err(|e| {
            AppError::internal(anyhow::anyhow!("request context missing: {}", e.message))
        })
    }
}
