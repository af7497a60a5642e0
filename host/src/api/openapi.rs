//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' annotations and
//! served at `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, events, health, profiles, reports, slates};

/// The API document. Every route in `api::table` must be listed in `paths`; a test
/// checks that the two agree.
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
        admin::list_tokens,
        admin::revoke_token,
        admin::audit,
        reports::offers,
        reports::readout,
        reports::metrics,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::Method;
    use oas3::spec::{FromRef, ObjectOrReference, ParameterIn, Schema};
    use serde_json::Value;

    /// The document as JSON and as parsed (and so checked) by a validating OpenAPI 3.1 parser.
    fn document() -> (Value, oas3::Spec) {
        let json = super::openapi()
            .to_pretty_json()
            .expect("the document serializes");
        let spec = oas3::from_json(&json)
            .unwrap_or_else(|e| panic!("not a valid OpenAPI 3.1 document: {e}\n{json}"));
        (serde_json::from_str(&json).unwrap(), spec)
    }

    #[test]
    fn documents_exactly_the_routes_the_router_serves() {
        let table = super::super::routes();
        let served: BTreeSet<(Method, String)> = table
            .iter()
            .map(|(m, p)| (m.clone(), p.to_string()))
            .collect();
        assert_eq!(served.len(), table.len(), "a route is in the table twice");
        let (_, spec) = document();
        let documented: BTreeSet<(Method, String)> = spec
            .operations()
            .map(|(path, method, _)| (method, path))
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "routes the OpenAPI document lacks: {undocumented:?}; operations no route serves: \
             {unserved:?}. A route is one line in `api::table` plus a `#[utoipa::path]` on its \
             handler, listed in `ApiDoc`'s `paths`, with the same method and path."
        );
    }

    #[test]
    fn is_a_valid_openapi_3_1_document() {
        let (_, spec) = document();
        let version = spec
            .validate_version()
            .expect("a supported OpenAPI version");
        assert_eq!((version.major, version.minor), (3, 1));
        assert_eq!(spec.info.title, "offerhost");
        assert_eq!(spec.info.version, env!("CARGO_PKG_VERSION"));
        let mut ids = BTreeSet::new();
        for (path, method, op) in spec.operations() {
            let id = op.operation_id.clone();
            let id = id.unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.clone()), "operationId {id:?} is used twice");
            assert!(op.summary.is_some(), "{method} {path} has no summary");
            // Path parameters: exactly the `{name}`s of the path template.
            let in_template: BTreeSet<String> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_string)
                .collect();
            let params = op.parameters(&spec).expect("parameters resolve");
            let in_params: BTreeSet<String> = params
                .iter()
                .filter(|p| p.location == ParameterIn::Path)
                .inspect(|p| assert_eq!(p.required, Some(true), "{method} {path}: {}", p.name))
                .map(|p| p.name.clone())
                .collect();
            assert_eq!(in_template, in_params, "{method} {path}: path parameters");
        }
    }

    #[test]
    fn the_upload_documents_its_signature_header() {
        let (_, spec) = document();
        let upload = spec
            .operation(&Method::POST, "/v1/admin/partners/{partner}/plugins")
            .expect("the upload operation");
        let params = upload.parameters(&spec).unwrap();
        let header = params
            .iter()
            .find(|p| p.location == ParameterIn::Header)
            .expect("a header parameter");
        assert_eq!(header.name, super::super::SIGNATURE_HEADER);
        assert_eq!(header.required, Some(false));
    }

    #[test]
    fn every_ref_resolves_within_the_document() {
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let (json, spec) = document();
        let mut found = Vec::new();
        refs(&json, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r
                .strip_prefix('#')
                .filter(|p| p.starts_with("/components/"))
                .unwrap_or_else(|| panic!("{r:?} does not point into this document's components"));
            assert!(json.pointer(pointer).is_some(), "{r:?} resolves to nothing");
            if pointer.starts_with("/components/schemas/") {
                // And through the parser's own resolution, which follows chains of refs.
                Schema::from_ref(&spec, r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
            }
        }
    }

    #[test]
    fn every_operation_documents_its_answers_and_who_may_call_it() {
        let (json, spec) = document();
        let schemes = &spec.components.as_ref().unwrap().security_schemes;
        assert!(schemes.contains_key("bearer"), "no bearer security scheme");
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for (path, method, op) in spec.operations() {
            let at = format!("{method} {path}");
            let responses = op.responses(&spec);
            let statuses: BTreeSet<u16> = responses
                .keys()
                .map(|k| k.parse().unwrap_or_else(|_| panic!("{at}: status {k:?}")))
                .collect();
            assert!(
                statuses.iter().any(|s| (200..300).contains(s)),
                "{at} documents no 2xx answer"
            );
            for (status, response) in &responses {
                assert!(
                    response.description.is_some(),
                    "{at} {status}: no description"
                );
                if status.starts_with('2') {
                    continue;
                }
                // Errors are `ApiError` bodies, query strings that do not parse included.
                let error_body = response.content.get("application/json").and_then(|m| {
                    match m.schema.as_ref()? {
                        Schema::Object(schema) => match schema.as_ref() {
                            ObjectOrReference::Ref { ref_path, .. } => Some(ref_path.as_str()),
                            ObjectOrReference::Object(_) => None,
                        },
                        Schema::Boolean(_) => None,
                    }
                });
                assert!(
                    error_body == Some("#/components/schemas/ErrorBody"),
                    "{at} {status}: the body is not an ErrorBody"
                );
            }
            let description = op.description.as_deref().unwrap_or_default();
            let body = op.request_body(&spec).expect("request body resolves");
            if let Some(body) = &body {
                assert!(
                    statuses.contains(&413),
                    "{at}: a body can be too large (413)"
                );
                if body.content.contains_key("application/json") {
                    for s in [400, 415, 422] {
                        assert!(statuses.contains(&s), "{at}: a JSON body can get {s}");
                    }
                }
            }
            if op.security.is_empty() {
                assert!(
                    description.contains("No authentication"),
                    "{at}: {description:?}"
                );
            } else {
                for requirement in &op.security {
                    for scheme in requirement.0.keys() {
                        assert!(
                            schemes.contains_key(scheme),
                            "{at}: unknown scheme {scheme}"
                        );
                    }
                }
                assert!(
                    description.contains("Roles: "),
                    "{at} does not say which roles"
                );
                for s in [401, 403, 503] {
                    assert!(
                        statuses.contains(&s),
                        "{at}: an authenticated route can get {s}"
                    );
                }
            }
        }
    }
}
