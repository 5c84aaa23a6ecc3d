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
    /// The client's address: the connection's peer, or behind a trusted proxy the one it forwarded.
    pub client_ip: Option<IpAddr>,
    /// The request's `User-Agent`, at most 256 characters.
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// The `User-Agent` header, printable and at most 256 characters.
    pub fn user_agent_of(headers: &axum::http::HeaderMap) -> Option<String> {
        let agent = headers.get(axum::http::header::USER_AGENT)?.to_str().ok()?;
        Some(
            agent
                .chars()
                .filter(|c| !c.is_control())
                .take(256)
                .collect(),
        )
    }
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
            ..self.origin()?
        })
    }
    /// This request, for the audit trail, whoever is calling (the caller's id when signed in).
    fn origin(&self) -> Result<Actor, AppError> {
        let request = self.request()?;
        Ok(Actor {
            user_id: match &request.caller {
                Caller::User(user) => Some(user.id.0),
                Caller::Anonymous => None,
            },
            request_id: Some(request.request_id.clone()),
            client_ip: request.client_ip,
            user_agent: request.user_agent.clone(),
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
