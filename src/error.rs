//! The one error type at the boundary. Services return [`AppError`]; resolvers use `?`; the conversion
//! into a GraphQL error sets the contract's `extensions.code` and never sends internal causes to the
//! client: those are logged once, here, inside the request's span (which carries the request id).

use async_graphql::ErrorExtensions;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `UNAUTHENTICATED`: no valid credential, or a wrong password (same message either way).
    #[error("{0}")]
    Unauthenticated(String),
    /// `FORBIDDEN`: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// `BAD_USER_INPUT`: the request is wrong; `field` names the one input field at fault.
    #[error("{message}")]
    BadUserInput {
        message: String,
        field: Option<String>,
    },
    /// `NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// `CONFLICT`: a unique value is taken, or the state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// `SUBSCRIPTION_REQUIRED`: the caller has no active plan.
    #[error("{0}")]
    SubscriptionRequired(String),
    /// `PLAN_REQUIRED`: the tool needs a higher tier.
    #[error("{0}")]
    PlanRequired(String),
    /// `QUOTA_EXCEEDED`: the plan's token limit would be overspent.
    #[error("{0}")]
    QuotaExceeded(String),
    /// `PAYMENT_REQUIRED`: a paid plan needs a payment that cannot be taken (no provider configured, or
    /// the provider declined the charge).
    #[error("{0}")]
    PaymentRequired(String),
    /// `SERVICE_UNAVAILABLE` with `retryAfter`: the payment provider could not be reached or failed;
    /// nothing was changed.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// `RATE_LIMITED`, with `extensions.retryAfter` in seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// `UPSTREAM_UNAVAILABLE`: the tool's upstream failed or its circuit is open.
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// `UPSTREAM_TIMEOUT`.
    #[error("{0}")]
    UpstreamTimeout(String),
    /// `QUERY_TOO_COMPLEX`: a request limit (depth, complexity, aliases, batch, size) was exceeded.
    #[error("{0}")]
    QueryTooComplex(String),
    /// `SERVICE_UNAVAILABLE` with `retryAfter` (seconds): the database is briefly unreachable (restarting,
    /// failing over) or the pool is exhausted; the same request may succeed in a moment.
    #[error("the service is busy; please retry shortly")]
    Unavailable(#[source] anyhow::Error),
    /// `INTERNAL`: a bug or an unexpected failure. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Message sent for `INTERNAL` errors; the request id is added in `extensions.requestId`.
pub const INTERNAL_MESSAGE: &str =
    "Something went wrong on our side. If it persists, report it with the request id.";

/// Seconds a client should wait before retrying a `SERVICE_UNAVAILABLE` request.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// Seconds a client should wait before retrying when the payment provider failed.
pub const PROVIDER_RETRY_AFTER_SECS: u64 = 5;

/// Every `extensions.code` the API answers with; README's error table lists each one.
pub const ERROR_CODES: [&str; 17] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "SUBSCRIPTION_REQUIRED",
    "PLAN_REQUIRED",
    "QUOTA_EXCEEDED",
    "PAYMENT_REQUIRED",
    "RATE_LIMITED",
    "UPSTREAM_UNAVAILABLE",
    "UPSTREAM_TIMEOUT",
    "QUERY_TOO_COMPLEX",
    "SERVICE_UNAVAILABLE",
    "INTERNAL",
    "PERSISTED_QUERY_NOT_FOUND",
    "PERSISTED_QUERY_NOT_SUPPORTED",
];

impl AppError {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// An unexpected failure; one caused by losing the database is `Unavailable` instead.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let cause = cause.into();
        let lost = cause
            .chain()
            .filter_map(|e| e.downcast_ref::<DieselError>())
            .any(is_connection_loss);
        if lost {
            Self::Unavailable(cause)
        } else {
            Self::Internal(cause)
        }
    }

    /// The message a person may see (internal causes stay out).
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => INTERNAL_MESSAGE.to_owned(),
            other => other.to_string(),
        }
    }

    /// The HTTP status for this error when it ends a request before GraphQL runs.
    pub fn http_status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            Self::Unavailable(_) | Self::ProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The contract's `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::SubscriptionRequired(_) => "SUBSCRIPTION_REQUIRED",
            Self::PlanRequired(_) => "PLAN_REQUIRED",
            Self::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            Self::PaymentRequired(_) => "PAYMENT_REQUIRED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::UpstreamUnavailable(_) => "UPSTREAM_UNAVAILABLE",
            Self::UpstreamTimeout(_) => "UPSTREAM_TIMEOUT",
            Self::QueryTooComplex(_) => "QUERY_TOO_COMPLEX",
            Self::Unavailable(_) | Self::ProviderUnavailable(_) => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

