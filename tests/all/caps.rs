//! Frequency caps: every window kind (moving the clock), every scope, idempotent events,
//! counting on serve, failing closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use offerhost::slate::caps::{CapHistory, CapRecord, Retention};
use offerhost::slate::profile::Profile;
use offerhost::store::{Reservation, SlateRecord, SledStore, Store, StoreError, SubjectKey};
use offerhost_tests::{
    Host, example_config, host_on, host_with_store, offers_of, traveller_profile,
};
use serde_json::{Value, json};

fn with_caps(caps: &str) -> String {
    example_config() + caps
}

async fn traveller_slate(host: &Host) -> Value {
    host.slate(json!({"placement": "app-home", "subject": "cap-subject", "profile": traveller_profile(), "debug": true}))
        .await
}

#[tokio::test]
async fn every_window_kind_expires_exactly_at_its_length() {
    for (window, seconds) in [("30m", 1800), ("2h", 7200), ("1d", 86_400), ("1w", 604_800)] {
        let dir = tempfile::tempdir().unwrap();
        let host = host_on(
            &with_caps(&format!(
                "[[cap]]\nscope = \"offer\"\nmax = 1\nwindow = \"{window}\"\n"
            )),
            dir.path(),
        );
        let first = traveller_slate(&host).await;
        assert_eq!(first["offers"][0]["partner"], "skyways", "{window}");
        let (status, ack) = host.impression(&first, &first["offers"][0], "e1").await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack, json!({"recorded": "new", "counted_for_caps": true}));

        // Capped: the airline offer is gone and VoltMart moves up.
        let capped = traveller_slate(&host).await;
        assert_eq!(
            capped["offers"][0]["partner"], "voltmart",
            "{window}: {capped}"
        );
        assert_eq!(capped["offers"].as_array().unwrap().len(), 1);
        let airline = capped["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["partner"] == "skyways")
            .unwrap();
        assert_eq!(airline["dropped"][0]["reason"], "capped");
        assert!(
            airline["dropped"][0]["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("per {window}"))
        );

        host.clock.advance(seconds - 1);
        let still = traveller_slate(&host).await;
        assert_eq!(
            still["offers"][0]["partner"], "voltmart",
            "{window}: one second early"
        );
        host.clock.advance(1);
        let back = traveller_slate(&host).await;
        assert_eq!(
            back["offers"][0]["partner"], "skyways",
            "{window}: window over"
        );
    }
}

#[tokio::test]
async fn lifetime_caps_never_expire() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(
        &with_caps("[[cap]]\nscope = \"offer\"\nmax = 2\nwindow = \"lifetime\"\n"),
        dir.path(),
    );
    for i in 0..2 {
        let s = traveller_slate(&host).await;
        assert_eq!(s["offers"][0]["partner"], "skyways");
        host.impression(&s, &s["offers"][0], &format!("e{i}")).await;
        host.clock.advance(400 * 86_400);
    }
    host.clock.advance(10 * 365 * 86_400);
    let s = traveller_slate(&host).await;
    assert_eq!(s["offers"][0]["partner"], "voltmart");
}

#[tokio::test]
async fn partner_category_and_slate_scopes() {
    // Partner scope: any skyways impression caps all skyways offers.
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(
        &with_caps("[[cap]]\nscope = \"partner\"\nmax = 1\nwindow = \"1d\"\n"),
        dir.path(),
    );
    let s = traveller_slate(&host).await;
    host.impression(&s, &s["offers"][0], "p1").await;
    assert_eq!(
        offers_of(&traveller_slate(&host).await),
        [("voltmart".to_string(), "voltmart-0pct-long".to_string())]
    );

    // Category scope: an electronics impression caps the electronics offer only.
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(
        &with_caps("[[cap]]\nscope = \"category\"\nmax = 1\nwindow = \"1d\"\n"),
        dir.path(),
    );
    let s = traveller_slate(&host).await;
    assert_eq!(s["offers"][1]["offer"]["category"], "electronics");
    host.impression(&s, &s["offers"][1], "c1").await;
    assert_eq!(
        offers_of(&traveller_slate(&host).await),
        [("skyways".to_string(), "skyways-holder-miles".to_string())]
    );

    // Slate scope: at most 3 partner impressions a day, whatever they are; offers already
    // picked for a slate count too, so one slate never overshoots.
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(
        &with_caps("[[cap]]\nscope = \"slate\"\nmax = 3\nwindow = \"1d\"\n"),
        dir.path(),
    );
    let s = traveller_slate(&host).await;
    assert_eq!(s["offers"].as_array().unwrap().len(), 2);
    host.impression(&s, &s["offers"][0], "s1").await;
    host.impression(&s, &s["offers"][1], "s2").await;
    let s = traveller_slate(&host).await;
    assert_eq!(
        s["offers"].as_array().unwrap().len(),
        1,
        "one impression left today: {s}"
    );
    host.impression(&s, &s["offers"][0], "s3").await;
    let s = traveller_slate(&host).await;
    assert_eq!(s["offers"], json!([]));
}

