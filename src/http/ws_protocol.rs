//! The rules of `graphql-transport-ws` that the protocol handler of async-graphql leaves out, applied to
//! the messages on their way in and out (the legacy `graphql-ws` protocol is left as it is):
//!
//! - a message that is not JSON, has no known `type`, or lacks the fields of its type closes the socket
//!   with `4400`;
//! - `subscribe` before the connection is initialised closes it with `4401`;
//! - a second `connection_init` closes it with `4429`;
//! - `subscribe` with the id of an operation still running closes it with `4409`;
//! - an operation that fails before it yields anything (a validation error) is answered with an `error`
//!   message, not `next` with errors, and no `complete` follows.

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{Value, json};

/// Close code: a message the protocol does not allow.
pub const CLOSE_INVALID_MESSAGE: u16 = 4400;
/// Close code: `subscribe` before `connection_init` was accepted.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code: an operation id already in use.
pub const CLOSE_DUPLICATE_ID: u16 = 4409;
/// Close code: too many requests of one kind on this socket.
pub const CLOSE_TOO_MANY: u16 = 4429;

/// The reason sent with a close code of this module.
pub fn reason(code: u16) -> &'static str {
    match code {
        CLOSE_INVALID_MESSAGE => "Invalid message received",
        CLOSE_UNAUTHORIZED => "Unauthorized",
        CLOSE_DUPLICATE_ID => "Subscriber for this id already exists",
        _ => "Too many initialisation requests",
    }
}

/// What one socket has seen so far.
#[derive(Default)]
struct Seen {
    initialising: bool,
    /// Operations started and not finished.
    running: HashSet<String>,
    /// Operations that have yielded at least one result.
    yielded: HashSet<String>,
    /// Operations answered with `error`, whose `complete` is dropped.
    failed: HashSet<String>,
}

/// The rules for one socket; see the module documentation.
pub struct Protocol {
    strict: bool,
    seen: Mutex<Seen>,
}

impl Protocol {
    /// `strict` for `graphql-transport-ws`; the legacy protocol passes unchanged.
    pub fn new(strict: bool) -> Self {
        Self {
            strict,
            seen: Mutex::default(),
        }
    }

    /// Whether the client asked for `graphql-transport-ws` first among the protocols served.
    pub fn strict_for(offered: Option<&str>) -> bool {
        offered
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .find(|p| *p == "graphql-transport-ws" || *p == "graphql-ws")
            == Some("graphql-transport-ws")
    }

    /// Judges a client's text message: `Ok(true)` when it starts an operation (`subscribe`, or
    /// `start` in the legacy protocol), `Err(code)` when it closes the socket.
    pub fn incoming(&self, text: &str, initialised: bool) -> Result<bool, u16> {
        let message: Option<Value> = serde_json::from_str(text).ok();
        let kind = message
            .as_ref()
            .and_then(|m| m.get("type"))
            .and_then(Value::as_str);
        if !self.strict {
            return Ok(matches!(kind, Some("start" | "subscribe")));
        }
        let kind = kind.ok_or(CLOSE_INVALID_MESSAGE)?;
        let message = message.as_ref().ok_or(CLOSE_INVALID_MESSAGE)?;
        let id = message.get("id").and_then(Value::as_str);
        let Ok(mut seen) = self.seen.lock() else {
            return Ok(kind == "subscribe");
        };
        match kind {
            "connection_init" => {
                if seen.initialising {
                    return Err(CLOSE_TOO_MANY);
                }
                seen.initialising = true;
            }
            "subscribe" => {
                let id = id.ok_or(CLOSE_INVALID_MESSAGE)?;
                if !message.get("payload").is_some_and(Value::is_object) {
                    return Err(CLOSE_INVALID_MESSAGE);
                }
                if !initialised {
                    return Err(CLOSE_UNAUTHORIZED);
                }
                if !seen.running.insert(id.to_owned()) {
                    return Err(CLOSE_DUPLICATE_ID);
                }
            }
            "complete" => {
                let id = id.ok_or(CLOSE_INVALID_MESSAGE)?;
                seen.running.remove(id);
            }
            "ping" | "pong" => {}
            _ => return Err(CLOSE_INVALID_MESSAGE),
        }
        Ok(kind == "subscribe")
    }

