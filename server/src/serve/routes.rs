//! The HTTP routes: `app` builds the router over the service state, so tests drive it
//! in-process (`tower::ServiceExt::oneshot`) and `weir serve` serves it.

use super::app::App;
use super::error::AppError;
use super::handlers::{events, health, live, metrics, outputs, statements};
use axum::routing::{get, post};
use axum::Router;

/// The router of the HTTP API (docs/api.md).
pub fn app(state: App) -> Router {
    Router::new()
        .route(
            "/v1/statements",
            post(statements::post_statements).get(statements::list_statements),
        )
        .route("/v1/statements/{name}", get(statements::get_statement))
        .route(
            "/v1/statements/{name}/stats",
            get(statements::get_statement_stats),
        )
        .route("/v1/streams/{stream}/events", post(events::post_events))
        .route("/v1/outputs", get(outputs::get_outputs))
        .route("/v1/outputs/stream", get(live::sse_outputs))
        .route("/v1/ws", get(live::ws_upgrade))
        .route("/v1/metrics/{metric}", get(metrics::get_metric))
        .route("/v1/metrics/{metric}/contains", get(metrics::get_contains))
        .route("/metrics", get(health::prometheus))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi))
        .fallback(|| async {
            AppError::new(404, "not_found", "no such endpoint; see /openapi.json")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::guard::guard,
        ))
        .with_state(state)
}
