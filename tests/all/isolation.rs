//! Privacy and determinism: no state survives a call, the same input gives the same
//! bids and fuel, and a plugin reaching for the outside world gets nothing.

use offerhost::sandbox::{FIXED_WALL_CLOCK_SECS, Outcome, Sandbox, SandboxConfig};
use offerhost_tests::{artifacts, config, example_features, limits, load, sandbox};

#[test]
fn same_input_same_bids_and_fuel_even_in_another_engine() {
    let features = example_features("high-value-traveller");
    let first = sandbox().bid(
        &load(artifacts::AIRLINE),
        &features,
        &config(&[]),
        &limits(),
    );
    assert!(first.outcome.is_ok());
    for _ in 0..10 {
        let again = sandbox().bid(
            &load(artifacts::AIRLINE),
            &features,
            &config(&[]),
            &limits(),
        );
        assert_eq!(again.value, first.value);
        assert_eq!(again.cost.fuel_used, first.cost.fuel_used);
        assert_eq!(again.logs, first.logs);
    }
    let other = Sandbox::new(&SandboxConfig::default()).unwrap();
    let plugin = other.load(artifacts::AIRLINE.bytes).unwrap();
    let elsewhere = other.bid(&plugin, &features, &config(&[]), &limits());
    assert_eq!(elsewhere.value, first.value);
    assert_eq!(elsewhere.cost.fuel_used, first.cost.fuel_used);
}

#[test]
fn no_state_survives_between_calls() {
    let tracker = load(artifacts::HOSTILE_STATEFUL);
    let features = example_features("lapsed-customer");
    for _ in 0..25 {
        let report = sandbox().bid(&tracker, &features, &config(&[]), &limits());
        let bids = report.value.expect("the tracker bids");
        assert_eq!(bids[0].offer.id, "call-1", "a static survived a call");
        assert_eq!(bids[0].value_minor, 1);
    }
}

#[test]
fn files_env_sockets_and_clock_give_nothing_useful() {
    let _ = std::fs::remove_file("/tmp/offerhost-escape");
    let report = sandbox().bid(
        &load(artifacts::HOSTILE_ESCAPE),
        &example_features("high-value-traveller"),
        &config(&[]),
        &limits(),
    );
    assert_eq!(report.outcome, Outcome::Ok);
    let seen: std::collections::BTreeMap<String, String> = report
        .logs
        .iter()
        .map(|l| {
            let (k, v) = l.message.split_once(": ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    // No preopened directories: every path is simply not there.
    for key in ["file", "dir", "write"] {
        assert!(
            seen[key].starts_with("Err(") && seen[key].contains("NotFound"),
            "{key}: {}",
            seen[key]
        );
    }
    assert!(
        !std::path::Path::new("/tmp/offerhost-escape").exists(),
        "the plugin wrote a host file"
    );
    assert_eq!(seen["env"], "0");
    assert_eq!(seen["home"], "Err(NotPresent)");
    assert_eq!(seen["args"], "0");
    for key in ["socket", "udp"] {
        assert!(
            seen[key].contains("PermissionDenied"),
            "{key}: {}",
            seen[key]
        );
    }
    assert_eq!(seen["clock"], format!("Ok({FIXED_WALL_CLOCK_SECS})"));
    assert_eq!(seen["elapsed"], "0");
    // An hour's sleep returns at once, on a clock that never moves: it holds no host
    // thread (a host call is not stopped by the call's deadline).
    assert_eq!(seen["slept"], "0");
    assert!(
        report.cost.wall_time_us < 1_000_000,
        "the call took {} us",
        report.cost.wall_time_us
    );
    assert_eq!(seen["stdin"], "Ok(0)");

    // Even the "random" hash seed is the same on every run.
    let again = sandbox().bid(
        &load(artifacts::HOSTILE_ESCAPE),
        &example_features("lapsed-customer"),
        &config(&[]),
        &limits(),
    );
    assert_eq!(again.logs, report.logs);
}

#[test]
fn a_plugin_sees_only_its_own_config() {
    // Configuration is per call: what one plugin was given is not visible to the next.
    let airline = load(artifacts::AIRLINE);
    let features = example_features("high-value-traveller");
    let tuned = sandbox().bid(
        &airline,
        &features,
        &config(&[("holder_multiplier", "9")]),
        &limits(),
    );
    let plain = sandbox().bid(&airline, &features, &config(&[]), &limits());
    let reward = |r: &offerhost::sandbox::CallReport<Vec<offerhost::model::Bid>>| {
        r.value.as_ref().unwrap()[0].offer.reward.clone()
    };
    assert_eq!(
        reward(&tuned),
        offerhost::model::Reward::PointsMultiplier(9.0)
    );
    assert_eq!(
        reward(&plain),
        offerhost::model::Reward::PointsMultiplier(5.0)
    );
}
