//! `POST /v1/slates`

use axum::Json;
use axum::extract::State;

use super::{ApiError, ApiJson, AppState};
use crate::slate::{Slate, SlateRequest};

pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SlateRequest>,
) -> Result<Json<Slate>, ApiError> {
    Ok(Json(state.slate(req).await?))
}
