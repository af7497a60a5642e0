//! Measurement routes: `/metrics`, offer reports and canary readouts.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::ErrorBody;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::registry::Role;
use crate::report::offers::{self, DayRows, Dim, Report};
use crate::report::readout::{self, Readout, Versions};
use crate::report::{DAY_FORMAT, agg_bucket, arm_bucket};
use crate::store::StoreError;

/// Service metrics.
///
/// Prometheus (OpenMetrics) text exposition: slate latency, plugin calls, fuel and
/// outcomes, bids and drops, offers served, caps hit, events, registry changes and
/// quarantines. No authentication: scrape it from the internal network; it holds no
/// customer data.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "probes",
    responses((status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text")),
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    state.settle().await;
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics().encode(),
    )
        .into_response()
}

/// Query of `GET /v1/admin/reports/offers`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct OffersQuery {
    /// First local day, `YYYY-MM-DD`; default six days before `to`.
    #[serde(default)]
    from: Option<String>,
    /// Last local day, inclusive; default today.
    #[serde(default)]
    to: Option<String>,
    /// Only this partner (a partner token may only name itself).
    #[serde(default)]
    partner: Option<String>,
    /// Comma-separated grouping: day, partner, plugin, version, offer, placement, tier,
    /// stage. Default `offer,placement,tier,stage`.
    #[serde(default)]
    by: Option<String>,
}

fn day_param(name: &'static str, value: &str) -> Result<time::Date, ApiError> {
    time::Date::parse(value, DAY_FORMAT).map_err(|_| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            format!("{name}: {value:?} is not a date (YYYY-MM-DD)"),
        )
    })
}

fn bad(message: String) -> ApiError {
    ApiError::client(StatusCode::BAD_REQUEST, "invalid-query", message)
}

/// Offer report.
///
/// Served offers, impressions, clicks and conversions grouped by the dimensions asked
/// for. Ops get exact numbers over every partner, with distinct customers and values. A
/// partner gets its own offers only, with every row counting at least `k` customers
/// (smaller rows merged into `other`) and Laplace noise on the counts.
///
/// Roles: ops, partner (its own).
#[utoipa::path(
    get,
    path = "/v1/admin/reports/offers",
    operation_id = "offers_report",
    tag = "admin",
    security(("bearer" = [])),
    params(OffersQuery),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "An app token, or a partner naming another partner", body = ErrorBody),
        (status = 404, description = "`partner` names no registered partner", body = ErrorBody),
        (status = 503, description = "The store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn offers(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<OffersQuery>,
) -> Result<Json<Report>, ApiError> {
    let actor = caller.require(&[Role::Ops, Role::Partner])?.clone();
    let partner = match (actor.role, &q.partner) {
        (Role::Partner, Some(p)) if Some(p) != actor.partner.as_ref() => {
            return Err(ApiError::client(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} may not read reports of partner {p:?}",
                    actor.name
                ),
            ));
        }
        (Role::Partner, _) => actor.partner.clone(),
        (_, Some(p)) if !state.registry().doc().1.partners.contains_key(p) => {
            return Err(ApiError::client(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no partner {p:?}: an empty report would look like one with no offers"),
            ));
        }
        (_, p) => p.clone(),
    };
    let protected = actor.role == Role::Partner;
    let config = &state.config.reports;
    let today = state.local_time(state.clock.now());
    // The oldest day whose aggregates the store still keeps.
    let oldest = today.date() - time::Duration::days(config.retention_days.into());
    let kept = |name: &str, day: time::Date| {
        if day < oldest {
            return Err(bad(format!(
                "{name} ({day}) is before {oldest}: aggregates are kept for {} days \
                 (reports.retention_days)",
                config.retention_days
            )));
        }
        Ok(day)
    };
    let to = match &q.to {
        Some(t) => kept("to", day_param("to", t)?)?,
        None => today.date(),
    };
    let from = match &q.from {
        Some(f) => kept("from", day_param("from", f)?)?,
        None => (to - time::Duration::days(6)).max(oldest),
    };
    if from > to {
        return Err(bad(format!("from ({from}) is after to ({to})")));
    }
    let days = (to - from).whole_days() + 1;
    if days > config.max_days as i64 {
        return Err(bad(format!(
            "the range is {days} days; at most {} (reports.max_days)",
            config.max_days
        )));
    }
    let by = match &q.by {
        Some(b) => Dim::parse_list(b).map_err(bad)?,
        None => vec![Dim::Offer, Dim::Placement, Dim::Tier, Dim::Stage],
    };
    if by.is_empty() {
        return Err(bad("by: name at least one dimension".into()));
    }
    state
        .flush_aggregates()
        .await
        .map_err(ApiError::unavailable)?;
    let names: Vec<String> = (0..days)
        .map(|i| {
            (from + time::Duration::days(i))
                .format(DAY_FORMAT)
                .expect("dates format")
        })
        .collect();
    let buckets = names.clone();
    let rows = state
        .io(move |s| {
            buckets
                .into_iter()
                .map(|day| {
                    let rows = s.counters(&agg_bucket(&day), true)?;
                    Ok(DayRows { day, rows })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .map_err(ApiError::unavailable)?;
    let secret = if protected {
        Some(state.noise_secret().await.map_err(ApiError::unavailable)?)
    } else {
        None
    };
    let query = offers::Query {
        from: &names[0],
        to: names.last().expect("at least one day"),
        partner: partner.as_deref(),
        by: &by,
    };
    Ok(Json(offers::build(
        &query,
        rows,
        secret.as_deref().map(|s| (config, s)),
    )))
}

/// Canary readout.
///
/// The active and canary versions over the canary's period, with 95 % intervals, their
/// difference, and how often a shadow version's top bid differs from the active one's.
///
/// Roles: ops.
#[utoipa::path(
    get,
    path = "/v1/admin/plugins/{partner}/{plugin}/readout",
    operation_id = "plugin_readout",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("partner" = String, Path, description = "Partner id"),
        ("plugin" = String, Path, description = "Plugin name"),
    ),
    responses(
        (status = 200, description = "The readout", body = Readout),
        (status = 401, description = "No, malformed, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The token is not ops", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 409, description = "The plugin has no active version", body = ErrorBody),
        (status = 503, description = "The store failed, or the request timed out", body = ErrorBody),
    ),
)]
pub(super) async fn readout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((partner, plugin)): ApiPath<(String, String)>,
) -> Result<Json<Readout>, ApiError> {
    caller.require(&[Role::Ops])?;
    let key = format!("{partner}/{plugin}");
    let entry = super::admin::entry(&state, &caller, &partner, &plugin)?;
    let Some(active) = entry.active.clone() else {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            "no-active-version",
            format!("{key} has no active version to read out"),
        ));
    };
    state
        .flush_aggregates()
        .await
        .map_err(ApiError::unavailable)?;
    let bucket = arm_bucket(&key);
    let rows = state
        .io(move |s| s.counters(&bucket, false))
        .await
        .map_err(ApiError::unavailable)?;
    let versions = Versions {
        active: &active,
        canary: entry.canary.as_ref().map(|c| (c.version.as_str(), c.bps)),
        shadow: entry.shadow.as_deref(),
    };
    Ok(Json(readout::build(&key, &rows, &versions)))
}
