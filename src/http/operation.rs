//! The operation a GraphQL request runs, read from its document before execution: whether GET may run
//! it, and what its trace span is called.

use async_graphql::Request;
use async_graphql::parser::types::OperationType;

use crate::graphql::operation::selected_operation;

/// Whether the operation a GET request would run is a query. Unparsable documents pass: execution
/// reports the syntax error properly.
pub fn is_query(request: &Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    selected_operation(&document, request.operation_name.as_deref())
        .is_none_or(|(_, op)| op.node.ty == OperationType::Query)
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
