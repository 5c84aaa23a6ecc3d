//! An upstream that answers with Server-Sent Events (OpenAI's `stream: true` shape: `data:` chunks of
//! JSON, a last chunk with `usage` when `stream_options.include_usage` was asked, then `data: [DONE]`)
//! is collected into one answer, shaped as the same API's non-streaming answer:
//! `{"id", "object": "chat.completion", "model", "choices": [{"index", "message": {"role", "content"},
//! "finish_reason"}], "usage"}`, with `usage` only when the stream sent one. Each choice's `delta.content`
//! pieces (or, for completions, `text`) are joined in order. A `data:` line that is not JSON is text of
//! choice 0. Comments, `event:`, `id:` and `retry:` lines are read past.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
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
    let mut splitter = Splitter::default();
    let mut collector = Collector::default();
    for data in splitter.push(body).into_iter().chain(splitter.rest()) {
        collector.take(data);
    }
    collector.answer()
}

/// One chunk of a streamed answer on its way to the client: the text it adds and its data as it came.
/// Its JSON is built only when asked for ([`StreamedChunk::json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedChunk {
    /// Choice 0's `delta.content` (or `text`); empty when the chunk has none or is not JSON.
    pub text: String,
    data: String,
    is_json: bool,
}

impl StreamedChunk {
    /// The chunk as JSON: its data parsed, or the data as a string when it is not JSON.
    pub fn json(&self) -> Value {
        if self.is_json
            && let Ok(chunk) = serde_json::from_str(&self.data)
        {
            return chunk;
        }
        Value::String(self.data.clone())
    }
}

/// The fields of an OpenAI-style chunk that the answer is built from, read without building the
/// chunk's JSON tree; strings are borrowed from the data where they hold no escapes.
#[derive(Deserialize)]
struct ChunkFields<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default, borrow)]
    choices: Option<Vec<PieceFields<'a>>>,
}

#[derive(Deserialize)]
struct PieceFields<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<DeltaFields<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct DeltaFields<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// Builds one answer from a stream's events as they arrive, each parsed once.
#[derive(Default)]
pub struct Collector {
    choices: BTreeMap<u64, Choice>,
    usage: Option<Value>,
    id: Option<Value>,
    model: Option<Value>,
    events: usize,
    done: bool,
}

impl Collector {
    /// Takes one event's data; the chunk it carries, or `None` for `[DONE]` and anything after it.
    pub fn take(&mut self, data: String) -> Option<StreamedChunk> {
        if self.done {
            return None;
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return None;
        }
        self.events += 1;
        // The usual shape is read field by field; any other JSON through its tree, by the same rules.
        let text = match serde_json::from_str::<ChunkFields>(&data) {
            Ok(fields) => Some(self.take_fields(fields)),
            Err(_) => match serde_json::from_str::<Value>(&data) {
                Ok(chunk) => Some(self.take_tree(&chunk)),
                Err(_) => None,
            },
        };
        let Some(text) = text else {
            self.choices.entry(0).or_default().content.push_str(&data);
            return Some(StreamedChunk {
                text: String::new(),
                data,
                is_json: false,
            });
        };
        Some(StreamedChunk {
            text,
            data,
            is_json: true,
        })
    }

    /// Takes a chunk of the usual shape; the text of its first choice.
    fn take_fields(&mut self, chunk: ChunkFields<'_>) -> String {
        if let Some(found) = chunk.usage.filter(Value::is_object) {
            self.usage = Some(found);
        }
        if self.id.is_none() {
            self.id = chunk.id;
        }
        if self.model.is_none() {
            self.model = chunk.model;
        }
        let mut first_text = None;
        for piece in chunk.choices.into_iter().flatten() {
            let choice = self.choices.entry(piece.index.unwrap_or(0)).or_default();
            let (role, content) = piece
                .delta
                .map_or((None, None), |delta| (delta.role, delta.content));
            if let Some(role) = role {
                choice.role = Some(role.into_owned());
            }
            let words = content.or(piece.text);
            if let Some(words) = &words {
                choice.content.push_str(words);
            }
            if let Some(reason) = piece.finish_reason.filter(|r| !r.is_null()) {
                choice.finish_reason = Some(reason);
            }
            first_text.get_or_insert_with(|| words.map(Cow::into_owned).unwrap_or_default());
        }
        first_text.unwrap_or_default()
    }

