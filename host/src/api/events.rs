//! `POST /v1/events`

use axum::Json;
use axum::extract::State;

use super::{ApiError, ApiJson, AppState, Caller};
use crate::registry::Role;
use crate::slate::{EventAck, EventRequest};

pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(ev): ApiJson<EventRequest>,
) -> Result<Json<EventAck>, ApiError> {
    caller.require(&[Role::App, Role::Ops])?;
    let service = state.clone();
    let ack = tokio::task::spawn_blocking(move || service.event(ev))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(ack))
}
