//! Cap reads and writes on the two store backends, side by side: sled (embedded) and
//! Redis (a `redis-server` this bench starts on a free loopback port; it must be on
//! PATH).
//!
//! `cargo bench -p offerhost --bench cap_store`

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use offerhost::slate::caps::Retention;
use offerhost::store::{RedisStore, SledStore, Store, SubjectKey};

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn start_redis() -> (Redis, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (Redis(child), format!("redis://127.0.0.1:{port}/"))
}

/// What each recorded event is, as the service describes an app's impression.
const IMPRESSION: &str = "impression p/offer";

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, url) = start_redis();
    let backends: Vec<(&str, Arc<dyn Store>)> = vec![
        ("sled", Arc::new(SledStore::open(dir.path()).unwrap())),
        ("redis", Arc::new(RedisStore::open(&url, "bench:").unwrap())),
    ];
    // What one slate with 4 offers reads: their keys at every scope.
    let keys: Vec<String> = (0..4)
        .flat_map(|i| {
            [
                format!("offer:p{i}/o"),
                format!("partner:p{i}"),
                format!("category:c{i}"),
            ]
        })
        .chain(["slate".to_string()])
        .collect();
    let one_offer: Vec<String> = ["offer:p0/o", "partner:p0", "category:c0", "slate"]
        .map(String::from)
        .to_vec();
    let retention = Retention {
        seconds: 7 * 86_400,
        count: 10,
    };
    let subject = SubjectKey::new("salt", "bench-subject");
    // A subject with no impressions yet: every counter read finds nothing.
    let newcomer = SubjectKey::new("salt", "new-subject");
    let n = AtomicU64::new(0);

    let mut group = c.benchmark_group("cap_store");
    for (name, store) in backends {
        for i in 0..5 {
            store
                .record_event(
                    &format!("seed-{i}"),
                    IMPRESSION,
                    &subject,
                    &keys,
                    1000 + i,
                    retention,
                )
                .unwrap();
        }
        group.bench_function(format!("{name}/read_13_counters"), |b| {
            b.iter(|| store.cap_histories(&subject, &keys, false).unwrap())
        });
        group.bench_function(format!("{name}/read_13_counters_of_a_new_subject"), |b| {
            b.iter(|| store.cap_histories(&newcomer, &keys, false).unwrap())
        });
        // How a slate reads them from a store that keeps a subject's counters in one
        // record (sled), when no cap is a lifetime one: the record whole, no keys.
        if store.cap_record(&subject).is_some() {
            group.bench_function(format!("{name}/read_whole_record_13_counters"), |b| {
                b.iter(|| store.cap_record(&subject).unwrap().unwrap())
            });
            group.bench_function(format!("{name}/read_whole_record_of_a_new_subject"), |b| {
                b.iter(|| store.cap_record(&newcomer).unwrap().unwrap())
            });
        }
        // With a lifetime cap, every counter not in the subject's record is looked up
        // on its own: all 13 of a new subject's.
        group.bench_function(
            format!("{name}/read_13_lifetime_totals_of_a_new_subject"),
            |b| b.iter(|| store.cap_histories(&newcomer, &keys, true).unwrap()),
        );
        group.bench_function(format!("{name}/record_impression"), |b| {
            b.iter(|| {
                let i = n.fetch_add(1, Ordering::Relaxed);
                let id = format!("ev-{name}-{i}");
                store
                    .record_event(
                        &id,
                        IMPRESSION,
                        &subject,
                        &one_offer,
                        2000 + i % 100,
                        retention,
                    )
                    .unwrap()
            })
        });
        // Written out and closed before the next backend's turn: sled's write-back
        // thread would otherwise take CPU from it (on 2 cores, from Redis's server).
        store.flush().unwrap();
        drop(store);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
