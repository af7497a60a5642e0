//! One suite, every backend: sled (embedded), Redis (a real server) and Redis Cluster
//! (three real nodes).

use std::sync::Arc;

use offerhost::slate::caps::{Retention, Window};
use offerhost::slate::profile::Profile;
use offerhost::store::{
    RedisStore, Reservation, ServedOffer, SlateRecord, SledStore, Store, SubjectKey,
};
use offerhost_tests::{redis_cluster_url, redis_url, unique_prefix};

fn backends(name: &str) -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let redis: Arc<dyn Store> =
        Arc::new(RedisStore::open(&redis_url(), &unique_prefix(name)).unwrap());
    let cluster: Arc<dyn Store> =
        Arc::new(RedisStore::open(&redis_cluster_url(), &unique_prefix(name)).unwrap());
    vec![
        ("sled", sled, Some(dir)),
        ("redis", redis, None),
        ("redis-cluster", cluster, None),
    ]
}

const RETAIN: Retention = Retention {
    seconds: 3600,
    count: 10,
};

fn subject(s: &str) -> SubjectKey {
    SubjectKey::new("salt", s)
}

#[test]
fn profiles_and_slates() {
    for (name, store, _dir) in backends("profiles") {
        let alice = subject("alice");
        assert_eq!(store.profile(&alice).unwrap(), None, "{name}");
        let p = Profile {
            purchases_90d: Some(7),
            marketing_consent: true,
            ..Profile::default()
        };
        store.put_profiles(&[(alice.clone(), p.clone())]).unwrap();
        assert_eq!(store.profile(&alice).unwrap(), Some(p.clone()), "{name}");

        // Nothing to write is not an error on any backend.
        store.put_profiles(&[]).unwrap();
        store.add_counters(&[]).unwrap();

        // One bulk load of many subjects: on a cluster their keys hash to every node.
        let many: Vec<(SubjectKey, Profile)> = (0..50)
            .map(|i| {
                let profile = Profile {
                    purchases_90d: Some(i),
                    ..p.clone()
                };
                (subject(&format!("bulk-{i}")), profile)
            })
            .collect();
        store.put_profiles(&many).unwrap();
        for (who, profile) in &many {
            assert_eq!(
                store.profile(who).unwrap().as_ref(),
                Some(profile),
                "{name}"
            );
        }

        let record = SlateRecord {
            slate_id: "sl_1".into(),
            subject: alice.clone(),
            placement: "app-home".into(),
            served_at: 1000,
            expires_at: 2000,
            offers: vec![ServedOffer {
                partner: "p".into(),
                plugin: "x".into(),
                plugin_version: "1.0.0".into(),
                offer_id: "o".into(),
                category: "travel".into(),
                value_minor: 10,
                arm: "1.0.0|active|-".into(),
            }],
            tier: "high-value".into(),
            stage: "spending".into(),
        };
        store.save_slate(&record).unwrap();
        assert_eq!(
            store.slate("sl_1", 1500).unwrap(),
            Some(record.clone()),
            "{name}"
        );
        assert_eq!(store.slate("sl_1", 2000).unwrap(), None, "{name}: expired");
        assert_eq!(store.slate("nope", 1500).unwrap(), None, "{name}");
        store.ping().unwrap();
    }
}

/// The answer for an event id recorded before as `what`.
fn seen(what: &str) -> Reservation {
    Reservation::Seen {
        what: what.to_string(),
    }
}

#[test]
fn events_count_once_and_histories_follow_windows() {
    for (name, store, _dir) in backends("events") {
        let s = subject("bob");
        let keys = vec!["offer:p/o".to_string(), "slate".to_string()];
        assert_eq!(
            store
                .record_event("e1", "ev", &s, &keys, 1000, RETAIN)
                .unwrap(),
            Reservation::Made,
            "{name}"
        );
        assert_eq!(
            store
                .record_event("e1", "ev", &s, &keys, 1001, RETAIN)
                .unwrap(),
            seen("ev"),
            "{name}"
        );
        assert_eq!(
            store
                .record_event("e2", "ev", &s, &keys[..1], 1500, RETAIN)
                .unwrap(),
            Reservation::Made,
            "{name}"
        );
        // The id again for another event: nothing counted, and the answer says what the
        // id was first recorded as.
        assert_eq!(
            store
                .record_event("e1", "click p/o", &s, &keys, 1002, RETAIN)
                .unwrap(),
            seen("ev"),
            "{name}"
        );
        let h = store.cap_histories(&s, &keys, true).unwrap();
        assert_eq!(h[0].lifetime, 2, "{name}");
        assert_eq!(h[0].recent, vec![1000, 1500], "{name}");
        assert_eq!(h[1].lifetime, 1, "{name}");
        assert_eq!(h[0].count(Window::Minutes(10), 1500), 2, "{name}");
        assert_eq!(h[0].count(Window::Minutes(10), 1700), 1, "{name}");
        // Older than the retention window: trimmed on the next write.
        store
            .record_event("e3", "ev", &s, &keys[..1], 1000 + 3600 + 1, RETAIN)
            .unwrap();
        let h = store.cap_histories(&s, &keys[..1], true).unwrap();
        assert_eq!(h[0].recent, vec![1500, 4601], "{name}");
        assert_eq!(h[0].lifetime, 3, "{name}");
        // Unknown counters are empty, not errors.
        assert_eq!(
            store
                .cap_histories(&subject("nobody"), &keys, true)
                .unwrap()[0]
                .lifetime,
            0,
            "{name}"
        );
    }
}

