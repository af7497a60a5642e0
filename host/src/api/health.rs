//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve slates).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{ApiError, AppState};

/// The process answers.
#[derive(Serialize, ToSchema)]
pub(super) struct Alive {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// The service can serve slates.
#[derive(Serialize, ToSchema)]
pub(super) struct Ready {
    /// Plugins deployed.
    plugins: usize,
    /// Always `ready`.
    #[schema(example = "ready")]
    status: &'static str,
}

/// Liveness.
///
/// The process answers.
///
/// No authentication.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "probes",
    responses((status = 200, description = "The process answers", body = Alive)),
)]
pub(super) async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// Readiness.
///
/// The store answers; says how many plugins are deployed.
///
/// No authentication.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "probes",
    responses(
        (status = 200, description = "Ready to serve slates", body = Ready),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ),
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state
        .io(|s| s.ping())
        .await
        .map_err(ApiError::unavailable)?;
    let plugins = state.registry().deployment().plugins.len();
    Ok(Json(Ready {
        plugins,
        status: "ready",
    }))
}
