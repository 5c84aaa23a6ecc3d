//! An upstream that answers with Server-Sent Events (OpenAI's `stream: true` shape: `data:` chunks of
//! JSON, a last chunk with `usage` when `stream_options.include_usage` was asked, then `data: [DONE]`)
//! is collected into one answer, shaped as the same API's non-streaming answer:
//! `{"id", "object": "chat.completion", "model", "choices": [{"index", "message": {"role", "content"},
//! "finish_reason"}], "usage"}`, with `usage` only when the stream sent one. Each choice's `delta.content`
//! pieces (or, for completions, `text`) are joined in order. A `data:` line that is not JSON is text of
//! choice 0. Comments, `event:`, `id:` and `retry:` lines are read past.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The input for an upstream that streams: an object asks for the stream and for the usage chunk
/// (`"stream": true`, `"stream_options": {"include_usage": true}`, keeping its other stream options);
/// any other input goes as it is.
pub fn asking_to_stream(input: &Value) -> Value {
    let mut body = input.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.insert("stream".into(), Value::Bool(true));
        let options = fields
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(options) = options.as_object_mut() {
            options.insert("include_usage".into(), Value::Bool(true));
        } else {
            *options = json!({ "include_usage": true });
        }
    }
    body
}

/// Whether a `Content-Type` names an event stream.
pub fn is_event_stream(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// One choice as it accumulates.
#[derive(Default)]
struct Choice {
    role: Option<String>,
    content: String,
    finish_reason: Option<Value>,
}

/// Collects a whole event stream into one answer; `Err` when it holds no event at all.
pub fn collect(body: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(body);
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    let mut usage = None;
    let mut id = None;
    let mut model = None;
    let mut events = 0usize;
    for data in events_of(&text) {
        if data.trim() == "[DONE]" {
            break;
        }
        events += 1;
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            choices.entry(0).or_default().content.push_str(&data);
            continue;
        };
        if let Some(found) = chunk.get("usage").filter(|u| u.is_object()) {
            usage = Some(found.clone());
        }
        id = id.or_else(|| chunk.get("id").cloned());
        model = model.or_else(|| chunk.get("model").cloned());
        for piece in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = piece.get("index").and_then(Value::as_u64).unwrap_or(0);
            let choice = choices.entry(index).or_default();
            let delta = piece.get("delta");
            if let Some(role) = delta.and_then(|d| d.get("role")).and_then(Value::as_str) {
                choice.role = Some(role.to_owned());
            }
            let words = delta
                .and_then(|d| d.get("content"))
                .or_else(|| piece.get("text"))
                .and_then(Value::as_str);
            if let Some(words) = words {
                choice.content.push_str(words);
            }
            if let Some(reason) = piece.get("finish_reason").filter(|r| !r.is_null()) {
                choice.finish_reason = Some(reason.clone());
            }
        }
    }
    if events == 0 {
        return Err("the event stream holds no event".into());
    }
    let mut answer = Map::new();
    answer.insert("id".into(), id.unwrap_or(Value::Null));
    answer.insert("object".into(), json!("chat.completion"));
    answer.insert("model".into(), model.unwrap_or(Value::Null));
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|(index, choice)| {
            json!({
                "index": index,
                "message": {
                    "role": choice.role.unwrap_or_else(|| "assistant".into()),
                    "content": choice.content,
                },
                "finish_reason": choice.finish_reason.unwrap_or(Value::Null),
            })
        })
        .collect();
    answer.insert("choices".into(), Value::Array(choices));
    if let Some(usage) = usage {
        answer.insert("usage".into(), usage);
    }
    Ok(Value::Object(answer))
}

/// The data of each event, in order: its `data:` lines joined with newlines.
fn events_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("\n\n")
        .flat_map(|block| block.split("\r\n\r\n"))
        .filter_map(data_of)
}

/// An event's data: its `data:` lines joined with newlines; `None` for a comment-only block.
fn data_of(block: &str) -> Option<String> {
    let lines: Vec<&str> = block
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Splits an event stream arriving in pieces into its events' data, each as soon as it is complete.
#[derive(Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    /// The data of the events that `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, gap)) = block_end(&self.pending) {
            let block: Vec<u8> = self.pending.drain(..end + gap).collect();
            let text = String::from_utf8_lossy(block.get(..end).unwrap_or_default());
            events.extend(data_of(&text));
        }
        events
    }
}

/// Where the first complete event block ends, and the length of the blank line that ends it.
fn block_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|at| (at, 2));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (found, None) | (None, found) => found,
    }
}

/// The new text in one chunk: choice 0's `delta.content` (or `text`).
pub fn chunk_text(chunk: &Value) -> String {
    let Some(choice) = chunk
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
    else {
        return String::new();
    };
    choice
        .get("delta")
        .and_then(|d| d.get("content"))
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openai_stream_is_collected_with_its_usage() {
        let body = "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
            : keep-alive\n\n\
            data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
            data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
            data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n\
            data: [DONE]\n\n";
        let answer = collect(body.as_bytes()).unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert_eq!(answer["usage"]["total_tokens"], 5);
        assert_eq!(answer["model"], "m");
    }

    #[test]
    fn a_stream_without_usage_has_none_and_plain_text_data_is_content() {
        let answer = collect(b"event: message\r\ndata: one \r\n\r\ndata: two\r\n\r\n").unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "one two");
        assert!(answer.get("usage").is_none());
        assert!(collect(b": only a comment\n\n").is_err());
        assert!(is_event_stream("text/event-stream; charset=utf-8"));
        assert!(!is_event_stream("application/json"));
    }

    #[test]
    fn events_split_across_pieces_come_out_whole_as_they_complete() {
        let mut splitter = Splitter::default();
        assert!(splitter.push(b"data: {\"a\":").is_empty());
        assert_eq!(
            splitter.push(b"1}\n\n: ping\n\ndata: two\r\n"),
            ["{\"a\":1}"]
        );
        assert_eq!(splitter.push(b"\r\n"), ["two"]);
        let chunk = json!({ "choices": [{ "delta": { "content": "Hi" } }] });
        assert_eq!(chunk_text(&chunk), "Hi");
        assert_eq!(chunk_text(&json!({ "choices": [] })), "");
    }

    #[test]
    fn a_streaming_upstream_is_asked_for_the_stream_and_its_usage() {
        let asked = asking_to_stream(&json!({ "messages": [], "stream_options": { "x": 1 } }));
        assert_eq!(asked["stream"], true);
        assert_eq!(
            asked["stream_options"],
            json!({ "x": 1, "include_usage": true })
        );
        assert_eq!(asking_to_stream(&json!("text")), json!("text"));
    }
}
