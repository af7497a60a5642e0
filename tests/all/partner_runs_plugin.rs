//! A partner runs the example plugins locally with `offerhost plugin run`.

use offerhost_tests::{artifacts, example_request, offerhost, plugin_run};

/// Each example plugin with the shipped request it is written for.
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "plugin-airline",
        "high-value-traveller",
        "skyways-holder-miles",
    ),
    (
        "plugin-grocer",
        "weekend-grocery-shopper",
        "freshmart-weekend",
    ),
    (
        "plugin-grocer-next",
        "weekend-grocery-shopper",
        "freshmart-weekend",
    ),
    ("plugin-reactivation", "lapsed-customer", "comeback-bonus"),
    (
        "plugin-electronics",
        "installment-gadget-buyer",
        "voltmart-0pct-long",
    ),
];

fn artifact(package: &str) -> artifacts::Artifact {
    *artifacts::EXAMPLES
        .iter()
        .find(|a| a.package == package)
        .unwrap_or_else(|| panic!("{package} is an example artifact"))
}

#[test]
fn every_example_plugin_bids_on_its_shipped_request_and_reports_its_cost() {
    assert_eq!(artifacts::EXAMPLES.len(), EXAMPLES.len());
    for (package, request, offer_id) in EXAMPLES {
        let run = plugin_run(artifact(package).path, &example_request(request), &[]);
        assert_eq!(run.code, 0, "{package}: {}", run.stderr);
        let j = &run.json;
        assert_eq!(j["outcome"]["kind"], "ok", "{package}");
        let bids = j["bids"].as_array().unwrap();
        assert_eq!(bids.len(), 1, "{package}: {bids:?}");
        assert_eq!(bids[0]["offer"]["id"], *offer_id, "{package}");
        assert!(j["rejected_bids"].as_array().unwrap().is_empty());
        let cost = &j["cost"];
        assert!(cost["fuel_used"].as_u64().unwrap() > 0, "{package}: {cost}");
        assert!(
            cost["peak_memory_bytes"].as_u64().unwrap() >= 64 << 10,
            "{package}: {cost}"
        );
        assert!(
            cost["wall_time_us"].as_u64().unwrap() > 0,
            "{package}: {cost}"
        );
        assert!(
            cost["output_bytes"].as_u64().unwrap() > 0,
            "{package}: {cost}"
        );
        assert!(j["plugin"]["name"].as_str().unwrap().len() > 3);
        assert!(
            run.stderr.contains("bid ok; 1 bid(s) accepted"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn config_flags_reach_the_plugin() {
    let airline = artifact("plugin-airline").path;
    let request = example_request("high-value-traveller");
    let run = plugin_run(airline, &request, &["--config", "holder_multiplier=7.5"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json["bids"][0]["offer"]["reward"]["points_multiplier"],
        7.5
    );

    let run = plugin_run(airline, &request, &["--config", "holder_multiplier=lots"]);
    assert_eq!(run.code, 3);
    assert_eq!(run.json["outcome"]["kind"], "plugin-error");
    assert_eq!(run.json["outcome"]["error"]["kind"], "bad-config");
    let message = run.json["outcome"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("holder_multiplier"), "{message}");
}

#[test]
fn logs_are_returned_with_their_level() {
    let run = plugin_run(
        artifact("plugin-airline").path,
        &example_request("high-value-traveller"),
        &[],
    );
    assert_eq!(run.json["logs"][0]["level"], "debug");
    assert_eq!(run.json["logs"][0]["message"], "travel affinity 0.80");
    assert_eq!(run.json["cost"]["log_lines"], 1);
}

#[test]
fn a_customer_the_plugin_does_not_target_gets_no_bids_and_exit_zero() {
    // The airline only bids for high-value travellers.
    let run = plugin_run(
        artifact("plugin-airline").path,
        &example_request("weekend-grocery-shopper"),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["bids"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_request_files_name_the_field_and_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"placement": "app-home", "tier": "gold"}"#,
            "unknown variant `gold`",
        ),
        (
            r#"{"placement": "app-home", "rfm": {"recency": 9, "frequency": 1, "monetary": 1}}"#,
            "rfm.recency: 9 is outside 1..=5",
        ),
        (
            r#"{"placement": "app-home", "affinities": [{"category": "travel", "weight": 1.5}]}"#,
            "affinities[0].weight",
        ),
        (
            r#"{"placement": "app-home", "region": "Shanghai, 200000"}"#,
            "region",
        ),
        (
            r#"{"placement": "app-home", "customer_id": "42"}"#,
            "unknown field `customer_id`",
        ),
        (r#"{"tier": "mass"}"#, "missing field `placement`"),
        ("not json", "expected"),
    ];
    for (i, (body, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.json"));
        std::fs::write(&path, body).unwrap();
        let run = plugin_run(artifact("plugin-airline").path, &path, &[]);
        assert_eq!(run.code, 1, "{body}: {}", run.stderr);
        assert!(run.json.is_null(), "nothing on stdout for {body}");
        assert!(run.stderr.contains(expected), "{body}: {}", run.stderr);
    }
}

#[test]
fn help_explains_the_request_format_and_exit_codes() {
    let out = offerhost()
        .args(["plugin", "run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "REQUEST FILE",
        "\"placement\"",
        "high-value",
        "EXIT STATUS",
        "--config",
        "host/examples/requests",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn malformed_config_flag_is_a_usage_error() {
    let run = plugin_run(
        artifact("plugin-airline").path,
        &example_request("high-value-traveller"),
        &["--config", "no-equals-sign"],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("expected KEY=VALUE"), "{}", run.stderr);
}

#[test]
fn a_reader_that_went_away_changes_nothing_but_the_output() {
    // `offerhost plugin run ... | head -c0`: the pipe's reading end is closed before the
    // command writes its answer. The exit status still says how the call went.
    for (component, status) in [
        (artifact("plugin-airline").path, 0),
        (artifacts::HOSTILE_PANIC.path, 3),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = offerhost()
            .args(["plugin", "run", component, "--request"])
            .arg(example_request("high-value-traveller"))
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{component}: {stderr}");
        // The host's own panic, not the plugin's (which the summary quotes).
        assert!(!stderr.contains("thread 'main'"), "{component}: {stderr}");
    }
}