/// An event id recorded by an earlier version (Redis: a marker holding the time alone)
/// is still seen, as nothing in particular, so it stays a duplicate.
#[test]
fn event_ids_recorded_by_earlier_versions_stay_duplicates_on_redis() {
    let prefix = unique_prefix("old-events");
    let store = RedisStore::open(&redis_url(), &prefix).unwrap();
    let s = subject("erin");
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = format!("{prefix}event:{{{}}}|old", s.0);
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("1000")
        .query(&mut redis)
        .unwrap();
    assert_eq!(
        store
            .record_event("old", "click p/o", &s, &[], 2_000, RETAIN)
            .unwrap(),
        seen("")
    );
    // And a new one is stored with what it is.
    assert_eq!(
        store
            .record_event("new", "click p/o", &s, &[], 2_000, RETAIN)
            .unwrap(),
        Reservation::Made
    );
    assert_eq!(
        store
            .record_event("new", "ev", &s, &[], 2_001, RETAIN)
            .unwrap(),
        seen("click p/o")
    );
}

#[test]
fn counter_buckets_expire_at_their_time_on_redis() {
    use offerhost::store::CounterAdd;
    let prefix = unique_prefix("bucket-ttl");
    let store = RedisStore::open(&redis_url(), &prefix).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    store
        .add_counters(&[CounterAdd {
            bucket: "agg|2001-02-03".into(),
            row: "r".into(),
            fields: vec![("served".into(), 1)],
            members: vec!["s1".into()],
            expires_at: Some(now + 3600),
        }])
        .unwrap();
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    for key in ["", ":r", ":r:m"] {
        let key = format!("{prefix}ctr:{{agg|2001-02-03}}{key}");
        // TTL, not EXPIRETIME, which needs Redis 7: the distributions' packages vary.
        let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut redis).unwrap();
        assert!((3590..=3600).contains(&ttl), "{key}: ttl {ttl}");
    }
}

#[test]
fn concurrent_increments_are_exact() {
    for (name, store, _dir) in backends("concurrent") {
        let s = subject("carol");
        let keys = vec!["partner:p".to_string()];
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                let s = s.clone();
                let keys = keys.clone();
                std::thread::spawn(move || {
                    let mut new = 0;
                    for i in 0..50 {
                        // Every event is sent twice, from two threads' point of view.
                        for id in [format!("t{t}-e{i}"), format!("t{t}-e{i}")] {
                            if store
                                .record_event(
                                    &id,
                                    "ev",
                                    &s,
                                    &keys,
                                    2000 + i,
                                    Retention {
                                        seconds: 3600,
                                        count: 1000,
                                    },
                                )
                                .unwrap()
                                == Reservation::Made
                            {
                                new += 1;
                            }
                        }
                    }
                    new
                })
            })
            .collect();
        let new: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(new, 400, "{name}");
        let h = store.cap_histories(&s, &keys, true).unwrap();
        assert_eq!(h[0].lifetime, 400, "{name}: no lost or double counts");
        assert_eq!(h[0].recent.len(), 400, "{name}");
    }
}

