//! What every resolver can know about the request it serves, and a small trait to reach it without
//! `data_unchecked`.

use async_graphql::Context;

use crate::app::AppState;
use crate::error::AppError;

/// Who is calling. Accounts add authenticated callers; until a credential is verified the caller is
/// anonymous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credential was presented.
    Anonymous,
}

/// Per-request data: inserted by the HTTP and WebSocket handlers into every GraphQL request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The `x-request-id` of the HTTP request (or of the WebSocket upgrade).
    pub request_id: String,
    pub caller: Caller,
}

/// Typed access to the shared state and the request context from a resolver.
pub trait ContextExt {
    /// The application state (pool, configuration, keys).
    fn app(&self) -> Result<&AppState, AppError>;
    /// The request's context (caller, request id).
    fn request(&self) -> Result<&RequestContext, AppError>;
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