#[tokio::test]
async fn the_same_event_twice_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_on(
        &with_caps("[[cap]]\nscope = \"offer\"\nmax = 2\nwindow = \"1d\"\n"),
        dir.path(),
    );
    let s = traveller_slate(&host).await;
    let offer = &s["offers"][0];
    let (_, first) = host.impression(&s, offer, "same").await;
    let (status, again) = host.impression(&s, offer, "same").await;
    assert_eq!(status, 200);
    assert_eq!(first["recorded"], "new");
    assert_eq!(
        again,
        json!({"recorded": "duplicate", "counted_for_caps": false})
    );
    assert_eq!(
        traveller_slate(&host).await["offers"][0]["partner"],
        "skyways",
        "counted once: 1 < 2"
    );
    host.impression(&s, offer, "other").await;
    assert_eq!(
        traveller_slate(&host).await["offers"][0]["partner"],
        "voltmart",
        "2 distinct events reach the cap"
    );

    // Clicks and conversions are recorded idempotently but do not count for caps.
    let (_, click) = host
        .call("POST", "/v1/events", Some(json!({"event_id": "k1", "type": "click", "slate_id": s["slate_id"], "partner": "voltmart", "offer_id": "voltmart-0pct-long"})))
        .await;
    assert_eq!(click, json!({"recorded": "new", "counted_for_caps": false}));
}

#[tokio::test]
async fn counting_on_serve_needs_no_events() {
    let dir = tempfile::tempdir().unwrap();
    let config = with_caps("[[cap]]\nscope = \"offer\"\nmax = 1\nwindow = \"1h\"\n").replace(
        "[slate]\ndeadline_ms = 400",
        "[slate]\ndeadline_ms = 400\ncount_on_serve = true",
    );
    let host = host_on(&config, dir.path());
    let s = traveller_slate(&host).await;
    assert_eq!(s["offers"].as_array().unwrap().len(), 2);
    let s2 = traveller_slate(&host).await;
    assert_eq!(
        s2["offers"],
        json!([]),
        "both offers were counted when served"
    );
    // An impression event for a served offer is accepted but not counted again.
    let (_, ack) = host.impression(&s, &s["offers"][0], "late-event").await;
    assert_eq!(ack["counted_for_caps"], false);
}

/// A store whose cap reads, or slate writes, can be switched off.
struct FlakyStore {
    inner: SledStore,
    caps_down: AtomicBool,
    slates_down: AtomicBool,
    /// Reads of a subject's whole cap record.
    record_reads: AtomicUsize,
}

impl FlakyStore {
    /// A sled store in `dir` that works until switched off.
    fn open(dir: &std::path::Path) -> Arc<FlakyStore> {
        Arc::new(FlakyStore {
            inner: SledStore::open(dir).unwrap(),
            caps_down: AtomicBool::new(false),
            slates_down: AtomicBool::new(false),
            record_reads: AtomicUsize::new(0),
        })
    }
}

