//! Slate latency and throughput for 1, 4, 8, 16 and 32 plugins, and the host's overhead.
//!
//! Every plugin is the airline example (it bids for the request's high-value traveller),
//! deployed for a different partner. `cargo bench -p offerhost --bench slate`.
//!
//! After the criterion groups the bench prints, for each plugin count, the mean slate
//! time and the plugins' own execution time (instantiation + call, summed over plugins
//! and divided by the cores that ran them), so host overhead = 1 - plugin time / slate
//! time.

use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use offerhost::api::AppState;
use offerhost::clock::SystemClock;
use offerhost::config::Config;
use offerhost::slate::SlateRequest;
use offerhost::store::SledStore;

const COUNTS: [usize; 5] = [1, 4, 8, 16, 32];

fn service(plugins: usize, dir: &std::path::Path) -> AppState {
    let mut toml = String::from(
        "subject_salt = \"bench\"\n[slate]\ndeadline_ms = 1000\n[limits]\ndeadline_ms = 1000\n[[placement]]\nid = \"app-home\"\nslots = 5\nmax_per_partner = 1\n",
    );
    for i in 0..plugins {
        toml.push_str(&format!(
            "[[partner]]\nid = \"p-{i:02}\"\nallow = [\"tier\", \"affinities\", \"cobrand_holder\"]\nplugin = \"{}\"\n",
            offerhost_plugin_artifacts::AIRLINE.path
        ));
    }
    let config = Config::parse(
        &toml,
        Vec::<(String, String)>::new(),
        std::path::Path::new("/"),
    )
    .unwrap();
    let store = Arc::new(SledStore::open(dir).unwrap());
    offerhost::server::build(config, store, Arc::new(SystemClock)).unwrap()
}

fn request(debug: bool) -> SlateRequest {
    serde_json::from_value(serde_json::json!({
        "placement": "app-home",
        "subject": "bench-subject",
        "debug": debug,
        "profile": {
            "tier": "high-value",
            "category_spend_share": {"travel": 0.6, "dining": 0.2},
            "cobrand_cards": ["p-00"],
            "marketing_consent": true
        }
    }))
    .unwrap()
}

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
        .map(|(n, d)| service(*n, d.path()))
        .collect();

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("slate");
        for (n, state) in COUNTS.iter().zip(&services) {
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::from_parameter(n), state, |b, state| {
                b.to_async(&rt).iter(|| async {
                    let slate = state.slate(request(false)).await.unwrap();
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
        let rounds = 300;
        let (mut slate_us, mut plugin_us) = (0f64, 0f64);
        for _ in 0..rounds {
            let started = Instant::now();
            let slate = rt.block_on(state.slate(request(true))).unwrap();
            slate_us += started.elapsed().as_secs_f64() * 1e6;
            let exec: u64 = slate.diagnostics.unwrap().iter().map(|d| d.exec_us).sum();
            plugin_us += exec as f64 / (*n).min(cores) as f64;
        }
        let (s, p) = (slate_us / rounds as f64, plugin_us / rounds as f64);
        println!(
            "| {n} | {s:.0} µs | {p:.0} µs | {:.0} % |",
            (1.0 - p / s) * 100.0
        );
    }
}
