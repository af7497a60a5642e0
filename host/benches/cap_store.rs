//! Cap reads and writes on the two store backends, side by side: sled (embedded) and
//! Redis (a `redis-server` this bench starts on a free loopback port; it must be on
//! PATH). After the Redis rows it prints the server's CPU time per operation and the
//! commands it ran for one: what sizes a Redis primary, which serves every replica's
//! slates on one thread. With this bench's one client, each operation also pays the
//! server a wake-up and its socket reads and writes, which a busy server shares out
//! over many clients.
//!
//! `cargo bench -p offerhost --bench cap_store`

mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
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
        // Only Redis rows are timed on the server too.
        let mut rows = Rows {
            server: (name == "redis").then(|| redis::Client::open(url.as_str()).unwrap()),
            timed: Vec::new(),
        };
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
        rows.run(&mut group, format!("{name}/read_13_counters"), || {
            store.cap_histories(&subject, &keys, false).unwrap()
        });
        rows.run(
            &mut group,
            format!("{name}/read_13_counters_of_a_new_subject"),
            || store.cap_histories(&newcomer, &keys, false).unwrap(),
        );
        // How a slate reads them from a store that keeps a subject's counters in one
        // record (sled), when no cap is a lifetime one: the record whole, no keys.
        if store.cap_record(&subject).is_some() {
            rows.run(
                &mut group,
                format!("{name}/read_whole_record_13_counters"),
                || store.cap_record(&subject).unwrap().unwrap(),
            );
            rows.run(
                &mut group,
                format!("{name}/read_whole_record_of_a_new_subject"),
                || store.cap_record(&newcomer).unwrap().unwrap(),
            );
        }
        // With a lifetime cap, every counter not in the subject's record is looked up
        // on its own: all 13 of a new subject's.
        rows.run(
            &mut group,
            format!("{name}/read_13_lifetime_totals_of_a_new_subject"),
            || store.cap_histories(&newcomer, &keys, true).unwrap(),
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
            rows.run(&mut group, format!("{name}/profile_with_record"), || {
                let reads = store.slate_reads(&subject, true, true);
                assert!(reads.profile.unwrap().unwrap().is_some());
                reads.caps.unwrap().unwrap()
            });
        }
        rows.run(
            &mut group,
            format!("{name}/profile_then_13_counters"),
            || {
                assert!(store.profile(&subject).unwrap().is_some());
                store.cap_histories(&subject, &keys, false).unwrap()
            },
        );
        rows.run(&mut group, format!("{name}/record_impression"), || {
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
        });
        // Written out and closed before the next backend's turn: sled's write-back
        // thread would otherwise take CPU from it (on 2 cores, from Redis's server).
        store.flush().unwrap();
        drop(store);
        if !rows.timed.is_empty() {
            println!(
                "\n{name}: the server's CPU time per operation (INFO cpu over all of the row's \
                 iterations) and the commands it ran (INFO commandstats; a script's own \
                 commands included):"
            );
            println!("| row | server CPU per operation | commands per operation |");
            println!("|---|---|---|");
            for (row, us, commands) in &rows.timed {
                println!("| {row} | {us:.1} µs | {commands} |");
            }
        }
    }
    group.finish();
}

/// Runs bench rows, and for a Redis store reads what each cost the server.
struct Rows {
    server: Option<redis::Client>,
    /// Row, server CPU microseconds per operation, commands per operation.
    timed: Vec<(String, f64, String)>,
}

/// The server's CPU time so far, user and system, in seconds (`INFO cpu`): its socket
/// work included, which a command's own time (`INFO commandstats`) leaves out.
fn server_cpu(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn).unwrap();
    (info.lines())
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
        .map(|(_, v)| v.trim().parse::<f64>().unwrap())
        .sum()
}

impl Rows {
    fn run<R>(
        &mut self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        row: String,
        mut op: impl FnMut() -> R,
    ) {
        let mut conn = self.server.as_ref().map(|c| c.get_connection().unwrap());
        let before = conn.as_mut().map(|conn| {
            redis::cmd("CONFIG").arg("RESETSTAT").exec(conn).unwrap();
            server_cpu(conn)
        });
        let mut ops = 0u64;
        group.bench_function(&row, |b| {
            b.iter(|| {
                ops += 1;
                op()
            })
        });
        // A row left out by a filter runs nothing.
        let (Some(conn), Some(before)) = (conn.as_mut().filter(|_| ops > 0), before) else {
            return;
        };
        let cpu = server_cpu(conn) - before;
        // Lines like `cmdstat_zrange:calls=12,usec=34,...`, a script's own commands
        // included; the INFO calls are not counted in them yet.
        let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
        let mut commands: Vec<String> = (info.lines())
            .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
            .filter(|(command, _)| !command.starts_with("config") && !command.starts_with("info"))
            .map(|(command, stats)| {
                let calls: u64 = (stats.split(','))
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                format!("{command} {:.2}", calls as f64 / ops as f64)
            })
            .collect();
        commands.sort();
        let row = row
            .split_once('/')
            .map_or(row.as_str(), |(_, r)| r)
            .to_string();
        self.timed
            .push((row, cpu * 1e6 / ops as f64, commands.join(", ")));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
