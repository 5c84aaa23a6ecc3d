//! Parts of an answer written as JSON serialised earlier, instead of being copied into the answer's
//! value and serialised again. A resolver whose part of the answer is the same bytes every time (a
//! kept catalogue page, `tools::rendered`) answers a placeholder string, and the transport that
//! serialises the answer writes the part's JSON in the placeholder's place.
//!
//! Only a transport that splices ([`Verbatim::splice`]) puts a [`Verbatim`] in the request's data, and
//! a resolver answers a placeholder only when it finds one there: every other transport gets the
//! value itself. A placeholder is a string no answer can hold otherwise: it starts with a control
//! character and a token drawn at random when the process starts, and names its part by number.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use async_graphql::Value;

/// What every placeholder of this process starts with (see the module documentation).
static PREFIX: LazyLock<String> =
    LazyLock::new(|| format!("\u{1}verbatim-{}-", uuid::Uuid::new_v4().simple()));

/// How a placeholder starts in a serialised answer: its opening quote and [`PREFIX`] as serde_json
/// escapes it (the control character as `\u0001`).
static QUOTED_PREFIX: LazyLock<String> = LazyLock::new(|| {
    let quoted = serde_json::to_string(&*PREFIX).unwrap_or_default();
    quoted.trim_end_matches('"').to_owned()
});

/// The parts of one HTTP call's answers written verbatim, in placeholder order. Cheap to clone: the
/// clones share the parts, so the requests of a batch number theirs apart.
#[derive(Clone, Default)]
pub struct Verbatim {
    parts: Arc<Mutex<Vec<Arc<str>>>>,
}

impl Verbatim {
    /// The placeholder to answer for `json`, a JSON value serialised as the answer would be.
    pub fn placeholder(&self, json: Arc<str>) -> Value {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        parts.push(json);
        Value::String(format!("{}{}", *PREFIX, parts.len() - 1))
    }

    /// `body`, the serialised answer, with each placeholder replaced by its part.
    pub fn splice(&self, body: Vec<u8>) -> Vec<u8> {
        let parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let quoted = QUOTED_PREFIX.as_bytes();
        if parts.is_empty() || quoted.is_empty() {
            return body;
        }
        let mut out = Vec::with_capacity(body.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        let mut rest: &[u8] = &body;
        while let Some((before, after)) = find(rest, quoted)
            .and_then(|at| rest.split_at_checked(at))
            .and_then(|(before, from)| Some((before, from.strip_prefix(quoted)?)))
        {
            out.extend_from_slice(before);
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            let (number, tail) = after.split_at_checked(digits).unwrap_or((&[], after));
            let part = std::str::from_utf8(number)
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| parts.get(n));
            match (part, tail.strip_prefix(b"\"")) {
                (Some(part), Some(tail)) => {
                    out.extend_from_slice(part.as_bytes());
                    rest = tail;
                }
                _ => {
                    out.extend_from_slice(quoted);
                    rest = after;
                }
            }
        }
        out.extend_from_slice(rest);
        out
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_their_parts_and_nothing_else_changes() {
        let verbatim = Verbatim::default();
        let first = verbatim.placeholder(Arc::from(r#"{"a":[1,2]}"#));
        let second = verbatim.placeholder(Arc::from(r#""x""#));
        let answer = serde_json::json!({
            "data": { "one": first, "two": second, "plain": "\u{1}verbatim-" },
        });
        let body = verbatim.splice(serde_json::to_vec(&answer).unwrap());
        let spliced: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            spliced,
            serde_json::json!({ "data": { "one": { "a": [1, 2] }, "two": "x", "plain": "\u{1}verbatim-" } })
        );
    }

    #[test]
    fn a_string_without_the_token_or_naming_no_part_stays_as_it_is() {
        let verbatim = Verbatim::default();
        let placeholder = verbatim.placeholder(Arc::from("1"));
        let Value::String(text) = placeholder else {
            panic!("a placeholder is a string");
        };
        let forged = "\u{1}verbatim-00000000000000000000000000000000-0";
        let unknown = format!("{}7", &text[..text.len() - 1]);
        let trailing = format!("{text}x");
        let answer = serde_json::json!([forged, unknown, trailing, text]);
        let body = verbatim.splice(serde_json::to_vec(&answer).unwrap());
        let spliced: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(spliced, serde_json::json!([forged, unknown, trailing, 1]));
    }

    #[test]
    fn without_parts_the_body_is_returned_as_it_is() {
        let body = br#"{"data":{"a":"\u0001verbatim-"}}"#.to_vec();
        assert_eq!(Verbatim::default().splice(body.clone()), body);
    }
}
