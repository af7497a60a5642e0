//! Slate latency and throughput for 1, 4, 8, 16 and 32 plugins, and the host's overhead.
//!
//! Every plugin is the airline example (it bids for the request's high-value traveller),
//! deployed for a different partner. `cargo bench -p offerhost --bench slate`.
//!
//! After the criterion groups the bench prints, for each plugin count, the mean slate
//! time and the plugins' own execution time (instantiation, call and teardown, summed
//! over plugins and divided by the cores that ran them), so host overhead =
//! 1 - plugin time / slate time. Both come from the same 2 000 slates.

mod common;

use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use offerhost::api::AppState;

const COUNTS: [usize; 5] = [1, 4, 8, 16, 32];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dirs: Vec<_> = COUNTS
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let services: Vec<AppState> = COUNTS
        .iter()
        .zip(&dirs)
        .map(|(n, d)| common::service(*n, d.path()))
        .collect();

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("slate");
        for (n, state) in COUNTS.iter().zip(&services) {
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::from_parameter(n), state, |b, state| {
                b.to_async(&rt).iter(|| async {
                    let slate = state.slate(common::request("bench-subject")).await.unwrap();
                    assert!(!slate.offers.is_empty());
                    slate
                })
            });
        }
        group.finish();
    }
    c.final_summary();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nhost overhead ({cores} cores; plugin time = sum of the plugins' own time / min(plugins, cores)):"
    );
    println!("| plugins | slate mean | plugin time | host overhead |");
    println!("|---|---|---|---|");
    for (n, state) in COUNTS.iter().zip(&services) {
        // The plugins' own time comes from the registry's health counters, so these
        // slates run exactly as above, without diagnostics.
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
        let rounds = 2000;
        let before = exec_total();
        // One runtime entry for all rounds, as in the criterion loop above.
        let slate_us = rt.block_on(async {
            let started = Instant::now();
            for _ in 0..rounds {
                state.slate(common::request("bench-subject")).await.unwrap();
            }
            started.elapsed().as_secs_f64() * 1e6 / rounds as f64
        });
        let plugin_us = (exec_total() - before) as f64 / rounds as f64 / (*n).min(cores) as f64;
        println!(
            "| {n} | {slate_us:.0} µs | {plugin_us:.0} µs | {:.0} % |",
            (1.0 - plugin_us / slate_us) * 100.0
        );
    }
}
