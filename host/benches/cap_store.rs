//! Cap reads and writes on the two store backends, side by side: sled (embedded) and
//! Redis (a `redis-server` this bench starts on a free loopback port; it must be on
//! PATH).
//!
//! `cargo bench -p offerhost --bench cap_store`

mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use offerhost::slate::caps::Retention;
use offerhost::store::{RedisStore, SledStore, Store, SubjectKey};

/// What each recorded event is, as the service describes an app's impression.
const IMPRESSION: &str = "impression p/offer";

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, url) = redis_server::start();
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
        // What a slate on Redis reads before its plugins run: the profile and the
        // record in one go (one round trip); against the profile, then the counters its
        // offers touch by key (two), as before `offerhost store upgrade`. (On sled the
        // record is read after the plugins; the rows are there for comparison.)
        let profile = offerhost::slate::profile::Profile {
            marketing_consent: true,
            ..Default::default()
        };
        store.put_profiles(&[(subject.clone(), profile)]).unwrap();
        if store.cap_record(&subject).is_some() {
            group.bench_function(format!("{name}/profile_with_record"), |b| {
                b.iter(|| {
                    let reads = store.slate_reads(&subject, true, true);
                    assert!(reads.profile.unwrap().unwrap().is_some());
                    reads.caps.unwrap().unwrap()
                })
            });
        }
        group.bench_function(format!("{name}/profile_then_13_counters"), |b| {
            b.iter(|| {
                assert!(store.profile(&subject).unwrap().is_some());
                store.cap_histories(&subject, &keys, false).unwrap()
            })
        });
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
