//! An app fetches slates: features, ranking, policy, consent, stored profiles,
//! allow-lists.

use offerhost_tests::{artifacts, example_config, host_on, offers_of, traveller_profile};
use serde_json::{Value, json};

fn family_profile() -> Value {
    json!({
        "days_since_last_purchase": 5,
        "purchases_90d": 25,
        "spend_90d_minor": 300000,
        "category_spend_share": {"grocery": 0.55, "fuel": 0.2, "electronics": 0.25},
        "tier": "mass",
        "lifecycle": "revolving-installment-eligible",
        "region": "CN-JS",
        "marketing_consent": true
    })
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A partner entry for the echo probe.
fn echo_partner(id: &str, weight: f64, allow: &str, config: &str) -> String {
    format!(
        "\n[[partner]]\nid = \"{id}\"\nweight = {weight}\nallow = {allow}\nsegments = [\"frequent-flyer\"]\nplugin = \"{}\"\n[partner.config]\n{config}\n",
        artifacts::HOSTILE_ECHO.path
    )
}

#[tokio::test]
async fn ranking_follows_expected_value_for_known_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&example_config(), dir.path());

    let slate = host
        .slate(json!({"placement": "app-home", "subject": "c1", "profile": traveller_profile()}))
        .await;
    assert_eq!(
        offers_of(&slate),
        pairs(&[
            ("skyways", "skyways-holder-miles"),
            ("voltmart", "voltmart-0pct-long")
        ])
    );
    // score = value × relevance × weight: 300 × 0.65 × 1.2 and 250 × 0.25 × 1.0.
    assert!(
        (slate["offers"][0]["score"].as_f64().unwrap() - 234.0).abs() < 1e-6,
        "{slate}"
    );
    assert!(
        (slate["offers"][1]["score"].as_f64().unwrap() - 62.5).abs() < 1e-6,
        "{slate}"
    );
    assert_eq!(slate["offers"][0]["rank"], 1);
    assert_eq!(slate["offers"][0]["plugin"], "skyways-miles");
    assert_eq!(slate["offers"][0]["plugin_version"], "1.0.0");
    assert!(slate["slate_id"].as_str().unwrap().starts_with("sl_"));

    let slate = host
        .slate(json!({"placement": "app-home", "subject": "c2", "profile": family_profile()}))
        .await;
    // 250 × 0.25 = 62.5 beats 60 × 0.55 = 33 (Friday: the weekday rate).
    assert_eq!(
        offers_of(&slate),
        pairs(&[
            ("voltmart", "voltmart-0pct-long"),
            ("freshmart", "freshmart-everyday")
        ])
    );

    let lapsed = json!({
        "days_since_last_purchase": 120, "purchases_90d": 1, "spend_90d_minor": 8000,
        "category_spend_share": {"online-shopping": 0.7}, "tier": "at-risk",
        "lifecycle": "spending", "marketing_consent": true
    });
    let slate = host
        .slate(json!({"placement": "app-home", "subject": "c3", "profile": lapsed}))
        .await;
    assert_eq!(offers_of(&slate), pairs(&[("mall", "comeback-bonus")]));
}

#[tokio::test]
async fn same_request_same_slate() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&example_config(), dir.path());
    let req = json!({"placement": "app-home", "subject": "c1", "profile": traveller_profile()});
    let a = host.slate(req.clone()).await;
    let b = host.slate(req).await;
    assert_eq!(a["offers"], b["offers"]);
    assert_ne!(a["slate_id"], b["slate_id"]);
}

