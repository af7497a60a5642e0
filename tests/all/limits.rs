//! Each limit: a plugin within it works, one beyond it is stopped with the right outcome.

use offerhost::sandbox::{Limits, Outcome};
use offerhost_tests::{artifacts, config, example_features, limits, load, sandbox};

fn run(
    artifact: artifacts::Artifact,
    cfg: &[(&str, &str)],
    limits: Limits,
) -> offerhost::sandbox::CallReport<Vec<offerhost::model::Bid>> {
    sandbox().bid(
        &load(artifact),
        &example_features("high-value-traveller"),
        &config(cfg),
        &limits,
    )
}

#[test]
fn fuel() {
    let within = run(artifacts::AIRLINE, &[], limits());
    assert_eq!(within.outcome, Outcome::Ok);
    let used = within.cost.fuel_used;
    assert!(
        used > 1_000 && used < limits().fuel / 100,
        "airline used {used} fuel"
    );

    let starved = run(
        artifacts::AIRLINE,
        &[],
        Limits {
            fuel: used / 2,
            ..limits()
        },
    );
    assert_eq!(starved.outcome, Outcome::FuelExhausted);
    assert_eq!(starved.cost.fuel_used, used / 2);

    let exact = run(
        artifacts::AIRLINE,
        &[],
        Limits {
            fuel: used,
            ..limits()
        },
    );
    assert_eq!(
        exact.outcome,
        Outcome::Ok,
        "exactly the fuel it needs is enough"
    );

    let looping = run(artifacts::HOSTILE_LOOP, &[], limits());
    assert_eq!(looping.outcome, Outcome::FuelExhausted);
    assert_eq!(looping.cost.fuel_used, limits().fuel);
}

#[test]
fn deadline() {
    let within = run(
        artifacts::AIRLINE,
        &[],
        Limits {
            deadline_ms: 20,
            ..limits()
        },
    );
    assert_eq!(within.outcome, Outcome::Ok);

    let unlimited_fuel = Limits {
        fuel: u64::MAX / 2,
        deadline_ms: 15,
        ..limits()
    };
    let late = run(artifacts::HOSTILE_LOOP, &[], unlimited_fuel);
    assert_eq!(late.outcome, Outcome::Deadline);
    assert!(
        late.cost.wall_time_us >= 15_000,
        "{}",
        late.cost.wall_time_us
    );
    assert!(
        late.cost.wall_time_us < 115_000,
        "{}",
        late.cost.wall_time_us
    );
}

#[test]
fn memory() {
    let within = run(
        artifacts::AIRLINE,
        &[],
        Limits {
            memory_bytes: 2 << 20,
            ..limits()
        },
    );
    assert_eq!(within.outcome, Outcome::Ok);
    assert!(within.cost.peak_memory_bytes <= 2 << 20);

    // Too little even for the plugin's initial memory: refused at instantiation.
    let tiny = run(
        artifacts::AIRLINE,
        &[],
        Limits {
            memory_bytes: 64 << 10,
            ..limits()
        },
    );
    assert_eq!(tiny.outcome, Outcome::MemoryLimit);

    let bomb = run(
        artifacts::HOSTILE_MEMORY_BOMB,
        &[],
        Limits {
            memory_bytes: 16 << 20,
            ..limits()
        },
    );
    assert_eq!(bomb.outcome, Outcome::MemoryLimit);
    assert!(
        bomb.cost.peak_memory_bytes <= 16 << 20,
        "{}",
        bomb.cost.peak_memory_bytes
    );

    // Limits above the engine's maximum are clamped to it.
    let huge = run(
        artifacts::HOSTILE_MEMORY_BOMB,
        &[],
        Limits {
            memory_bytes: 1 << 40,
            ..limits()
        },
    );
    assert_eq!(huge.outcome, offerhost::sandbox::Outcome::MemoryLimit);
    assert!(
        huge.cost.peak_memory_bytes <= offerhost::sandbox::EngineLimits::default().max_memory_bytes
    );
}

#[test]
fn bid_count() {
    let at_limit = run(artifacts::HOSTILE_OVERSIZED, &[("count", "64")], limits());
    assert_eq!(at_limit.outcome, Outcome::Ok);
    assert_eq!(at_limit.value.unwrap().len(), 64);

    let over = run(artifacts::HOSTILE_OVERSIZED, &[("count", "65")], limits());
    assert_eq!(
        over.outcome,
        Outcome::InvalidOutput {
            reason: "65 bids, the limit is 64".into()
        }
    );
    assert!(over.value.is_none());
}

#[test]
fn output_bytes() {
    let small = Limits {
        max_output_bytes: 1000,
        ..limits()
    };
    // One bid: id "huge" (4) + category "general" (7) + title.
    let within = run(
        artifacts::HOSTILE_OVERSIZED,
        &[("mode", "huge-strings"), ("bytes", "989")],
        small,
    );
    assert_eq!(within.outcome, Outcome::Ok);
    assert_eq!(within.cost.output_bytes, 1000);

    let over = run(
        artifacts::HOSTILE_OVERSIZED,
        &[("mode", "huge-strings"), ("bytes", "990")],
        small,
    );
    assert_eq!(
        over.outcome,
        Outcome::InvalidOutput {
            reason: "1001 bytes of strings, the limit is 1000".into()
        }
    );
}

#[test]
fn log_bytes() {
    // Each line is 1 KiB; the default budget is 4 KiB.
    let within = run(
        artifacts::HOSTILE_OVERSIZED,
        &[("mode", "log-flood"), ("count", "4")],
        limits(),
    );
    assert_eq!(within.outcome, Outcome::Ok);
    assert_eq!(within.logs.len(), 4);
    assert_eq!(within.cost.log_bytes, 4096);

    let over = run(
        artifacts::HOSTILE_OVERSIZED,
        &[("mode", "log-flood"), ("count", "5")],
        limits(),
    );
    assert_eq!(over.outcome, Outcome::LogLimit);
    assert_eq!(over.logs.len(), 4, "lines within the budget are kept");
}
