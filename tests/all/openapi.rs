//! The OpenAPI document: served at `GET /openapi.json` without a token, and every
//! operation in it is a route that answers as documented.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use offerhost::api::{app, openapi::openapi};
use offerhost_tests::{Host, example_config, host_on};
use serde_json::Value;
use tower::ServiceExt;

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&example_config(), dir.path());
    let res = app(host.state.clone())
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let served: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(served, serde_json::to_value(openapi()).unwrap());
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["info"]["title"], "offerhost");
}

/// Sends a bodiless request with no `Authorization` header (`Host::send` would add one).
async fn without_token(host: &Host, method: &str, uri: &str) -> (StatusCode, Value) {
    let res = app(host.state.clone())
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Each operation's path with its `{parameters}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "nobody" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&example_config(), dir.path());
    let doc = serde_json::to_value(openapi()).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let method = method.to_uppercase();
            let uri = concrete(path);
            let documented = |status: StatusCode| {
                op["responses"]
                    .as_object()
                    .unwrap()
                    .contains_key(status.as_str())
            };
            // Without a token: 401 exactly where the document asks for one.
            let (status, body) = without_token(&host, &method, &uri).await;
            let secured = op.get("security").is_some_and(|s| s != &Value::Null);
            if secured {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            } else {
                assert!(status.is_success(), "{method} {path}: {status} {body}");
            }
            assert!(
                documented(status),
                "{method} {path}: {status} is not documented"
            );
            // As ops, with no body: the route exists for this method, and whatever it
            // answers is one of its documented answers.
            let (status, body) = host.call(&method, &uri, None).await;
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is not routed"
            );
            assert_ne!(
                body["error"]["code"], "no-route",
                "{method} {path} is not routed"
            );
            assert!(
                documented(status),
                "{method} {path}: {status} is not documented: {body}"
            );
        }
    }
    assert_eq!(operations, offerhost::api::routes().len());
}