/// A counter with no impression inside the longest window for a while still counts for
/// lifetime caps, and counts on from its total when it is shown again.
#[test]
fn quiet_counters_keep_their_lifetime_totals() {
    for (name, store, _dir) in backends("quiet") {
        let s = subject("erin");
        let offer = "offer:p/o".to_string();
        let keys = vec![offer.clone(), "slate".to_string()];
        store
            .record_event("q1", "ev", &s, &keys, 1000, RETAIN)
            .unwrap();
        store
            .record_event("q2", "ev", &s, &keys, 1010, RETAIN)
            .unwrap();
        // Past the longest window (an hour) for the offer; the slate counter goes on.
        let later = 1010 + 3600 + 1;
        store
            .record_event("q3", "ev", &s, &keys[1..], later, RETAIN)
            .unwrap();
        let h = store.cap_histories(&s, &keys, true).unwrap();
        assert_eq!(h[0].lifetime, 2, "{name}: the quiet offer's total");
        assert_eq!(h[0].count(Window::Hours(1), later), 0, "{name}");
        assert_eq!(h[1].lifetime, 3, "{name}");
        assert_eq!(h[1].count(Window::Hours(1), later), 1, "{name}");
        // Without lifetime totals the windows still count right.
        let h = store.cap_histories(&s, &keys, false).unwrap();
        assert_eq!(h[0].count(Window::Hours(1), later), 0, "{name}");
        assert_eq!(h[1].count(Window::Hours(1), later), 1, "{name}");

        // A lifetime cap of 2 on the offer holds; a window cap lets it through.
        let ever = vec![(offer.clone(), None, 2u32)];
        let hourly = vec![(offer.clone(), Some(3600u64), 2u32)];
        let reserve = |id: &str, limits: &[(String, Option<u64>, u32)]| {
            store
                .try_reserve(id, "r", &s, limits, &keys, later + 5, RETAIN)
                .unwrap()
        };
        assert_eq!(reserve("q4", &ever), Reservation::Capped, "{name}");
        assert_eq!(reserve("q5", &hourly), Reservation::Made, "{name}");
        let h = store.cap_histories(&s, &keys, true).unwrap();
        assert_eq!(h[0].lifetime, 3, "{name}: counted on from the total");
        assert_eq!(h[0].count(Window::Hours(1), later + 5), 1, "{name}");
        assert_eq!(h[1].lifetime, 4, "{name}");
    }
}

#[test]
fn reservations_never_overshoot_under_concurrency() {
    for (name, store, _dir) in backends("reserve") {
        let s = subject("dave");
        let keys = vec!["offer:p/o".to_string(), "slate".to_string()];
        let limits = vec![("offer:p/o".to_string(), Some(86_400u64), 5u32)];
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (store, s, keys, limits) =
                    (store.clone(), s.clone(), keys.clone(), limits.clone());
                std::thread::spawn(move || {
                    (0..20)
                        .filter(|i| {
                            store
                                .try_reserve(
                                    &format!("r{t}-{i}"),
                                    "r",
                                    &s,
                                    &limits,
                                    &keys,
                                    5000,
                                    RETAIN,
                                )
                                .unwrap()
                                == Reservation::Made
                        })
                        .count()
                })
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted, 5, "{name}");
        assert_eq!(
            store.cap_histories(&s, &keys, true).unwrap()[0].lifetime,
            5,
            "{name}"
        );
        // A lifetime limit is checked against the lifetime count.
        let lifetime = vec![("slate".to_string(), None, 5u32)];
        assert_eq!(
            store
                .try_reserve("r-x", "r", &s, &lifetime, &keys, 90_000, RETAIN)
                .unwrap(),
            Reservation::Capped,
            "{name}"
        );
    }
}

#[test]
fn registry_commits_are_compare_and_set_with_audit() {
    for (name, store, _dir) in backends("registry") {
        assert_eq!(store.registry().unwrap(), (0, None), "{name}");
        let blobs = vec![("wasm/abc".to_string(), vec![1u8, 2, 3])];
        assert!(
            store
                .commit_registry(0, b"doc-1", b"audit-1", &blobs)
                .unwrap(),
            "{name}"
        );
        assert!(
            !store.commit_registry(0, b"doc-x", b"audit-x", &[]).unwrap(),
            "{name}: stale revision loses"
        );
        assert!(
            store.commit_registry(1, b"doc-2", b"audit-2", &[]).unwrap(),
            "{name}"
        );
        assert_eq!(
            store.registry().unwrap(),
            (2, Some(b"doc-2".to_vec())),
            "{name}"
        );
        assert_eq!(
            store.blob("wasm/abc").unwrap(),
            Some(vec![1, 2, 3]),
            "{name}"
        );
        assert_eq!(store.blob("wasm/none").unwrap(), None, "{name}");
        store.put_blob("cwasm/abc", b"native").unwrap();
        assert_eq!(
            store.blob("cwasm/abc").unwrap(),
            Some(b"native".to_vec()),
            "{name}"
        );
        // A secret created once: racing writers all get the first one stored.
        let racers: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || store.put_blob_if_absent("secret", &[i; 32]).unwrap())
            })
            .collect();
        let kept: Vec<Vec<u8>> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(kept.iter().all(|k| *k == kept[0]), "{name}: {kept:?}");
        assert_eq!(
            store.blob("secret").unwrap(),
            Some(kept[0].clone()),
            "{name}"
        );
        assert_eq!(
            store.put_blob_if_absent("secret", b"later").unwrap(),
            kept[0],
            "{name}: the first one stays"
        );
        let audit = store.audit(0, 10).unwrap();
        assert_eq!(audit.len(), 2, "{name}");
        assert_eq!(audit[1].1, b"audit-2".to_vec(), "{name}");
        assert!(audit[0].0 < audit[1].0, "{name}: ordered");
        assert_eq!(
            store.audit(audit[0].0, 10).unwrap().len(),
            1,
            "{name}: after"
        );

        // Racing writers: exactly one wins each revision.
        let winners: usize = (0..6)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .commit_registry(2, format!("doc-r{i}").as_bytes(), b"a", &[])
                        .unwrap() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1, "{name}");
    }
}

