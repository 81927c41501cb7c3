//! `GET /sessions/<id>/attendance.csv`: a session's attendance report as CSV, for its hosts and
//! co-hosts (the same report as the GraphQL `attendance` query, the same credentials: the
//! session cookie or an API token with the `read` scope).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::{self, Scope};
use crate::body_limit::error;
use crate::graphql::errors::ApiError;
use crate::graphql::stage;

pub async fn attendance_csv(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(sid) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "session not found");
    };
    let caller = match auth::resolve(&state.db, auth::presented(&headers)).await {
        Ok(caller) => caller,
        Err(e) => {
            tracing::error!(error = %e, "resolving the caller failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Some(user) = caller.user() else {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "sign in first");
    };
    if !caller.has_scope(Scope::Read) {
        return error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this API token lacks the `read` scope",
        );
    }
    match stage::report(&state, sid, user.id).await {
        Ok(report) => {
            let mut response = stage::csv(&report).into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"attendance-session-{sid}.csv\""
            )) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            let status = match &e {
                ApiError::NotFound(_) => StatusCode::NOT_FOUND,
                ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
                ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let message = match &e {
                ApiError::NotFound(what) => format!("{what} not found"),
                ApiError::Forbidden(why) => why.clone(),
                _ => "the report failed".to_owned(),
            };
            error(status, e.code(), &message)
        }
    }
}
