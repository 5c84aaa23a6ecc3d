//! What administrators may write into a tool: each field checked, with a message that names the field
//! and says what is allowed; secret header values encrypted before they are stored.

use super::crypto;
use super::model::StoredHeader;
use crate::app::AppState;
use crate::billing::model::PlanTier;
use crate::error::{AppError, AppResult};
use crate::gateway::destination;

/// A tool as an administrator writes it; `None` means "unchanged" on update, "default" on create.
#[derive(Debug, Default, Clone)]
pub struct ToolInput {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub usage_notes: Option<String>,
    pub category: Option<String>,
    pub endpoint: Option<String>,
    pub method: Option<String>,
    /// Replaces the whole list when given.
    pub headers: Option<Vec<HeaderInput>>,
    pub timeout_ms: Option<i32>,
    pub tokens_path: Option<String>,
    pub estimated_tokens: Option<i64>,
    pub max_tokens_per_call: Option<i64>,
    pub min_tier: Option<PlanTier>,
    pub enabled: Option<bool>,
    pub streams: Option<bool>,
}

/// One extra header sent upstream.
#[derive(Debug, Clone)]
pub struct HeaderInput {
    pub name: String,
    /// For a secret header, `None` keeps the value already stored under this name.
    pub value: Option<String>,
    /// Encrypted at rest and never shown back.
    pub secret: bool,
}

/// Headers a tool may not set: the hub owns them.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "content-type",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "x-request-id",
];

pub(crate) fn bad(field: &str, message: &str) -> AppError {
    AppError::bad_input(field, message)
}

pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) -> AppResult<String> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(bad(field, "This field cannot be empty."));
    }
    if value.chars().count() > max {
        return Err(bad(field, &format!("At most {max} characters.")));
    }
    Ok(value.to_owned())
}

pub(crate) fn check_slug(slug: &str) -> AppResult<String> {
    let slug = slug.trim().to_owned();
    let valid = (1..=60).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if valid {
        Ok(slug)
    } else {
        Err(bad(
            "slug",
            "A slug has 1 to 60 lower-case letters, digits and inner hyphens, e.g. text-summarizer.",
        ))
    }
}

/// A slug from a name: "Text Summarizer!" → "text-summarizer".
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-')
        .chars()
        .take(60)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// A full http(s) URL without credentials; unless `allow_private`, not an address literal outside the
/// public internet (names are checked on every call, where they resolve: see `gateway::destination`).
pub(crate) fn check_endpoint(endpoint: &str, allow_private: bool) -> AppResult<String> {
    let endpoint = endpoint.trim();
    let url = reqwest::Url::parse(endpoint).map_err(|_| {
        bad(
            "endpoint",
            "The endpoint must be a full URL such as https://api.example.com/v1/run.",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(
            "endpoint",
            "Only http and https endpoints are allowed.",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "endpoint",
            "Put credentials in a secret header, not in the URL.",
        ));
    }
    if let Some(why) = destination::literal_refused(endpoint, allow_private) {
        return Err(bad(
            "endpoint",
            &format!("Tools may only call public addresses: {why}."),
        ));
    }
    Ok(endpoint.to_owned())
}

pub(crate) fn check_method(method: &str) -> AppResult<String> {
    let method = method.trim().to_ascii_uppercase();
    if matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH") {
        Ok(method)
    } else {
        Err(bad("method", "Use GET, POST, PUT or PATCH."))
    }
}

pub(crate) fn check_tokens_path(path: &str) -> AppResult<String> {
    let path = path.trim();
    if path.is_empty() || path.len() > 200 || path.split('.').any(str::is_empty) {
        return Err(bad(
            "tokensPath",
            "A dot path into the answer, such as usage.total_tokens.",
        ));
    }
    Ok(path.to_owned())
}

/// Encrypts secret values; a secret without a value keeps the one stored under the same name.
pub(crate) fn store_headers(
    app: &AppState,
    headers: Vec<HeaderInput>,
    existing: &[StoredHeader],
) -> AppResult<serde_json::Value> {
    if headers.len() > 20 {
        return Err(bad("headers", "At most 20 headers."));
    }
    let mut stored = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.name.trim().to_ascii_lowercase();
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || RESERVED_HEADERS.contains(&name.as_str())
        {
            return Err(bad(
                "headers",
                &format!("`{name}` cannot be set as an extra header."),
            ));
        }
        if stored.iter().any(|h: &StoredHeader| h.name == name) {
            return Err(bad("headers", &format!("`{name}` is listed twice.")));
        }
        let value = match header.value {
            Some(value) => {
                if axum::http::HeaderValue::from_str(&value).is_err() {
                    return Err(bad(
                        "headers",
                        &format!("The value of `{name}` is not a valid header value."),
                    ));
                }
                Some(value)
            }
            None => None,
        };
        let entry = match (header.secret, value) {
            (true, Some(value)) => {
                let (nonce, ciphertext) =
                    crypto::encrypt(app.keys.encryption_key.expose(), &name, &value)?;
                StoredHeader {
                    name,
                    value: None,
                    nonce: Some(nonce),
                    ciphertext: Some(ciphertext),
                }
            }
            (true, None) => existing
                .iter()
                .find(|h| h.name == name && h.is_secret())
                .cloned()
                .ok_or_else(|| {
                    bad(
                        "headers",
                        &format!("Give a value for the new secret header `{name}`."),
                    )
                })?,
            (false, Some(value)) => StoredHeader {
                name,
                value: Some(value),
                nonce: None,
                ciphertext: None,
            },
            (false, None) => return Err(bad("headers", &format!("Give a value for `{name}`."))),
        };
        stored.push(entry);
    }
    serde_json::to_value(stored).map_err(AppError::internal)
}

pub(crate) fn check_timeout(ms: i32) -> AppResult<i32> {
    if (100..=300_000).contains(&ms) {
        Ok(ms)
    } else {
        Err(bad("timeoutMs", "Between 100 and 300000 milliseconds."))
    }
}

pub(crate) fn check_estimate(tokens: i64) -> AppResult<i64> {
    check_tokens("estimatedTokens", tokens)
}

pub(crate) fn check_max_tokens_per_call(tokens: i64) -> AppResult<i64> {
    check_tokens("maxTokensPerCall", tokens)
}

fn check_tokens(field: &str, tokens: i64) -> AppResult<i64> {
    if (1..=100_000_000).contains(&tokens) {
        Ok(tokens)
    } else {
        Err(bad(field, "Between 1 and 100000000 tokens."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slugify("  Text Summarizer! "), "text-summarizer");
        assert_eq!(slugify("GPT-4 / Vision"), "gpt-4-vision");
    }

    #[test]
    fn endpoints_must_be_http_urls_without_credentials() {
        assert!(check_endpoint("https://api.example.com/v1", false).is_ok());
        assert!(check_endpoint("ftp://example.com", true).is_err());
        assert!(check_endpoint("https://user:pw@example.com", true).is_err());
        assert!(check_endpoint("not a url", true).is_err());
        assert!(check_endpoint("http://169.254.169.254/latest", false).is_err());
        assert!(check_endpoint("http://127.0.0.1:8080/run", true).is_ok());
    }
}
