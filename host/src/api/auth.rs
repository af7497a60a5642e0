//! Bearer-token authentication and role checks.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::registry::{Actor, Role};

/// The authenticated caller of a route.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <token>`"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        state
            .registry()
            .authenticate(token.trim())
            .map(Caller)
            .ok_or_else(|| unauthorized("unknown or revoked token"))
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::client(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

impl Caller {
    /// Refuses with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<&Actor, ApiError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::client(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} ({:?}) may not use this route",
                    self.0.name, self.0.role
                ),
            ))
        }
    }

    /// Refuses with 403 unless the caller is ops or partner `partner`.
    pub fn require_partner(&self, partner: &str) -> Result<&Actor, ApiError> {
        if self.0.may_manage(partner) {
            Ok(&self.0)
        } else {
            Err(ApiError::client(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} may not act for partner {partner:?}",
                    self.0.name
                ),
            ))
        }
    }
}
