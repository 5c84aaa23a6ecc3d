//! The operation a GraphQL request runs, read from its document before execution: whether GET may run
//! it, and what its trace span is called.

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
};
use async_graphql::{Positioned, Request};

/// Whether the operation a GET request would run is a query. Unparsable documents pass: execution
/// reports the syntax error properly.
pub fn is_query(request: &Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    selected_operation(&document, request.operation_name.as_deref())
        .is_none_or(|(_, op)| op.node.ty == OperationType::Query)
}

/// The operation a request runs, with its name if it has one.
fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<(Option<&'a str>, &'a Positioned<OperationDefinition>)> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some((None, op)),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(n, op)| (Some(n.as_str()), op)),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.iter().next().map(|(n, op)| (Some(n.as_str()), op))
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The span name of a request's operation, as `query Plans` (OpenTelemetry's conventions for GraphQL).
pub fn span_name(request: &Request) -> String {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return "GraphQL Operation".to_owned();
    };
    let Some((name, op)) = selected_operation(&document, request.operation_name.as_deref()) else {
        return "GraphQL Operation".to_owned();
    };
    let kind = match op.node.ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    match name {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_owned(),
    }
}