    /// Rewrites a server's text message; `None` drops it.
    pub fn outgoing(&self, text: &str) -> Option<String> {
        if !self.strict {
            return Some(text.to_owned());
        }
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return Some(text.to_owned());
        };
        let kind = message.get("type").and_then(Value::as_str);
        let Some(id) = message.get("id").and_then(Value::as_str) else {
            return Some(text.to_owned());
        };
        let Ok(mut seen) = self.seen.lock() else {
            return Some(text.to_owned());
        };
        match kind {
            Some("next") => {
                let payload = message.get("payload");
                let data = payload.and_then(|p| p.get("data"));
                let errors = payload
                    .and_then(|p| p.get("errors"))
                    .and_then(Value::as_array)
                    .filter(|e| !e.is_empty());
                if !seen.yielded.contains(id)
                    && data.is_none_or(Value::is_null)
                    && let Some(errors) = errors
                {
                    seen.running.remove(id);
                    seen.failed.insert(id.to_owned());
                    let error = json!({ "id": id, "type": "error", "payload": errors });
                    return Some(error.to_string());
                }
                seen.yielded.insert(id.to_owned());
            }
            Some("complete") => {
                seen.running.remove(id);
                seen.yielded.remove(id);
                if seen.failed.remove(id) {
                    return None;
                }
            }
            Some("error") => {
                seen.running.remove(id);
                seen.yielded.remove(id);
            }
            _ => {}
        }
        Some(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_graphql_transport_ws_offered_first_is_strict() {
        assert!(Protocol::strict_for(Some("graphql-transport-ws")));
        assert!(Protocol::strict_for(Some(
            "foo, graphql-transport-ws, graphql-ws"
        )));
        assert!(!Protocol::strict_for(Some(
            "graphql-ws, graphql-transport-ws"
        )));
        assert!(!Protocol::strict_for(None));
    }

    #[test]
    fn client_messages_follow_the_protocol() {
        let protocol = Protocol::new(true);
        let subscribe = r#"{"id":"1","type":"subscribe","payload":{"query":"{ __typename }"}}"#;
        assert_eq!(
            protocol.incoming("not json", true),
            Err(CLOSE_INVALID_MESSAGE)
        );
        assert_eq!(
            protocol.incoming(r#"{"type":"hello"}"#, true),
            Err(CLOSE_INVALID_MESSAGE)
        );
        assert_eq!(protocol.incoming(subscribe, false), Err(CLOSE_UNAUTHORIZED));
        assert_eq!(
            protocol.incoming(r#"{"type":"connection_init"}"#, false),
            Ok(false)
        );
        assert_eq!(
            protocol.incoming(r#"{"type":"connection_init"}"#, true),
            Err(CLOSE_TOO_MANY)
        );
        assert_eq!(protocol.incoming(subscribe, true), Ok(true));
        assert_eq!(protocol.incoming(subscribe, true), Err(CLOSE_DUPLICATE_ID));
        assert_eq!(
            protocol.incoming(r#"{"id":"1","type":"complete"}"#, true),
            Ok(false)
        );
        assert_eq!(protocol.incoming(subscribe, true), Ok(true));
        assert!(Protocol::new(false).incoming("not json", false).is_ok());
    }

    #[test]
    fn an_operation_failing_before_any_result_is_an_error_without_complete() {
        let protocol = Protocol::new(true);
        let failed = r#"{"id":"1","type":"next","payload":{"data":null,"errors":[{"message":"Unknown field"}]}}"#;
        let error: Value = serde_json::from_str(&protocol.outgoing(failed).unwrap()).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["payload"][0]["message"], "Unknown field");
        assert_eq!(protocol.outgoing(r#"{"id":"1","type":"complete"}"#), None);
        let ok = r#"{"id":"2","type":"next","payload":{"data":{"a":1}}}"#;
        assert_eq!(protocol.outgoing(ok).as_deref(), Some(ok));
        let later =
            r#"{"id":"2","type":"next","payload":{"data":null,"errors":[{"message":"x"}]}}"#;
        assert_eq!(protocol.outgoing(later).as_deref(), Some(later));
        assert!(
            protocol
                .outgoing(r#"{"id":"2","type":"complete"}"#)
                .is_some()
        );
    }
}
