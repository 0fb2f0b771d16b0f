//! The metrics listener: `/metrics` (Prometheus text), `/healthz` and `/readyz`.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Authorizer;

pub fn metrics_router(authorizer: Arc<Authorizer>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let authorizer = Arc::clone(&authorizer);
                async move {
                    let mut response: Response = (StatusCode::OK, authorizer.metrics().encode()).into_response();
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    );
                    response
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
}
