//! Automatic persisted queries, as Apollo clients speak them: a request may carry
//! `extensions.persistedQuery = {version: 1, sha256Hash}` and leave the query out.
//!
//! - Hash alone, known: the stored text runs, exactly as if it had been sent.
//! - Hash alone, unknown: `PERSISTED_QUERY_NOT_FOUND` (HTTP 200, not cached), and the client sends it again
//!   with the text.
//! - Hash and text: the hash must be the SHA-256 of the text (`BAD_USER_INPUT` otherwise), and the text is
//!   stored once it has run without a request error, so only documents that parse and validate take room.
//!
//! The store is bounded by the bytes of the texts it holds; the least recently used go first. The stored
//! text passes every check a sent one does (length, depth, GET runs queries only), because it is resolved
//! before any of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::{Request, Value};
use sha2::{Digest, Sha256};

use crate::secrets::from_hex;

/// The one version of the protocol.
const VERSION: i64 = 1;

/// Why a persisted-query request cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The hash names no stored query; send it again with the query.
    NotFound,
    /// The server keeps no persisted queries.
    NotSupported,
    /// The extension is malformed or names another version.
    Malformed(&'static str),
    /// The query's SHA-256 is not the hash sent with it.
    HashMismatch,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::NotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
            Self::Malformed(_) | Self::HashMismatch => "BAD_USER_INPUT",
        }
    }

    /// The message Apollo clients match on for the first two.
    pub fn message(&self) -> &'static str {
        match self {
            Self::NotFound => "PersistedQueryNotFound",
            Self::NotSupported => "PersistedQueryNotSupported",
            Self::Malformed(why) => why,
            Self::HashMismatch => {
                "The persisted query's sha256Hash is not the SHA-256 of its query."
            }
        }
    }
}

/// What to do with a request's text once it has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No persisted-query extension: nothing to do.
    Plain,
    /// The text came from the store.
    Hit,
    /// The text came with its hash: store it if it ran.
    Register(Hash),
}

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The persisted queries of this server, at most `capacity_bytes` of query text.
pub struct PersistedQueries {
    capacity_bytes: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<Hash, (Arc<str>, u64)>,
    /// Last use → hash, oldest first.
    by_use: BTreeMap<u64, Hash>,
    bytes: usize,
    clock: u64,
}

impl PersistedQueries {
    /// A store of at most `capacity_bytes` of query text; 0 turns persisted queries off.
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            capacity_bytes,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// Fills in the query of a request that sent only a hash, and checks the hash of one that sent both.
    pub fn resolve(&self, request: &mut Request) -> Result<Outcome, Refusal> {
        let Some(extension) = request.extensions.get("persistedQuery") else {
            return Ok(Outcome::Plain);
        };
        let hash = parse_extension(extension)?;
        if self.capacity_bytes == 0 {
            return Err(Refusal::NotSupported);
        }
        if request.query.is_empty() {
            let text = self.get(&hash).ok_or(Refusal::NotFound);
            record(if text.is_ok() { "hit" } else { "miss" });
            request.query = text?.to_string();
            return Ok(Outcome::Hit);
        }
        if Sha256::digest(request.query.as_bytes()).as_slice() != hash.as_slice() {
            return Err(Refusal::HashMismatch);
        }
        Ok(Outcome::Register(hash))
    }

