//! The HTTP API. [`app`] builds the router, so tests drive it without a socket.

mod admin;
mod auth;
mod error;
mod events;
mod health;
pub mod openapi;
pub(crate) mod profiles;
mod reports;
mod slates;

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use admin::SIGNATURE_HEADER;
pub use auth::Caller;
pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, BodyLimit};

use crate::slate::SlateService;

/// Shared state of every route.
pub type AppState = Arc<SlateService>;

/// Every route of the service, one line each: [`app`] registers exactly these, [`routes`]
/// lists them, and a test checks that the OpenAPI document ([`openapi::openapi`])
/// describes exactly these. A new route is one line here plus a `#[utoipa::path]` on its
/// handler, listed in [`openapi::ApiDoc`].
#[rustfmt::skip]
fn table() -> Vec<Route> {
    use Bounds::{Bulk, Open, Standard, Upload};
    use Method as M;
    vec![
        route(M::POST,   "/v1/slates",                                   Standard, slates::create),
        route(M::POST,   "/v1/events",                                   Standard, events::create),
        route(M::POST,   "/v1/admin/profiles",                           Bulk,     profiles::bulk_load),
        route(M::POST,   "/v1/admin/partners/{partner}/plugins",         Upload,   admin::upload),
        route(M::GET,    "/v1/admin/registry",                           Standard, admin::registry),
        route(M::POST,   "/v1/admin/partners",                           Standard, admin::put_partner),
        route(M::GET,    "/v1/admin/partners",                           Standard, admin::list_partners),
        route(M::GET,    "/v1/admin/plugins",                            Standard, admin::list_plugins),
        route(M::GET,    "/v1/admin/plugins/{partner}/{plugin}",         Standard, admin::show_plugin),
        route(M::POST,   "/v1/admin/plugins/{partner}/{plugin}/rollout", Standard, admin::rollout),
        route(M::GET,    "/v1/admin/plugins/{partner}/{plugin}/health",  Standard, admin::health),
        route(M::POST,   "/v1/admin/plugins/{partner}/{plugin}/test",    Standard, admin::test),
        route(M::POST,   "/v1/admin/tokens",                             Standard, admin::create_token),
        route(M::GET,    "/v1/admin/tokens",                             Standard, admin::list_tokens),
        route(M::DELETE, "/v1/admin/tokens/{name}",                      Standard, admin::revoke_token),
        route(M::GET,    "/v1/admin/audit",                              Standard, admin::audit),
        route(M::GET,    "/v1/admin/reports/offers",                     Standard, reports::offers),
        route(M::GET,    "/v1/admin/plugins/{partner}/{plugin}/readout", Standard, reports::readout),
        route(M::GET,    "/metrics",                                     Open,     reports::metrics),
        route(M::GET,    "/healthz",                                     Open,     health::healthz),
        route(M::GET,    "/readyz",                                      Open,     health::readyz),
        route(M::GET,    "/openapi.json",                                Open,     openapi::serve),
    ]
}

/// How a route's requests are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bounds {
    /// App and admin JSON routes: `http.max_body_bytes` and `http.request_timeout_ms`.
    Standard,
    /// Profile bulk loads, which write many profiles: `http.max_bulk_bytes` and the long
    /// timeout.
    Bulk,
    /// Plugin uploads, which compile and smoke-call a component:
    /// `registry.max_component_bytes` and the long timeout.
    Upload,
    /// Probes and the API document: no body read, no timeout.
    Open,
}

/// One entry of [`table`].
struct Route {
    method: Method,
    path: &'static str,
    bounds: Bounds,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, bounds: Bounds, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
    Route {
        method,
        path,
        bounds,
        handler: on(filter, handler),
    }
}

/// Method and path of every route [`app`] serves, in registration order.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|r| (r.method, r.path)).collect()
}

/// The service's router.
pub fn app(state: AppState) -> Router {
    let http = &state.config.http;
    let short = Duration::from_millis(http.request_timeout_ms);
    // Uploads compile and smoke-call a component, bulk loads write many profiles: they
    // get longer than an app request.
    let long = short.max(Duration::from_secs(120));
    let bounded = |handler: MethodRouter<AppState>, body: usize, time: Duration| {
        handler
            .layer(Extension(BodyLimit(body)))
            .layer(middleware::from_fn_with_state(time, timeout))
    };
    let mut router = Router::new();
    for r in table() {
        let handler = match r.bounds {
            Bounds::Standard => bounded(r.handler, http.max_body_bytes, short),
            Bounds::Bulk => bounded(r.handler, http.max_bulk_bytes, long),
            Bounds::Upload => bounded(
                r.handler,
                state.config.registry.max_component_bytes as usize,
                long,
            ),
            Bounds::Open => r.handler,
        };
        // Routes on one path with different methods merge into one.
        router = router.route(r.path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::client(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("this route does not take {method} (see /openapi.json for what it takes)"),
    )
}

async fn not_found() -> ApiError {
    ApiError::client(
        axum::http::StatusCode::NOT_FOUND,
        "no-route",
        "no such route",
    )
}