#[test]
fn sweeping_forgets_expired_slates_and_old_event_ids() {
    for (name, store, _dir) in backends("sweep") {
        let s = subject("erin");
        let record = |id: &str, expires_at| SlateRecord {
            slate_id: id.into(),
            subject: s.clone(),
            placement: "app-home".into(),
            served_at: 0,
            expires_at,
            offers: vec![],
            tier: "unknown".into(),
            stage: "unknown".into(),
        };
        store.save_slate(&record("old", 1_000)).unwrap();
        store.save_slate(&record("live", 90_000_000)).unwrap();
        store
            .record_event("ancient", "ev", &s, &[], 1_000, RETAIN)
            .unwrap();
        let now = 1_000 + offerhost::store::EVENT_MEMORY_SECS + 1;
        store
            .record_event("recent", "ev", &s, &[], now, RETAIN)
            .unwrap();
        let removed = store.sweep(now).unwrap();
        assert_eq!(
            store.slate("live", now).unwrap().map(|r| r.slate_id),
            Some("live".into()),
            "{name}"
        );
        assert_eq!(store.slate("old", now).unwrap(), None, "{name}");
        // The recent event id is still remembered.
        assert_eq!(
            store
                .record_event("recent", "ev", &s, &[], now, RETAIN)
                .unwrap(),
            seen("ev"),
            "{name}"
        );
        if name == "sled" {
            // Redis expires both by TTL; sled removes them here, so even an earlier
            // clock no longer finds the slate.
            assert_eq!(store.slate("old", 500).unwrap(), None, "{name}");
            assert_eq!(removed, 2, "{name}: one slate and one event id");
            assert_eq!(
                store
                    .record_event("ancient", "ev", &s, &[], now, RETAIN)
                    .unwrap(),
                Reservation::Made,
                "{name}"
            );
        }
    }
}

#[test]
fn counters_add_atomically_and_count_distinct_members() {
    use offerhost::store::CounterAdd;
    for (name, store, _dir) in backends("counters") {
        let add = |row: &str, n: u64, member: &str| CounterAdd {
            bucket: "agg|2026-06-05".into(),
            row: row.into(),
            fields: vec![("served".into(), n), ("clicks".into(), 1)],
            members: vec![member.into()],
            expires_at: None,
        };
        // Eight writers add to the same two rows at once, as replicas would.
        std::thread::scope(|scope| {
            for t in 0..8 {
                let store = store.clone();
                scope.spawn(move || {
                    for i in 0..50 {
                        let member = format!("s{}", (t * 50 + i) % 30);
                        store
                            .add_counters(&[add("a|x", 2, &member), add("b|y", 1, "only")])
                            .unwrap();
                    }
                });
            }
        });
        // Other buckets stay apart, also when one batch writes to several (on a
        // cluster, buckets live on different nodes).
        let other_bucket = |bucket: &str, n: u64| CounterAdd {
            bucket: bucket.into(),
            row: "a|x".into(),
            fields: vec![("served".into(), n)],
            members: vec![],
            expires_at: None,
        };
        let days: Vec<CounterAdd> = (7..=20)
            .map(|d| other_bucket(&format!("agg|2026-06-{d:02}"), d))
            .collect();
        store
            .add_counters(&[vec![other_bucket("agg|2026-06-06", 5)], days].concat())
            .unwrap();
        for d in 7..=20u64 {
            let rows = store
                .counters(&format!("agg|2026-06-{d:02}"), false)
                .unwrap();
            assert_eq!(rows.len(), 1, "{name}");
            assert_eq!(rows[0].fields["served"], d, "{name}");
        }
        let mut rows = store.counters("agg|2026-06-05", true).unwrap();
        rows.sort_by(|a, b| a.row.cmp(&b.row));
        assert_eq!(rows.len(), 2, "{name}");
        assert_eq!(rows[0].row, "a|x", "{name}");
        assert_eq!(
            rows[0].fields["served"], 800,
            "{name}: lost or doubled increments"
        );
        assert_eq!(rows[0].fields["clicks"], 400, "{name}");
        assert_eq!(rows[0].members.len(), 30, "{name}: members are a set");
        assert_eq!(rows[1].fields["served"], 400, "{name}");
        assert_eq!(rows[1].members, vec!["only".to_string()], "{name}");
        let without = store.counters("agg|2026-06-05", false).unwrap();
        assert!(without.iter().all(|r| r.members.is_empty()), "{name}");
        let other = store.counters("agg|2026-06-06", false).unwrap();
        assert_eq!(other.len(), 1, "{name}");
        assert_eq!(other[0].fields["served"], 5, "{name}");
        assert!(
            store.counters("agg|1999-01-01", true).unwrap().is_empty(),
            "{name}"
        );
    }
}

