//! Measurement: metrics, aggregates, partner reports with privacy thresholds, canary
//! readouts and request-scoped logs.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use offerhost::registry::{Actor, Role};
use offerhost_tests::{
    Host, ServerProcess, admin_cli, example_config, host_on, metric, metric_sum, traveller_profile,
};
use serde_json::{Value, json};

fn config(k: u32) -> String {
    format!(
        "{}\n[reports]\nk = {k}\nnoise_seed = \"fixed test seed\"\n",
        example_config()
    )
}

/// What the test sent, counted by (partner, offer).
#[derive(Default, Debug, PartialEq)]
struct Expected {
    served: BTreeMap<(String, String), u64>,
    impressions: BTreeMap<(String, String), u64>,
    clicks: BTreeMap<(String, String), u64>,
    conversions: BTreeMap<(String, String), u64>,
    subjects: BTreeMap<(String, String), u64>,
}

async fn event(host: &Host, kind: &str, slate: &Value, offer: &Value, id: &str) -> Value {
    let (status, ack) = host
        .call(
            "POST",
            "/v1/events",
            Some(json!({
                "event_id": id,
                "type": kind,
                "slate_id": slate["slate_id"],
                "partner": offer["partner"],
                "offer_id": offer["offer"]["id"],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    ack
}

/// Ten customers get a slate each; every offer is seen, the first is clicked by every
/// second customer and converted by every fourth; one impression is sent twice.
async fn known_traffic(host: &Host) -> Expected {
    let mut want = Expected::default();
    for i in 0..10 {
        let slate = host
            .slate(json!({
                "placement": "app-home",
                "subject": format!("measured-{i}"),
                "profile": traveller_profile(),
            }))
            .await;
        for (rank, offer) in slate["offers"].as_array().unwrap().iter().enumerate() {
            let key = (
                offer["partner"].as_str().unwrap().to_string(),
                offer["offer"]["id"].as_str().unwrap().to_string(),
            );
            *want.served.entry(key.clone()).or_default() += 1;
            *want.subjects.entry(key.clone()).or_default() += 1;
            event(
                host,
                "impression",
                &slate,
                offer,
                &format!("imp-{i}-{rank}"),
            )
            .await;
            *want.impressions.entry(key.clone()).or_default() += 1;
            if rank == 0 && i % 2 == 0 {
                event(host, "click", &slate, offer, &format!("click-{i}")).await;
                *want.clicks.entry(key.clone()).or_default() += 1;
            }
            if rank == 0 && i % 4 == 0 {
                event(host, "conversion", &slate, offer, &format!("conv-{i}")).await;
                *want.conversions.entry(key.clone()).or_default() += 1;
            }
            if i == 0 && rank == 0 {
                let ack = event(host, "impression", &slate, offer, "imp-0-0").await;
                assert_eq!(ack["recorded"], "duplicate");
            }
        }
    }
    want
}

fn by_partner_offer(report: &Value) -> Expected {
    let mut got = Expected::default();
    for row in report["rows"].as_array().unwrap() {
        let key = (
            row["key"]["partner"].as_str().unwrap().to_string(),
            row["key"]["offer"].as_str().unwrap().to_string(),
        );
        let n = |f: &str| row[f].as_u64().unwrap();
        for (map, f) in [
            (&mut got.served, "served"),
            (&mut got.impressions, "impressions"),
            (&mut got.clicks, "clicks"),
            (&mut got.conversions, "conversions"),
            (&mut got.subjects, "subjects"),
        ] {
            if n(f) > 0 {
                map.insert(key.clone(), n(f));
            }
        }
    }
    got
}

const OPS_REPORT: &str = "/v1/admin/reports/offers?from=2026-06-05&to=2026-06-05&by=partner,offer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_match_a_known_event_stream_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&config(3), dir.path());
    let want = known_traffic(&host).await;
    assert!(
        want.served.len() >= 2,
        "traffic reached several offers: {want:?}"
    );

    let (status, report) = host.call("GET", OPS_REPORT, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["kind"], "exact");
    assert_eq!(by_partner_offer(&report), want);
    for row in report["rows"].as_array().unwrap() {
        let (imp, clicks) = (
            row["impressions"].as_f64().unwrap(),
            row["clicks"].as_f64().unwrap(),
        );
        assert_eq!(row["ctr"].as_f64().unwrap(), clicks / imp, "{row}");
    }

    // Grouped by tier and stage instead: one row, every customer once.
    let (_, grouped) = host
        .call(
            "GET",
            "/v1/admin/reports/offers?from=2026-06-05&to=2026-06-05&by=tier,stage",
            None,
        )
        .await;
    let rows = grouped["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{grouped}");
    assert_eq!(rows[0]["key"]["tier"], "high-value");
    assert_eq!(rows[0]["subjects"], 10);
    assert_eq!(
        rows[0]["served"].as_u64().unwrap(),
        want.served.values().sum::<u64>()
    );

    // A restart on the same store reads the same aggregates.
    drop(host);
    let host = host_on(&config(3), dir.path());
    let (_, again) = host.call("GET", OPS_REPORT, None).await;
    assert_eq!(by_partner_offer(&again), want);
}

/// A day's aggregates (counts and the hashed subjects behind distinct counts) are
/// deleted `reports.retention_days` after the day ends, and a report reaching further
/// back is refused rather than shown empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_are_deleted_after_the_retention_and_not_reported() {
    use offerhost::clock::Clock;
    let dir = tempfile::tempdir().unwrap();
    // `config` ends inside `[reports]`.
    let host = host_on(&format!("{}retention_days = 2\n", config(3)), dir.path());
    let want = known_traffic(&host).await;
    let (_, report) = host.call("GET", OPS_REPORT, None).await;
    assert_eq!(by_partner_offer(&report), want);
    let store = host.state.store().clone();
    let day = "agg|2026-06-05";

    // Two days after 2026-06-05 (10:00 local, 2026-06-07) it is still kept.
    host.clock.advance(2 * 86_400);
    store.sweep(host.clock.unix()).unwrap();
    let (status, report) = host.call("GET", OPS_REPORT, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(by_partner_offer(&report), want);

    // A day later it is past: the sweep deletes its rows and members...
    host.clock.advance(86_400);
    let rows = store.counters(day, false).unwrap().len() as u64;
    assert!(rows >= 2, "rows before the sweep: {rows}");
    assert!(store.sweep(host.clock.unix()).unwrap() >= rows);
    assert_eq!(store.counters(day, true).unwrap(), vec![], "swept");
    // ...and a report naming it says why it cannot answer.
    let (status, body) = host.call("GET", OPS_REPORT, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("to (2026-06-05) is before 2026-06-06")
            && message.contains("kept for 2 days (reports.retention_days)"),
        "{message}"
    );
    // The default range starts at the oldest day kept.
    let (status, body) = host.call("GET", "/v1/admin/reports/offers", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"], "2026-06-06", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_expected_after_known_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&config(3), dir.path());
    let (status, before) = host.text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metric_sum(&before, "offerhost_slates_total", &[]), 0.0);

    let want = known_traffic(&host).await;
    let (_, text) = host.text("/metrics").await;
    let served: u64 = want.served.values().sum();
    let impressions: u64 = want.impressions.values().sum();
    let clicks: u64 = want.clicks.values().sum();
    assert_eq!(
        metric(
            &text,
            "offerhost_slates_total",
            "placement=\"app-home\",result=\"served\""
        ),
        10.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "offerhost_slate_seconds_count",
            &["placement=\"app-home\""]
        ),
        10.0
    );
    assert_eq!(
        metric_sum(&text, "offerhost_offers_served_total", &[]),
        served as f64
    );
    assert_eq!(
        metric(
            &text,
            "offerhost_events_total",
            "type=\"impression\",recorded=\"new\""
        ),
        impressions as f64
    );
    assert_eq!(
        metric(
            &text,
            "offerhost_events_total",
            "type=\"impression\",recorded=\"duplicate\""
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "offerhost_events_total",
            "type=\"click\",recorded=\"new\""
        ),
        clicks as f64
    );
    // Four partners bid on the home placement: forty calls, all ok.
    assert_eq!(metric_sum(&text, "offerhost_plugin_calls_total", &[]), 40.0);
    assert_eq!(
        metric_sum(&text, "offerhost_plugin_calls_total", &["outcome=\"ok\""]),
        40.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "offerhost_plugin_call_seconds_count",
            &["partner=\"skyways\""]
        ),
        10.0
    );
    assert!(metric_sum(&text, "offerhost_plugin_fuel_sum", &[]) > 0.0);
    // Every bid returned was either served or dropped with a reason.
    let bids = metric_sum(&text, "offerhost_bids_total", &[]);
    let dropped = metric_sum(&text, "offerhost_bids_dropped_total", &[]);
    assert_eq!(bids, served as f64 + dropped, "{text}");

    // A registry change counts by action.
    let (status, body) = host
        .call(
            "POST",
            "/v1/admin/plugins/mall/mall-comeback/rollout",
            Some(json!({"action": "disable"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, text) = host.text("/metrics").await;
    assert_eq!(
        metric(
            &text,
            "offerhost_registry_changes_total",
            "action=\"disable\""
        ),
        1.0
    );
    // No subject ever appears in the exposition.
    assert!(!text.contains("measured-"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_see_only_their_own_protected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&config(4), dir.path());
    let actor = Actor::system("test");
    let registry = host.state.registry();
    let skyways = registry
        .create_token(&actor, "skyways-report", Role::Partner, Some("skyways"))
        .unwrap();
    let app = registry
        .create_token(&actor, "app-report", Role::App, None)
        .unwrap();
    known_traffic(&host).await;

    let path = "/v1/admin/reports/offers?from=2026-06-05&to=2026-06-05&by=offer";
    let (status, mine) = host.call_as(Some(&skyways), "GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["kind"], "protected");
    assert_eq!(mine["partner"], "skyways");
    let privacy = &mine["privacy"];
    assert_eq!(privacy["k"], 4);
    let scale = privacy["noise_scale"].as_f64().unwrap();
    assert_eq!(scale, 4.0 * 5.0 / 1.0);

    let (_, exact) = host
        .call("GET", &format!("{path}&partner=skyways"), None)
        .await;
    let exact_rows: BTreeMap<String, &Value> = exact["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"]["offer"].as_str().unwrap().to_string(), r))
        .collect();
    for row in mine["rows"].as_array().unwrap() {
        // Partners never see subject counts or values.
        assert!(
            row.get("subjects").is_none() && row.get("spend_minor").is_none(),
            "{row}"
        );
        let offer = row["key"]["offer"].as_str().unwrap();
        if offer == "other" {
            continue;
        }
        let truth = exact_rows[offer];
        assert!(
            truth["subjects"].as_u64().unwrap() >= 4,
            "{offer} shown below k"
        );
        for f in ["served", "impressions", "clicks", "conversions"] {
            let (noisy, real) = (row[f].as_f64().unwrap(), truth[f].as_f64().unwrap());
            // P(|Laplace| > 15 b) = e^-15: never, for a sound mechanism.
            assert!(
                (noisy - real).abs() <= 15.0 * scale,
                "{offer} {f}: {noisy} vs {real}"
            );
        }
    }
    // Asking again gives the same noise, not fresh draws to average.
    let (_, again) = host.call_as(Some(&skyways), "GET", path, None).await;
    assert_eq!(again, mine);

    // Another partner's report, or any report for an app token: refused.
    let (status, body) = host
        .call_as(
            Some(&skyways),
            "GET",
            &format!("{path}&partner=freshmart"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = host.call_as(Some(&app), "GET", path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A partner may not read a readout (exact numbers).
    let (status, _) = host
        .call_as(
            Some(&skyways),
            "GET",
            "/v1/admin/plugins/skyways/skyways-miles/readout",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // With k above the number of customers, nothing is left to show.
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&config(11), dir.path());
    let skyways = host
        .state
        .registry()
        .create_token(&actor, "skyways-report", Role::Partner, Some("skyways"))
        .unwrap();
    known_traffic(&host).await;
    let (_, none) = host.call_as(Some(&skyways), "GET", path, None).await;
    assert_eq!(none["rows"].as_array().unwrap().len(), 0, "{none}");
    assert_eq!(none["privacy"]["other_suppressed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_report_queries_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&config(3), dir.path());
    for (query, needle) in [
        ("from=2026-13-01", "from"),
        ("from=2026-06-05&to=2026-06-01", "after"),
        ("from=2026-01-01&to=2026-06-05", "at most 92"),
        ("by=offer,colour", "unknown dimension \\\"colour\\\""),
        ("by=", "at least one dimension"),
        // Parameters the query type itself refuses come back in the same JSON form.
        ("colour=red", "unknown field `colour`"),
        ("to=2026-06-05&to=2026-06-06", "duplicate field `to`"),
    ] {
        let (status, body) = host
            .call("GET", &format!("/v1/admin/reports/offers?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid-query", "{query}: {body}");
        assert!(body.to_string().contains(needle), "{query}: {body}");
    }
    let (status, body) = host
        .call("GET", "/v1/admin/reports/offers?partner=nosuch", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body.to_string().contains("no partner \\\"nosuch\\\""),
        "{body}"
    );
    let (status, body) = host.call("GET", "/v1/admin/audit?limit=lots", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid-query", "{body}");
    assert!(body.to_string().contains("limit"), "{body}");
    // A path segment that is not UTF-8 once decoded.
    let (status, body) = host
        .call("GET", "/v1/admin/plugins/%FF/airline/health", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid-path", "{body}");
}

fn token(banner: &str, name: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix(name))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| panic!("the demo prints a {name} token:\n{banner}"))
}

fn grocery_profile(i: usize) -> Value {
    json!({
        "days_since_last_purchase": 4,
        "purchases_90d": 20,
        "spend_90d_minor": 250000,
        "category_spend_share": {"grocery": 0.6, "fuel": 0.2, "dining": 0.2},
        "tier": if i.is_multiple_of(3) { "growth" } else { "mass" },
        "lifecycle": "spending",
        "region": "CN-JS",
        "marketing_consent": true
    })
}

/// The scripted run the README describes: slates and events against the demo, then
/// metrics, an ops report, a partner report and the canary readout agree.
#[test]
fn metrics_reports_and_readout_tell_one_story_on_the_demo() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("offerhost.log");
    let mut demo = ServerProcess::start_logging(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.path().to_str().unwrap(),
        ],
        &log,
    );
    let ops = token(&demo.banner, "demo-ops");
    let skyways = token(&demo.banner, "demo-skyways");
    demo.token = token(&demo.banner, "demo-app");

    let customers = 240;
    let (mut served, mut impressions, mut clicks) = (0u64, 0u64, 0u64);
    for i in 0..customers {
        let profile = if i % 2 == 0 {
            traveller_profile()
        } else {
            grocery_profile(i)
        };
        let subject = format!("story-subject-{i}");
        let (status, slate) = demo.post(
            "/v1/slates",
            &json!({"placement": "app-home", "subject": subject, "profile": profile}),
        );
        assert_eq!(status, 200, "{slate}");
        for (rank, offer) in slate["offers"].as_array().unwrap().iter().enumerate() {
            served += 1;
            let send = |kind: &str| {
                let (status, ack) = demo.post(
                    "/v1/events",
                    &json!({
                        "event_id": format!("{kind}-{i}-{rank}"),
                        "type": kind,
                        "slate_id": slate["slate_id"],
                        "partner": offer["partner"],
                        "offer_id": offer["offer"]["id"],
                    }),
                );
                assert_eq!(status, 200, "{ack}");
            };
            send("impression");
            impressions += 1;
            if (i + rank) % 5 == 0 {
                send("click");
                clicks += 1;
            }
        }
    }

    let (status, kind, text) = demo.get_text(None, "/metrics");
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert_eq!(
        metric_sum(&text, "offerhost_slates_total", &[]),
        customers as f64
    );
    assert_eq!(
        metric_sum(&text, "offerhost_offers_served_total", &[]),
        served as f64
    );
    assert_eq!(
        metric(
            &text,
            "offerhost_events_total",
            "type=\"impression\",recorded=\"new\""
        ),
        impressions as f64
    );

    // The exact ops report adds up to the same numbers.
    let ops_report = admin_cli(
        &demo,
        Some(&ops),
        &["reports", "offers", "--by", "partner,offer", "--json"],
    );
    assert_eq!(ops_report.code, 0, "{}", ops_report.stderr);
    let rows = ops_report.json["rows"].as_array().unwrap().clone();
    let total = |f: &str| rows.iter().map(|r| r[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(total("served"), served);
    assert_eq!(total("impressions"), impressions);
    assert_eq!(total("clicks"), clicks);

    // The partner's report: its own offers only, no row below k = 50.
    let partner = admin_cli(
        &demo,
        Some(&skyways),
        &["reports", "offers", "--by", "offer", "--json"],
    );
    assert_eq!(partner.code, 0, "{}", partner.stderr);
    assert_eq!(partner.json["kind"], "protected");
    let k = partner.json["privacy"]["k"].as_u64().unwrap();
    assert_eq!(k, 50);
    let partner_rows = partner.json["rows"].as_array().unwrap();
    assert!(!partner_rows.is_empty(), "{}", partner.json);
    for row in partner_rows {
        let offer = row["key"]["offer"].as_str().unwrap();
        if offer == "other" {
            continue;
        }
        let truth = rows
            .iter()
            .find(|r| r["key"]["partner"] == "skyways" && r["key"]["offer"] == offer)
            .unwrap_or_else(|| panic!("{offer} is not a skyways offer"));
        assert!(truth["subjects"].as_u64().unwrap() >= k, "{offer} below k");
    }
    let table = offerhost_tests::offerhost()
        .args(["reports", "offers"])
        .env("OFFERHOST_SERVER", &demo.base)
        .env("OFFERHOST_TOKEN", &skyways)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("protected report") && table.contains("at least 50 customers"),
        "{table}"
    );

    // The canary readout: both arms, with intervals, and calls that match the metrics.
    let readout = admin_cli(
        &demo,
        Some(&ops),
        &[
            "plugins",
            "readout",
            "freshmart/freshmart-cashback",
            "--json",
        ],
    );
    assert_eq!(readout.code, 0, "{}", readout.stderr);
    let r = &readout.json;
    assert_eq!(r["active"]["version"], "1.0.0");
    assert_eq!(r["canary"]["version"], "1.1.0");
    let (a, c) = (
        r["active"]["calls"].as_u64().unwrap(),
        r["canary"]["calls"].as_u64().unwrap(),
    );
    assert_eq!(a + c, customers as u64);
    assert_eq!(
        metric_sum(
            &text,
            "offerhost_plugin_calls_total",
            &["plugin=\"freshmart-cashback\""]
        ),
        (a + c) as f64
    );
    // About a fifth of customers get the canary.
    assert!((25..=75).contains(&c), "canary calls {c} of {customers}");
    for arm in ["active", "canary"] {
        let ctr = &r[arm]["ctr"];
        let (low, value, high) = (
            ctr["low"].as_f64().unwrap(),
            ctr["value"].as_f64().unwrap(),
            ctr["high"].as_f64().unwrap(),
        );
        assert!(low <= value && value <= high && low < high, "{arm}: {ctr}");
    }
    assert!(r["difference"]["ctr"]["low"].is_number(), "{r}");
    let printed = offerhost_tests::offerhost()
        .args(["plugins", "readout", "freshmart/freshmart-cashback"])
        .env("OFFERHOST_SERVER", &demo.base)
        .env("OFFERHOST_TOKEN", &ops)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("active 1.0.0")
            && printed.contains("canary 1.1.0")
            && printed.contains(" ["),
        "{printed}"
    );

    // Every log line of a request carries its id; no subject ever reaches the log.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let res = agent
        .post(&format!(
            "{}/v1/admin/plugins/mall/mall-comeback/rollout",
            demo.base
        ))
        .header("authorization", &format!("Bearer {ops}"))
        .header("content-type", "application/json")
        .send(json!({"action": "disable"}).to_string())
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let stopped = demo.stop();
    assert!(stopped.success());
    let logs = std::fs::read_to_string(&log).unwrap();
    let change = logs
        .lines()
        .find(|l| l.contains("registry change") && l.contains("disable"))
        .unwrap_or_else(|| panic!("no registry change logged:\n{logs}"));
    assert!(change.contains(&id), "{change} lacks request id {id}");
    assert!(
        !logs.contains("story-subject"),
        "a subject id reached the log"
    );
}

/// Readouts compare traffic of the canary's own period, and count how often a shadow's
/// top bid differs from the active version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readout_compares_the_canary_period_and_counts_shadow_disagreement() {
    use offerhost::registry::{Partner, RolloutAction};
    use offerhost_tests::artifacts;

    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&config(3), dir.path());
    let registry = host.state.registry().clone();
    let setup = std::thread::spawn(move || {
        let actor = Actor::system("test");
        let partner: Partner =
            serde_json::from_value(json!({"id": "acme", "weight": 1.0, "allow": ["tier"]}))
                .unwrap();
        registry.put_partner(&actor, partner).unwrap();
        registry
            .upload(&actor, "acme", artifacts::VERSIONED_V1.bytes, None)
            .unwrap();
        registry
            .upload(&actor, "acme", artifacts::VERSIONED_V2.bytes, None)
            .unwrap();
        // The active version cannot shadow itself.
        let itself = registry.rollout(
            &actor,
            "acme/versioned",
            RolloutAction::Shadow {
                version: Some("1.0.0".into()),
            },
        );
        assert!(
            itself
                .as_ref()
                .is_err_and(|e| e.to_string().contains("is the active version")),
            "{itself:?}"
        );
        registry
            .rollout(
                &actor,
                "acme/versioned",
                RolloutAction::Shadow {
                    version: Some("2.0.0".into()),
                },
            )
            .unwrap();
        registry
    });
    let registry = setup.join().unwrap();
    let slates = |from: usize, to: usize| {
        let host = &host;
        async move {
            for i in from..to {
                host.slate(json!({
                    "placement": "app-home",
                    "subject": format!("arm-{i}"),
                    "profile": traveller_profile(),
                }))
                .await;
            }
        }
    };
    // Before any canary: 12 slates with the shadow beside the active version.
    slates(0, 12).await;
    let (status, r) = host
        .call("GET", "/v1/admin/plugins/acme/versioned/readout", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["active"]["calls"], 12);
    assert!(r.get("canary").is_none());
    let shadow = &r["shadow"];
    assert_eq!(shadow["arm"]["version"], "2.0.0");
    assert_eq!(shadow["arm"]["calls"], 12);
    // v1 bids `v1-offer`, v2 `v2-offer`: they always disagree.
    assert_eq!(shadow["top_bid_differs"]["n"], 12);
    assert_eq!(shadow["top_bid_differs"]["value"], 1.0);

    // Then a 50 % canary of 2.0.0 (no shadow) for 30 more slates.
    let setup = std::thread::spawn(move || {
        let actor = Actor::system("test");
        registry
            .rollout(
                &actor,
                "acme/versioned",
                RolloutAction::Shadow { version: None },
            )
            .unwrap();
        registry
            .rollout(
                &actor,
                "acme/versioned",
                RolloutAction::Canary {
                    version: "2.0.0".into(),
                    percent: 50.0,
                },
            )
            .unwrap();
    });
    setup.join().unwrap();
    slates(12, 42).await;
    let (_, r) = host
        .call("GET", "/v1/admin/plugins/acme/versioned/readout", None)
        .await;
    let (active, canary) = (
        r["active"]["calls"].as_u64().unwrap(),
        r["canary"]["calls"].as_u64().unwrap(),
    );
    // Only the canary's period counts: the 12 earlier calls are not in the comparison.
    assert_eq!(active + canary, 30, "{r}");
    assert!(active > 0 && canary > 0, "{r}");
    assert_eq!(r["canary_bps"], 5000);
    assert_eq!(r["canary"]["failure_rate"]["value"], 0.0);
    assert!(r["canary"]["failure_rate"]["high"].as_f64().unwrap() > 0.0);
}
