//! The HTTP API. [`app`] builds the router, so tests drive it without a socket.

mod admin;
mod auth;
mod error;
mod events;
mod health;
mod profiles;
mod reports;
mod slates;

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use admin::SIGNATURE_HEADER;
pub use auth::Caller;
pub use error::{ApiError, ApiJson, BodyLimit};

use crate::slate::SlateService;

/// Shared state of every route.
pub type AppState = Arc<SlateService>;

/// The service's router.
pub fn app(state: AppState) -> Router {
    let http = state.config.http.clone();
    let short = Duration::from_millis(http.request_timeout_ms);
    // Uploads compile and smoke-call a component, bulk loads write many profiles: they
    // get longer than an app request.
    let long = short.max(Duration::from_secs(120));
    let api = Router::new()
        .route("/v1/slates", post(slates::create))
        .route("/v1/events", post(events::create))
        .layer(Extension(BodyLimit(http.max_body_bytes)))
        .layer(middleware::from_fn_with_state(short, timeout));
    let bulk = Router::new()
        .route("/v1/admin/profiles", post(profiles::bulk_load))
        .layer(Extension(BodyLimit(http.max_bulk_bytes)))
        .layer(middleware::from_fn_with_state(long, timeout));
    let uploads = Router::new()
        .route("/v1/admin/partners/{partner}/plugins", post(admin::upload))
        .layer(Extension(BodyLimit(
            state.config.registry.max_component_bytes as usize,
        )))
        .layer(middleware::from_fn_with_state(long, timeout));
    let admin = Router::new()
        .route("/v1/admin/registry", get(admin::registry))
        .route(
            "/v1/admin/partners",
            post(admin::put_partner).get(admin::list_partners),
        )
        .route("/v1/admin/plugins", get(admin::list_plugins))
        .route(
            "/v1/admin/plugins/{partner}/{plugin}",
            get(admin::show_plugin),
        )
        .route(
            "/v1/admin/plugins/{partner}/{plugin}/rollout",
            post(admin::rollout),
        )
        .route(
            "/v1/admin/plugins/{partner}/{plugin}/health",
            get(admin::health),
        )
        .route(
            "/v1/admin/plugins/{partner}/{plugin}/test",
            post(admin::test),
        )
        .route("/v1/admin/tokens", post(admin::create_token))
        .route(
            "/v1/admin/tokens/{name}",
            axum::routing::delete(admin::revoke_token),
        )
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/admin/reports/offers", get(reports::offers))
        .route(
            "/v1/admin/plugins/{partner}/{plugin}/readout",
            get(reports::readout),
        )
        .layer(Extension(BodyLimit(http.max_body_bytes)))
        .layer(middleware::from_fn_with_state(short, timeout));
    Router::new()
        .merge(api)
        .merge(bulk)
        .merge(uploads)
        .merge(admin)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(reports::metrics))
        .fallback(not_found)
        .with_state(state)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        // Outermost: every request gets an id before its span opens, and the answer
        // carries it back (`x-request-id`; a caller's own id is kept).
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The span every log line of a request is in: its id, method and path (never the
/// query string or body, which may carry customer data).
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", id, method = %req.method(), path = req.uri().path())
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