#[tokio::test]
async fn placement_policy_floor_exclusions_and_skipped_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config()
        + &echo_partner(
            "echo-toys",
            1.0,
            "[]",
            "category = \"toys\"\nvalue = \"500\"",
        )
        + &echo_partner("echo-cheap", 1.0, "[]", "value = \"50\"");
    let config = config.replace(
        "excluded_categories = [\"travel\"]",
        "excluded_categories = [\"travel\", \"toys\"]",
    );
    let host = host_on(&config, dir.path());
    let slate = host
        .slate(json!({"placement": "checkout", "subject": "c2", "profile": family_profile(), "debug": true}))
        .await;
    // Checkout: floor 100 drops freshmart (60) and echo-cheap (50); toys are excluded.
    assert_eq!(
        offers_of(&slate),
        pairs(&[("voltmart", "voltmart-0pct-long")])
    );
    let diag = slate["diagnostics"].as_array().unwrap();
    let dropped = |partner: &str| -> Vec<String> {
        diag.iter()
            .find(|d| d["partner"] == partner)
            .unwrap_or_else(|| panic!("{partner} in diagnostics: {slate}"))["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["reason"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(dropped("freshmart"), ["below-floor"]);
    assert_eq!(dropped("echo-cheap"), ["below-floor"]);
    assert_eq!(dropped("echo-toys"), ["excluded-category"]);
    // The airline bids only in travel, which checkout excludes: it is not even called.
    assert!(diag.iter().all(|d| d["partner"] != "skyways"), "{slate}");
    // The win-back partner bids only on app-home.
    assert!(diag.iter().all(|d| d["partner"] != "mall"), "{slate}");
}

#[tokio::test]
async fn partner_weights_per_partner_limit_dedupe_and_tie_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[[placement]]
id = "app-home"
slots = 5
max_per_partner = 2
"#
    .to_string()
        + &echo_partner("echo-a", 1.0, "[]", "offers = \"3\"\nvalue = \"100\"")
        + &echo_partner("echo-b", 2.0, "[]", "value = \"60\"")
        + &echo_partner(
            "echo-c",
            1.0,
            "[]",
            "value = \"100\"\nduplicate = \"true\"\noffers = \"2\"",
        )
        + &echo_partner("echo-d", 1.0, "[]", "value = \"100\"");
    let host = host_on(&config, dir.path());
    let profile = json!({"marketing_consent": true});
    let slate = host
        .slate(json!({"placement": "app-home", "subject": "c", "profile": profile, "debug": true}))
        .await;
    // echo-b: 60 × 0.5 × 2.0 = 60 beats 100 × 0.5 × 1.0 = 50. The 50s tie and are
    // ordered by partner id, then offer id; echo-a is held to 2 offers, echo-c's
    // duplicate id is dropped.
    assert_eq!(
        offers_of(&slate),
        pairs(&[
            ("echo-b", "echo-1"),
            ("echo-a", "echo-1"),
            ("echo-a", "echo-2"),
            ("echo-c", "echo-1"),
            ("echo-d", "echo-1")
        ])
    );
    let reasons = |partner: &str| -> Vec<String> {
        slate["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["partner"] == partner)
            .unwrap()["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["reason"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(reasons("echo-a"), ["partner-limit"]);
    assert_eq!(reasons("echo-c"), ["duplicate-offer"]);

    let two = host.slate(json!({"placement": "app-home", "subject": "c", "profile": profile, "slots": 2, "debug": true})).await;
    assert_eq!(
        offers_of(&two),
        pairs(&[("echo-b", "echo-1"), ("echo-a", "echo-1")])
    );
    let outranked = two["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["partner"] == "echo-d")
        .unwrap();
    assert_eq!(outranked["dropped"][0]["reason"], "outranked");
}

#[tokio::test]
async fn no_consent_no_partner_offers_and_no_plugin_called() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&example_config(), dir.path());
    let mut profile = traveller_profile();
    profile["marketing_consent"] = json!(false);
    let slate = host
        .slate(json!({"placement": "app-home", "subject": "c1", "profile": profile, "debug": true}))
        .await;
    assert_eq!(slate["offers"], json!([]));
    assert_eq!(slate["suppressed"], "no-marketing-consent");
    assert_eq!(slate["diagnostics"], json!([]), "no plugin was called");

    // Consent defaults to false when the profile does not say.
    let mut profile = traveller_profile();
    profile.as_object_mut().unwrap().remove("marketing_consent");
    let slate = host
        .slate(json!({"placement": "app-home", "subject": "c1", "profile": profile}))
        .await;
    assert_eq!(slate["suppressed"], "no-marketing-consent");
}

#[tokio::test]
async fn stored_profiles_are_bulk_loaded_and_used_by_subject() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(&example_config(), dir.path());
    let slate = host
        .slate(json!({"placement": "app-home", "subject": "fam-1"}))
        .await;
    assert_eq!(slate["suppressed"], "no-profile");

    let ndjson = format!(
        "{}\n\n{}\n",
        json!({"subject": "fam-1", "profile": family_profile()}),
        json!({"subject": "trav-1", "profile": traveller_profile()})
    );
    let req = axum::http::Request::post("/v1/admin/profiles")
        .body(axum::body::Body::from(ndjson))
        .unwrap();
    let (status, body) = host.send(req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loaded"], 2);

    let fam = host
        .slate(json!({"placement": "app-home", "subject": "fam-1"}))
        .await;
    assert_eq!(
        offers_of(&fam),
        pairs(&[
            ("voltmart", "voltmart-0pct-long"),
            ("freshmart", "freshmart-everyday")
        ])
    );
    let trav = host
        .slate(json!({"placement": "app-home", "subject": "trav-1"}))
        .await;
    assert_eq!(trav["offers"][0]["partner"], "skyways");

    // One bad line rejects the whole upload, names the line and field, writes nothing.
    let bad = format!(
        "{}\n{}\n",
        json!({"subject": "new-1", "profile": family_profile()}),
        json!({"subject": "new-2", "profile": {"tier": "gold"}})
    );
    let req = axum::http::Request::post("/v1/admin/profiles")
        .body(axum::body::Body::from(bad))
        .unwrap();
    let (status, body) = host.send(req).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "line 2: profile.tier");
    let slate = host
        .slate(json!({"placement": "app-home", "subject": "new-1"}))
        .await;
    assert_eq!(slate["suppressed"], "no-profile", "line 1 was not written");
}

#[tokio::test]
async fn each_partner_sees_only_its_allowed_fields_and_never_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[placement]]\nid = \"app-home\"\nslots = 5\n".to_string()
        + &echo_partner("echo-none", 1.0, "[]", "")
        + &echo_partner("echo-tier", 1.0, "[\"tier\"]", "")
        + &echo_partner(
            "skyways",
            1.0,
            "[\"tier\", \"lifecycle\", \"rfm\", \"affinities\", \"cobrand_holder\", \"region\", \"context\", \"segments\"]",
            "",
        );
    let host = host_on(&config, dir.path());
    let subject = "subject-7f3c9e-SECRET";
    let slate = host
        .slate(json!({"placement": "app-home", "subject": subject, "profile": traveller_profile(), "debug": true}))
        .await;
    let seen = |partner: &str| -> String {
        slate["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["partner"] == partner)
            .unwrap()["logs"][0]["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        seen("echo-none"),
        "Features { tier: None, lifecycle: None, rfm: None, affinities: [], cobrand_holder: None, region: None, \
         placement: \"app-home\", channel: MobileApp, context: None, segments: [] }"
    );
    assert!(seen("echo-tier").starts_with(
        "Features { tier: Some(HighValue), lifecycle: None, rfm: None, affinities: [],"
    ));
    let all = seen("skyways");
    for expected in [
        "tier: Some(HighValue)",
        "lifecycle: Some(RevolvingInstallmentEligible)",
        "rfm: Some(Rfm { recency: 5, frequency: 5, monetary: 5 })",
        "Affinity { category: \"travel\", weight: 0.45 }",
        "cobrand_holder: Some(true)",
        "region: Some(\"cn-sh\")",
        "context: Some(Context { day_of_week: Friday, part_of_day: Morning, season: Summer, holiday: false })",
        // Only the segments granted to this partner.
        "segments: [\"frequent-flyer\"]",
    ] {
        assert!(all.contains(expected), "{expected} not in {all}");
    }
    let text = slate.to_string();
    assert!(
        !text.contains(subject),
        "the subject id leaked into the slate: {text}"
    );
    assert!(
        !text.contains("young-professional"),
        "a segment not granted leaked"
    );
}
