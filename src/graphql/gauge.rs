//! What a request costs before it runs. async-graphql works out a request's complexity only while
//! validating it, and reports it only to extensions; but any extension on the schema that runs
//! requests would send every field of every answer through the extension hooks (without them,
//! `{ __typename }` went from 0.34 to 0.57 of a bare server's `{ hello }`, and a streamed chunk's CPU
//! fell by more than half: docs/performance.md). So the complexity comes from a second copy of the
//! schema whose one extension keeps the validation's result and skips execution, and is kept per
//! request (text, operation and variables), so a dashboard's repeated query is measured once. Measuring
//! validates the request in full, and only a request that passes is kept: so a kept request needs only
//! the checks execution relies on where it runs (see `executor`), and one that does not validate fails
//! here, before it spends anything or runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError, ValidationResult};

use super::{HubSchema, schema_builder};
use crate::config::GraphqlLimits;
use crate::kept::Kept;

/// Requests per generation whose complexity is kept.
const ENTRIES: usize = 512;
/// A request whose text and variables are longer is measured every time, so what is kept stays small
/// (two generations of [`ENTRIES`], at most 8 MiB) however many distinct requests arrive.
const MAX_KEPT_BYTES: usize = 8 * 1024;

/// The measuring schema and the complexities it found (see the module documentation).
pub struct Gauge {
    schema: HubSchema,
    kept: Kept<RequestKey, usize>,
}

/// What a request's complexity depends on besides the schema.
#[derive(PartialEq, Eq, Hash)]
struct RequestKey {
    query: String,
    operation_name: Option<String>,
    variables: String,
}

impl Gauge {
    pub fn new(limits: GraphqlLimits, introspection: bool) -> Self {
        Self {
            schema: schema_builder(limits, introspection)
                .extension(MeasureOnly)
                .finish(),
            kept: Kept::new(ENTRIES),
        }
    }

    /// The complexity of `request`, whose text parses to `document`; the validation errors of a
    /// request that does not validate, as the schema that runs it would report them.
    pub async fn complexity(
        &self,
        request: &Request,
        document: &ExecutableDocument,
    ) -> Result<usize, Vec<ServerError>> {
        let key = RequestKey {
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
        };
        let keep = key.query.len() + key.variables.len() <= MAX_KEPT_BYTES;
        if keep && let Some(complexity) = self.kept.get(&key) {
            return Ok(complexity);
        }
        let measured = Measured::default();
        let mut probe = Request::new(request.query.clone())
            .variables(request.variables.clone())
            .data(measured.clone());
        probe.operation_name = request.operation_name.clone();
        probe.set_parsed_query(document.clone());
        let response = self.schema.execute(probe).await;
        if response.is_err() {
            return Err(response.errors);
        }
        let complexity = measured.0.load(Ordering::Relaxed);
        if keep {
            self.kept.insert(key, complexity);
        }
        Ok(complexity)
    }
}

/// Where the measuring extension leaves a request's complexity.
#[derive(Clone, Default)]
struct Measured(Arc<AtomicUsize>);

struct MeasureOnly;

impl ExtensionFactory for MeasureOnly {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(MeasureOnly)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for MeasureOnly {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if let Some(measured) = ctx.data_opt::<Measured>() {
            measured.0.store(result.complexity, Ordering::Relaxed);
        }
        Ok(result)
    }

    /// A measured request is not run.
    async fn execute(
        &self,
        _ctx: &ExtensionContext<'_>,
        _operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> Response {
        Response::default()
    }
}
