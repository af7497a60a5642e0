//! The one HTTP error type, and the extractors (JSON body, query string, path) whose
//! rejections are answered with it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::model::FieldError;
use crate::slate::SlateError;

/// An error answer: `{"error": {"code", "message", "field"?}}`. 4xx bodies say what and
/// why; 5xx bodies say nothing internal (the detail goes to the log).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorDetail<'a> {
    /// Stable, kebab-case reason code: `invalid-json`, `invalid-field`, `invalid-body`,
    /// `bad-body`, `body-too-large`, `unsupported-media-type`, `invalid-query`,
    /// `invalid-path`, `empty`, `unauthorized`, `forbidden`, `not-found`, `no-route`,
    /// `invalid`, `rejected`, `conflict`, `unavailable` or `internal`.
    code: &'a str,
    /// What is wrong and, for 4xx, why; 5xx messages say nothing internal.
    message: &'a str,
    /// Dotted path of the offending request field (`profile.tier`,
    /// `line 3: profile.region`), when the error is about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// A 4xx about one field.
    pub fn field(status: StatusCode, code: &'static str, e: FieldError) -> Self {
        ApiError {
            status,
            code,
            message: e.to_string(),
            field: Some(e.field),
        }
    }

    /// A 4xx without a field.
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// A 503: logs `detail`, says only that the service is unavailable.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "request failed: service unavailable");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            field: None,
            message: "the service is temporarily unavailable; retry later".into(),
        }
    }

    /// A 500: logs `detail`, says nothing about it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "request failed: internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            field: None,
            message: "internal error".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<SlateError> for ApiError {
    fn from(e: SlateError) -> Self {
        match e {
            SlateError::Invalid(f) => {
                ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", f)
            }
            SlateError::NotFound(f) => ApiError::field(StatusCode::NOT_FOUND, "not-found", f),
            SlateError::Conflict(f) => ApiError::field(StatusCode::CONFLICT, "conflict", f),
            SlateError::Store(e) => ApiError::unavailable(e),
        }
    }
}

/// JSON body extractor whose rejections are [`ApiError`]s naming the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = read_body(req).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Query-string extractor whose rejections are [`ApiError`]s: 400 `invalid-query`, saying
/// which parameter is wrong and why.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(ApiQuery(q)),
            Err(e) => Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                e.body_text(),
            )),
        }
    }
}

/// Path-segment extractor whose rejections are [`ApiError`]s: 400 `invalid-path` for a
/// segment that does not decode (a route that names parameters it lacks is a 500).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(p)) => Ok(ApiPath(p)),
            Err(e) if e.status().is_server_error() => Err(ApiError::internal(e.body_text())),
            Err(e) => Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "invalid-path",
                e.body_text(),
            )),
        }
    }
}

/// The largest body a route group accepts, set on the group as an extension.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// Limit for a route that set none.
const DEFAULT_BODY_LIMIT: usize = 64 << 10;

/// How much of an oversized body is read and thrown away before the 413 is sent. A
/// client that is still sending when the server answers and closes gets a broken pipe
/// instead of the answer; reading what it sends (up to this much) lets it see why.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads the body under the route's [`BodyLimit`], turning a too-large body into a 413
/// the client actually receives.
pub async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;

    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
    let too_large = || {
        ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the request body is larger than this route accepts ({limit} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut kept = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::client(
                StatusCode::BAD_REQUEST,
                "bad-body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT {
            break;
        } else if !kept.is_empty() {
            kept = Vec::new();
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(Bytes::from(kept))
}

/// A JSON body that did not decode: which field (for data errors) and why.
pub struct JsonError {
    /// Dotted path of the offending field; `None` for syntax errors.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Decodes JSON, keeping the path of the field a data error is about.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let (field, message) = field_and_message(&path, &inner.to_string());
            JsonError {
                field: Some(field),
                message,
            }
        } else {
            JsonError {
                field: None,
                message: format!("not valid JSON: {inner}"),
            }
        }
    })
}

/// Parses a JSON body: 422 naming the field for data errors, 400 for syntax errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    decode_json(bytes).map_err(|e| match e.field {
        // The body as a whole is of the wrong kind.
        Some(field) if field.is_empty() => ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            format!("the body: {}", e.message),
        ),
        Some(field) => ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            FieldError::new(field, e.message),
        ),
        None => ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid-json",
            format!("the body is {}", e.message),
        ),
    })
}

/// The field a data error at `path` is about, and what is wrong with it, in the API's
/// words: a missing or repeated field is named itself rather than the object it belongs
/// in, and the host's type names do not show.
fn field_and_message(path: &str, message: &str) -> (String, String) {
    let message = strip_position(message);
    let parent = if path == "." { "" } else { path };
    for prefix in ["missing field `", "duplicate field `"] {
        if let Some(name) = (message.strip_prefix(prefix)).and_then(|r| r.strip_suffix('`')) {
            let field = match parent {
                "" => name.to_string(),
                _ => format!("{parent}.{name}"),
            };
            return (field, message);
        }
    }
    // serde names the host's type: "invalid type: string \"x\", expected struct
    // Profile" (or "internally tagged enum RolloutAction"), or for an array "invalid
    // length 0, expected struct SlateRequest with 5 elements".
    let named = ["expected struct ", "expected internally tagged enum "]
        .iter()
        .find_map(|t| message.find(t));
    let message = match named {
        Some(_) if message.starts_with("invalid length") => {
            "expected a JSON object, not an array".to_string()
        }
        Some(i) => format!("{}expected a JSON object", &message[..i]),
        None => message,
    };
    (parent.to_string(), message)
}

/// serde_json appends " at line 1 column 40"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{JsonError, decode_json};
    use crate::registry::{Partner, RolloutAction};
    use crate::slate::{EventRequest, SlateRequest};

    /// No answer to a body of the wrong shape names one of the host's Rust types.
    #[test]
    fn errors_never_name_the_hosts_types() {
        let bodies = [
            r#""x""#,
            "[]",
            "[1, 2]",
            "7",
            "null",
            r#"{"action": 5}"#,
            r#"{"action": "canary", "version": []}"#,
            r#"{"placement": {}, "subject": "s"}"#,
            r#"{"placement": "p", "subject": "s", "profile": []}"#,
            r#"{"placement": "p", "subject": "s", "profile": {"tier": 1}}"#,
            r#"{"event_id": "e", "type": 5, "slate_id": "s", "partner": "p", "offer_id": "o"}"#,
            r#"{"id": "p", "weight": 1, "allow": "tier"}"#,
        ];
        let mut messages = Vec::new();
        for body in bodies {
            let b = body.as_bytes();
            for e in [
                decode_json::<SlateRequest>(b).err(),
                decode_json::<EventRequest>(b).err(),
                decode_json::<RolloutAction>(b).err(),
                decode_json::<Partner>(b).err(),
            ]
            .into_iter()
            .flatten()
            {
                let JsonError { field, message } = e;
                messages.push(format!("{body} -> {field:?}: {message}"));
            }
        }
        let leaks: Vec<&String> = (messages.iter())
            .filter(|m| m.contains("struct ") || m.contains("enum "))
            .collect();
        assert!(leaks.is_empty(), "{leaks:#?}");
    }
}
