//! `POST /v1/slates`

use axum::Json;
use axum::extract::State;

use super::{ApiError, ApiJson, AppState, Caller};
use crate::registry::Role;
use crate::slate::{Slate, SlateRequest};

pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SlateRequest>,
) -> Result<Json<Slate>, ApiError> {
    caller.require(&[Role::App, Role::Ops])?;
    Ok(Json(state.slate(req).await?))
}
