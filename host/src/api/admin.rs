//! Admin routes under `/v1/admin`: partners, plugin uploads and rollout, tests of a
//! version, health, tokens, the audit log and the registry itself.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ErrorBody, read_body};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState};
use crate::model::{Bid, Features, RejectedBid, screen_bids};
use crate::registry::{
    AuditEntry, HealthReport, Partner, PluginEntry, RegistryDoc, RegistryError, Role,
    RolloutAction, TokenMeta, VersionMeta,
};
use crate::sandbox::{Cost, LimitOverrides, LogLine, Outcome};

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(m) => ApiError::client(StatusCode::NOT_FOUND, "not-found", m),
            RegistryError::Invalid(m) => {
                ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
            }
            RegistryError::Rejected(m) => {
                ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "rejected", m)
            }
            RegistryError::Conflict(m) => ApiError::client(StatusCode::CONFLICT, "conflict", m),
            RegistryError::Forbidden(m) => ApiError::client(StatusCode::FORBIDDEN, "forbidden", m),
            RegistryError::Store(e) => ApiError::unavailable(e),
        }
    }
}

/// Runs blocking registry work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// The registry document and its revision.
#[derive(Serialize, ToSchema)]
pub(super) struct RegistrySnapshot {
    /// The whole registry (token secrets are never stored, only their hashes).
    registry: RegistryDoc,
    /// Revision, raised by every committed change.
    revision: u64,
}

