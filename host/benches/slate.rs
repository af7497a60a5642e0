//! Slate latency and throughput for 1, 4, 8, 16 and 32 plugins, and the host's overhead.
//!
//! Every plugin is the airline example (it bids for the request's high-value traveller),
//! each partner's copy a plugin of its own (see `common`), under the example
//! configuration's five frequency caps (`CAPS=0` leaves them out); the subject has no
//! impressions yet, so the counter read finds nothing. `cargo bench -p offerhost
//! --bench slate`.
//!
//! Each row gets its own service, built before the row and dropped after it, so only one
//! service's threads (epoch ticker, slate writer, fan-out pool, sled) run at a time, as
//! in a server process.
//!
//! After the criterion groups the bench prints, for each plugin count, the mean slate
//! time and the plugins' own execution time (instantiation, call and teardown, summed
//! over plugins and divided by the cores that ran them), so host overhead =
//! 1 - plugin time / slate time, and the slates' p50 and p99. All come from the same
//! slates (`ROUNDS` of them, 10 000 unless set, so a p99 rests on a hundred slates).
//! `PLUGINS=8` (or `PLUGINS=4,8`) runs only those plugin counts.

mod common;

use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use offerhost::api::AppState;

const COUNTS: [usize; 5] = [1, 4, 8, 16, 32];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let counts: Vec<usize> = match std::env::var("PLUGINS") {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("PLUGINS is a comma-separated list of counts")
            })
            .collect(),
        Err(_) => COUNTS.to_vec(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut c = Criterion::default().configure_from_args();
    let mut rows = Vec::new();
    for n in counts {
        let dir = tempfile::tempdir().unwrap();
        let state = common::service(n, dir.path());
        {
            let mut group = c.benchmark_group("slate");
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::from_parameter(n), &state, |b, state| {
                // The request is built outside the timing: parsing it is the HTTP layer's
                // work, measured by the load test.
                b.to_async(&rt).iter_batched(
                    || common::request("bench-subject"),
                    |req| async move {
                        let slate = state.slate(req).await.unwrap();
                        assert!(!slate.offers.is_empty());
                        slate
                    },
                    BatchSize::SmallInput,
                )
            });
            group.finish();
        }
        rows.push(overhead(&rt, &state, n, rounds, cores));
    }
    c.final_summary();

    let caps = common::caps_label();
    println!(
        "\nhost overhead ({cores} cores, {caps}; plugin time = sum of the plugins' own time / min(plugins, cores);"
    );
    println!(
        "core round trip = a cache line's trip between two cores and back, before and after the row):"
    );
    println!(
        "| plugins | slate mean | p50 | p99 | plugin time | host overhead | core round trip |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// `rounds` more slates like the criterion loop's, each timed, with the plugins' own time
/// read from the registry's health counters (so these slates run exactly as above,
/// without diagnostics); one table row.
fn overhead(
    rt: &tokio::runtime::Runtime,
    state: &AppState,
    n: usize,
    rounds: usize,
    cores: usize,
) -> String {
    let exec_total = || -> u64 {
        let registry = state.registry();
        let keys: Vec<String> = registry
            .deployment()
            .plugins
            .iter()
            .map(|p| p.key.clone())
            .collect();
        keys.iter().map(|k| registry.health(k).exec_us_total).sum()
    };
    let trip_before = common::core_round_trip();
    let before = exec_total();
    // One runtime entry for all rounds, as in the criterion loop.
    let mut each = rt.block_on(async {
        let mut each = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let req = common::request("bench-subject");
            let one = Instant::now();
            let slate = state.slate(req).await.unwrap();
            each.push(one.elapsed());
            // Dropped outside the timing, as criterion drops the loop's outputs: the
            // response is the HTTP layer's to write and free.
            drop(slate);
        }
        each
    });
    let slate_us = each.iter().sum::<Duration>().as_secs_f64() * 1e6 / rounds as f64;
    let plugin_us = (exec_total() - before) as f64 / rounds as f64 / n.min(cores) as f64;
    let trip_after = common::core_round_trip();
    each.sort_unstable();
    let pct = |p: usize| each[(each.len() * p / 100).min(each.len() - 1)].as_secs_f64() * 1e6;
    format!(
        "| {n} | {slate_us:.0} µs | {:.0} µs | {:.0} µs | {plugin_us:.0} µs | {:.0} % | {trip_before} / {trip_after} |",
        pct(50),
        pct(99),
        (1.0 - plugin_us / slate_us) * 100.0,
    )
}
