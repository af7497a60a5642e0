//! Admin routes under `/v1/admin`: partners, plugin uploads and rollout, tests of a
//! version, health, tokens, the audit log and the registry itself.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::read_body;
use super::{ApiError, ApiJson, AppState};
use crate::model::{Bid, Features, RejectedBid, screen_bids};
use crate::registry::{
    AuditEntry, HealthReport, Partner, PluginEntry, RegistryError, Role, RolloutAction, VersionMeta,
};
use crate::sandbox::{Cost, LogLine, Outcome};

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

pub(super) async fn registry(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Ops])?;
    let doc = state.registry().doc();
    Ok(Json(json!({"revision": doc.0, "registry": doc.1})))
}

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

pub(super) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(partner): Path<String>,
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

fn entry(
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

pub(super) async fn show_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path((partner, plugin)): Path<(String, String)>,
) -> Result<Json<PluginEntry>, ApiError> {
    Ok(Json(entry(&state, &caller, &partner, &plugin)?))
}

pub(super) async fn rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path((partner, plugin)): Path<(String, String)>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<PluginEntry>, ApiError> {
    let actor = caller.require(&[Role::Ops])?.clone();
    let registry = state.registry().clone();
    let key = format!("{partner}/{plugin}");
    Ok(Json(
        blocking(move || registry.rollout(&actor, &key, action)).await?,
    ))
}

pub(super) async fn health(
    State(state): State<AppState>,
    caller: Caller,
    Path((partner, plugin)): Path<(String, String)>,
) -> Result<Json<HealthReport>, ApiError> {
    let e = entry(&state, &caller, &partner, &plugin)?;
    Ok(Json(state.registry().health(&e.key())))
}

#[derive(Deserialize)]
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

#[derive(Serialize)]
pub(super) struct TestResult {
    plugin: String,
    version: String,
    outcome: Outcome,
    bids: Vec<Bid>,
    rejected_bids: Vec<RejectedBid>,
    cost: Cost,
    logs: Vec<LogLine>,
}

pub(super) async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path((partner, plugin)): Path<(String, String)>,
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
    let limits = e.limits.unwrap_or(state.config.limits);
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    name: String,
    role: Role,
    #[serde(default)]
    partner: Option<String>,
}

pub(super) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let actor = caller.require(&[Role::Ops])?.clone();
    let registry = state.registry().clone();
    let name = req.name.clone();
    let token = blocking(move || {
        registry.create_token(&actor, &req.name, req.role, req.partner.as_deref())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "token": token})),
    ))
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(&[Role::Ops])?.clone();
    let registry = state.registry().clone();
    let n = name.clone();
    blocking(move || registry.revoke_token(&actor, &n)).await?;
    Ok(Json(json!({"revoked": name})))
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

pub(super) async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require(&[Role::Ops])?;
    let registry = state.registry().clone();
    Ok(Json(
        blocking(move || registry.audit(q.after, q.limit.min(10_000))).await?,
    ))
}
