//! `POST /v1/admin/profiles`: bulk-load stored profiles as NDJSON, all or nothing.
//!
//! Each line is `{"subject": "...", "profile": {...}}`. Every line is checked before
//! anything is written; one bad line rejects the upload and names the line and field.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ErrorBody, decode_json, read_body};
use super::{ApiError, AppState, Caller};
use crate::model::FieldError;
use crate::registry::Role;
use crate::slate::profile::Profile;

/// One line of a bulk profile load.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileLine {
    /// Pseudonymous subject id, 1..=128 bytes (stored only as a salted hash).
    subject: String,
    /// The subject's profile; replaces any stored one.
    profile: Profile,
}

/// One line of a bulk load, checked as the server checks it (the CLI checks a whole file
/// before it sends any of it).
pub(crate) fn check_line(raw: &str) -> Result<ProfileLine, FieldError> {
    let line: ProfileLine = decode_json(raw.as_bytes())
        .map_err(|e| FieldError::new(e.field.unwrap_or_default(), e.message))?;
    if line.subject.is_empty() || line.subject.len() > 128 {
        return Err(FieldError::new("subject", "must be 1..=128 bytes"));
    }
    line.profile.validate("profile.")?;
    Ok(line)
}

/// The answer to a bulk load.
#[derive(Serialize, ToSchema)]
pub(super) struct Loaded {
    /// Profiles stored.
    loaded: usize,
}

/// Bulk-loads stored profiles.
///
/// NDJSON, one `ProfileLine` per line, blank lines ignored. Every line is checked before
/// any is stored; one bad line rejects the whole body.
///
/// Roles: ops.
#[utoipa::path(
    post,
    path = "/v1/admin/profiles",
    operation_id = "load_profiles",
    tag = "admin",
    security(("bearer" = [])),
    request_body(
        content = String,
        content_type = "application/x-ndjson",
        description = "One JSON object per line, each a `ProfileLine` (see the component schemas)",
    ),
    responses(
        (status = 200, description = "Every profile stored", body = Loaded),
        (status = 400, description = "The body is not UTF-8 or could not be read", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.max_bulk_bytes`", body = ErrorBody),
        (status = 422, description = "A line is invalid (`field` is `line N: path`), or the body holds no profile (`empty`); nothing was stored", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The store failed (nothing was stored), or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn bulk_load(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Json<Loaded>, ApiError> {
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
        let line = check_line(raw).map_err(|e| {
            let field = match e.field.as_str() {
                "" => format!("line {}", i + 1),
                f => format!("line {}: {f}", i + 1),
            };
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                FieldError::new(field, e.problem),
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
    Ok(Json(Loaded { loaded }))
}
