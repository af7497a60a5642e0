//! What the slate benches share: a service with N copies of the airline example, each
//! deployed for its own partner, and a request every copy bids for.
//!
//! Each copy is a plugin of its own, as different partners' plugins are: a custom section
//! naming the copy makes its bytes differ, so it is compiled, loaded and given pool slots
//! by itself. Byte-identical copies would share one compiled module, its code in the
//! caches and its warm pool slots, which no two partners' plugins do.

// Each bench compiles this module and uses part of it.
#![allow(dead_code)]

use std::sync::Arc;

use offerhost::api::AppState;
use offerhost::clock::SystemClock;
use offerhost::config::Config;
use offerhost::slate::SlateRequest;
use offerhost::store::{SledStore, Store};

// The allocator the `offerhost` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The example configuration's frequency caps: an issuer runs with caps, and every slate
/// then reads and checks the counters of every offer bid.
const CAPS: &str = "[[cap]]\nscope = \"offer\"\nmax = 3\nwindow = \"1d\"\n\
    [[cap]]\nscope = \"offer\"\nmax = 10\nwindow = \"1w\"\n\
    [[cap]]\nscope = \"partner\"\nmax = 5\nwindow = \"1d\"\n\
    [[cap]]\nscope = \"category\"\nmax = 6\nwindow = \"12h\"\n\
    [[cap]]\nscope = \"slate\"\nmax = 30\nwindow = \"1d\"\n";

/// Whether the service has [`CAPS`]: yes unless `CAPS=0`.
pub fn with_caps() -> bool {
    std::env::var("CAPS").map_or(true, |v| v != "0")
}

/// Which caps the service runs, for a table's heading.
pub fn caps_label() -> &'static str {
    if with_caps() {
        "the example's 5 caps"
    } else {
        "no caps"
    }
}

/// A service with `plugins` airline plugins (and the example's caps, see [`with_caps`]),
/// its sled store and the plugins' files in `dir`.
pub fn service(plugins: usize, dir: &std::path::Path) -> AppState {
    let store = Arc::new(SledStore::open(&dir.join("store")).unwrap());
    service_on(plugins, dir, store)
}

/// [`service`] on `store`.
pub fn service_on(plugins: usize, dir: &std::path::Path, store: Arc<dyn Store>) -> AppState {
    let mut toml = String::from(
        "subject_salt = \"bench\"\n[slate]\ndeadline_ms = 1000\n[limits]\ndeadline_ms = 1000\n[[placement]]\nid = \"app-home\"\nslots = 5\nmax_per_partner = 1\n",
    );
    if with_caps() {
        toml.push_str(CAPS);
    }
    let copies = dir.join("plugins");
    std::fs::create_dir_all(&copies).unwrap();
    for i in 0..plugins {
        let path = copies.join(format!("airline-{i:02}.wasm"));
        std::fs::write(&path, airline_copy(&format!("copy {i}"))).unwrap();
        toml.push_str(&format!(
            "[[partner]]\nid = \"p-{i:02}\"\nallow = [\"tier\", \"affinities\", \"cobrand_holder\"]\nplugin = \"{}\"\n",
            path.display()
        ));
    }
    let config = Config::parse(
        &toml,
        Vec::<(String, String)>::new(),
        std::path::Path::new("/"),
    )
    .unwrap();
    offerhost::server::build(config, store, Arc::new(SystemClock)).unwrap()
}

/// The airline example with a custom section named `name` at its end: a different
/// component that behaves the same.
fn airline_copy(name: &str) -> Vec<u8> {
    assert!(name.len() < 127, "one-byte LEB128 sizes only");
    let mut bytes = offerhost_plugin_artifacts::AIRLINE.bytes.to_vec();
    // Section id 0 (custom), the section's size, then its name, size first.
    bytes.extend([0, name.len() as u8 + 1, name.len() as u8]);
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

/// A slate request for a high-value traveller (every airline copy bids).
pub fn request(subject: &str) -> SlateRequest {
    serde_json::from_value(serde_json::json!({
        "placement": "app-home",
        "subject": subject,
        "profile": {
            "tier": "high-value",
            "category_spend_share": {"travel": 0.6, "dining": 0.2},
            "cobrand_cards": ["p-00"],
            "marketing_consent": true
        }
    }))
    .unwrap()
}

/// [`core_round_trip_ns`] for a table: `65 ns`, or `n/a`.
pub fn core_round_trip() -> String {
    core_round_trip_ns().map_or("n/a".to_string(), |ns| format!("{ns:.0} ns"))
}

/// How long one cache line takes to go from this thread's core to another thread's core
/// and back, in nanoseconds (the mean of many exchanges): the price of every piece of data
/// the two cores of a split slate share. On a virtual machine it depends on where the host
/// has placed the vCPUs, and can change while the benches run. `None` with fewer than two
/// cores, or when the other thread gets no core of its own within a second.
pub fn core_round_trip_ns() -> Option<f64> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    const WARM_UP: u64 = 1_000;
    const ROUNDS: u64 = 50_000;
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    // Odd: this thread's turn is done, the other's is due; even: the other way round.
    let turn = Arc::new(AtomicU64::new(0));
    let abandon = Arc::new(AtomicBool::new(false));
    // Waits until `turn` is `want`; false once the exchange is abandoned.
    let wait = move |turn: &AtomicU64, abandon: &AtomicBool, want: u64| -> bool {
        let mut spins = 0u32;
        while turn.load(Ordering::Acquire) != want {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096)
                && (abandon.load(Ordering::Relaxed) || Instant::now() > deadline)
            {
                abandon.store(true, Ordering::Relaxed);
                return false;
            }
        }
        true
    };
    let other = {
        let (turn, abandon) = (turn.clone(), abandon.clone());
        std::thread::spawn(move || {
            for i in 0..WARM_UP + ROUNDS {
                if !wait(&turn, &abandon, 2 * i + 1) {
                    return;
                }
                turn.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let mut timed_from = Instant::now();
    let mut done = true;
    for i in 0..WARM_UP + ROUNDS {
        if i == WARM_UP {
            timed_from = Instant::now();
        }
        turn.store(2 * i + 1, Ordering::Release);
        if !wait(&turn, &abandon, 2 * i + 2) {
            done = false;
            break;
        }
    }
    let elapsed = timed_from.elapsed();
    other.join().ok()?;
    done.then(|| elapsed.as_nanos() as f64 / ROUNDS as f64)
}
