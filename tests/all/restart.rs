//! Restart: counters, stored profiles and event ids survive a clean restart on the same
//! store (the real-process variant, stopped by SIGTERM, is in serve_and_demo.rs).

use offerhost_tests::{example_config, host_on, traveller_profile};
use serde_json::json;

#[tokio::test]
async fn caps_and_profiles_survive_a_restart_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config() + "[[cap]]\nscope = \"offer\"\nmax = 1\nwindow = \"1d\"\n";
    let slate_id;
    {
        let host = host_on(&config, dir.path());
        let ndjson = format!(
            "{}\n",
            json!({"subject": "stored-1", "profile": traveller_profile()})
        );
        let req = axum::http::Request::post("/v1/admin/profiles")
            .body(axum::body::Body::from(ndjson))
            .unwrap();
        assert_eq!(host.send(req).await.0, 200);
        let s = host
            .slate(json!({"placement": "app-home", "subject": "stored-1"}))
            .await;
        assert_eq!(s["offers"][0]["partner"], "skyways");
        assert_eq!(host.impression(&s, &s["offers"][0], "e1").await.0, 200);
        slate_id = s["slate_id"].clone();
        host.state.store().flush().unwrap();
    }
    let host = host_on(&config, dir.path());
    let s = host
        .slate(json!({"placement": "app-home", "subject": "stored-1"}))
        .await;
    assert_eq!(
        s["offers"][0]["partner"], "voltmart",
        "the cap held across the restart: {s}"
    );
    // The event id is remembered too: replaying it after the restart changes nothing.
    let (status, ack) = host
        .call("POST", "/v1/events", Some(json!({"event_id": "e1", "type": "impression", "slate_id": slate_id, "partner": "skyways", "offer_id": "skyways-holder-miles"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(ack["recorded"], "duplicate");
}
