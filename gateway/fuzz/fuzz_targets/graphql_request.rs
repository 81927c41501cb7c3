//! A `POST /graphql` body, as any client may send it, through everything that happens before a
//! resolver runs: the JSON request parse, the guard (text scan, GraphQL parse, cost measure) and
//! async-graphql's own validation, on the real schema. Execution is stopped before it starts (no
//! database here). Every input must get an answer (a request error, or a response whose errors
//! all carry `extensions.code`), without a panic, within a time bound.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Response, Value};
use libfuzzer_sys::fuzz_target;

/// The longest one input may take (the whole of it; the guard's own checks take milliseconds).
const BOUND: Duration = Duration::from_secs(2);

/// Answers every operation that passed validation with nothing, instead of running resolvers.
struct StopBeforeExecution;

impl ExtensionFactory for StopBeforeExecution {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StopBeforeExecution)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for StopBeforeExecution {
    async fn execute(
        &self,
        _ctx: &ExtensionContext<'_>,
        _operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> Response {
        Response::new(Value::Null)
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    schema: gateway::graphql::ApiSchema,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| Harness {
        // A runtime as the server has, so long texts take the blocking-pool path too.
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        schema: gateway::graphql::guarded_schema_builder()
            .extension(StopBeforeExecution)
            .finish(),
    })
}

fuzz_target!(|body: &[u8]| {
    if body.len() > gateway::graphql::MAX_BODY_BYTES {
        // Refused before it is read.
        return;
    }
    let started = Instant::now();
    let h = harness();
    match gateway::graphql::parse_request(body) {
        Err(message) => assert!(!message.is_empty()),
        Ok(request) => {
            let response = h.runtime.block_on(h.schema.execute(request));
            for error in &response.errors {
                let code = error
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("code"))
                    .unwrap_or_else(|| panic!("an error without a code: {error:?}"));
                assert!(matches!(code, Value::String(_)), "{code:?}");
            }
        }
    }
    let took = started.elapsed();
    assert!(took < BOUND, "an input took {took:?}");
});