impl Store for FlakyStore {
    fn profile(&self, s: &SubjectKey) -> Result<Option<Profile>, StoreError> {
        self.inner.profile(s)
    }
    fn put_profiles(&self, p: &[(SubjectKey, Profile)]) -> Result<(), StoreError> {
        self.inner.put_profiles(p)
    }
    fn save_slate(&self, s: &SlateRecord) -> Result<(), StoreError> {
        if self.slates_down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk full".into()));
        }
        self.inner.save_slate(s)
    }
    fn slate(&self, id: &str, now: u64) -> Result<Option<SlateRecord>, StoreError> {
        self.inner.slate(id, now)
    }
    fn cap_histories(
        &self,
        s: &SubjectKey,
        keys: &[String],
        lifetime: bool,
    ) -> Result<Vec<CapHistory>, StoreError> {
        if self.caps_down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk on fire at /secret/path".into()));
        }
        self.inner.cap_histories(s, keys, lifetime)
    }
    fn cap_record(&self, s: &SubjectKey) -> Option<Result<CapRecord, StoreError>> {
        self.record_reads.fetch_add(1, Ordering::SeqCst);
        if self.caps_down.load(Ordering::SeqCst) {
            return Some(Err(StoreError::Backend(
                "disk on fire at /secret/path".into(),
            )));
        }
        self.inner.cap_record(s)
    }
    fn record_event(
        &self,
        e: &str,
        w: &str,
        s: &SubjectKey,
        k: &[String],
        now: u64,
        r: Retention,
    ) -> Result<Reservation, StoreError> {
        if self.caps_down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk on fire at /secret/path".into()));
        }
        self.inner.record_event(e, w, s, k, now, r)
    }
    fn try_reserve(
        &self,
        e: &str,
        w: &str,
        s: &SubjectKey,
        l: &[(String, Option<u64>, u32)],
        k: &[String],
        now: u64,
        r: Retention,
    ) -> Result<Reservation, StoreError> {
        self.inner.try_reserve(e, w, s, l, k, now, r)
    }
    fn add_counters(&self, adds: &[offerhost::store::CounterAdd]) -> Result<(), StoreError> {
        self.inner.add_counters(adds)
    }
    fn counters(
        &self,
        bucket: &str,
        members: bool,
    ) -> Result<Vec<offerhost::store::CounterRow>, StoreError> {
        self.inner.counters(bucket, members)
    }
    fn registry(&self) -> Result<(u64, Option<Vec<u8>>), StoreError> {
        self.inner.registry()
    }
    fn commit_registry(
        &self,
        rev: u64,
        doc: &[u8],
        audit: &[u8],
        blobs: &[(String, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        self.inner.commit_registry(rev, doc, audit, blobs)
    }
    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.blob(key)
    }
    fn put_blob(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_blob(key, bytes)
    }
    fn put_blob_if_absent(&self, key: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.inner.put_blob_if_absent(key, bytes)
    }
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.audit(after, limit)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping()
    }
}

#[tokio::test]
async fn unreadable_counters_fail_closed_and_say_so() {
    // A finite window reads the subject's whole record; a lifetime cap reads by key.
    for window in ["1d", "lifetime"] {
        let dir = tempfile::tempdir().unwrap();
        let store = FlakyStore::open(dir.path());
        let cap = format!("[[cap]]\nscope = \"offer\"\nmax = 5\nwindow = \"{window}\"\n");
        let host = host_with_store(&with_caps(&cap), store.clone(), dir.path());
        let ok = traveller_slate(&host).await;
        assert_eq!(ok["offers"].as_array().unwrap().len(), 2, "{window}");
        let whole = store.record_reads.load(Ordering::SeqCst);
        assert_eq!(
            whole > 0,
            window != "lifetime",
            "{window}: {whole} record reads"
        );

        store.caps_down.store(true, Ordering::SeqCst);
        let closed = traveller_slate(&host).await;
        assert_eq!(closed["offers"], json!([]), "{window}");
        assert_eq!(
            closed["warnings"][0],
            "caps-unavailable: capped offers are not shown"
        );
        for d in closed["diagnostics"].as_array().unwrap() {
            for dropped in d["dropped"].as_array().unwrap() {
                assert_eq!(dropped["reason"], "caps-unavailable");
            }
        }
        // An event that cannot be counted is a 503 that reveals nothing internal.
        let (status, body) = host.impression(&ok, &ok["offers"][0], "e").await;
        assert_eq!(status, 503);
        assert!(!body.to_string().contains("secret"), "{body}");
        assert_eq!(body["error"]["code"], "unavailable");

        store.caps_down.store(false, Ordering::SeqCst);
        assert_eq!(
            traveller_slate(&host).await["offers"]
                .as_array()
                .unwrap()
                .len(),
            2,
            "{window}"
        );
    }
}

#[tokio::test]
async fn slate_records_wait_in_memory_while_the_store_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlakyStore::open(dir.path());
    store.slates_down.store(true, Ordering::SeqCst);
    let host = host_with_store(&example_config(), store.clone(), dir.path());
    let slate = traveller_slate(&host).await;
    let id = slate["slate_id"].as_str().unwrap().to_string();
    assert!(slate.get("warnings").is_none(), "{slate}");
    // Well past the first write attempts: still unwritten, still known to events.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(store.inner.slate(&id, 0).unwrap(), None);
    let (status, ack) = host.impression(&slate, &slate["offers"][0], "e1").await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["recorded"], "new");

    // Once the store takes writes again the record reaches it, and events still find it.
    store.slates_down.store(false, Ordering::SeqCst);
    let written = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.inner.slate(&id, 0).unwrap().is_some()
    });
    assert!(
        written,
        "the record was never written after the store recovered"
    );
    let (status, ack) = host.impression(&slate, &slate["offers"][0], "e1").await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["recorded"], "duplicate");
}