    /// Keeps `query` under `hash`, dropping the least recently used texts to make room.
    pub fn insert(&self, hash: Hash, query: &str) {
        if query.len() > self.capacity_bytes {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.by_hash.contains_key(&hash) {
            return;
        }
        while entries.bytes + query.len() > self.capacity_bytes {
            let Some((_, oldest)) = entries.by_use.pop_first() else {
                break;
            };
            if let Some((text, _)) = entries.by_hash.remove(&oldest) {
                entries.bytes -= text.len();
            }
        }
        entries.clock += 1;
        let tick = entries.clock;
        entries.by_hash.insert(hash, (Arc::from(query), tick));
        entries.by_use.insert(tick, hash);
        entries.bytes += query.len();
        record("registered");
    }

    fn get(&self, hash: &Hash) -> Option<Arc<str>> {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let tick = entries.clock;
        let (text, last_use) = entries.by_hash.get_mut(hash)?;
        let previous = std::mem::replace(last_use, tick);
        let text = text.clone();
        entries.by_use.remove(&previous);
        entries.by_use.insert(tick, *hash);
        Some(text)
    }

    /// Bytes of query text held now.
    pub fn bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

fn record(result: &'static str) {
    metrics::counter!("graphql_persisted_queries_total", "result" => result).increment(1);
}

fn parse_extension(extension: &Value) -> Result<Hash, Refusal> {
    let Value::Object(fields) = extension else {
        return Err(Refusal::Malformed(
            "`extensions.persistedQuery` must be an object.",
        ));
    };
    let version = match fields.get("version") {
        Some(Value::Number(number)) => number.as_i64(),
        _ => None,
    };
    if version != Some(VERSION) {
        return Err(Refusal::Malformed(
            "Unsupported persisted query version: send version 1.",
        ));
    }
    let hex = match fields.get("sha256Hash") {
        Some(Value::String(hex)) => hex.as_str(),
        _ => "",
    };
    from_hex(hex)
        .and_then(|bytes| Hash::try_from(bytes).ok())
        .ok_or(Refusal::Malformed(
            "`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits.",
        ))
}

#[cfg(test)]
mod tests {
    use async_graphql::Name;

    use super::*;

    fn hash_of(query: &str) -> Hash {
        Sha256::digest(query.as_bytes()).into()
    }

    fn hex(hash: &Hash) -> String {
        crate::secrets::hex(hash)
    }

    fn request(query: &str, hash: &str) -> Request {
        let mut extension = async_graphql::indexmap::IndexMap::new();
        extension.insert(Name::new("version"), Value::from(1));
        extension.insert(Name::new("sha256Hash"), Value::from(hash));
        let mut request = Request::new(query);
        request
            .extensions
            .insert("persistedQuery".to_owned(), Value::Object(extension));
        request
    }

    #[test]
    fn a_hash_alone_misses_until_its_text_is_registered_then_hits() {
        let store = PersistedQueries::new(1024);
        let query = "{ __typename }";
        let hash = hash_of(query);

        assert_eq!(
            store.resolve(&mut request("", &hex(&hash))),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            store.resolve(&mut request(query, &hex(&hash))),
            Ok(Outcome::Register(hash))
        );
        store.insert(hash, query);
        let mut by_hash = request("", &hex(&hash));
        assert_eq!(store.resolve(&mut by_hash), Ok(Outcome::Hit));
        assert_eq!(by_hash.query, query);
    }

    #[test]
    fn a_text_under_another_texts_hash_is_refused() {
        let store = PersistedQueries::new(1024);
        let hash = hash_of("{ __typename }");
        assert_eq!(
            store.resolve(&mut request("{ me { id } }", &hex(&hash))),
            Err(Refusal::HashMismatch)
        );
        assert_eq!(
            store.resolve(&mut request("", "not-hex")),
            Err(Refusal::Malformed(
                "`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits."
            ))
        );
    }

    #[test]
    fn the_least_recently_used_text_goes_first_when_full() {
        let (a, b, c) = (
            "{ a: __typename }",
            "{ b: __typename }",
            "{ c: __typename }",
        );
        let store = PersistedQueries::new(a.len() * 2);
        store.insert(hash_of(a), a);
        store.insert(hash_of(b), b);
        assert_eq!(
            store.resolve(&mut request("", &hex(&hash_of(a)))),
            Ok(Outcome::Hit)
        );

        store.insert(hash_of(c), c);

        assert_eq!(store.bytes(), a.len() * 2);
        assert_eq!(
            store.resolve(&mut request("", &hex(&hash_of(b)))),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            store.resolve(&mut request("", &hex(&hash_of(a)))),
            Ok(Outcome::Hit)
        );
        assert_eq!(
            store.resolve(&mut request("", &hex(&hash_of(c)))),
            Ok(Outcome::Hit)
        );
    }

    #[test]
    fn a_store_of_no_bytes_says_persisted_queries_are_not_supported() {
        let store = PersistedQueries::new(0);
        assert_eq!(
            store.resolve(&mut request("", &hex(&hash_of("{ x }")))),
            Err(Refusal::NotSupported)
        );
    }
}
