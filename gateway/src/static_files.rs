//! The built frontend, served from a directory with single-page-app fallback.
//!
//! Files that exist are served as they are. A path without a file extension that matches no file is
//! a client-side route (`/status`, `/classes/42`): it gets `index.html` so the app's router takes over.
//! A missing asset (`/pkg/missing.js`) is a real 404. When the frontend was never built, pages say how
//! to build it instead of a bare 404.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_http::services::{ServeDir, ServeFile};

/// Page served when `index.html` is missing from the static directory.
const NOT_BUILT: &str = "<!doctype html><title>Classroom</title>\
<h1>The frontend is not built</h1><p>Run <code>just frontend</code> (or <code>just run</code>), then reload.</p>";

/// The fallback service for every path no API route matched.
pub fn service(dir: &Path) -> BoxCloneSyncService<Request<Body>, Response, Infallible> {
    let dir: PathBuf = dir.to_owned();
    let files = ServeDir::new(&dir);
    let index = ServeFile::new(dir.join("index.html"));
    BoxCloneSyncService::new(tower::service_fn(move |request: Request<Body>| {
        let files = files.clone();
        let index = index.clone();
        let index_exists = dir.join("index.html").is_file();
        async move {
            let is_route = !request
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .contains('.');
            let Ok(response) = files.oneshot(request).await;
            let response = response.into_response();
            if response.status() != StatusCode::NOT_FOUND || !is_route {
                return Ok(response);
            }
            if !index_exists {
                return Ok((StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response());
            }
            let Ok(response) = index.oneshot(Request::new(Body::empty())).await;
            let mut response = response.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok(response)
        }
    }))
}