#[test]
fn counter_buckets_expire_whole() {
    use offerhost::store::CounterAdd;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let add = |bucket: &str, expires_at: Option<u64>, members: &[&str]| CounterAdd {
        bucket: bucket.into(),
        row: "a|x".into(),
        fields: vec![("served".into(), 3)],
        members: members.iter().map(|m| m.to_string()).collect(),
        expires_at,
    };
    for (name, store, _dir) in backends("expiry") {
        store
            .add_counters(&[
                add("agg|2001-01-01", Some(now - 1), &["s1", "s2"]),
                add("agg|2001-01-02", Some(now + 3600), &["s1"]),
                add("agg|2001-01-03", None, &["s3"]),
            ])
            .unwrap();
        // Redis drops the first at once (its time is past); sled at the sweep.
        let removed = store.sweep(now).unwrap();
        if name == "sled" {
            assert_eq!(removed, 1, "{name}: one row of one bucket");
        }
        assert_eq!(
            store.counters("agg|2001-01-01", true).unwrap(),
            vec![],
            "{name}"
        );
        for (bucket, members) in [("agg|2001-01-02", ["s1"]), ("agg|2001-01-03", ["s3"])] {
            let rows = store.counters(bucket, true).unwrap();
            assert_eq!(rows.len(), 1, "{name}: {bucket}");
            assert_eq!(rows[0].fields["served"], 3, "{name}: {bucket}");
            assert_eq!(rows[0].members, members, "{name}: {bucket}");
        }
        // Its members went with it: the row written again starts from nothing.
        store
            .add_counters(&[add("agg|2001-01-01", None, &[])])
            .unwrap();
        let rows = store.counters("agg|2001-01-01", true).unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        assert_eq!(rows[0].fields["served"], 3, "{name}");
        assert!(rows[0].members.is_empty(), "{name}: {:?}", rows[0].members);
        // A sweep before a bucket's time keeps it.
        store.sweep(now + 60).unwrap();
        assert_eq!(
            store.counters("agg|2001-01-02", false).unwrap().len(),
            1,
            "{name}"
        );
    }
}

/// A subject's record holds what reading its counters by key finds, on every backend,
/// and a slate's reads bring it together with the profile.
#[test]
fn records_hold_what_reading_by_key_finds() {
    for (name, store, _dir) in backends("records") {
        let s = subject("fay");
        let keys = ["category:travel", "offer:p/o", "offer:p/o2", "slate"].map(String::from);
        store
            .record_event("r1", "ev", &s, &keys[1..], 1000, RETAIN)
            .unwrap();
        store
            .record_event("r2", "ev", &s, &[keys[1].clone()], 1200, RETAIN)
            .unwrap();
        // A reservation under a limit (how a slate counts on serve) lists what it counts
        // just as one without does.
        let limit = [(keys[0].clone(), Some(3600), 5)];
        let made = store
            .try_reserve("r3", "r", &s, &limit, &keys[..1], 1300, RETAIN)
            .unwrap();
        assert_eq!(made, Reservation::Made, "{name}");
        let record = store
            .cap_record(&s)
            .unwrap_or_else(|| panic!("{name} keeps records"))
            .unwrap();
        let histories = store.cap_histories(&s, &keys, false).unwrap();
        let by_key: Vec<(&str, &[u64])> = (keys.iter().zip(&histories))
            .map(|(k, h)| (k.as_str(), h.recent.as_slice()))
            .collect();
        let in_record: Vec<(&str, &[u64])> = (record.iter())
            .map(|(k, h)| (k.as_str(), h.recent.as_slice()))
            .collect();
        assert_eq!(in_record, by_key, "{name}");
        assert_eq!(
            in_record[1],
            ("offer:p/o", &[1000, 1200][..]),
            "{name}: sorted by key, times in order"
        );

        let p = Profile {
            marketing_consent: true,
            ..Profile::default()
        };
        store.put_profiles(&[(s.clone(), p.clone())]).unwrap();
        let reads = store.slate_reads(&s, true, true);
        assert_eq!(reads.profile.unwrap().unwrap(), Some(p), "{name}");
        assert_eq!(reads.caps.unwrap().unwrap(), record, "{name}");
        let reads = store.slate_reads(&s, false, true);
        assert!(reads.profile.is_none(), "{name}: not asked for");
        assert_eq!(reads.caps.unwrap().unwrap().len(), 4, "{name}");
        // A subject with nothing stored.
        let reads = store.slate_reads(&subject("nobody"), true, true);
        assert_eq!(reads.profile.unwrap().unwrap(), None, "{name}");
        assert_eq!(reads.caps.unwrap().unwrap(), Vec::new(), "{name}");
        assert!(store.slate_reads(&s, true, false).caps.is_none(), "{name}");
    }
}

