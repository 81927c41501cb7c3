//! Cross-site request protection for `POST /graphql`.
//!
//! A browser may attach the session cookie to requests another site makes it send, and a signed-out
//! browser can be made to sign in to someone else's account (login CSRF). So every POST without an
//! `Authorization: Bearer` header must be `application/json` (a cross-site form cannot send that
//! without a CORS preflight, which we never grant) and, when the browser says where it comes from
//! (`Origin`), come from this server's own origin. Bearer requests carry no ambient credential.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Presented, presented};

/// Why a request was refused, or `None` to let it through.
pub fn refusal(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if method != Method::POST || matches!(presented(headers), Presented::Bearer(_)) {
        return None;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Some("requests without a bearer token must have Content-Type: application/json");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin_host != host {
            return Some("cross-site request refused: Origin does not match this server");
        }
    }
    None
}

/// Middleware applying [`refusal`].
pub async fn protect(request: Request, next: Next) -> Response {
    if let Some(reason) = refusal(request.method(), request.headers()) {
        let body = serde_json::json!({
            "errors": [{ "message": reason, "extensions": { "code": "FORBIDDEN" } }]
        });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookie_posts_need_json_and_a_matching_origin() {
        let cookie = ("cookie", "classroom_session=abc");
        let host = ("host", "127.0.0.1:8080");
        let json = ("content-type", "application/json");
        assert_eq!(
            refusal(&Method::POST, &headers(&[cookie, host, json])),
            None
        );
        assert_eq!(
            refusal(
                &Method::POST,
                &headers(&[cookie, host, json, ("origin", "http://127.0.0.1:8080")])
            ),
            None
        );
        assert!(
            refusal(
                &Method::POST,
                &headers(&[
                    cookie,
                    host,
                    ("content-type", "application/x-www-form-urlencoded")
                ])
            )
            .is_some()
        );
        assert!(
            refusal(
                &Method::POST,
                &headers(&[cookie, host, ("content-type", "text/plain")])
            )
            .is_some()
        );
        assert!(
            refusal(
                &Method::POST,
                &headers(&[cookie, host, json, ("origin", "https://evil.example")])
            )
            .is_some()
        );
    }

    #[test]
    fn bearer_requests_pass_and_anonymous_forms_do_not() {
        let form = ("content-type", "multipart/form-data; boundary=x");
        assert_eq!(
            refusal(
                &Method::POST,
                &headers(&[("authorization", "Bearer x"), form])
            ),
            None
        );
        assert!(
            refusal(&Method::POST, &headers(&[form])).is_some(),
            "no login CSRF through forms"
        );
        assert_eq!(
            refusal(
                &Method::POST,
                &headers(&[("content-type", "application/json")])
            ),
            None
        );
        assert_eq!(
            refusal(
                &Method::GET,
                &headers(&[("cookie", "classroom_session=abc")])
            ),
            None
        );
    }
}
