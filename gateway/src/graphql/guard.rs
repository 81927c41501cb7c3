//! The checks every GraphQL operation passes before async-graphql validates or runs it, on every
//! transport (HTTP, websocket, and direct `Schema::execute` in tests and fuzzing), as a schema
//! extension: the text is scanned and parsed, the document measured ([`super::cost`]) and refused
//! over the limits, before anything expands its fragments. It also gives every error that ends a
//! request before execution its `extensions.code`: `GRAPHQL_PARSE_FAILED`,
//! `GRAPHQL_VALIDATION_FAILED` or `QUERY_TOO_COMPLEX`.
//!
//! It must never let a document through unmeasured: async-graphql's own depth check and
//! validation rules expand fragment spreads, exponentially for a fragment bomb.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
    NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
};

use super::cost::{self, Limits, PageSizes};

/// The code of a request that is not valid GraphQL text.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// The code of a document that does not fit the schema or the rules of GraphQL.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// Texts up to this long are checked where they arrive (well under a millisecond); longer ones
/// on the blocking pool.
const INLINE_CHECK_BYTES: usize = 2048;

/// The extension's factory (one per schema).
pub struct Guard {
    limits: Limits,
    pages: Arc<PageSizes>,
}

impl Guard {
    pub fn new(limits: Limits, pages: PageSizes) -> Guard {
        Guard {
            limits,
            pages: Arc::new(pages),
        }
    }
}

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension {
            limits: self.limits,
            pages: Arc::clone(&self.pages),
        })
    }
}

struct GuardExtension {
    limits: Limits,
    pages: Arc<PageSizes>,
}

/// `error` with `extensions.code` set to `code`, unless it has one.
pub fn with_code(mut error: ServerError, code: &str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}

/// Scans, parses and measures a query: the document when it is within `limits`, else the error
/// to answer with. Linear in the length of `query`.
pub fn check(
    query: &str,
    variables: &Variables,
    limits: &Limits,
    pages: &PageSizes,
) -> ServerResult<ExecutableDocument> {
    let refused = |r: cost::Refusal| with_code(ServerError::new(r.to_string(), None), r.code());
    cost::scan(query, limits).map_err(refused)?;
    let doc = async_graphql::parser::parse_query(query)
        .map_err(|e| with_code(ServerError::from(e), PARSE_FAILED))?;
    cost::measure(&doc, variables, pages, limits).map_err(refused)?;
    Ok(doc)
}

#[async_graphql::async_trait::async_trait]
impl Extension for GuardExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        // Nothing ran (an unknown operation name, say): the request itself was not valid.
        if response.data == Value::Null {
            response.errors = std::mem::take(&mut response.errors)
                .into_iter()
                .map(|e| with_code(e, VALIDATION_FAILED))
                .collect();
        }
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let doc = if request.query.len() <= INLINE_CHECK_BYTES {
            check(
                &request.query,
                &request.variables,
                &self.limits,
                &self.pages,
            )?
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Longer texts take milliseconds to parse: on the blocking pool, not a worker that
            // other requests wait for.
            let (query, variables) = (request.query.clone(), request.variables.clone());
            let (limits, pages) = (self.limits, Arc::clone(&self.pages));
            runtime
                .spawn_blocking(move || check(&query, &variables, &limits, &pages))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "checking a query failed");
                    ServerError::new("internal error", None)
                })??
        } else {
            check(
                &request.query,
                &request.variables,
                &self.limits,
                &self.pages,
            )?
        };
        // async-graphql uses this document instead of parsing the text again.
        request.set_parsed_query(doc);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // The document is parsed already; what can fail here is async-graphql's own recursion
        // and directive limits.
        next.run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, VALIDATION_FAILED))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| with_code(e, VALIDATION_FAILED))
                .collect()
        })
    }
}
