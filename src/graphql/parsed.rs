//! Parsed documents, kept: the same query text (a dashboard's, a script's) is parsed once and its
//! document reused, since parsing is a fixed cost of every request and the pest parser is slow (a
//! tenth of a `{ __typename }`'s CPU). The innermost extension, so the limits and the budget still see
//! every document. Bounded: two generations of at most [`ENTRIES`] texts of at most [`MAX_TEXT`] bytes
//! each; when the newer is full it becomes the older and the older is dropped, so what is in use stays
//! and a flood of distinct texts costs only its own parsing. A text that does not parse is not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Texts per generation.
pub const ENTRIES: usize = 512;
/// Longer texts are parsed every time.
pub const MAX_TEXT: usize = 8 * 1024;

#[derive(Default)]
struct Generations {
    newer: HashMap<Arc<str>, Arc<ExecutableDocument>>,
    older: HashMap<Arc<str>, Arc<ExecutableDocument>>,
}

impl Generations {
    fn get(&mut self, text: &str) -> Option<Arc<ExecutableDocument>> {
        if let Some(document) = self.newer.get(text) {
            return Some(Arc::clone(document));
        }
        let (text, document) = self.older.remove_entry(text)?;
        self.insert(text, Arc::clone(&document));
        Some(document)
    }

    fn insert(&mut self, text: Arc<str>, document: Arc<ExecutableDocument>) {
        if self.newer.len() >= ENTRIES {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(text, document);
    }
}

/// The schema's store of parsed documents (see the module documentation).
#[derive(Clone, Default)]
pub struct ParsedDocuments {
    generations: Arc<Mutex<Generations>>,
}

impl ExtensionFactory for ParsedDocuments {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ParsedDocuments {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_TEXT {
            return next.run(ctx, query, variables).await;
        }
        let kept = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(query);
        if let Some(document) = kept {
            return Ok(ExecutableDocument::clone(&document));
        }
        let document = next.run(ctx, query, variables).await?;
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(Arc::from(query), Arc::new(document.clone()));
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(text: &str) -> Arc<ExecutableDocument> {
        Arc::new(async_graphql::parser::parse_query(text).expect("a document"))
    }

    #[test]
    fn texts_in_use_stay_and_a_flood_of_others_is_bounded() {
        let mut kept = Generations::default();
        kept.insert(Arc::from("{ a }"), document("{ a }"));
        for i in 0..ENTRIES * 3 {
            let text = format!("{{ f{i} }}");
            kept.insert(Arc::from(text.as_str()), document(&text));
            if i % 100 == 0 {
                assert!(kept.get("{ a }").is_some(), "in use, so kept at {i}");
            }
        }
        assert!(kept.newer.len() <= ENTRIES && kept.older.len() <= ENTRIES);
        assert!(kept.get("{ f0 }").is_none(), "an old text, unused, is gone");
    }
}