/// The whole registry.
///
/// Partners, plugins with their versions and rollout state, and tokens (without secrets).
///
/// Roles: ops.
#[utoipa::path(
    get,
    path = "/v1/admin/registry",
    operation_id = "get_registry",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The registry at its current revision", body = RegistrySnapshot),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 503, description = "The request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn registry(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RegistrySnapshot>, ApiError> {
    caller.require(&[Role::Ops])?;
    let doc = state.registry().doc();
    Ok(Json(RegistrySnapshot {
        registry: doc.1.clone(),
        revision: doc.0,
    }))
}

/// Creates or replaces a partner.
///
/// Roles: ops.
#[utoipa::path(
    post,
    path = "/v1/admin/partners",
    operation_id = "put_partner",
    tag = "admin",
    security(("bearer" = [])),
    request_body = Partner,
    responses(
        (status = 200, description = "The partner as stored", body = Partner),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 409, description = "The registry changed concurrently; retry", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid (`invalid-field`), or the partner breaks a rule (`invalid`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The registry store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn put_partner(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(partner): ApiJson<Partner>,
) -> Result<Json<Partner>, ApiError> {
    let actor = caller.require(&[Role::Ops])?.clone();
    let registry = state.registry().clone();
    Ok(Json(
        blocking(move || registry.put_partner(&actor, partner)).await?,
    ))
}

/// Lists partners.
///
/// Roles: ops.
#[utoipa::path(
    get,
    path = "/v1/admin/partners",
    operation_id = "list_partners",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every partner, by id", body = Vec<Partner>),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 503, description = "The request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn list_partners(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Partner>>, ApiError> {
    caller.require(&[Role::Ops])?;
    Ok(Json(
        state
            .registry()
            .doc()
            .1
            .partners
            .values()
            .cloned()
            .collect(),
    ))
}

/// Header carrying the hex ed25519 signature of the component's SHA-256 digest.
pub const SIGNATURE_HEADER: &str = "x-offerhost-signature";

/// The raw bytes of a WebAssembly component, for the document only: the handler reads
/// the body itself.
pub(super) enum WasmComponent {}

impl utoipa::PartialSchema for WasmComponent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/wasm")
            .into()
    }
}

impl ToSchema for WasmComponent {}

/// Uploads a plugin version.
///
/// The body is the raw bytes of a WebAssembly component. The host checks it, smoke-calls
/// it and stages it: it is not active until promoted.
///
/// Roles: ops, or a partner token of `partner`.
#[utoipa::path(
    post,
    path = "/v1/admin/partners/{partner}/plugins",
    operation_id = "upload_plugin",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("partner" = String, Path, description = "Partner id"),
        ("x-offerhost-signature" = Option<String>, Header, nullable = false, description = "Hex ed25519 signature of the component's SHA-256 digest, by the partner's `public_key`; required when the partner has one"),
    ),
    request_body(
        content = inline(WasmComponent),
        content_type = "application/wasm",
        description = "The component's bytes (any content type is accepted)",
    ),
    responses(
        (status = 201, description = "The staged version", body = VersionMeta),
        (status = 400, description = "The body could not be read", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token may not act for this partner", body = ErrorBody),
        (status = 404, description = "No such partner", body = ErrorBody),
        (status = 409, description = "The registry changed concurrently; retry", body = ErrorBody),
        (status = 413, description = "The component is larger than `registry.max_component_bytes`", body = ErrorBody),
        (status = 422, description = "The component was rejected (`rejected`: not a valid component, wrong WIT version, failed smoke call, bad or missing signature, the version exists with different bytes) or the partner's key is invalid (`invalid`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The registry store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(partner): ApiPath<String>,
    req: Request,
) -> Result<(StatusCode, Json<VersionMeta>), ApiError> {
    let actor = caller.require_partner(&partner)?.clone();
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_body(req).await?;
    let registry = state.registry().clone();
    let meta =
        blocking(move || registry.upload(&actor, &partner, &bytes, signature.as_deref())).await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

/// Lists plugins.
///
/// Every plugin the caller may manage, with versions and rollout state.
///
/// Roles: ops (every plugin), partner (its own plugins).
#[utoipa::path(
    get,
    path = "/v1/admin/plugins",
    operation_id = "list_plugins",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plugins, by `partner/name`", body = Vec<PluginEntry>),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is an app token", body = ErrorBody),
        (status = 503, description = "The request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn list_plugins(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PluginEntry>>, ApiError> {
    let actor = &caller.0;
    if actor.role == Role::App {
        caller.require(&[Role::Ops, Role::Partner])?;
    }
    Ok(Json(
        state
            .registry()
            .doc()
            .1
            .plugins
            .values()
            .filter(|p| actor.may_manage(&p.partner))
            .cloned()
            .collect(),
    ))
}

/// Plugin `partner/plugin`, if the caller may see it (ops or that partner); 404 if
/// there is none.
pub(super) fn entry(
    state: &AppState,
    caller: &Caller,
    partner: &str,
    plugin: &str,
) -> Result<PluginEntry, ApiError> {
    caller.require_partner(partner)?;
    let key = format!("{partner}/{plugin}");
    state
        .registry()
        .doc()
        .1
        .plugins
        .get(&key)
        .cloned()
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no plugin {key:?}"),
            )
        })
}

/// One plugin.
///
/// With its versions and rollout state.
///
/// Roles: ops, or a partner token of `partner`.
#[utoipa::path(
    get,
    path = "/v1/admin/plugins/{partner}/{plugin}",
    operation_id = "get_plugin",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("partner" = String, Path, description = "Partner id"),
        ("plugin" = String, Path, description = "Plugin name"),
    ),
    responses(
        (status = 200, description = "The plugin", body = PluginEntry),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token may not act for this partner", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 503, description = "The request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn show_plugin(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((partner, plugin)): ApiPath<(String, String)>,
) -> Result<Json<PluginEntry>, ApiError> {
    Ok(Json(entry(&state, &caller, &partner, &plugin)?))
}

/// Changes a plugin's rollout or settings.
///
/// One action: canary, promote, rollback, disable, enable, shadow, reinstate, config,
/// limits or placements.
///
/// Roles: ops.
#[utoipa::path(
    post,
    path = "/v1/admin/plugins/{partner}/{plugin}/rollout",
    operation_id = "rollout_plugin",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("partner" = String, Path, description = "Partner id"),
        ("plugin" = String, Path, description = "Plugin name"),
    ),
    request_body = RolloutAction,
    responses(
        (status = 200, description = "The plugin after the change", body = PluginEntry),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 404, description = "No such plugin or version", body = ErrorBody),
        (status = 409, description = "The registry changed concurrently; retry", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid (`invalid-field`), or the change does not apply to the plugin's state (`invalid`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The registry store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn rollout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((partner, plugin)): ApiPath<(String, String)>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<PluginEntry>, ApiError> {
    let actor = caller.require(&[Role::Ops])?.clone();
    if let RolloutAction::Placements { placements } = &action {
        for p in placements {
            state.placement(p)?;
        }
    }
    let registry = state.registry().clone();
    let key = format!("{partner}/{plugin}");
    Ok(Json(
        blocking(move || registry.rollout(&actor, &key, action)).await?,
    ))
}

