//! The HTTP API. [`app`] builds the router, so tests drive it without a socket.

mod error;
mod events;
mod health;
mod profiles;
mod slates;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::{ApiError, ApiJson};

use crate::slate::SlateService;

/// Shared state of every route.
pub type AppState = Arc<SlateService>;

/// The service's router.
pub fn app(state: AppState) -> Router {
    let http = state.config.http.clone();
    let api = Router::new()
        .route("/v1/slates", post(slates::create))
        .route("/v1/events", post(events::create))
        .layer(DefaultBodyLimit::max(http.max_body_bytes));
    let admin = Router::new()
        .route("/v1/admin/profiles", post(profiles::bulk_load))
        .layer(DefaultBodyLimit::max(http.max_bulk_bytes));
    Router::new()
        .merge(api)
        .merge(admin)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Duration::from_millis(http.request_timeout_ms),
            timeout,
        ))
        .with_state(state)
}

async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!("request exceeded {limit:?}")).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::client(
        axum::http::StatusCode::NOT_FOUND,
        "no-route",
        "no such route",
    )
}
