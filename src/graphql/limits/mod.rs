//! Limits on what one GraphQL request may cost, and the final say on every error's `extensions.code`.
//!
//! async-graphql enforces complexity during validation; the checks here, which the executor runs
//! before it, bound the query text, aliases (each alias can multiply work without adding depth) and
//! the nesting depth of ordinary fields, and give introspection rules of their own (see
//! [`introspection`]) so the standard introspection query of every IDE and code generator is answered
//! while a hostile one is not. [`classify_response`] rewrites the library's limit messages into the
//! contract's `QUERY_TOO_COMPLEX`, and gives every error that has no code yet one: errors raised
//! before execution, or while coercing arguments, are the client's (`BAD_USER_INPUT`). `INTERNAL`
//! errors get the request id, which the log lines carry too.

pub mod introspection;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ErrorExtensionValues, Response, ServerError, Value};

use crate::config::GraphqlLimits;

/// Builds an error with a contract code.
pub fn coded_error(message: impl Into<String>, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    error
}

/// Refuses a query text over the size limit, before it is parsed.
pub fn check_text(query: &str, limits: &GraphqlLimits) -> Result<(), ServerError> {
    if query.len() > limits.max_query_bytes {
        return Err(coded_error(
            format!(
                "The query text is {} bytes; the limit is {} bytes.",
                query.len(),
                limits.max_query_bytes
            ),
            "QUERY_TOO_COMPLEX",
        ));
    }
    Ok(())
}

/// Refuses a parsed document over a limit: aliases, introspection when it is off, directives other
/// than `@skip` and `@include`, the depth of ordinary fields and the introspection rules.
pub fn check_document(
    document: &ExecutableDocument,
    limits: &GraphqlLimits,
    introspection: bool,
) -> Result<(), ServerError> {
    let counts = count_selections(document);
    if counts.aliases > limits.max_aliases {
        return Err(coded_error(
            format!(
                "The query uses {} aliases; the limit is {}.",
                counts.aliases, limits.max_aliases
            ),
            "QUERY_TOO_COMPLEX",
        ));
    }
    if !introspection && counts.introspection {
        return Err(coded_error(
            "Introspection is turned off on this server; the schema is published as schema.graphql.",
            "FORBIDDEN",
        ));
    }
    if let Some(directive) = unknown_directive(document) {
        return Err(coded_error(
            format!("Unknown directive `@{directive}`: this server knows `@skip` and `@include`."),
            "BAD_USER_INPUT",
        ));
    }
    let shape = introspection::shape(document);
    if shape.depth > limits.max_depth {
        return Err(coded_error(
            format!(
                "The query is nested too deeply (limit {} levels).",
                limits.max_depth
            ),
            "QUERY_TOO_COMPLEX",
        ));
    }
    if let Some(refusal) = shape.introspection_refusal {
        return Err(coded_error(refusal, "QUERY_TOO_COMPLEX"));
    }
    Ok(())
}

/// Gives every error of `response` its contract code (see the module documentation).
pub fn classify_response(
    mut response: Response,
    limits: &GraphqlLimits,
    request_id: Option<&str>,
) -> Response {
    for error in &mut response.errors {
        classify(error, limits, request_id);
    }
    response
}

/// What the limits look at in a parsed document.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SelectionCounts {
    /// Aliases in every operation and fragment.
    pub aliases: usize,
    /// Whether `__schema` or `__type` is selected anywhere.
    pub introspection: bool,
}

/// Walks every operation and fragment of the document once.
pub fn count_selections(document: &ExecutableDocument) -> SelectionCounts {
    fn walk(set: &SelectionSet, counts: &mut SelectionCounts) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    counts.aliases += usize::from(field.node.alias.is_some());
                    let name = field.node.name.node.as_str();
                    counts.introspection |= name == "__schema" || name == "__type";
                    walk(&field.node.selection_set.node, counts);
                }
                Selection::InlineFragment(fragment) => {
                    walk(&fragment.node.selection_set.node, counts)
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    let mut counts = SelectionCounts::default();
    for (_, operation) in document.operations.iter() {
        walk(&operation.node.selection_set.node, &mut counts);
    }
    for fragment in document.fragments.values() {
        walk(&fragment.node.selection_set.node, &mut counts);
    }
    counts
}

/// The first directive in the document that is not one an executable document may use here.
pub fn unknown_directive(document: &ExecutableDocument) -> Option<String> {
    use async_graphql::Positioned;
    use async_graphql::parser::types::Directive;
    fn check(directives: &[Positioned<Directive>]) -> Option<String> {
        directives
            .iter()
            .map(|d| d.node.name.node.as_str())
            .find(|name| !matches!(*name, "skip" | "include"))
            .map(str::to_owned)
    }
    fn walk(set: &SelectionSet) -> Option<String> {
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(field) => {
                check(&field.node.directives).or_else(|| walk(&field.node.selection_set.node))
            }
            Selection::InlineFragment(fragment) => {
                check(&fragment.node.directives).or_else(|| walk(&fragment.node.selection_set.node))
            }
            Selection::FragmentSpread(spread) => check(&spread.node.directives),
        })
    }
    document
        .operations
        .iter()
        .find_map(|(_, operation)| {
            check(&operation.node.directives).or_else(|| walk(&operation.node.selection_set.node))
        })
        .or_else(|| {
            document.fragments.values().find_map(|fragment| {
                check(&fragment.node.directives).or_else(|| walk(&fragment.node.selection_set.node))
            })
        })
}

fn classify(error: &mut ServerError, limits: &GraphqlLimits, request_id: Option<&str>) {
    let code = error
        .extensions
        .as_ref()
        .and_then(|ext| ext.get("code"))
        .and_then(|code| match code {
            Value::String(code) => Some(code.clone()),
            _ => None,
        });
    let code = match code {
        Some(code) => code,
        None => {
            let code = match error.message.as_str() {
                "Query is too complex." => {
                    error.message = format!(
                        "The query is too complex (limit {}): ask for fewer fields or smaller pages.",
                        limits.max_complexity
                    );
                    "QUERY_TOO_COMPLEX"
                }
                message if message.contains("recursion depth") => "QUERY_TOO_COMPLEX",
                _ => "BAD_USER_INPUT",
            };
            error
                .extensions
                .get_or_insert_with(ErrorExtensionValues::default)
                .set("code", code);
            code.to_owned()
        }
    };
    if code == "INTERNAL"
        && let (Some(id), Some(ext)) = (request_id, error.extensions.as_mut())
    {
        ext.set("requestId", id);
    }
}
