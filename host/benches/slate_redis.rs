//! A slate on Redis, side by side with the same slate on the embedded store: the 8-plugin
//! service of the `slate` bench under the example's caps, the profile stored (not sent),
//! and the subject already shown the offers of its first slate once each.
//!
//! Three services, measured in turn in one run:
//! - `sled`: the embedded store, for reference;
//! - `redis`: a Redis store this version started, where a slate reads the subject's cap
//!   counters with its profile, in one round trip before the plugins run;
//! - `redis-by-key`: a Redis store as an earlier version left it (before `offerhost store
//!   upgrade`), where a slate reads the profile, and after the plugins the counters its
//!   offers touch, by key: two round trips.
//!
//! `cargo bench -p offerhost --bench slate_redis` (`PLUGINS=4` for another count,
//! `CAPS=0` for no caps, when every slate reads only the profile; a `redis-server` must
//! be on PATH).

mod common;
mod redis_server;

use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion};
use offerhost::api::AppState;
use offerhost::slate::profile::Profile;
use offerhost::slate::{EventRequest, EventType, SlateRequest};
use offerhost::store::{RedisStore, SledStore, Store, SubjectKey};

const SUBJECT: &str = "bench-subject";

fn main() {
    let plugins: usize = std::env::var("PLUGINS")
        .ok()
        .map(|v| v.parse().expect("PLUGINS is a plugin count"))
        .unwrap_or(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_redis, url) = redis_server::start();
    let mut c = Criterion::default().configure_from_args();
    println!(
        "{plugins} plugins, {}; core round trip before: {}",
        common::caps_label(),
        common::core_round_trip()
    );
    for name in ["sled", "redis", "redis-by-key"] {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = match name {
            "sled" => Arc::new(SledStore::open(&dir.path().join("store")).unwrap()),
            "redis" => Arc::new(RedisStore::open(&url, "listed:").unwrap()),
            _ => {
                // A registry revision and no marker: what an earlier version leaves.
                let mut raw = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let () = redis::cmd("SET")
                    .arg("by-key:{registry}:rev")
                    .arg(1)
                    .query(&mut raw)
                    .unwrap();
                let store = RedisStore::open(&url, "by-key:").unwrap();
                assert!(!store.counters_listed());
                Arc::new(store)
            }
        };
        let state = common::service_on(plugins, dir.path(), store);
        rt.block_on(seen_once(&state));
        let mut group = c.benchmark_group("slate_redis");
        group.bench_with_input(BenchmarkId::new(name, plugins), &state, |b, state| {
            b.to_async(&rt).iter_batched(
                request,
                |req| async move {
                    let slate = state.slate(req).await.unwrap();
                    assert!(!slate.offers.is_empty() && slate.warnings.is_empty());
                    slate
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
        state.store().flush().unwrap();
    }
    c.final_summary();
    println!("core round trip after: {}", common::core_round_trip());
}

/// The bench's request: the subject, no profile (the stored one is read).
fn request() -> SlateRequest {
    serde_json::from_value(serde_json::json!({"placement": "app-home", "subject": SUBJECT}))
        .unwrap()
}

/// Stores the subject's profile and reports one impression of each offer of its first
/// slate.
async fn seen_once(state: &AppState) {
    let mut sent = common::request(SUBJECT);
    let profile: Profile = sent.profile.take().unwrap();
    let who = SubjectKey::new("bench", SUBJECT);
    state.store().put_profiles(&[(who, profile)]).unwrap();
    let slate = state.slate(request()).await.unwrap();
    assert!(!slate.offers.is_empty());
    for (i, offer) in slate.offers.iter().enumerate() {
        let ack = state
            .event(EventRequest {
                event_id: format!("seen-{i}"),
                event_type: EventType::Impression,
                slate_id: slate.slate_id.clone(),
                partner: offer.partner.clone(),
                offer_id: offer.offer.id.clone(),
            })
            .unwrap();
        assert_eq!(ack.counted_for_caps, common::with_caps());
    }
}
