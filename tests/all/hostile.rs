//! Hostile plugins: each is stopped with a typed outcome, in time, and harms nothing else.

use std::time::{Duration, Instant};

use offerhost::sandbox::{Limits, Outcome};
use offerhost_tests::{
    artifacts, config, example_features, example_request, limits, load, plugin_run, sandbox,
};

/// Fixture, config for it, the outcome kind the runner must print.
const CASES: &[(&str, &[&str], &str)] = &[
    ("hostile-loop", &[], "fuel-exhausted"),
    ("hostile-memory-bomb", &[], "memory-limit"),
    ("hostile-recursion", &[], "trap"),
    ("hostile-panic", &[], "trap"),
    ("hostile-oversized", &[], "invalid-output"),
    // Writing 4 MiB into fresh memory takes 4 ms here, but 25-57 ms now and then on a
    // virtual machine (page faults on memory the host has not backed yet): the default
    // 50 ms deadline would sometimes stop it first. The output check is the point here.
    (
        "hostile-oversized",
        &["--config", "mode=huge-strings", "--deadline-ms", "1000"],
        "invalid-output",
    ),
    (
        "hostile-oversized",
        &["--config", "mode=log-flood"],
        "log-limit",
    ),
];

fn artifact(package: &str) -> artifacts::Artifact {
    *artifacts::ALL
        .iter()
        .find(|a| a.package == package)
        .unwrap()
}

#[test]
fn the_runner_prints_each_hostile_outcome_and_exits_non_zero_within_the_deadline() {
    let request = example_request("high-value-traveller");
    for (package, args, kind) in CASES {
        let started = Instant::now();
        let run = plugin_run(artifact(package).path, &request, args);
        let elapsed = started.elapsed();
        assert_eq!(run.code, 3, "{package} {args:?}: {}", run.stderr);
        assert_eq!(
            run.json["outcome"]["kind"], *kind,
            "{package} {args:?}: {}",
            run.json
        );
        assert!(run.json["bids"].as_array().unwrap().is_empty());
        let wall_us = run.json["cost"]["wall_time_us"].as_u64().unwrap();
        let deadline_ms = match args.iter().position(|a| *a == "--deadline-ms") {
            Some(i) => args[i + 1].parse().unwrap(),
            None => Limits::default().deadline_ms,
        };
        let deadline_us = deadline_ms * 1000;
        // Slack for a loaded CI machine; an unstopped loop would run for seconds.
        assert!(wall_us <= deadline_us + 100_000, "{package}: {wall_us} us");
        // The whole process, compile included, is quick too.
        assert!(elapsed < Duration::from_secs(20), "{package}: {elapsed:?}");
    }
}

#[test]
fn a_loop_with_unlimited_fuel_is_stopped_at_the_deadline() {
    let run = plugin_run(
        artifacts::HOSTILE_LOOP.path,
        &example_request("high-value-traveller"),
        &["--fuel", "100000000000", "--deadline-ms", "30"],
    );
    assert_eq!(run.code, 3);
    assert_eq!(run.json["outcome"]["kind"], "deadline");
    let wall_us = run.json["cost"]["wall_time_us"].as_u64().unwrap();
    // Stopped at the deadline (with slack for a loaded machine), not by fuel.
    assert!((30_000..150_000).contains(&wall_us), "{wall_us} us");
}

#[test]
fn a_panic_is_reported_with_the_plugins_own_message() {
    let report = sandbox().bid(
        &load(artifacts::HOSTILE_PANIC),
        &example_features("high-value-traveller"),
        &config(&[]),
        &limits(),
    );
    let Outcome::Trap { message } = &report.outcome else {
        panic!("expected a trap, got {:?}", report.outcome)
    };
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains("region code is numeric"), "{message}");
}

#[test]
fn stack_overflow_is_a_trap_not_a_crash() {
    let report = sandbox().bid(
        &load(artifacts::HOSTILE_RECURSION),
        &example_features("high-value-traveller"),
        &config(&[]),
        &limits(),
    );
    let Outcome::Trap { message } = &report.outcome else {
        panic!("expected a trap, got {:?}", report.outcome)
    };
    assert!(message.contains("call stack exhausted"), "{message}");
}

#[test]
fn invalid_bids_are_dropped_one_by_one_with_reason_codes() {
    let run = plugin_run(
        artifacts::HOSTILE_INVALID_BIDS.path,
        &example_request("high-value-traveller"),
        &[],
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.json["outcome"]["kind"], "ok");
    let bids = run.json["bids"].as_array().unwrap();
    assert_eq!(bids.len(), 1);
    assert_eq!(bids[0]["offer"]["id"], "good-offer");
    assert_eq!(bids[0]["value_minor"], 50, "the first good-offer is kept");
    let reasons: Vec<(String, String)> = run.json["rejected_bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["offer_id"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("", "bad-offer-id"),
        ("bad id with spaces", "bad-offer-id"),
        ("negative-relevance", "bad-relevance"),
        ("nan-relevance", "bad-relevance"),
        ("zero-value", "bad-value"),
        ("absurd-value", "bad-value"),
        ("absurd-cashback", "bad-reward"),
        ("inf-multiplier", "bad-reward"),
        ("one-month", "bad-reward"),
        ("bad-currency", "bad-money"),
        ("no-expiry", "bad-valid-days"),
        ("empty-title", "bad-title"),
        ("control-title", "bad-title"),
        ("bad-category", "bad-category"),
        ("good-offer", "duplicate-offer"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(reasons, expected);
}

#[test]
fn many_hostile_calls_in_a_row_leave_the_sandbox_healthy() {
    let features = example_features("high-value-traveller");
    let airline = load(artifacts::AIRLINE);
    let before = sandbox().bid(&airline, &features, &config(&[]), &limits());
    assert!(before.outcome.is_ok());

    let fast = Limits {
        deadline_ms: 20,
        fuel: 2_000_000,
        ..limits()
    };
    for round in 0..5 {
        for artifact in [
            artifacts::HOSTILE_LOOP,
            artifacts::HOSTILE_MEMORY_BOMB,
            artifacts::HOSTILE_RECURSION,
            artifacts::HOSTILE_PANIC,
            artifacts::HOSTILE_OVERSIZED,
        ] {
            let report = sandbox().bid(&load(artifact), &features, &config(&[]), &fast);
            assert!(
                !report.outcome.is_ok(),
                "round {round}: {} succeeded",
                artifact.package
            );
        }
    }

    let after = sandbox().bid(&airline, &features, &config(&[]), &limits());
    assert!(after.outcome.is_ok());
    assert_eq!(after.value, before.value);
    assert_eq!(after.cost.fuel_used, before.cost.fuel_used);
    assert_eq!(after.cost.peak_memory_bytes, before.cost.peak_memory_bytes);
}
