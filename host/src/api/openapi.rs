//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' annotations and
//! served at `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, events, health, profiles, slates};

/// The API document. Every route in `api::table` must be listed in `paths`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "offerhost",
        version = env!("CARGO_PKG_VERSION"),
        description = "Partner-offer plugin host: ranked offer slates for the app, \
            plugin uploads and rollout for partners and ops. Authenticated routes take \
            `Authorization: Bearer <token>`; a token has one role (ops, partner or app), \
            and each operation says which roles may call it. Every error answer is \
            `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
    ),
    paths(
        slates::create,
        events::create,
        profiles::bulk_load,
        admin::upload,
        admin::registry,
        admin::put_partner,
        admin::list_partners,
        admin::list_plugins,
        admin::show_plugin,
        admin::rollout,
        admin::health,
        admin::test,
        admin::create_token,
        admin::revoke_token,
        admin::audit,
        health::healthz,
        health::readyz,
        serve,
    ),
    // The bulk-load body is NDJSON, so no operation refers to its line schema.
    components(schemas(profiles::ProfileLine)),
    modifiers(&BearerAuth),
    tags(
        (name = "app", description = "Slates and events, for the issuer's app"),
        (name = "admin", description = "Registry, plugins, rollout, tokens, audit and stored profiles"),
        (name = "probes", description = "Liveness, readiness and this document"),
    ),
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "An API token: `offerhost tokens create` or \
                             `POST /v1/admin/tokens` makes one",
                        ))
                        .build(),
                ),
            );
    }
}

/// The API document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
///
/// The OpenAPI 3.1 document of the API. No authentication.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi",
    tag = "probes",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub(super) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
