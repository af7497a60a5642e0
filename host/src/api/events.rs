//! `POST /v1/events`

use axum::Json;
use axum::extract::State;

use super::error::ErrorBody;
use super::{ApiError, ApiJson, AppState, Caller};
use crate::registry::Role;
use crate::slate::{EventAck, EventRequest};

/// Reports an app event.
///
/// An impression, click or conversion of an offer in a served slate; idempotent by
/// `event_id`.
///
/// Roles: app, ops.
#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "create_event",
    tag = "app",
    security(("bearer" = [])),
    request_body = EventRequest,
    responses(
        (status = 200, description = "Recorded, or recognised as a duplicate", body = EventAck),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token's role may not use this route", body = ErrorBody),
        (status = 404, description = "No such slate (unknown or past its retention); `field` is `slate_id`", body = ErrorBody),
        (status = 409, description = "The `event_id` was already used in this slate for a different event (`conflict`); nothing was recorded", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid, or the slate has no such offer; `field` names it", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The store failed, or the request timed out", body = ErrorBody),
    ),
)]
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
