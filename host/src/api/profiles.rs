//! `POST /v1/admin/profiles`: bulk-load stored profiles as NDJSON, all or nothing.
//!
//! Each line is `{"subject": "...", "profile": {...}}`. Every line is checked before
//! anything is written; one bad line rejects the upload and names the line and field.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{decode_json, read_body};
use super::{ApiError, AppState, Caller};
use crate::model::FieldError;
use crate::registry::Role;
use crate::slate::profile::Profile;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    subject: String,
    profile: Profile,
}

pub(super) async fn bulk_load(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Ops])?;
    let body = read_body(req).await?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "the body is not UTF-8",
        )
    })?;
    let mut batch = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let line: Line = decode_json(raw.as_bytes()).map_err(|e| {
            let field = match e.field {
                Some(f) if !f.is_empty() => format!("line {n}: {f}"),
                _ => format!("line {n}"),
            };
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                FieldError::new(field, e.message),
            )
        })?;
        if line.subject.is_empty() || line.subject.len() > 128 {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                FieldError::new(format!("line {n}: subject"), "must be 1..=128 bytes"),
            ));
        }
        line.profile.validate("profile.").map_err(|e| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                FieldError::new(format!("line {n}: {}", e.field), e.problem),
            )
        })?;
        batch.push((state.subject_key(&line.subject), line.profile));
    }
    if batch.is_empty() {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty",
            "no profiles in the body",
        ));
    }
    let loaded = batch.len();
    let service = state.clone();
    tokio::task::spawn_blocking(move || service.store().put_profiles(&batch))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::unavailable)?;
    Ok(Json(json!({"loaded": loaded})))
}