/// A plugin's health.
///
/// Outcome counters of this process, the current failure window, quarantine.
///
/// Roles: ops, or a partner token of `partner`.
#[utoipa::path(
    get,
    path = "/v1/admin/plugins/{partner}/{plugin}/health",
    operation_id = "get_plugin_health",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("partner" = String, Path, description = "Partner id"),
        ("plugin" = String, Path, description = "Plugin name"),
    ),
    responses(
        (status = 200, description = "The plugin's health in this process", body = HealthReport),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token may not act for this partner", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 503, description = "The request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn health(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((partner, plugin)): ApiPath<(String, String)>,
) -> Result<Json<HealthReport>, ApiError> {
    let e = entry(&state, &caller, &partner, &plugin)?;
    Ok(Json(state.registry().health(&e.key())))
}

/// A test call of one plugin version.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TestRequest {
    /// Version to run; default the active one.
    #[serde(default)]
    version: Option<String>,
    /// Features to bid on.
    features: Features,
    /// Config to use instead of the plugin's own.
    #[serde(default)]
    config: Option<BTreeMap<String, String>>,
}

/// What a test call did.
#[derive(Serialize, ToSchema)]
pub(super) struct TestResult {
    /// `partner/plugin`.
    plugin: String,
    /// The version called.
    version: String,
    /// How the call ended.
    outcome: Outcome,
    /// Bids that follow the contract.
    bids: Vec<Bid>,
    /// Bids the host would drop, with the reason.
    rejected_bids: Vec<RejectedBid>,
    /// What the call cost.
    cost: Cost,
    /// What the plugin logged.
    logs: Vec<LogLine>,
}

/// Test-calls a plugin version.
///
/// Calls one version with the given features, outside any slate, and reports its
/// outcome, bids, cost and logs.
///
/// Roles: ops, or a partner token of `partner`.
#[utoipa::path(
    post,
    path = "/v1/admin/plugins/{partner}/{plugin}/test",
    operation_id = "test_plugin",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("partner" = String, Path, description = "Partner id"),
        ("plugin" = String, Path, description = "Plugin name"),
    ),
    request_body = TestRequest,
    responses(
        (status = 200, description = "The call's report (a failed call is still a 200)", body = TestResult),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token may not act for this partner", body = ErrorBody),
        (status = 404, description = "No such plugin or version", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid (`invalid-field`), or no version was named and none is active (`invalid`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The registry store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn test(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((partner, plugin)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<TestRequest>,
) -> Result<Json<TestResult>, ApiError> {
    let e = entry(&state, &caller, &partner, &plugin)?;
    req.features.validate().map_err(|f| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            crate::model::FieldError::new(format!("features.{}", f.field), f.problem),
        )
    })?;
    let version = req.version.or(e.active.clone()).ok_or_else(|| {
        ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "the plugin has no active version; name one",
        )
    })?;
    let meta = e
        .versions
        .get(&version)
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{} has no version {version:?}", e.key()),
            )
        })?
        .clone();
    let registry = state.registry().clone();
    let limits = LimitOverrides::effective(e.limits.as_ref(), state.config.limits);
    let config = std::sync::Arc::new(req.config.unwrap_or(e.config.clone()));
    let features = req.features;
    let report = blocking(move || {
        let plugin = registry.compiled_plugin(&meta.digest)?;
        Ok(registry.sandbox().bid(&plugin, &features, &config, &limits))
    })
    .await?;
    let (bids, rejected_bids) = screen_bids(report.value.unwrap_or_default());
    Ok(Json(TestResult {
        plugin: e.key(),
        version,
        outcome: report.outcome,
        bids,
        rejected_bids,
        cost: report.cost,
        logs: report.logs,
    }))
}

