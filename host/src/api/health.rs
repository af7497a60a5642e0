//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve slates).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .io(|s| s.ping())
        .await
        .map_err(ApiError::unavailable)?;
    let plugins = state.registry().deployment().plugins.len();
    Ok(Json(json!({"status": "ready", "plugins": plugins})))
}
