//! The GraphQL API: schema merged per domain, HTTP and websocket handlers, GraphiQL.
//!
//! Every resolver reads the caller from the request data ([`caller`]) and checks it before doing
//! anything; `require_user` enforces sign-in and token scope, `roles::allowed` the class role.
//! Errors carry `extensions.code` (see [`errors`]). Before async-graphql validates or runs a
//! document, [`guard`] measures what it costs ([`cost`]) and refuses it over the limits; the
//! websocket checks the credential for every operation ([`ws`]).

pub mod account;
pub mod classes;
pub mod cost;
pub mod errors;
pub mod guard;
pub mod interaction;
pub mod recordings;
pub mod signaling;
pub mod stage;
pub mod types;
pub mod ws;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{Context, MergedObject, MergedSubscription, Schema, SchemaBuilder};
use async_graphql_axum::GraphQLResponse;
use axum::body::Body;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use schema::Conn;
use schema::models::user::User;

use crate::AppState;
use crate::auth::{self, Caller, Scope};
use errors::{ApiError, ApiResult};

/// Deepest query accepted (nested fields; introspection has its own limit).
pub const MAX_DEPTH: u32 = 8;
/// Highest query cost accepted: each field counts 1, what is inside a page once per item.
pub const MAX_COMPLEXITY: u64 = 1000;
/// Largest request body accepted (every route; websocket messages too).
pub const MAX_BODY_BYTES: usize = crate::body_limit::MAX_BODY_BYTES;
/// A websocket's read buffer to start with, and how much it writes before flushing. Tungstenite's
/// defaults (128 KiB each, the read buffer allocated up front) cost every connected participant
/// 128 KiB for messages that are mostly under 1 KiB; a larger message grows the buffer as needed.
const WS_BUFFER_BYTES: usize = 4 * 1024;

/// What a document may cost (see [`cost`]).
pub const LIMITS: cost::Limits = cost::Limits {
    max_depth: MAX_DEPTH,
    // The standard introspection query is 13 deep (`ofType` seven times in `TypeRef`).
    max_introspection_depth: 15,
    max_cost: MAX_COMPLEXITY,
    max_fragments: 50,
    max_aliases: 50,
    max_tokens: 4000,
    max_nesting: 64,
    // async-graphql's own recursion limit (its default), which it checks after us.
    max_levels: 32,
};

#[derive(MergedObject, Default)]
pub struct Query(
    account::AccountQuery,
    classes::ClassQuery,
    interaction::InteractionQuery,
    stage::AttendanceQuery,
    recordings::RecordingQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    classes::ClassMutation,
    signaling::SignalingMutation,
    interaction::InteractionMutation,
    stage::StageMutation,
    recordings::RecordingMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(classes::ClassSubscription, signaling::SignalingSubscription);

pub type ApiSchema = Schema<Query, Mutation, Subscription>;

fn schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_recursive_depth(LIMITS.max_levels as usize)
}

/// The schema's builder with the [`guard`] that enforces [`LIMITS`] (depth and cost are not
/// left to async-graphql: its checks expand fragments, and count introspection like any query).
/// Page sizes for the cost come from the schema's own defaults. Fuzzing adds an extension that
/// stops before execution.
pub fn guarded_schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    let pages = cost::PageSizes::from_sdl(&schema_builder().finish().sdl());
    schema_builder().extension(guard::Guard::new(LIMITS, pages))
}

/// The schema. Per-request data (state, caller, client IP) is added by the handlers.
pub fn build_schema() -> ApiSchema {
    guarded_schema_builder().finish()
}

/// The SDL, as checked into `gateway/schema.graphql`.
pub fn sdl() -> String {
    build_schema().sdl()
}

/// The client's IP address, when known (for rate limits).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// The shared state in a resolver.
pub fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

static ANONYMOUS: Caller = Caller::Anonymous;

/// The caller of this request or websocket connection.
pub fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_opt::<Caller>().unwrap_or(&ANONYMOUS)
}