/// A token to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    /// Unique name, shown in the audit log.
    name: String,
    /// What the token may do.
    role: Role,
    /// For partner tokens, the partner.
    #[serde(default)]
    partner: Option<String>,
}

/// A created token.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedToken {
    /// Its name.
    name: String,
    /// The secret, shown only this once (only its hash is stored).
    token: String,
}

/// Creates an API token.
///
/// Roles: ops.
#[utoipa::path(
    post,
    path = "/v1/admin/tokens",
    operation_id = "create_token",
    tag = "admin",
    security(("bearer" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, with its secret", body = CreatedToken),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 404, description = "No such partner", body = ErrorBody),
        (status = 409, description = "A token has that name, or the registry changed concurrently", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid (`invalid-field`), or the name, role and partner do not fit together (`invalid`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The registry store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let actor = caller.require(&[Role::Ops])?.clone();
    let registry = state.registry().clone();
    let name = req.name.clone();
    let token = blocking(move || {
        registry.create_token(&actor, &req.name, req.role, req.partner.as_deref())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { name, token })))
}

/// Lists API tokens: who has access, never the secrets (only their hashes are stored).
///
/// Roles: ops.
#[utoipa::path(
    get,
    path = "/v1/admin/tokens",
    operation_id = "list_tokens",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every token, by name", body = Vec<TokenMeta>),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 503, description = "The request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenMeta>>, ApiError> {
    caller.require(&[Role::Ops])?;
    let mut tokens: Vec<TokenMeta> = state.registry().doc().1.tokens.values().cloned().collect();
    tokens.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(tokens))
}

/// A revoked token.
#[derive(Serialize, ToSchema)]
pub(super) struct Revoked {
    /// Its name.
    revoked: String,
}

/// Revokes an API token.
///
/// It stops working at once.
///
/// Roles: ops.
#[utoipa::path(
    delete,
    path = "/v1/admin/tokens/{name}",
    operation_id = "revoke_token",
    tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Token name")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 404, description = "No token has that name", body = ErrorBody),
        (status = 409, description = "The registry changed concurrently; retry", body = ErrorBody),
        (status = 422, description = "It is the last ops token (`invalid`): create another first", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The registry store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Revoked>, ApiError> {
    let actor = caller.require(&[Role::Ops])?.clone();
    let registry = state.registry().clone();
    let n = name.clone();
    blocking(move || registry.revoke_token(&actor, &n)).await?;
    Ok(Json(Revoked { revoked: name }))
}

/// Which audit entries to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only entries with a sequence number above this.
    #[serde(default)]
    after: u64,
    /// Most entries to return (at most 10 000 are).
    #[serde(default = "default_limit")]
    #[param(default = 1000)]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

/// The audit log.
///
/// Who changed what in the registry, with the state before and after, oldest first.
///
/// Roles: ops.
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    operation_id = "list_audit",
    tag = "admin",
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit entries in sequence order", body = Vec<AuditEntry>),
        (status = 400, description = "The query string does not parse (`invalid-query`)", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The registry store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require(&[Role::Ops])?;
    let registry = state.registry().clone();
    Ok(Json(
        blocking(move || registry.audit(q.after, q.limit.min(10_000))).await?,
    ))
}
