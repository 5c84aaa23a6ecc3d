//! Parsed documents, kept: the same query text (a dashboard's, a script's) is parsed once and its
//! document reused, since parsing is a fixed cost of every request and the pest parser is slow (a
//! tenth of a `{ __typename }`'s CPU). At most two generations of [`ENTRIES`] texts of at most
//! [`MAX_TEXT`] bytes each (see [`Kept`]). A text that does not parse is not kept.

use std::sync::Arc;

use async_graphql::ServerError;
use async_graphql::parser::types::ExecutableDocument;

use crate::kept::Kept;

/// Texts per generation.
pub const ENTRIES: usize = 512;
/// Longer texts are parsed every time.
pub const MAX_TEXT: usize = 8 * 1024;

/// The executor's store of parsed documents (see the module documentation).
pub struct ParsedDocuments {
    kept: Kept<Arc<str>, Arc<ExecutableDocument>>,
}

impl Default for ParsedDocuments {
    fn default() -> Self {
        Self {
            kept: Kept::new(ENTRIES),
        }
    }
}

impl ParsedDocuments {
    /// The document of `query`, or the parser's error as async-graphql reports it.
    pub fn parse(&self, query: &str) -> Result<ExecutableDocument, ServerError> {
        if query.len() > MAX_TEXT {
            return Ok(async_graphql::parser::parse_query(query)?);
        }
        if let Some(document) = self.kept.get(query) {
            return Ok(ExecutableDocument::clone(&document));
        }
        let document = async_graphql::parser::parse_query(query)?;
        self.kept
            .insert(Arc::from(query), Arc::new(document.clone()));
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_parsed_once_and_a_broken_one_reports_the_parser_error() {
        let documents = ParsedDocuments::default();
        let first = documents.parse("{ a }").expect("parses");
        assert!(documents.kept.get("{ a }").is_some(), "kept after parsing");
        assert_eq!(
            format!("{:?}", documents.parse("{ a }").expect("kept")),
            format!("{first:?}")
        );
        let error = documents.parse("{ a").expect_err("does not parse");
        assert!(error.message.contains("expected"), "{}", error.message);
        assert!(documents.kept.get("{ a").is_none(), "not kept");
    }
}