/// A raw connection to a test server or cluster, to write what an earlier version did.
fn raw(url: &str) -> Box<dyn redis::ConnectionLike> {
    match url.strip_prefix("redis-cluster://") {
        Some(nodes) => {
            let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
            let client = redis::cluster::ClusterClient::new(nodes).unwrap();
            Box::new(client.get_connection().unwrap())
        }
        None => Box::new(redis::Client::open(url).unwrap().get_connection().unwrap()),
    }
}

/// On a Redis store written by an earlier version, counters are not listed: slates read
/// them by key until `upgrade` lists them, and then read each subject's record, which
/// holds the earlier counters with the new ones. Replicas opened before learn of it at
/// their next read.
#[test]
fn counters_from_earlier_versions_are_listed_by_the_upgrade() {
    for url in [redis_url(), redis_cluster_url()] {
        let prefix = unique_prefix("upgrade");
        let mut redis = raw(&url);
        let (s1, s2) = (subject("gus"), subject("hal"));
        // An earlier version: a registry revision, and counters with no list.
        let () = redis::cmd("SET")
            .arg(format!("{prefix}{{registry}}:rev"))
            .arg(1)
            .query(&mut *redis)
            .unwrap();
        for (who, key, times) in [
            (&s1, "offer:p/o", &[1000u64, 1100][..]),
            (&s1, "slate", &[1100][..]),
            (&s2, "partner:q", &[900][..]),
        ] {
            let set = format!("{prefix}cap:{{{}}}|{key}:t", who.0);
            for t in times {
                let () = redis::cmd("ZADD")
                    .arg(&set)
                    .arg(t)
                    .arg(format!("old-{t}"))
                    .query(&mut *redis)
                    .unwrap();
            }
            let () = redis::cmd("EXPIRE")
                .arg(&set)
                .arg(3660)
                .query(&mut *redis)
                .unwrap();
        }
        let store = RedisStore::open(&url, &prefix).unwrap();
        let replica = RedisStore::open(&url, &prefix).unwrap();
        assert!(!store.counters_listed(), "{url}");
        assert!(
            store.cap_record(&s1).is_none(),
            "{url}: read by key until then"
        );
        assert!(replica.slate_reads(&s1, true, true).caps.is_none(), "{url}");
        // This version lists what it counts meanwhile.
        store
            .record_event("new", "ev", &s1, &["partner:p".into()], 1200, RETAIN)
            .unwrap();

        let mut progress = Vec::new();
        let looked_at = store.upgrade(&mut |n| progress.push(n)).unwrap();
        assert_eq!(
            looked_at, 4,
            "{url}: three earlier counters and the new one"
        );
        assert_eq!(progress.last(), Some(&4), "{url}");
        assert!(store.counters_listed(), "{url}");
        let recent = |record: Vec<(String, offerhost::slate::caps::CapHistory)>| {
            (record.into_iter())
                .map(|(k, h)| (k, h.recent))
                .collect::<Vec<_>>()
        };
        let expected = vec![
            ("offer:p/o".to_string(), vec![1000, 1100]),
            ("partner:p".to_string(), vec![1200]),
            ("slate".to_string(), vec![1100]),
        ];
        let record = store.cap_record(&s1).unwrap().unwrap();
        assert_eq!(recent(record), expected, "{url}");
        let record = store.cap_record(&s2).unwrap().unwrap();
        assert_eq!(
            recent(record),
            vec![("partner:q".to_string(), vec![900])],
            "{url}"
        );
        // The list expires with the counters it lists.
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{prefix}cap:{{{}}}:keys", s2.0))
            .query(&mut *redis)
            .unwrap();
        assert!((3000..=3660).contains(&ttl), "{url}: ttl {ttl}");

        // The replica opened before reads by key until one of its slates looks for the
        // marker (at most every half second), and reads the record from the next one.
        let since = std::time::Instant::now();
        let reads = loop {
            let reads = replica.slate_reads(&s1, true, true);
            if reads.caps.is_some() {
                break reads;
            }
            assert!(
                since.elapsed() < std::time::Duration::from_secs(2),
                "{url}: the replica did not learn of the upgrade"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(recent(reads.caps.unwrap().unwrap()), expected, "{url}");
        // Once more changes nothing.
        assert_eq!(store.upgrade(&mut |_| {}).unwrap(), 4, "{url}");
        let record = store.cap_record(&s1).unwrap().unwrap();
        assert_eq!(recent(record), expected, "{url}");
        // A new store starts listed.
        let fresh = RedisStore::open(&url, &unique_prefix("fresh")).unwrap();
        assert!(fresh.counters_listed(), "{url}");
    }
}

/// Until it knows the store is upgraded, a replica's capped slates look for the
/// upgrade's marker at most once per half second, not each: every such look reads the
/// one `{registry}` slot. Counted on the server with MONITOR, which sees every command.
#[test]
fn replicas_look_for_the_upgrade_marker_at_most_twice_a_second() {
    let url = redis_url();
    let prefix = unique_prefix("marker");
    let marker = format!("{prefix}{{registry}}:caps-listed");
    let done = format!("{prefix}done");
    let mut redis = raw(&url);
    // Written by an earlier version: a registry revision, no marker.
    let () = redis::cmd("SET")
        .arg(format!("{prefix}{{registry}}:rev"))
        .arg(1)
        .query(&mut *redis)
        .unwrap();

    let mut monitor = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    monitor
        .send_packed_command(&redis::cmd("MONITOR").get_packed_command())
        .unwrap();
    assert_eq!(monitor.recv_response().unwrap(), redis::Value::Okay);
    // A lost line fails the test rather than hanging it.
    monitor
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let (marker_line, done_line) = (format!("\"GET\" \"{marker}\""), format!("\"{done}\""));
    // The slates' lookups of the marker (opening the store looks once more, in a
    // script), until the test's last command goes by.
    let looks = std::thread::spawn(move || {
        let mut looks = 0;
        loop {
            let line: String = redis::from_redis_value(monitor.recv_response().unwrap()).unwrap();
            if line.contains(&done_line) {
                return looks;
            }
            looks += line.contains(&marker_line) as u32;
        }
    });

    // Before the store's own clock starts, for the bound on looks; after, for how long
    // slates run, so that two looks fall due whatever opening took (and a throttle that
    // looked once and never again would fail).
    let since = std::time::Instant::now();
    let replica = RedisStore::open(&url, &prefix).unwrap();
    let opened = std::time::Instant::now();
    assert!(!replica.counters_listed());
    let who = subject("kit");
    let mut slates = 0u32;
    while opened.elapsed() < std::time::Duration::from_millis(2300) {
        // What a capped slate reads, its profile sent with the request.
        assert!(replica.slate_reads(&who, false, true).caps.is_none());
        slates += 1;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let elapsed_ms = since.elapsed().as_millis() as u32;
    let _: Option<String> = redis::cmd("GET").arg(&done).query(&mut *redis).unwrap();
    let looks = looks.join().unwrap();
    // The first look is due half a second after the store opened, each next one half a
    // second after the last.
    assert!(
        (2..=elapsed_ms / 500).contains(&looks),
        "{looks} looks for the marker in {elapsed_ms} ms ({slates} slates)"
    );
    assert!(slates > 10 * looks, "{slates} slates, {looks} looks");
    assert!(!replica.counters_listed());
}

/// A replica whose clock is behind never lowers when a counter was last seen: the
/// subject's record keeps the counter for as long as its recent impressions are kept.
#[test]
fn a_late_clock_does_not_drop_a_counter_from_the_record() {
    for (name, store, _dir) in backends("late-clock") {
        let s = subject("ivy");
        let (a, b) = ("offer:p/a".to_string(), "offer:p/b".to_string());
        store
            .record_event("e1", "ev", &s, std::slice::from_ref(&a), 5000, RETAIN)
            .unwrap();
        // Another replica, its clock 1000 s behind, counts the same offer.
        store
            .record_event("e2", "ev", &s, std::slice::from_ref(&a), 4000, RETAIN)
            .unwrap();
        // Later, past what the behind clock's impression would keep, another offer.
        let later = 4000 + RETAIN.seconds + 100;
        store
            .record_event("e3", "ev", &s, std::slice::from_ref(&b), later, RETAIN)
            .unwrap();
        let record = store.cap_record(&s).unwrap().unwrap();
        let by_key = store
            .cap_histories(&s, &[a.clone(), b.clone()], false)
            .unwrap();
        let in_record: Vec<(&str, &[u64])> = (record.iter())
            .map(|(k, h)| (k.as_str(), h.recent.as_slice()))
            .collect();
        assert!(
            in_record.iter().any(|(k, _)| *k == a),
            "{name}: {a} left the record: {in_record:?}"
        );
        assert_eq!(
            in_record,
            vec![
                (a.as_str(), by_key[0].recent.as_slice()),
                (b.as_str(), by_key[1].recent.as_slice())
            ],
            "{name}"
        );
    }
}

/// A subject's record that the server refuses to read fails the slate's cap check
/// (capped offers are then hidden), not its profile: the slate still has a profile.
#[test]
fn a_record_the_server_refuses_fails_the_caps_not_the_profile() {
    for url in [redis_url(), redis_cluster_url()] {
        let prefix = unique_prefix("refused-record");
        let store = RedisStore::open(&url, &prefix).unwrap();
        assert!(store.counters_listed(), "{url}: a new store is listed");
        let s = subject("jay");
        let p = Profile {
            marketing_consent: true,
            ..Profile::default()
        };
        store.put_profiles(&[(s.clone(), p.clone())]).unwrap();
        // The subject's list of counters is not a sorted set: the record script fails.
        let () = redis::cmd("SET")
            .arg(format!("{prefix}cap:{{{}}}:keys", s.0))
            .arg("not a sorted set")
            .query(&mut *raw(&url))
            .unwrap();
        let reads = store.slate_reads(&s, true, true);
        assert_eq!(reads.profile.unwrap().unwrap(), Some(p), "{url}");
        let e = reads.caps.expect("the record was asked for").unwrap_err();
        assert!(e.to_string().contains("WRONGTYPE"), "{url}: {e}");
    }
}

/// A subject with no impression inside the longest cap window leaves only its lifetime
/// totals once swept (sled; Redis expires the keys itself), and counts on from them.
#[test]
fn sweeping_forgets_quiet_subjects_records_and_keeps_their_totals() {
    for (name, store, _dir) in backends("sweep-caps") {
        let (kim, lee) = (subject("kim"), subject("lee"));
        let keys = ["offer:p/a", "slate"].map(String::from);
        store
            .record_event("k1", "ev", &kim, &keys, 1000, RETAIN)
            .unwrap();
        store
            .record_event("k2", "ev", &kim, &keys[..1], 1100, RETAIN)
            .unwrap();
        let now = 1100 + RETAIN.seconds + 1;
        store
            .record_event("l1", "ev", &lee, &keys[..1], 1000, RETAIN)
            .unwrap();
        store
            .record_event("l2", "ev", &lee, &keys[1..], now - 10, RETAIN)
            .unwrap();

        let removed = store.sweep_caps(now, RETAIN).unwrap();
        let lifetimes = |who: &SubjectKey| -> Vec<u64> {
            (store.cap_histories(who, &keys, true).unwrap().iter())
                .map(|h| h.lifetime)
                .collect()
        };
        assert_eq!(lifetimes(&kim), [2, 1], "{name}: totals kept");
        assert_eq!(lifetimes(&lee), [1, 1], "{name}");
        if name == "sled" {
            assert_eq!(removed, 1, "{name}: only the quiet subject's record");
            let record = store.cap_record(&kim).unwrap().unwrap();
            assert!(record.is_empty(), "{name}: {record:?}");
            // Its last write already moved the counter it had not seen lately out.
            let record = store.cap_record(&lee).unwrap().unwrap();
            let kept: Vec<&str> = record.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                kept,
                ["slate"],
                "{name}: a subject seen lately keeps its record"
            );
        } else {
            assert_eq!(removed, 0, "{name}: keys expire by themselves");
        }
        // The quiet subject comes back: its counts go on from the totals.
        store
            .record_event("k3", "ev", &kim, &keys[..1], now + 5, RETAIN)
            .unwrap();
        assert_eq!(lifetimes(&kim), [3, 1], "{name}");
        let recent = store.cap_histories(&kim, &keys[..1], false).unwrap();
        assert_eq!(recent[0].count_within(Some(3600), now + 5), 1, "{name}");
    }
}
