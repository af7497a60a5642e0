//! Two `offerhost serve` replicas on one Redis, and again on a Redis Cluster: caps hold
//! across them under concurrent requests, and a rollback done through one reaches the
//! other.

use std::time::{Duration, Instant};

use offerhost_tests::{
    OPS_TOKEN, ServerProcess, admin_cli, artifacts, redis_cluster_url, redis_url, unique_prefix,
};
use serde_json::json;

fn replica(url: &str, dir: &std::path::Path, prefix: &str, name: &str) -> ServerProcess {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
store_url = "{url}"
store_prefix = "{prefix}"
subject_salt = "replica-test"

[slate]
count_on_serve = true

[[placement]]
id = "app-home"
slots = 3

[[cap]]
scope = "offer"
max = 3
window = "1d"
"#
        ),
    )
    .unwrap();
    ServerProcess::start(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
}

fn acme_version(server: &ServerProcess, subject: &str) -> Option<String> {
    let (status, slate) = server.post_as(
        Some(OPS_TOKEN),
        "/v1/slates",
        &json!({"placement": "app-home", "subject": subject, "profile": {"marketing_consent": true}}),
    );
    assert_eq!(status, 200, "{slate}");
    slate["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["partner"] == "acme")
        .map(|o| o["plugin_version"].as_str().unwrap().to_string())
}

#[test]
fn caps_hold_and_rollbacks_reach_every_replica() {
    caps_hold_and_rollbacks_reach_every_replica_on(&redis_url());
}

#[test]
fn caps_hold_and_rollbacks_reach_every_replica_on_a_cluster() {
    caps_hold_and_rollbacks_reach_every_replica_on(&redis_cluster_url());
}

fn caps_hold_and_rollbacks_reach_every_replica_on(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("replicas");
    let a = std::sync::Arc::new(replica(url, dir.path(), &prefix, "a"));
    let b = std::sync::Arc::new(replica(url, dir.path(), &prefix, "b"));
    let ops = Some(OPS_TOKEN);

    // Deploy through replica A; B picks the change up from Redis.
    let run = admin_cli(&a, ops, &["partners", "add", "acme"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for v in [artifacts::VERSIONED_V1.path, artifacts::VERSIONED_V2.path] {
        let run = admin_cli(&a, ops, &["plugins", "upload", "acme", v]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let run = admin_cli(&a, ops, &["plugins", "promote", "acme/versioned", "2.0.0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let deadline = Instant::now() + Duration::from_secs(1);
    while acme_version(&b, "warm-up") != Some("2.0.0".into()) {
        assert!(
            Instant::now() < deadline,
            "replica B did not see the promotion within a second"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // One subject, 40 concurrent slates split over both replicas: the offer is capped
    // at 3 a day, and serving counts atomically, so at most 3 slates may show it.
    let shown: usize = (0..8)
        .map(|t| {
            let server = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                (0..5)
                    .filter(|_| acme_version(&server, "capped-subject").is_some())
                    .count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(shown, 3, "the cap held across replicas");

    // Roll back through B: A serves v1 within a second.
    let run = admin_cli(&b, ops, &["plugins", "rollback", "acme/versioned"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let started = Instant::now();
    while acme_version(&a, "after-rollback") != Some("1.0.0".into()) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "replica A still serves 2.0.0"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both replicas read the same audit log.
    let audit = admin_cli(&a, ops, &["audit"]).json;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "rollback")
    );
}
