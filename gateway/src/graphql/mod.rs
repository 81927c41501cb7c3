//! The GraphQL API: schema merged per domain, HTTP and websocket handlers, GraphiQL.
//!
//! Every resolver reads the caller from the request data ([`caller`]) and checks it before doing
//! anything; `require_user` enforces sign-in and token scope, `roles::allowed` the class role.
//! Errors carry `extensions.code` (see [`errors`]).

pub mod account;
pub mod classes;
pub mod errors;
pub mod signaling;
pub mod types;

use std::net::{IpAddr, SocketAddr};

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{Context, Data, MergedObject, MergedSubscription, Schema};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use schema::Conn;
use schema::models::user::User;

use crate::AppState;
use crate::auth::{self, Caller, Scope};
use errors::{ApiError, ApiResult};

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 8;
/// Highest query complexity accepted (each field counts 1 by default).
pub const MAX_COMPLEXITY: usize = 500;
/// Largest request body accepted on `/graphql`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(MergedObject, Default)]
pub struct Query(account::AccountQuery, classes::ClassQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    classes::ClassMutation,
    signaling::SignalingMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(classes::ClassSubscription, signaling::SignalingSubscription);

pub type ApiSchema = Schema<Query, Mutation, Subscription>;

/// The schema, with limits. Per-request data (state, caller, client IP) is added by the handlers.
pub fn build_schema() -> ApiSchema {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .finish()
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

/// `POST /graphql`.
pub async fn execute(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let caller = match auth::resolve(&state.db, auth::presented(&headers)).await {
        Ok(caller) => caller,
        Err(e) => {
            tracing::error!(error = %e, "resolving the caller failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    tracing::debug!(%caller, "graphql request");
    let request = request
        .into_inner()
        .data(state.clone())
        .data(caller)
        .data(ClientIp(connect.map(|c| c.0.0.ip())));
    GraphQLResponse::from(state.api.execute(request).await).into_response()
}

/// `GET /graphql/ws`: subscriptions over `graphql-transport-ws` (or the older `graphql-ws`).
///
/// The caller is resolved in `connection_init`: a `token` (or `Authorization: "Bearer ..."`) in the
/// payload, else the session cookie of the upgrade request. A cookie-authenticated upgrade from
/// another origin is refused (cross-site websocket hijacking).
pub async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let cookie = auth::presented(&headers);
    if matches!(cookie, auth::Presented::Cookie(_))
        && auth::csrf::refusal(&axum::http::Method::POST, &with_json(&headers)).is_some()
    {
        return (StatusCode::FORBIDDEN, "cross-site websocket refused").into_response();
    }
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            let schema = state.api.clone();
            GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let presented = match token_from_payload(&payload) {
                        Some(token) => auth::Presented::Bearer(token),
                        None => cookie,
                    };
                    let caller = auth::resolve(&state.db, presented)
                        .await
                        .map_err(|_| async_graphql::Error::new("authentication unavailable"))?;
                    let mut data = Data::default();
                    data.insert(state.clone());
                    data.insert(caller);
                    data.insert(ClientIp(None));
                    Ok(data)
                })
                .serve()
        })
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
