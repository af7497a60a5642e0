//! Restart time with many deployed plugin versions: with the precompiled artifacts the
//! registry keeps, and without them (every component compiled again).
//!
//! `cargo bench -p offerhost --bench restart [-- VERSIONS]` (default 100). Prints one
//! table row per mode, measured in the same run, and the ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use offerhost::clock::SystemClock;
use offerhost::registry::{Actor, Partner, QuarantinePolicy, Registry, UploadLimits};
use offerhost::sandbox::{Limits, Sandbox, SandboxConfig};
use offerhost::store::{SledStore, Store};

/// A distinct component per index: the `versioned` fixture with its version string
/// "1.0.0" rewritten to another of the same length, so digests differ.
fn variant(i: usize) -> Vec<u8> {
    let mut bytes = offerhost_plugin_artifacts::VERSIONED_V1.bytes.to_vec();
    let version = format!("{}.{}.{}", 1 + i / 100, (i / 10) % 10, i % 10);
    let from = b"1.0.0";
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("version string in the component");
    bytes[at..at + 5].copy_from_slice(version.as_bytes());
    bytes
}

fn open(store: Arc<dyn Store>, precompiled: bool) -> (Duration, Registry) {
    let started = Instant::now();
    let sandbox = Arc::new(Sandbox::new(&SandboxConfig::default()).expect("sandbox"));
    let registry = Registry::open(
        store,
        sandbox,
        Arc::new(SystemClock),
        Limits::default(),
        UploadLimits {
            use_precompiled: precompiled,
            ..UploadLimits::default()
        },
        QuarantinePolicy::default(),
    )
    .expect("registry opens");
    (started.elapsed(), registry)
}

fn main() {
    let versions: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store"));
    {
        let (_, registry) = open(store.clone(), true);
        let ops = Actor::system("bench");
        eprint!("deploying {versions} plugin versions");
        for i in 0..versions {
            let partner = format!("p-{i:03}");
            registry
                .put_partner(
                    &ops,
                    Partner {
                        id: partner.clone(),
                        weight: 1.0,
                        allow: vec![],
                        segments: vec![],
                        public_key: None,
                    },
                )
                .expect("partner");
            registry
                .upload(&ops, &partner, &variant(i), None)
                .expect("upload");
            if i % 10 == 9 {
                eprint!(".");
            }
        }
        eprintln!(" done");
        assert_eq!(registry.deployment().plugins.len(), versions);
    }

    let runs = 3;
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..runs {
        let (t, r) = open(store.clone(), true);
        assert_eq!(r.deployment().plugins.len(), versions);
        with.push(t);
        let (t, r) = open(store.clone(), false);
        assert_eq!(r.deployment().plugins.len(), versions);
        without.push(t);
    }
    with.sort();
    without.sort();
    let (a, b) = (with[runs / 2], without[runs / 2]);
    println!("restart with {versions} deployed versions (median of {runs}):");
    println!("| mode | restart time |");
    println!("|---|---|");
    println!(
        "| precompiled artifacts | {:.0} ms |",
        a.as_secs_f64() * 1000.0
    );
    println!(
        "| compile from components | {:.0} ms |",
        b.as_secs_f64() * 1000.0
    );
    println!("speed-up: {:.1}x", b.as_secs_f64() / a.as_secs_f64());
}
