//! Runs every GraphQL request, over every transport, through the hub's rules. Before the schema sees a
//! request: the text's size limit, its document (parsed once per text, see `parsed`), the document's
//! limits (`limits`), and for an operation that spends points its cost from the caller's budget
//! (`cost`, measured by `gauge`). After: every error gets its contract code (`limits`).
//!
//! These are plain steps around the schema rather than async-graphql extensions on purpose: with any
//! extension installed, async-graphql resolves every field through the extension hooks, which cost
//! more than the hooks' own work. The schema that runs requests therefore has none.
//!
//! A request the gauge measured has been validated in full (the gauge keeps what it validated, per
//! text, operation and variables), so it runs on a copy of the schema that skips the full rules; any
//! other request is validated in full where it runs.

use std::any::{Any, TypeId};
use std::sync::Arc;

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use async_graphql::{Data, Executor, Request, Response, ServerError, ValidationMode};

use super::context::RequestContext;
use super::cost::{self, CostSlot};
use super::gauge::Gauge;
use super::limits;
use super::operation::selected_operation;
use super::parsed::ParsedDocuments;
use super::{HubSchema, schema_builder};
use crate::app::AppState;
use crate::config::GraphqlLimits;

/// The executor every transport shares (cheap to clone).
#[derive(Clone)]
pub struct HubExecutor(Arc<Inner>);

struct Inner {
    schema: HubSchema,
    /// The same schema checking only what execution needs (complexity, depth, fragment cycles): for
    /// requests the gauge has validated in full, with the same text, operation and variables.
    validated: HubSchema,
    gauge: Gauge,
    documents: ParsedDocuments,
    limits: GraphqlLimits,
    introspection: bool,
    app: AppState,
}

impl HubExecutor {
    pub fn new(app: AppState) -> Self {
        let (limits, introspection) = (app.config.graphql, app.config.introspection);
        Self(Arc::new(Inner {
            schema: schema_builder(limits, introspection)
                .data(app.clone())
                .finish(),
            validated: schema_builder(limits, introspection)
                .validation_mode(ValidationMode::Fast)
                .data(app.clone())
                .finish(),
            gauge: Gauge::new(limits, introspection),
            documents: ParsedDocuments::default(),
            limits,
            introspection,
            app,
        }))
    }

    /// Checks `request` and spends its cost; the request to run, with its document, and the schema to
    /// run it on, or why it may not run.
    async fn admit(
        &self,
        mut request: Request,
        session: Option<&Data>,
    ) -> Result<(Request, &HubSchema), Vec<ServerError>> {
        let inner = &self.0;
        limits::check_text(&request.query, &inner.limits).map_err(|e| vec![e])?;
        let document = inner.documents.parse(&request.query).map_err(|e| vec![e])?;
        limits::check_document(&document, &inner.limits, inner.introspection)
            .map_err(|e| vec![e])?;
        let spends = selected_operation(&document, request.operation_name.as_deref())
            .is_some_and(|(_, operation)| cost::spends_points(&operation.node));
        let budget = find::<CostSlot>(&request.data, session)
            .zip(find::<RequestContext>(&request.data, session))
            .filter(|_| spends);
        let mut schema = &inner.schema;
        if let Some((slot, context)) = budget {
            let complexity = inner.gauge.complexity(&request, &document).await?;
            cost::spend(&inner.app, &context.caller, slot, complexity)
                .await
                .map_err(|e| vec![e])?;
            schema = &inner.validated;
        }
        request.set_parsed_query(document);
        Ok((request, schema))
    }
}

impl Executor for HubExecutor {
    async fn execute(&self, request: Request) -> Response {
        let request_id = request_id(&request.data, None);
        let response = match self.admit(request, None).await {
            Ok((request, schema)) => schema.execute(request).await,
            Err(errors) => Response::from_errors(errors),
        };
        limits::classify_response(response, &self.0.limits, request_id.as_deref())
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let this = self.clone();
        let request_id = request_id(&request.data, session_data.as_deref());
        let limits = self.0.limits;
        stream::once(async move {
            match this.admit(request, session_data.as_deref()).await {
                Ok((request, schema)) => schema
                    .execute_stream_with_session_data(request, session_data.unwrap_or_default()),
                Err(errors) => stream::once(async { Response::from_errors(errors) }).boxed(),
            }
        })
        .flatten()
        .map(move |response| limits::classify_response(response, &limits, request_id.as_deref()))
        .boxed()
    }
}

/// Data of type `T` from the request, else from its connection, as resolvers would find it.
fn find<'a, T: Any + Send + Sync>(request: &'a Data, session: Option<&'a Data>) -> Option<&'a T> {
    let id = TypeId::of::<T>();
    request
        .get(&id)
        .or_else(|| session.and_then(|session| session.get(&id)))
        .and_then(|data| data.downcast_ref::<T>())
}

fn request_id(request: &Data, session: Option<&Data>) -> Option<String> {
    find::<RequestContext>(request, session).map(|context| context.request_id.clone())
}
