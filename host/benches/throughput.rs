//! Slate throughput by CPU cores: the same service (8 airline plugins, the example's caps
//! unless `CAPS=0`, sled) under 32 concurrent slate requests, run pinned to 1, 2, 4, 8
//! and 16 of the cores this process may use (as many as there are), side by side in one
//! run. `cargo bench -p offerhost --bench throughput`
//!
//! The bench re-runs itself under `taskset` for each core count, so the runtime and the
//! fan-out threads are sized from the cores the process may use, as a server would be.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PLUGINS: usize = 8;
const CONCURRENCY: usize = 32;
const RUN: Duration = Duration::from_secs(8);
const CHILD: &str = "OFFERHOST_THROUGHPUT_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        println!("{:.0}", measure());
        return;
    }
    // Criterion-style arguments (`--bench`, filters) are accepted and ignored.
    let allowed = allowed_cpus();
    let exe = std::env::current_exe().expect("bench binary path");
    let mut rows = Vec::new();
    let trip_before = common::core_round_trip();
    for n in [1, 2, 4, 8, 16].into_iter().filter(|n| *n <= allowed.len()) {
        let cpus: Vec<String> = allowed[..n].iter().map(usize::to_string).collect();
        let cpus = cpus.join(",");
        eprintln!("throughput on {n} core(s) ({}s)...", RUN.as_secs());
        let out = Command::new("taskset")
            .args(["-c", &cpus])
            .arg(&exe)
            .env(CHILD, "1")
            .output()
            .expect("taskset runs (util-linux)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rate: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the child prints slates/s");
        rows.push((n, rate));
    }
    let caps = common::caps_label();
    println!(
        "\nslate throughput, {PLUGINS} plugins, {caps}, {CONCURRENCY} concurrent requests, {}s each:",
        RUN.as_secs()
    );
    println!("| cores | slates/s | vs 1 core |");
    println!("|---|---|---|");
    let one = rows[0].1;
    for (n, rate) in rows {
        println!("| {n} | {rate:.0} | {:.2}x |", rate / one);
    }
    println!(
        "core round trip (a cache line's trip between two cores and back), before and after: {trip_before} / {}",
        common::core_round_trip()
    );
}

/// The CPUs this process may run on (`Cpus_allowed_list` in /proc/self/status, such as
/// `0-3,6`).
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(from.parse::<usize>().unwrap()..=to.parse::<usize>().unwrap());
    }
    cpus
}

/// Slates per second with `CONCURRENCY` requests in flight, after a one-second warm-up.
fn measure() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = common::service(PLUGINS, dir.path());
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CONCURRENCY {
            let (state, done, stop) = (state.clone(), done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let subject = format!("subject-{c}-{i}");
                    let slate = state.slate(common::request(&subject)).await.unwrap();
                    assert!(!slate.offers.is_empty());
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (before, started) = (done.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(RUN).await;
        let rate = (done.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        rate
    })
}
