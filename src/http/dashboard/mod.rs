//! The reference dashboard at `/app`: plain JavaScript modules built into the binary (`files/`), which
//! speak only the public GraphQL API, as any other client does. Nothing is fetched from elsewhere, and
//! the Content-Security-Policy lets the page run the hub's own scripts and talk to the hub only.
//!
//! The links mailed to users open it: `/verify-email?token=…` and `/reset-password?token=…` redirect
//! to its views, with the token moved into the fragment (which browsers never send to a server).

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::error_response;

/// The page may run and load the hub's own files only, talk to the hub only (HTTP and WebSocket), and
/// be framed by nobody.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the dashboard: its path under `/app/`, its media type and its bytes.
pub struct File {
    pub path: &'static str,
    pub media_type: &'static str,
    pub body: &'static str,
}

macro_rules! files {
    ($($path:literal => $media_type:literal),* $(,)?) => {
        /// Every file of the dashboard.
        pub const FILES: &[File] = &[
            $(File { path: $path, media_type: $media_type, body: include_str!(concat!("files/", $path)) },)*
        ];
    };
}

files! {
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "dom.js" => "text/javascript; charset=utf-8",
    "views/account.js" => "text/javascript; charset=utf-8",
    "views/tools.js" => "text/javascript; charset=utf-8",
    "views/usage.js" => "text/javascript; charset=utf-8",
    "views/plan.js" => "text/javascript; charset=utf-8",
    "views/keys.js" => "text/javascript; charset=utf-8",
    "views/notifications.js" => "text/javascript; charset=utf-8",
    "views/admin.js" => "text/javascript; charset=utf-8",
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(|| async { serve("index.html") }))
        .route(
            "/app/{*path}",
            get(|Path(path): Path<String>| async move { serve(&path) }),
        )
        .route(
            "/verify-email",
            get(|query: RawQuery| async move { to_view("verify", query) }),
        )
        .route(
            "/reset-password",
            get(|query: RawQuery| async move { to_view("reset", query) }),
        )
}

fn serve(path: &str) -> Response {
    let Some(file) = FILES.iter().find(|f| f.path == path) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("The dashboard has no file /app/{path}; open /app/."),
        );
    };
    let mut response = file.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.media_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A mailed link's page: the dashboard's `view`, with the link's query in the fragment.
fn to_view(view: &str, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let safe = query
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '&' | '-' | '_' | '.' | '%'));
    if !safe {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "This link is damaged: open it again from the mail, whole.",
        );
    }
    let mut response = Redirect::to(&format!("/app/#/{view}?{query}")).into_response();
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
