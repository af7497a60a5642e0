//! `POST /v1/events`

use axum::Json;
use axum::extract::State;

use super::{ApiError, ApiJson, AppState};
use crate::slate::{EventAck, EventRequest};

pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(ev): ApiJson<EventRequest>,
) -> Result<Json<EventAck>, ApiError> {
    let service = state.clone();
    let ack = tokio::task::spawn_blocking(move || service.event(ev))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(ack))
}
