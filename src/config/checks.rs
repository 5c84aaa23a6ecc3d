//! Checks on single values: secrets strong enough for production, keys in hexadecimal, header-safe text.

use super::MIN_SECRET_LEN;

/// Why a secret is too weak, or `None` when it is acceptable.
pub fn weak_secret(secret: &str) -> Option<&'static str> {
    const KNOWN_WEAK: [&str; 6] = [
        "secret", "changeme", "password", "jwt", "example", "default",
    ];
    let lower = secret.to_ascii_lowercase();
    if secret.len() < MIN_SECRET_LEN {
        return Some("it is shorter than 32 characters");
    }
    let mut distinct: Vec<char> = secret.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 10 {
        return Some("it repeats too few different characters");
    }
    if KNOWN_WEAK.iter().any(|w| lower.contains(w)) {
        return Some("it contains a well-known placeholder word");
    }
    None
}

/// Parses a 32-byte key written as 64 hexadecimal characters.
pub fn parse_key_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

pub(super) fn http_header_safe(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_graphic())
}

/// An http(s) URL that can stand in an HTML attribute as it is.
pub fn is_plain_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\'))
    })
}
