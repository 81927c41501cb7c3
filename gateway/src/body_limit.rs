//! The request body limit, for every route: a body announced larger than [`MAX_BODY_BYTES`]
//! (`Content-Length`) is refused from the headers, before any of it is read; any other body
//! (chunked) is read through a counter that fails as soon as it passes the limit, so no handler
//! ever buffers more. Both answer 413 with a JSON error (`PAYLOAD_TOO_LARGE`).
//!
//! Handlers that read a body use [`read`], which turns the counter's failure into that answer.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON error answer in the shape of GraphQL's (`errors[0].extensions.code`).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    (status, axum::Json(body)).into_response()
}

/// The 413 answer.
pub fn too_large() -> Response {
    let mut response = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        &format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    );
    // The rest of the body is not read: the connection cannot carry another request.
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Middleware: refuses bodies announced too large, and limits the others as they are read.
pub async fn limit(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES));
    next.run(Request::from_parts(parts, body)).await
}

/// Reads a whole request body of at most [`MAX_BODY_BYTES`]; over that, or when the client
/// fails to send it, the answer to give instead.
pub async fn read(body: Body) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if over_limit(&e) => Err(too_large()),
        Err(e) => {
            tracing::debug!(error = %e, "reading a request body failed");
            Err(error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the request body could not be read",
            ))
        }
    }
}

/// Whether a body error is the length limit's (ours or `to_bytes`'s own), however wrapped.
fn over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_stream_over_the_limit_is_cut_and_recognised() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(vec![b' '; MAX_BODY_BYTES])),
            Ok(Bytes::from_static(b"x")),
        ];
        let inner = Body::from_stream(futures_util::stream::iter(chunks));
        let limited = Body::new(http_body_util::Limited::new(inner, MAX_BODY_BYTES));
        let answer = read(limited).await.unwrap_err();
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
        let exact = Body::from(vec![b' '; MAX_BODY_BYTES]);
        assert_eq!(read(exact).await.unwrap().len(), MAX_BODY_BYTES);
    }
}