/// The signed-in user, if their credential allows `scope`.
pub fn require_user<'a>(ctx: &Context<'a>, scope: Scope) -> ApiResult<&'a User> {
    let caller = caller(ctx);
    let user = caller.user().ok_or(ApiError::Unauthenticated)?;
    if !caller.has_scope(scope) {
        return Err(ApiError::Forbidden(format!(
            "this API token lacks the `{}` scope",
            scope.as_str()
        )));
    }
    Ok(user)
}

/// Runs blocking database work for a resolver.
pub async fn load<T, F>(ctx: &Context<'_>, f: F) -> ApiResult<T>
where
    F: FnOnce(&mut Conn) -> diesel::QueryResult<T> + Send + 'static,
    T: Send + 'static,
{
    Ok(state(ctx).db.interact(f).await?)
}

/// Runs `f` in one database transaction for a resolver: all of its writes land, or none.
pub async fn transaction<T, F>(ctx: &Context<'_>, f: F) -> ApiResult<T>
where
    F: FnOnce(&mut Conn) -> Result<T, schema::TxError<ApiError>> + Send + 'static,
    T: Send + 'static,
{
    state(ctx).db.transaction(f).await?
}

/// `GET /graphql`: GraphiQL.
pub async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

/// Reads a GraphQL request from a JSON body, or says what is wrong with it for a `BAD_REQUEST`
/// answer (never in serde's own words, which name internal types).
pub fn parse_request(body: &[u8]) -> Result<async_graphql::Request, String> {
    serde_json::from_slice::<async_graphql::Request>(body).map_err(|e| {
        let what = if e.is_data() {
            "the body is not a GraphQL request: a JSON object with a string `query`, and \
             optionally `operationName` and `variables`"
        } else {
            "the body is not valid JSON"
        };
        format!("{what} (line {}, column {})", e.line(), e.column())
    })
}

/// `POST /graphql`.
pub async fn execute(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = match crate::body_limit::read(body).await {
        Ok(bytes) => match parse_request(&bytes) {
            Ok(request) => request,
            Err(message) => {
                return crate::body_limit::error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message);
            }
        },
        Err(answer) => return answer,
    };
    let caller = match auth::resolve(&state.db, auth::presented(&headers)).await {
        Ok(caller) => caller,
        Err(e) => {
            tracing::error!(error = %e, "resolving the caller failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    tracing::debug!(%caller, "graphql request");
    let request = request
        .data(state.clone())
        .data(caller)
        .data(ClientIp(connect.map(|c| c.0.0.ip())));
    GraphQLResponse::from(state.api.execute(request).await).into_response()
}

/// `GET /graphql/ws`: queries, mutations and subscriptions over `graphql-transport-ws` (or the
/// older `graphql-ws`); see [`ws`].
///
/// The credential is a `token` (or `Authorization: "Bearer ..."`) in the `connection_init`
/// payload, else the session cookie of the upgrade request, checked again for every operation.
/// A cookie-authenticated upgrade from another origin is refused (cross-site websocket
/// hijacking). Messages are limited to [`MAX_BODY_BYTES`] like request bodies.
pub async fn websocket(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = ws::protocol(&headers) else {
        return crate::body_limit::error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "Sec-WebSocket-Protocol must be graphql-transport-ws or graphql-ws",
        );
    };
    let cookie = auth::presented(&headers);
    if matches!(cookie, auth::Presented::Cookie(_))
        && auth::csrf::refusal(&axum::http::Method::POST, &with_json(&headers)).is_some()
    {
        return (StatusCode::FORBIDDEN, "cross-site websocket refused").into_response();
    }
    let connection = ws::Connection {
        init_timeout: Duration::from_millis(state.config.http.ws_init_timeout_ms),
        state,
        protocol,
        cookie,
        ip: connect.map(|c| c.0.0.ip()),
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_BODY_BYTES)
        .max_frame_size(MAX_BODY_BYTES)
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .on_upgrade(move |socket| connection.serve(socket))
}

/// The headers with a JSON content type, to reuse the Origin check of [`auth::csrf::refusal`].
fn with_json(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    h
}

fn token_from_payload(payload: &serde_json::Value) -> Option<String> {
    if let Some(t) = payload.get("token").and_then(|v| v.as_str()) {
        return Some(t.to_owned());
    }
    let auth = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))?
        .as_str()?;
    auth.strip_prefix("Bearer ").map(str::to_owned)
}
