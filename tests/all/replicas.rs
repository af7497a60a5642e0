//! Two `offerhost serve` replicas on one Redis, and again on a Redis Cluster: caps hold
//! across them under concurrent requests, and a rollback done through one reaches the
//! other.

use std::time::{Duration, Instant};

use offerhost::store::SubjectKey;
use offerhost_tests::{
    OPS_TOKEN, ServerProcess, admin_cli, artifacts, offerhost, redis_cluster_url, redis_url,
    unique_prefix,
};
use serde_json::{Value, json};

fn replica(url: &str, dir: &std::path::Path, prefix: &str, name: &str) -> ServerProcess {
    replica_counting(url, dir, prefix, name, true)
}

/// A replica counting impressions when it serves them, or (`on_serve` false) from the
/// app's impression events.
fn replica_counting(
    url: &str,
    dir: &std::path::Path,
    prefix: &str,
    name: &str,
    on_serve: bool,
) -> ServerProcess {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
store_url = "{url}"
store_prefix = "{prefix}"
subject_salt = "replica-test"

[slate]
count_on_serve = {on_serve}

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
    acme_offer(server, subject).map(|(_, o)| o["plugin_version"].as_str().unwrap().to_string())
}

/// A slate for `subject` and acme's offer in it, if there is one.
fn acme_offer(server: &ServerProcess, subject: &str) -> Option<(Value, Value)> {
    let (status, slate) = server.post_as(
        Some(OPS_TOKEN),
        "/v1/slates",
        &json!({"placement": "app-home", "subject": subject, "profile": {"marketing_consent": true}}),
    );
    assert_eq!(status, 200, "{slate}");
    let offer = (slate["offers"].as_array().unwrap().iter()).find(|o| o["partner"] == "acme");
    offer.cloned().map(|o| (slate.clone(), o))
}

/// The app reports that `offer` of `slate` was shown.
fn impression(server: &ServerProcess, (slate, offer): &(Value, Value), event_id: &str) {
    let (status, ack) = server.post_as(
        Some(OPS_TOKEN),
        "/v1/events",
        &json!({
            "event_id": event_id,
            "type": "impression",
            "slate_id": slate["slate_id"],
            "partner": offer["partner"],
            "offer_id": offer["offer"]["id"],
        }),
    );
    assert_eq!(
        (status, &ack["counted_for_caps"]),
        (200, &json!(true)),
        "{ack}"
    );
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

/// Caps counted from the app's impression events hold on a Redis store written by an
/// earlier version, whose counters nobody listed (slates read them by key), and go on
/// holding once `offerhost store upgrade` has listed them (slates then read each
/// subject's counters with its profile).
#[test]
fn caps_from_events_hold_across_the_store_upgrade() {
    let url = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("upgrade");
    let ops = Some(OPS_TOKEN);
    let a = replica_counting(&url, dir.path(), &prefix, "a", false);
    for args in [
        &["partners", "add", "acme"][..],
        &["plugins", "upload", "acme", artifacts::VERSIONED_V1.path],
    ] {
        let run = admin_cli(&a, ops, args);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let (_, offer) = acme_offer(&a, "first-look").expect("acme bids");
    let offer_id = offer["offer"]["id"].as_str().unwrap().to_string();
    a.stop();

    // What an earlier version leaves: no marker, and a subject whose acme offer was
    // already shown three times (the cap) in counters no list names.
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("DEL")
        .arg(format!("{prefix}{{registry}}:caps-listed"))
        .query(&mut redis)
        .unwrap();
    let old_timer = SubjectKey::new("replica-test", "old-timer");
    let times = format!("{prefix}cap:{{{}}}|offer:acme/{offer_id}:t", old_timer.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (at, member) in [(now - 600, "e1"), (now - 60, "e2"), (now - 6, "e3")] {
        let () = redis::cmd("ZADD")
            .arg(&times)
            .arg(at)
            .arg(member)
            .query(&mut redis)
            .unwrap();
    }

    // Read by key: the earlier counters hold, and new impressions count.
    let b = replica_counting(&url, dir.path(), &prefix, "b", false);
    assert_eq!(
        acme_offer(&b, "old-timer"),
        None,
        "capped by earlier impressions"
    );
    let show_until_capped = |subject: &str| {
        for n in 0..3 {
            let shown = acme_offer(&b, subject).expect("under the cap");
            impression(&b, &shown, &format!("{subject}-{n}"));
        }
        assert_eq!(acme_offer(&b, subject), None, "{subject}: capped by three");
    };
    show_until_capped("newcomer");

    let upgrade = |expect: &str| {
        let run = offerhost()
            .args(["store", "upgrade", "--config"])
            .arg(dir.path().join("b.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        assert!(run.status.success(), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
    };
    // The earlier counter, and the four (one per scope) the impressions wrote.
    upgrade("done: 5 counters, all listed now");

    // Read with the profile (from the second slate on: the first learns of the
    // upgrade): the listed earlier counters still hold, and so do new impressions.
    for _ in 0..3 {
        assert_eq!(acme_offer(&b, "old-timer"), None, "still capped");
        assert_eq!(acme_offer(&b, "newcomer"), None, "still capped");
    }
    show_until_capped("later-comer");
    upgrade("nothing to do: the store at");

    // The embedded store upgrades itself.
    let config = dir.path().join("embedded.toml");
    std::fs::write(
        &config,
        format!("store_path = {:?}\n", dir.path().join("data")),
    )
    .unwrap();
    let run = offerhost()
        .args(["store", "upgrade", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("upgrades itself when it opens"), "{stderr}");
}