/// Whether `error` says the database went away (closed connection, server shutting down, crashed or
/// starting up) rather than that the statement was wrong: worth a retry once it is back.
pub fn is_connection_loss(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            message.starts_with("terminating connection")
                || message.starts_with("the database system is")
        }
        _ => false,
    }
}

impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => Self::NotFound("Not found.".into()),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::Conflict(conflict_message(info.constraint_name()))
            }
            ref lost if is_connection_loss(lost) => Self::Unavailable(anyhow::Error::new(error)),
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Unavailable(anyhow::Error::new(error))
    }
}

/// A person-readable message for a unique violation, by constraint name. Domains add their
/// constraints here as they create them; unknown ones get a generic sentence.
fn conflict_message(constraint: Option<&str>) -> String {
    match constraint {
        Some(name) if name.contains("email") => "That email address is already registered.".into(),
        Some(name) if name.contains("subscription") => "You already have a subscription.".into(),
        Some(name) if name.contains("name") => "That name is already taken.".into(),
        _ => "That value is already taken.".into(),
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> Self {
        error.extend()
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        let message = match self {
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                INTERNAL_MESSAGE.to_owned()
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                self.to_string()
            }
            other => other.to_string(),
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                Self::BadUserInput {
                    field: Some(field), ..
                } => ext.set("field", field.as_str()),
                Self::RateLimited { retry_after, .. } => ext.set("retryAfter", *retry_after),
                Self::Unavailable(_) => {
                    ext.set("retryAfter", UNAVAILABLE_RETRY_AFTER_SECS);
                    ext.set("retryable", true);
                }
                Self::ProviderUnavailable(_) => {
                    ext.set("retryAfter", PROVIDER_RETRY_AFTER_SECS);
                    ext.set("retryable", true);
                }
                _ => {}
            }
        })
    }
}

/// Result alias for services and resolvers.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_keep_their_cause_out_of_the_message() {
        let err: async_graphql::Error = AppError::internal(anyhow::anyhow!(
            "relation \"users\" does not exist at /src/x.rs"
        ))
        .into();
        assert_eq!(err.message, INTERNAL_MESSAGE);
        let ext = err.extensions.unwrap();
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("INTERNAL"))
        );
    }

    #[test]
    fn bad_input_names_the_field_and_rate_limits_say_when_to_retry() {
        let err: async_graphql::Error =
            AppError::bad_input("email", "Not an email address.").into();
        let ext = err.extensions.unwrap();
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(ext.get("field"), Some(&async_graphql::Value::from("email")));

        let err: async_graphql::Error = AppError::RateLimited {
            message: "Too many attempts.".into(),
            retry_after: 30,
        }
        .into();
        let ext = err.extensions.unwrap();
        assert_eq!(ext.get("retryAfter"), Some(&async_graphql::Value::from(30)));
    }

    #[test]
    fn every_error_answers_a_listed_code() {
        let errors = [
            AppError::Unauthenticated(String::new()),
            AppError::Forbidden(String::new()),
            AppError::bad_input("x", ""),
            AppError::NotFound(String::new()),
            AppError::Conflict(String::new()),
            AppError::SubscriptionRequired(String::new()),
            AppError::PlanRequired(String::new()),
            AppError::QuotaExceeded(String::new()),
            AppError::PaymentRequired(String::new()),
            AppError::ProviderUnavailable(String::new()),
            AppError::RateLimited {
                message: String::new(),
                retry_after: 1,
            },
            AppError::UpstreamUnavailable(String::new()),
            AppError::UpstreamTimeout(String::new()),
            AppError::QueryTooComplex(String::new()),
            AppError::Unavailable(anyhow::anyhow!("down")),
            AppError::internal(anyhow::anyhow!("bug")),
        ];
        for error in &errors {
            assert!(ERROR_CODES.contains(&error.code()), "{}", error.code());
        }
    }

    #[test]
    fn diesel_not_found_and_unique_violations_map_to_contract_codes() {
        assert_eq!(AppError::from(DieselError::NotFound).code(), "NOT_FOUND");
        assert_eq!(
            AppError::from(DieselError::RollbackTransaction).code(),
            "INTERNAL"
        );
        assert_eq!(
            conflict_message(Some("users_email_key")),
            "That email address is already registered."
        );
    }
}
