//! Bad requests: each gets a precise 4xx naming the field, and changes nothing.

use axum::body::Body;
use axum::http::Request;
use offerhost_tests::{example_config, host_on, traveller_profile};
use serde_json::{Value, json};

fn slate_req(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = json!({"placement": "app-home", "subject": "c1", "profile": traveller_profile()});
    edit(&mut v);
    v
}

#[tokio::test]
async fn slate_requests() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(
        &(example_config() + "[[cap]]\nscope = \"offer\"\nmax = 1\nwindow = \"1d\"\n"),
        dir.path(),
    );
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            slate_req(|v| v["placement"] = json!("lobby")),
            422,
            "placement",
            "unknown placement \"lobby\"",
        ),
        (
            slate_req(|v| v["slots"] = json!(0)),
            422,
            "slots",
            "0 is outside 1..=10",
        ),
        (
            slate_req(|v| v["slots"] = json!(11)),
            422,
            "slots",
            "outside",
        ),
        (
            slate_req(|v| v["slots"] = json!(-1)),
            422,
            "slots",
            "invalid value",
        ),
        (
            slate_req(|v| v["subject"] = json!("")),
            422,
            "subject",
            "1..=128",
        ),
        (
            slate_req(|v| {
                v.as_object_mut().unwrap().remove("subject");
            }),
            422,
            "subject",
            "missing field `subject`",
        ),
        (
            slate_req(|v| v["profile"] = json!("gold")),
            422,
            "profile",
            "expected a JSON object",
        ),
        (
            slate_req(|v| v["profile"]["tier"] = json!("gold")),
            422,
            "profile.tier",
            "unknown variant `gold`",
        ),
        (
            slate_req(|v| v["profile"]["region"] = json!("Shanghai")),
            422,
            "profile.region",
            "ISO 3166-2",
        ),
        (
            slate_req(|v| v["profile"]["category_spend_share"]["travel"] = json!(1.5)),
            422,
            "profile.category_spend_share.travel",
            "outside 0.0..=1.0",
        ),
        (
            slate_req(|v| {
                v["profile"]["category_spend_share"] = json!({"travel": 0.9, "dining": 0.6})
            }),
            422,
            "profile.category_spend_share",
            "the shares add up to 1.500",
        ),
        (
            slate_req(|v| v["profile"]["purchases_90d"] = json!("many")),
            422,
            "profile.purchases_90d",
            "invalid type",
        ),
        (
            slate_req(|v| v["profile"]["ssn"] = json!("123")),
            422,
            "profile.ssn",
            "unknown field `ssn`",
        ),
        (
            slate_req(|v| v["customer_name"] = json!("Li")),
            422,
            "customer_name",
            "unknown field `customer_name`",
        ),
    ];
    for (body, status, field, message) in cases {
        let (got, err) = host.call("POST", "/v1/slates", Some(body.clone())).await;
        assert_eq!(got.as_u16(), status, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(message),
            "{body}: {err}"
        );
    }

    // A body of the wrong kind is named as the body, in the API's words.
    for (body, message) in [
        (json!([]), "the body: expected a JSON object, not an array"),
        (
            json!("c1"),
            "the body: invalid type: string \"c1\", expected a JSON object",
        ),
    ] {
        let (got, err) = host.call("POST", "/v1/slates", Some(body.clone())).await;
        assert_eq!(got.as_u16(), 422, "{body}: {err}");
        assert_eq!(err["error"]["message"], message, "{body}: {err}");
        assert!(err["error"].get("field").is_none(), "{body}: {err}");
    }

    let raw = |body: &str, ct: Option<&str>| {
        let mut r = Request::post("/v1/slates");
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.body(Body::from(body.to_string())).unwrap()
    };
    let (status, err) = host.send(raw("{not json", Some("application/json"))).await;
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str().unwrap()),
        (400, "invalid-json")
    );
    let (status, err) = host.send(raw("{}", None)).await;
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str().unwrap()),
        (415, "unsupported-media-type")
    );
    let huge = format!(
        "{{\"placement\": \"app-home\", \"subject\": \"{}\"}}",
        "x".repeat(100_000)
    );
    let (status, err) = host.send(raw(&huge, Some("application/json"))).await;
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str().unwrap()),
        (413, "body-too-large")
    );
    let (status, err) = host.call("GET", "/v1/nope", None).await;
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str().unwrap()),
        (404, "no-route")
    );
    let (status, err) = host.call("DELETE", "/v1/slates", None).await;
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str().unwrap()),
        (405, "method-not-allowed"),
        "{err}"
    );

    // None of that touched the caps: the first real slate is uncapped.
    let s = host.slate(slate_req(|_| {})).await;
    assert_eq!(s["offers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn event_requests() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(
        &(example_config() + "[[cap]]\nscope = \"offer\"\nmax = 1\nwindow = \"1d\"\n"),
        dir.path(),
    );
    let s = host.slate(slate_req(|_| {})).await;
    let ev = |edit: &dyn Fn(&mut Value)| {
        let mut v = json!({"event_id": "e1", "type": "impression", "slate_id": s["slate_id"], "partner": "skyways", "offer_id": "skyways-holder-miles"});
        edit(&mut v);
        v
    };
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            ev(&|v| v["slate_id"] = json!("sl_nope")),
            404,
            "slate_id",
            "no slate \"sl_nope\"",
        ),
        (
            ev(&|v| v["offer_id"] = json!("not-served")),
            422,
            "offer_id",
            "has no offer \"not-served\"",
        ),
        (
            ev(&|v| v["partner"] = json!("voltmart")),
            422,
            "offer_id",
            "from partner \"voltmart\"",
        ),
        (
            ev(&|v| v["type"] = json!("view")),
            422,
            "type",
            "unknown variant `view`",
        ),
        (
            ev(&|v| v["event_id"] = json!("")),
            422,
            "event_id",
            "1..=128",
        ),
        (
            ev(&|v| {
                v.as_object_mut().unwrap().remove("event_id");
            }),
            422,
            "event_id",
            "missing field `event_id`",
        ),
    ];
    for (body, status, field, message) in cases {
        let (got, err) = host.call("POST", "/v1/events", Some(body.clone())).await;
        assert_eq!(got.as_u16(), status, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(message),
            "{body}: {err}"
        );
    }
    // Nothing was counted.
    let again = host.slate(slate_req(|_| {})).await;
    assert_eq!(again["offers"][0]["partner"], "skyways");
    // An event id used again for another event is refused, saying what it was used for;
    // the first event sent again is a duplicate.
    let post = |body: Value| host.call("POST", "/v1/events", Some(body));
    let (status, ack) = post(ev(&|_| {})).await;
    assert_eq!((status.as_u16(), &ack["recorded"]), (200, &json!("new")));
    let (status, err) = post(ev(&|v| v["type"] = json!("click"))).await;
    assert_eq!(status.as_u16(), 409, "{err}");
    assert_eq!(err["error"]["field"], "event_id", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains(
            "for impression skyways/skyways-holder-miles, not click skyways/skyways-holder-miles"
        ),
        "{err}"
    );
    let (status, ack) = post(ev(&|_| {})).await;
    assert_eq!(
        (status.as_u16(), &ack["recorded"]),
        (200, &json!("duplicate"))
    );
    // A slate expires for events after the retention period.
    host.clock.advance(168 * 3600);
    let (status, _) = host.call("POST", "/v1/events", Some(ev(&|_| {}))).await;
    assert_eq!(status.as_u16(), 404);
}

#[tokio::test]
async fn health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&example_config(), dir.path());
    let (status, body) = host.call("GET", "/healthz", None).await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str().unwrap()),
        (200, "ok")
    );
    let (status, body) = host.call("GET", "/readyz", None).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(body["plugins"], 4);
}