    /// Takes a chunk of any other JSON shape; the text of its first choice.
    fn take_tree(&mut self, chunk: &Value) -> String {
        if let Some(found) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(found.clone());
        }
        if self.id.is_none() {
            self.id = chunk.get("id").cloned();
        }
        if self.model.is_none() {
            self.model = chunk.get("model").cloned();
        }
        for piece in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = piece.get("index").and_then(Value::as_u64).unwrap_or(0);
            let choice = self.choices.entry(index).or_default();
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
        chunk_text(chunk)
    }

    /// The answer the events taken so far make; `Err` when there was none.
    pub fn answer(self) -> Result<Value, String> {
        if self.events == 0 {
            return Err("the event stream holds no event".into());
        }
        let mut answer = Map::new();
        answer.insert("id".into(), self.id.unwrap_or(Value::Null));
        answer.insert("object".into(), json!("chat.completion"));
        answer.insert("model".into(), self.model.unwrap_or(Value::Null));
        let choices: Vec<Value> = self
            .choices
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
        if let Some(usage) = self.usage {
            answer.insert("usage".into(), usage);
        }
        Ok(Value::Object(answer))
    }
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

/// Splits an event stream arriving in pieces into its events' data, each as soon as it is complete
/// (a blank line, `\n\n` or `\r\n\r\n`, ends an event). Each byte is looked at once.
#[derive(Default)]
pub struct Splitter {
    pending: Vec<u8>,
    /// How much of `pending` has been searched for line ends.
    scanned: usize,
}

impl Splitter {
    /// The data of the events that `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut block_start = 0;
        let mut at = self.scanned;
        while let Some(found) = self
            .pending
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            let newline = at + found;
            at = newline + 1;
            let before = self.pending.get(block_start..newline).unwrap_or_default();
            let gap = if before.ends_with(b"\n") {
                1
            } else if before.ends_with(b"\r\n\r") {
                3
            } else {
                continue;
            };
            let block = before.get(..before.len() - gap).unwrap_or_default();
            events.extend(data_of(&String::from_utf8_lossy(block)));
            block_start = at;
        }
        self.pending.drain(..block_start);
        self.scanned = self.pending.len();
        events
    }

    /// The data of a last event that no blank line ended.
    pub fn rest(&self) -> Option<String> {
        data_of(&String::from_utf8_lossy(&self.pending))
    }
}

/// The new text in one chunk: choice 0's `delta.content` (or `text`).
fn chunk_text(chunk: &Value) -> String {
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
    fn a_stream_fed_byte_by_byte_splits_as_when_fed_whole() {
        let body = b"data: {\"n\":1}\n\n: ping\r\n\r\ndata: a\ndata: b\r\n\r\n\n\ndata: [DONE]\n\ndata: late";
        let mut whole = Splitter::default();
        let mut at_once = whole.push(body);
        at_once.extend(whole.rest());
        let mut bytewise = Splitter::default();
        let mut one_by_one: Vec<String> = body.iter().flat_map(|b| bytewise.push(&[*b])).collect();
        one_by_one.extend(bytewise.rest());
        assert_eq!(at_once, ["{\"n\":1}", "a\nb", "[DONE]", "late"]);
        assert_eq!(one_by_one, at_once);
        let mut collector = Collector::default();
        let taken: Vec<Option<Value>> = at_once
            .into_iter()
            .map(|d| collector.take(d).map(|chunk| chunk.json()))
            .collect();
        assert_eq!(
            taken,
            [Some(json!({ "n": 1 })), Some(json!("a\nb")), None, None]
        );
    }

    #[test]
    fn chunks_of_other_shapes_are_read_by_the_same_rules_and_passed_on_as_they_came() {
        let mut collector = Collector::default();
        let usual = r#"{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi \"there\""}}]}"#;
        // `choices` not a list, a number for content, a string for the index: what the tree's rules
        // read is read (an index that is no number counts as 0), the rest ignored.
        let odd = [
            r#"{"choices":{"0":{"delta":{"content":"ignored"}}},"model":"m"}"#,
            r#"{"choices":[{"delta":{"content":42}},{"index":1,"text":"second"}]}"#,
            r#"{"choices":[{"index":"0","delta":{"content":"x"}}],"usage":{"total_tokens":7}}"#,
        ];
        let first = collector.take(usual.to_owned()).unwrap();
        assert_eq!(first.text, "Hi \"there\"");
        assert_eq!(first.json(), serde_json::from_str::<Value>(usual).unwrap());
        let texts: Vec<String> = odd
            .iter()
            .map(|data| {
                let chunk = collector.take((*data).to_owned()).unwrap();
                assert_eq!(chunk.json(), serde_json::from_str::<Value>(data).unwrap());
                chunk.text
            })
            .collect();
        assert_eq!(texts, ["", "", "x"]);
        let answer = collector.answer().unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "Hi \"there\"x");
        assert_eq!(answer["choices"][1]["message"]["content"], "second");
        assert_eq!(answer["model"], "m");
        assert_eq!(answer["usage"]["total_tokens"], 7);
        assert_eq!(answer["id"], "c1");
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
