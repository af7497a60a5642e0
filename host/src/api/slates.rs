//! `POST /v1/slates`

use axum::Json;
use axum::extract::State;

use super::error::ErrorBody;
use super::{ApiError, ApiJson, AppState, Caller};
use crate::registry::Role;
use crate::slate::{Slate, SlateRequest};

/// Fetches a slate.
///
/// Ranked partner offers for one placement and subject.
///
/// Roles: app, ops.
#[utoipa::path(
    post,
    path = "/v1/slates",
    operation_id = "create_slate",
    tag = "app",
    security(("bearer" = [])),
    request_body = SlateRequest,
    responses(
        (status = 200, description = "The ranked slate (possibly empty, suppressed or degraded)", body = Slate),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token's role may not use this route", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid (an unknown placement, slots out of range, a bad profile value); `field` names it", body = ErrorBody),
        (status = 503, description = "The store failed where no fallback is safe, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SlateRequest>,
) -> Result<Json<Slate>, ApiError> {
    caller.require(&[Role::App, Role::Ops])?;
    Ok(Json(state.slate(req).await?))
}
