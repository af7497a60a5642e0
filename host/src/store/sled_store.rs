//! The embedded sled backend.

mod caps;

use std::borrow::Cow;
use std::path::Path;

use serde::Serialize;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use std::collections::BTreeMap;

use super::{
    CounterAdd, CounterRow, Reservation, SlateRecord, Store, StoreError, SubjectKey, backend,
    decode, decode_slate, encode_slate,
};
use crate::slate::caps::{CapHistory, CapRecord, Retention};
use crate::slate::profile::Profile;

/// Profiles, slates, cap counters and event ids in one sled database.
pub struct SledStore {
    db: sled::Db,
    profiles: sled::Tree,
    /// Slate records one per key, as written before [`SledStore::windows`]; read only.
    slates: sled::Tree,
    /// Slate records grouped by the millisecond their slate started (see
    /// [`slate_window`]).
    windows: sled::Tree,
    /// Each subject's counters with impressions inside the longest cap window, one
    /// record per subject (see [`caps`]).
    cap_recent: sled::Tree,
    /// Lifetime totals of the other counters: subject `|` counter key, then 8 bytes.
    cap_totals: sled::Tree,
    /// Subject records that no longer decode, as they were, set aside by the subject's
    /// next read or write so that its caps count again.
    cap_damaged: sled::Tree,
    events: sled::Tree,
    registry: sled::Tree,
    audit: sled::Tree,
    blobs: sled::Tree,
    counters: sled::Tree,
    members: sled::Tree,
    /// When each counter bucket that has an expiry expires: bucket name, then unix
    /// seconds (8 bytes, big-endian). The sweep reads this, not the rows.
    counter_expiry: sled::Tree,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records serialize")
}

/// The key of the window holding slate `slate_id`'s record: the 1.024 ms its slate
/// started in, read from the id (`sl_` and 12 hex digits of unix microseconds, see
/// `new_slate_id`). `None` for an id of another form, which no window holds.
///
/// One sled write per record cost the writer as much CPU time as a plugin call per
/// slate, most of it in sled splitting and copying the tree's last node as records were
/// appended, and took that time from the fan-out. A window gathers the records of about
/// a millisecond of slates into one value, so a write pass makes a few writes, not one
/// per slate; finding a record reads its window and compares ids. Ids hold the low 48
/// bits of the time, so window keys come round again after 8.9 years, long after the
/// sweep has removed what they held (and ids, compared whole, never match across).
fn slate_window(slate_id: &str) -> Option<[u8; 8]> {
    // A window entry's id length is a u16; the service's ids are 31 bytes.
    if slate_id.len() > MAX_WINDOW_ID {
        return None;
    }
    let micros = slate_id.strip_prefix("sl_")?.get(..12)?;
    let micros = u64::from_str_radix(micros, 16).ok()?;
    Some((micros >> 10).to_be_bytes())
}

/// Longest id filed in a window; longer ones are kept one per key.
const MAX_WINDOW_ID: usize = 256;

/// Merge operator of the window tree: appends entries to a window.
fn append(_key: &[u8], old: Option<&[u8]>, new: &[u8]) -> Option<Vec<u8>> {
    let mut value = old.map_or_else(Vec::new, <[u8]>::to_vec);
    value.extend_from_slice(new);
    Some(value)
}

/// Appends a window entry to `out`: the id's length (u16 LE), the id, the record's
/// length (u32 LE), the record ([`encode_slate`]).
fn push_entry(out: &mut Vec<u8>, id: &[u8], record: &[u8]) {
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
}

/// The bytes [`push_entry`] writes for `id` and `record`.
fn entry_len(id: &[u8], record: &[u8]) -> usize {
    2 + id.len() + 4 + record.len()
}

/// The entries of a window, `(id, record)`, in the order written; `Err` at the first
/// malformed one.
fn entries(window: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), String>> {
    let mut rest = window;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut take = |n: usize| -> Result<&[u8], String> {
            if rest.len() < n {
                return Err(format!(
                    "window entry cut short ({} bytes left)",
                    rest.len()
                ));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let entry = (|| {
            let id_len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
            let id = take(id_len)?;
            let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            Ok((id, take(len)?))
        })();
        if entry.is_err() {
            rest = &[];
        }
        Some(entry)
    })
}

const REV: &[u8] = b"rev";
const DOC: &[u8] = b"doc";

/// `bucket NUL row`: rows of a bucket are one prefix scan.
fn row_key(bucket: &str, row: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + row.len() + 1);
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(row.as_bytes());
    k
}

/// Removes every key of `tree` that starts with `prefix`, a batch of at most
/// [`REMOVE_BATCH`] keys at a time (a day's report rows can be millions); returns how many.
fn remove_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in tree.scan_prefix(prefix).keys().take(REMOVE_BATCH) {
            batch.remove(key.map_err(backend)?);
            n += 1;
        }
        if n == 0 {
            return Ok(removed);
        }
        tree.apply_batch(batch).map_err(backend)?;
        removed += n;
    }
}

/// A transaction's result as the store's: what it aborted with, or the storage failure.
fn settled<T>(
    result: sled::transaction::TransactionResult<T, StoreError>,
) -> Result<T, StoreError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    })
}

/// Most keys [`remove_prefix`] removes in one batch.
const REMOVE_BATCH: usize = 10_000;

/// Whether opening failed because another handle holds the database's lock. sled reports
/// that as an error of kind `Other` whose message carries the `WouldBlock` it got.
fn lock_held(e: &std::io::Error) -> bool {
    let message = e.to_string();
    e.kind() == std::io::ErrorKind::WouldBlock
        || (message.starts_with("could not acquire lock") && message.contains("WouldBlock"))
}

impl SledStore {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // The store's lock outlives a closed handle by a moment (sled's I/O threads finish
        // their last writes), and a restarted process may start while the old one exits:
        // wait up to LOCK_WAIT for it rather than fail the restart.
        const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
        let started = std::time::Instant::now();
        let db = loop {
            match sled::Config::new()
                .path(path)
                .flush_every_ms(Some(200))
                .open()
            {
                Err(sled::Error::Io(e)) if lock_held(&e) && started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => {
                    break other.map_err(|e| {
                        StoreError::Backend(format!(
                            "cannot open sled store at {}: {e}",
                            path.display()
                        ))
                    })?;
                }
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let store = SledStore {
            profiles: tree("profiles")?,
            slates: tree("slates")?,
            windows: {
                let windows = tree("slate_windows")?;
                windows.set_merge_operator(append);
                windows
            },
            cap_recent: tree("cap_recent")?,
            cap_totals: tree("cap_totals")?,
            cap_damaged: tree("cap_damaged")?,
            events: tree("events")?,
            registry: tree("registry")?,
            audit: tree("audit")?,
            blobs: tree("blobs")?,
            counters: tree("counters")?,
            members: tree("members")?,
            counter_expiry: tree("counter_expiry")?,
            db,
        };
        caps::move_per_key_counters(&store.db, &store.cap_recent, &store.cap_totals)?;
        Ok(store)
    }
}

/// What the log says of a subject record that no longer decodes.
const DAMAGED_RECORD: &str = "a damaged cap record is set aside in tree cap_damaged; the \
    subject's caps count again from its lifetime totals";

impl SledStore {
    /// Keeps `subject`'s record `bytes`, which no longer decode, in `cap_damaged` and
    /// removes it (unless it was rewritten meanwhile). Failing the reads instead would
    /// fail the subject's caps closed for good: every capped offer dropped, so no
    /// impression ever rewrites the record. Its recent counts are lost.
    fn set_damaged_record_aside(
        &self,
        subject: &str,
        bytes: &[u8],
        error: &StoreError,
    ) -> Result<(), StoreError> {
        tracing::error!(%error, "{DAMAGED_RECORD}");
        (self.cap_damaged.insert(subject, bytes)).map_err(backend)?;
        let gone = self
            .cap_recent
            .compare_and_swap(subject, Some(bytes), None::<&[u8]>);
        // Lost to a write meanwhile (which set the same bytes aside): nothing to do.
        let _ = gone.map_err(backend)?;
        Ok(())
    }

    /// The counters in `subject`'s record `bytes` (none without a record); a record that
    /// no longer decodes is set aside and counts as none.
    fn readable_counters<'b>(
        &self,
        subject: &str,
        bytes: Option<&'b [u8]>,
    ) -> Result<caps::Counters<'b>, StoreError> {
        let Some(bytes) = bytes else {
            return Ok(Vec::new());
        };
        match caps::decode_counters(subject, bytes) {
            Ok(counters) => Ok(counters),
            Err(error) => {
                self.set_damaged_record_aside(subject, bytes, &error)?;
                Ok(Vec::new())
            }
        }
    }
}

impl Store for SledStore {
    fn profile(&self, subject: &SubjectKey) -> Result<Option<Profile>, StoreError> {
        match self.profiles.get(&subject.0).map_err(backend)? {
            Some(bytes) => decode(&subject.0, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put_profiles(&self, profiles: &[(SubjectKey, Profile)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (subject, profile) in profiles {
            batch.insert(subject.0.as_bytes(), encode(profile));
        }
        self.profiles.apply_batch(batch).map_err(backend)
    }

    fn save_slate(&self, slate: &SlateRecord) -> Result<(), StoreError> {
        self.save_slates(&[slate])
    }

    fn save_slates(&self, slates: &[&SlateRecord]) -> Result<(), StoreError> {
        let encoded: Vec<Vec<u8>> = slates.iter().map(|s| encode_slate(*s)).collect();
        let slates: Vec<(&str, &[u8])> = (slates.iter().zip(&encoded))
            .map(|(s, bytes)| (s.slate_id.as_str(), bytes.as_slice()))
            .collect();
        self.save_encoded_slates(&slates)
    }

    fn save_encoded_slates(&self, slates: &[(&str, &[u8])]) -> Result<(), StoreError> {
        // Each window's bytes are counted first and its entries written into a buffer of
        // that size: grown entry by entry, a window was copied again at every doubling.
        let mut sizes: BTreeMap<[u8; 8], usize> = BTreeMap::new();
        let mut filed = Vec::with_capacity(slates.len());
        for (id, record) in slates {
            match slate_window(id) {
                Some(window) => {
                    *sizes.entry(window).or_default() += entry_len(id.as_bytes(), record);
                    filed.push((window, id.as_bytes(), *record));
                }
                // Every id the service makes has a window; any other is kept by itself.
                None => {
                    self.slates
                        .insert(id.as_bytes(), *record)
                        .map_err(backend)?;
                }
            }
        }
        let mut windows: BTreeMap<[u8; 8], Vec<u8>> = (sizes.into_iter())
            .map(|(window, size)| (window, Vec::with_capacity(size)))
            .collect();
        for (window, id, record) in filed {
            if let Some(entries) = windows.get_mut(&window) {
                push_entry(entries, id, record);
            }
        }
        for (window, entries) in windows {
            // Most windows are new: stored as they are. One that a previous pass wrote
            // (slates of the same millisecond answered on both sides of it) is appended
            // to by the merge operator, which copies what it holds.
            let new = self
                .windows
                .compare_and_swap(window, None::<&[u8]>, Some(entries.as_slice()))
                .map_err(backend)?;
            if new.is_err() {
                self.windows.merge(window, entries).map_err(backend)?;
            }
        }
        Ok(())
    }

    fn slate(&self, slate_id: &str, now: u64) -> Result<Option<SlateRecord>, StoreError> {
        let mut found = None;
        if let Some(window) = slate_window(slate_id)
            && let Some(bytes) = self.windows.get(window).map_err(backend)?
        {
            for entry in entries(&bytes) {
                let (id, record) = entry.map_err(|message| StoreError::Corrupt {
                    key: format!("slate window of {slate_id}"),
                    message,
                })?;
                if id == slate_id.as_bytes() {
                    found = Some(decode_slate(slate_id, record)?);
                    break;
                }
            }
        }
        if found.is_none()
            && let Some(bytes) = self.slates.get(slate_id).map_err(backend)?
        {
            found = Some(decode_slate(slate_id, &bytes)?);
        }
        Ok(found.filter(|record| record.expires_at > now))
    }

    fn cap_histories(
        &self,
        subject: &SubjectKey,
        keys: &[String],
        lifetime: bool,
    ) -> Result<Vec<CapHistory>, StoreError> {
        let who = subject.0.as_str();
        let record = self.cap_recent.get(who).map_err(backend)?;
        let counters = self.readable_counters(who, record.as_deref())?;
        keys.iter()
            .map(|k| match caps::find(&counters, k) {
                Ok(i) => Ok(counters[i].history.clone()),
                Err(_) if lifetime => {
                    let total = self.cap_totals.get(caps::total_key(who, k));
                    Ok(CapHistory {
                        lifetime: match total.map_err(backend)? {
                            Some(bytes) => caps::decode_total(who, k, &bytes)?,
                            None => 0,
                        },
                        recent: Vec::new(),
                    })
                }
                Err(_) => Ok(CapHistory::default()),
            })
            .collect()
    }

    fn cap_record(&self, subject: &SubjectKey) -> Option<Result<CapRecord, StoreError>> {
        let who = subject.0.as_str();
        let read = || {
            let bytes = self.cap_recent.get(who).map_err(backend)?;
            let counters = self.readable_counters(who, bytes.as_deref())?;
            Ok(counters
                .into_iter()
                .map(|c| (c.key.into_owned(), c.history))
                .collect())
        };
        Some(read())
    }

    fn try_reserve(
        &self,
        event_id: &str,
        what: &str,
        subject: &SubjectKey,
        limits: &[(String, Option<u64>, u32)],
        cap_keys: &[String],
        now: u64,
        retention: Retention,
    ) -> Result<Reservation, StoreError> {
        let who = subject.0.as_str();
        let abort = ConflictableTransactionError::Abort;
        let trees = (
            &self.events,
            &self.cap_recent,
            &self.cap_totals,
            &self.cap_damaged,
        );
        let result = trees.transaction(|(events, recent, totals, damaged)| {
            let total = |key: &str| -> Result<u64, ConflictableTransactionError<StoreError>> {
                match totals.get(caps::total_key(who, key))? {
                    Some(bytes) => caps::decode_total(who, key, &bytes).map_err(abort),
                    None => Ok(0),
                }
            };
            let counts = !limits.is_empty() || !cap_keys.is_empty();
            let record = if counts { recent.get(who)? } else { None };
            let mut counters = match &record {
                Some(bytes) => match caps::decode_counters(who, bytes) {
                    Ok(counters) => counters,
                    // As in `cap_histories`, within the transaction.
                    Err(error) => {
                        tracing::error!(%error, "{DAMAGED_RECORD}");
                        damaged.insert(who.as_bytes(), bytes.clone())?;
                        Vec::new()
                    }
                },
                None => Vec::new(),
            };
            for (k, window, max) in limits {
                let seen = match caps::find(&counters, k) {
                    Ok(i) => counters[i].history.count_within(*window, now),
                    Err(_) if window.is_none() => total(k)?,
                    Err(_) => 0,
                };
                if seen >= *max as u64 {
                    return Ok(Reservation::Capped);
                }
            }
            // The time it was recorded (for the sweep), then what it was.
            if let Some(earlier) = events.get(event_id)? {
                let what = String::from_utf8_lossy(earlier.get(8..).unwrap_or_default());
                return Ok(Reservation::Seen {
                    what: what.into_owned(),
                });
            }
            let mut value = now.to_be_bytes().to_vec();
            value.extend_from_slice(what.as_bytes());
            events.insert(event_id.as_bytes(), value)?;
            if cap_keys.is_empty() {
                return Ok(Reservation::Made);
            }
            for k in cap_keys {
                let i = match caps::find(&counters, k) {
                    Ok(i) => i,
                    Err(i) => {
                        // Back from its total, if it has one. The total stays: the
                        // record is read first, and the total is overwritten when the
                        // counter leaves the record again. (Removing it here would let
                        // a read that missed the record between the two find neither.)
                        let lifetime = total(k)?;
                        let history = CapHistory {
                            lifetime,
                            recent: Vec::new(),
                        };
                        let key = Cow::Owned(k.clone());
                        counters.insert(i, caps::Counter { key, history });
                        i
                    }
                };
                counters[i].history.record(now, retention);
            }
            // Counters with nothing left inside the longest window keep only their total.
            let mut kept = Vec::with_capacity(counters.len());
            for counter in counters {
                if counter.history.has_recent(now, retention) {
                    kept.push(counter);
                } else {
                    caps::keep_total(totals, who, &counter)?;
                }
            }
            if kept.is_empty() {
                recent.remove(who)?;
            } else {
                recent.insert(who, caps::encode_counters(&kept))?;
            }
            Ok(Reservation::Made)
        });
        settled(result)
    }

    fn add_counters(&self, adds: &[CounterAdd]) -> Result<(), StoreError> {
        // Expiries first, so a crash partway never leaves rows the sweep does not know.
        let mut expiring: Vec<(&str, u64)> = Vec::new();
        for add in adds {
            if let Some(at) = add.expires_at
                && !expiring.contains(&(add.bucket.as_str(), at))
            {
                expiring.push((&add.bucket, at));
                (self.counter_expiry)
                    .insert(add.bucket.as_bytes(), &at.to_be_bytes())
                    .map_err(backend)?;
            }
        }
        for add in adds {
            let key = row_key(&add.bucket, &add.row);
            let mut failed = None;
            // update_and_fetch retries on a concurrent change: increments are atomic.
            self.counters
                .update_and_fetch(&key, |old| {
                    let mut fields: BTreeMap<String, u64> = match old {
                        Some(bytes) => match serde_json::from_slice(bytes) {
                            Ok(f) => f,
                            Err(e) => {
                                failed = Some(e.to_string());
                                return Some(bytes.to_vec());
                            }
                        },
                        None => BTreeMap::new(),
                    };
                    for (name, n) in &add.fields {
                        let v = fields.entry(name.clone()).or_default();
                        *v = v.saturating_add(*n);
                    }
                    Some(encode(&fields))
                })
                .map_err(backend)?;
            if let Some(message) = failed {
                return Err(StoreError::Corrupt {
                    key: format!("counters/{}/{}", add.bucket, add.row),
                    message,
                });
            }
            let mut prefix = key;
            prefix.push(0);
            for m in &add.members {
                let mut k = prefix.clone();
                k.extend_from_slice(m.as_bytes());
                self.members.insert(k, &[]).map_err(backend)?;
            }
        }
        Ok(())
    }

    fn counters(&self, bucket: &str, members: bool) -> Result<Vec<CounterRow>, StoreError> {
        let prefix = row_key(bucket, "");
        let mut rows = Vec::new();
        for entry in self.counters.scan_prefix(&prefix) {
            let (key, bytes) = entry.map_err(backend)?;
            let row = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let fields = decode(&format!("counters/{bucket}/{row}"), &bytes)?;
            let mut found = Vec::new();
            if members {
                let mut p = key.to_vec();
                p.push(0);
                for m in self.members.scan_prefix(&p) {
                    let (k, _) = m.map_err(backend)?;
                    found.push(String::from_utf8_lossy(&k[p.len()..]).into_owned());
                }
            }
            rows.push(CounterRow {
                row,
                fields,
                members: found,
            });
        }
        Ok(rows)
    }

    fn registry(&self) -> Result<(u64, Option<Vec<u8>>), StoreError> {
        let rev = match self.registry.get(REV).map_err(backend)? {
            Some(b) => {
                u64::from_be_bytes(b.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: "registry/rev".into(),
                    message: "not 8 bytes".into(),
                })?)
            }
            None => 0,
        };
        let doc = self.registry.get(DOC).map_err(backend)?.map(|b| b.to_vec());
        Ok((rev, doc))
    }

    fn commit_registry(
        &self,
        expected_rev: u64,
        doc: &[u8],
        audit: &[u8],
        blobs: &[(String, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        let seq = self.db.generate_id().map_err(backend)? + 1;
        let result =
            (&self.registry, &self.audit, &self.blobs).transaction(|(reg, log, blob_tree)| {
                let rev = reg
                    .get(REV)?
                    .and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(0);
                if rev != expected_rev {
                    return Ok(false);
                }
                reg.insert(REV, &(rev + 1).to_be_bytes())?;
                reg.insert(DOC, doc)?;
                log.insert(&seq.to_be_bytes(), audit)?;
                for (k, v) in blobs {
                    blob_tree.insert(k.as_bytes(), v.as_slice())?;
                }
                Ok(true)
            });
        settled(result)
    }

    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(key).map_err(backend)?.map(|b| b.to_vec()))
    }

    fn put_blob(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.blobs.insert(key, bytes).map(|_| ()).map_err(backend)
    }

    fn put_blob_if_absent(&self, key: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        match (self.blobs)
            .compare_and_swap(key, None::<&[u8]>, Some(bytes))
            .map_err(backend)?
        {
            Ok(()) => Ok(bytes.to_vec()),
            Err(taken) => Ok(taken.current.map_or_else(|| bytes.to_vec(), |b| b.to_vec())),
        }
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.audit
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(backend)?;
                let seq = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
                Ok((seq, v.to_vec()))
            })
            .collect()
    }

    fn sweep_caps(&self, now: u64, retention: Retention) -> Result<u64, StoreError> {
        let mut removed = 0;
        for entry in self.cap_recent.iter() {
            let (who, bytes) = entry.map_err(backend)?;
            let subject = String::from_utf8_lossy(&who);
            // A record that no longer decodes is left to the reads, which set it aside.
            let Ok(counters) = caps::decode_counters(&subject, &bytes) else {
                continue;
            };
            if (counters.iter()).any(|c| c.history.has_recent(now, retention)) {
                continue;
            }
            // Totals apart, then the record, in one step; unless a write changed it since.
            let trees = (&self.cap_recent, &self.cap_totals);
            let result = trees.transaction(|(recent, totals)| {
                if recent.get(&who)?.as_deref() != Some(&bytes[..]) {
                    return Ok(false);
                }
                for counter in &counters {
                    caps::keep_total(totals, &subject, counter)?;
                }
                recent.remove(&who)?;
                Ok(true)
            });
            removed += settled(result)? as u64;
        }
        Ok(removed)
    }

    fn sweep(&self, now: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        for window in self.windows.iter() {
            let (key, bytes) = window.map_err(backend)?;
            // Entries that no longer decode are dropped too: nothing can use them. So are
            // second copies (a write pass that failed partway is retried whole).
            let mut kept = Vec::with_capacity(bytes.len());
            let mut ids = std::collections::HashSet::new();
            let mut dropped = 0;
            for entry in entries(&bytes) {
                let Ok((id, record)) = entry else {
                    tracing::warn!(
                        window = %hex::encode(&key),
                        "dropping the damaged end of a slate-record window"
                    );
                    break;
                };
                let id_text = String::from_utf8_lossy(id);
                match decode_slate(&id_text, record) {
                    Ok(r) if r.expires_at > now && ids.insert(id) => {
                        push_entry(&mut kept, id, record)
                    }
                    _ => dropped += 1,
                }
            }
            if kept.len() == bytes.len() {
                continue;
            }
            // Only if nothing was appended meanwhile; else the next sweep takes it.
            let new = (!kept.is_empty()).then_some(kept);
            if self
                .windows
                .compare_and_swap(&key, Some(&bytes), new)
                .map_err(backend)?
                .is_ok()
            {
                removed += dropped;
            }
        }
        for entry in self.slates.iter() {
            let (key, bytes) = entry.map_err(backend)?;
            // A record that no longer decodes is dropped too: nothing can use it.
            let key_text = String::from_utf8_lossy(&key);
            let expired = decode_slate(&key_text, &bytes).map_or(true, |r| r.expires_at <= now);
            if expired && self.slates.remove(&key).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        let cutoff = now.saturating_sub(super::EVENT_MEMORY_SECS);
        for entry in self.events.iter() {
            let (key, bytes) = entry.map_err(backend)?;
            let at = (bytes.get(..8))
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            if at < cutoff && self.events.remove(&key).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        for entry in self.counter_expiry.iter() {
            let (bucket, at) = entry.map_err(backend)?;
            let expired = at
                .as_ref()
                .try_into()
                .map_or(true, |b| u64::from_be_bytes(b) <= now);
            if !expired {
                continue;
            }
            // Rows first, then the entry: a sweep stopped in between finds the entry
            // again next time. The entry stays if a write moved the expiry meanwhile.
            let mut prefix = bucket.to_vec();
            prefix.push(0);
            removed += remove_prefix(&self.counters, &prefix)?;
            remove_prefix(&self.members, &prefix)?;
            let _ = (self.counter_expiry)
                .compare_and_swap(&bucket, Some(&at), None::<&[u8]>)
                .map_err(backend)?;
        }
        Ok(removed)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.db.get(b"__ping__").map(|_| ()).map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServedOffer;

    /// What caps with at most 10 impressions an hour keep.
    const AN_HOUR: Retention = Retention {
        seconds: 3600,
        count: 10,
    };

    /// Counters stored one key each, as before subject records, are moved into them
    /// when the store opens (those with no timestamps as totals), added to what the new
    /// layout already holds (a store upgraded, downgraded and upgraded again), and read
    /// as before; entries that cannot be read are kept aside.
    #[test]
    fn per_key_counters_move_into_subject_records_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let history = |lifetime, recent: &[u64]| CapHistory {
            lifetime,
            recent: recent.to_vec(),
        };
        let retention = AN_HOUR;
        let aa = SubjectKey("aa".into());
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        {
            // Counted by this version first: `offer:p/o` in aa's record, `slate` a total.
            let store = SledStore::open(dir.path()).unwrap();
            let both = keys(&["offer:p/o", "slate"]);
            store
                .record_event("e0", "r", &aa, &both, 50, retention)
                .unwrap();
            store
                .record_event("e1", "r", &aa, &both[..1], 4_000, retention)
                .unwrap();
            let got = store.cap_histories(&aa, &both, true).unwrap();
            assert_eq!(got, [history(2, &[4_000]), history(1, &[])]);
        }
        {
            let db = sled::open(dir.path()).unwrap();
            let caps = db.open_tree("caps").unwrap();
            let old = [
                ("aa|offer:p/o", history(4, &[100, 200])),
                ("aa|slate", history(9, &[])),
                ("aa|partner:p", history(3, &[])),
                ("bb|partner:p", history(1, &[300])),
            ];
            for (key, h) in &old {
                caps.insert(key, encode(h)).unwrap();
            }
            caps.insert("nobar", encode(&history(1, &[1]))).unwrap();
            caps.insert("cc|broken", &b"{not json"[..]).unwrap();
            db.flush().unwrap();
        }
        for round in 0..2 {
            let store = SledStore::open(dir.path()).unwrap();
            let got = store
                .cap_histories(
                    &aa,
                    &keys(&["offer:p/o", "slate", "partner:p", "none"]),
                    true,
                )
                .unwrap();
            let want = [
                history(6, &[100, 200, 4_000]),
                history(10, &[]),
                history(3, &[]),
                history(0, &[]),
            ];
            assert_eq!(got, want, "round {round}");
            let bb = SubjectKey("bb".into());
            let got = store.cap_histories(&bb, &keys(&["partner:p"]), false);
            assert_eq!(got.unwrap(), [history(1, &[300])], "round {round}");
            let names = store.db.tree_names();
            assert!(
                !names.iter().any(|n| n.as_ref() == b"caps"),
                "old tree gone"
            );
            let aside = store.db.open_tree("caps_unreadable").unwrap();
            let kept: Vec<_> = aside.iter().keys().map(|k| k.unwrap().to_vec()).collect();
            assert_eq!(kept, [b"cc|broken".to_vec(), b"nobar".to_vec()]);
            // The totals are where the reservations look for them.
            let limit = [("slate".to_string(), None, 10)];
            let done = store.try_reserve("e", "r", &aa, &limit, &[], 500, retention);
            assert_eq!(done.unwrap(), Reservation::Capped, "round {round}");
        }
    }

    /// A subject's record holds only counters with an impression inside the longest
    /// window: a quiet one leaves it for its total at the subject's next write, and
    /// comes back counting on when it is shown again.
    #[test]
    fn quiet_counters_leave_the_subject_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let retention = AN_HOUR;
        let s = SubjectKey("dd".into());
        let (offer, slate) = ("offer:p/o".to_string(), "slate".to_string());
        let in_record = |store: &SledStore| -> Vec<String> {
            let bytes = store.cap_recent.get("dd").unwrap().unwrap();
            let counters = caps::decode_counters("dd", &bytes).unwrap();
            counters.iter().map(|c| c.key.to_string()).collect()
        };
        let total = |store: &SledStore, key: &str| {
            let bytes = store.cap_totals.get(caps::total_key("dd", key)).unwrap();
            bytes.map(|b| caps::decode_total("dd", key, &b).unwrap())
        };
        let both = [offer.clone(), slate.clone()];
        store
            .record_event("a", "r", &s, &both, 1_000, retention)
            .unwrap();
        assert_eq!(in_record(&store), [offer.as_str(), slate.as_str()]);
        store
            .record_event("b", "r", &s, &both[1..], 4_601, retention)
            .unwrap();
        assert_eq!(in_record(&store), [slate.as_str()], "the offer left");
        assert_eq!(total(&store, &offer), Some(1));

        store
            .record_event("c", "r", &s, &both[..1], 4_700, retention)
            .unwrap();
        assert_eq!(in_record(&store), [offer.as_str(), slate.as_str()], "back");
        let got = store.cap_histories(&s, &both[..1], true).unwrap();
        assert_eq!(got[0].lifetime, 2, "counted on from its total");
        assert_eq!(got[0].recent, [4_700]);
        // The whole record, as a slate reads it when no cap is a lifetime one.
        let record = store.cap_record(&s).unwrap().unwrap();
        let history = |lifetime, recent: &[u64]| CapHistory {
            lifetime,
            recent: recent.to_vec(),
        };
        assert_eq!(
            record,
            [
                (offer.clone(), history(2, &[4_700])),
                (slate.clone(), history(2, &[4_601]))
            ]
        );
        let nobody = SubjectKey("none".into());
        assert_eq!(store.cap_record(&nobody).unwrap().unwrap(), []);

        // An event that counts nothing leaves the record as it is.
        store
            .record_event("d", "r", &s, &[], 9_000, retention)
            .unwrap();
        assert_eq!(in_record(&store), [offer.as_str(), slate.as_str()]);
        store
            .record_event("e", "r", &s, &both[1..], 20_000, retention)
            .unwrap();
        assert_eq!(in_record(&store), [slate.as_str()]);
        assert_eq!(total(&store, &offer), Some(2));
        // With no finite window left in the caps, nothing stays in the record.
        let none = Retention {
            seconds: 0,
            count: 0,
        };
        store
            .record_event("f", "r", &s, &both[1..], 20_001, none)
            .unwrap();
        assert!(
            store.cap_recent.get("dd").unwrap().is_none(),
            "no record left"
        );
        assert_eq!(total(&store, &slate), Some(4));
    }

    /// A subject record that no longer decodes is set aside by the subject's next read
    /// or write, and its caps count afresh (reads failing instead would fail its caps
    /// closed for good: no offer shown, so no impression to rewrite the record).
    #[test]
    fn a_damaged_subject_record_is_set_aside_and_counting_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let retention = AN_HOUR;
        let keys = ["slate".to_string()];
        let garbage = &[1u8, 0xff, 0xff][..];
        // Reached by a read by key, by a write, by a read of the whole record.
        for who in ["ee", "ff", "gg"] {
            let s = SubjectKey(who.into());
            store.cap_recent.insert(who, garbage).unwrap();
            if who == "ee" {
                let got = store.cap_histories(&s, &keys, true).unwrap();
                assert_eq!(got, [CapHistory::default()], "{who}");
            }
            if who == "gg" {
                assert_eq!(store.cap_record(&s).unwrap().unwrap(), [], "{who}");
            }
            if who != "ff" {
                assert!(store.cap_recent.get(who).unwrap().is_none(), "{who}");
            }
            let done = store.record_event(who, "r", &s, &keys, 1_000, retention);
            assert_eq!(done.unwrap(), Reservation::Made, "{who}");
            let got = store.cap_histories(&s, &keys, true).unwrap();
            assert_eq!(got[0].recent, [1_000], "{who}");
            assert_eq!(got[0].lifetime, 1, "{who}");
            let kept = store.cap_damaged.get(who).unwrap().unwrap();
            assert_eq!(kept.as_ref(), garbage, "{who}");
        }
    }

    /// An id as the service makes them: the low 48 bits of the slate's start in unix
    /// microseconds, then a hash.
    fn id(micros: u64, n: u64) -> String {
        format!("sl_{:012x}{n:016x}", micros & 0xffff_ffff_ffff)
    }

    /// The start of a window.
    const T: u64 = 1_795_000_000_000_000 & !1023;

    fn record(id: &str, expires_at: u64) -> SlateRecord {
        SlateRecord {
            slate_id: id.into(),
            subject: SubjectKey("5f2c0a9e".into()),
            placement: "app-home".into(),
            served_at: 1_000,
            expires_at,
            offers: vec![ServedOffer {
                partner: "acme-air".into(),
                plugin: "airline".into(),
                plugin_version: "1.2.0".into(),
                offer_id: "lounge-pass".into(),
                category: "travel".into(),
                value_minor: 1_500,
                arm: "acme-air/airline|1.2.0".into(),
            }],
            tier: "high-value".into(),
            stage: "active".into(),
        }
    }

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn slate_ids_name_the_millisecond_window_their_slate_started_in() {
        let t = T;
        assert_eq!(slate_window(&id(t, 1)), slate_window(&id(t + 1, 2)));
        assert_ne!(slate_window(&id(t, 1)), slate_window(&id(t + 1024, 1)));
        for foreign in ["", "sl_", "sl_12345", "sl_zzzzzzzzzzzz0", "slate-1"] {
            assert_eq!(slate_window(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn records_of_one_window_share_a_value_and_each_reads_back_whole() {
        let (_dir, store) = open();
        let t = T;
        let same = [id(t, 1), id(t + 3, 2), id(t + 7, 3)];
        let later = id(t + 5_000, 4);
        let records: Vec<SlateRecord> = same
            .iter()
            .chain([&later])
            .map(|id| record(id, 5_000))
            .collect();
        // Two write passes into the same window: the second appends.
        store.save_slates(&[&records[0], &records[3]]).unwrap();
        store.save_slates(&[&records[1], &records[2]]).unwrap();

        assert_eq!(store.windows.len(), 2);
        assert!(store.slates.is_empty());
        for r in &records {
            assert_eq!(store.slate(&r.slate_id, 2_000).unwrap().as_ref(), Some(r));
        }
        assert_eq!(store.slate(&id(t, 99), 2_000).unwrap(), None);
        assert_eq!(store.slate(&same[0], 5_000).unwrap(), None, "expired");

        let window = store
            .windows
            .get(slate_window(&same[0]).unwrap())
            .unwrap()
            .unwrap();
        let json: usize = records[..3]
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap().len())
            .sum();
        assert!(
            window.len() * 5 < json * 3,
            "window {} bytes, JSON {json}",
            window.len()
        );
    }

    /// A restart may begin while the old handle is still closing: opening waits for its
    /// lock instead of failing.
    #[test]
    fn opening_waits_for_a_handle_that_is_closing() {
        let dir = tempfile::tempdir().unwrap();
        let old = SledStore::open(dir.path()).unwrap();
        // Guards `lock_held` against sled changing how it reports a held lock.
        assert!(
            matches!(sled::Config::new().path(dir.path()).open(), Err(sled::Error::Io(e)) if lock_held(&e)),
            "a second handle finds the lock held"
        );
        let started = std::time::Instant::now();
        let closing = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(old);
        });
        let store = SledStore::open(dir.path()).expect("opens once the old handle has closed");
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
        closing.join().unwrap();
        drop(store);
    }

    #[test]
    fn records_are_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let slate = record(&id(1_795_000_000_000_000, 1), 5_000);
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.save_slate(&slate).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.slate(&slate.slate_id, 2_000).unwrap(), Some(slate));
    }

    #[test]
    fn records_stored_one_per_key_as_json_or_compact_are_still_read_and_swept() {
        let (_dir, store) = open();
        let t = T;
        let (json_live, json_gone) = (record(&id(t, 1), 5_000), record(&id(t, 2), 1_500));
        for r in [&json_live, &json_gone] {
            let json = serde_json::to_vec(r).unwrap();
            store.slates.insert(r.slate_id.as_bytes(), json).unwrap();
        }
        let compact = record(&id(t, 3), 5_000);
        store
            .slates
            .insert(compact.slate_id.as_bytes(), encode_slate(&compact))
            .unwrap();
        // Fields added later than the first JSON records default when absent.
        let older = id(t, 4);
        let json = format!(
            r#"{{"slate_id":"{older}","subject":"ab","placement":"app-home","served_at":1000,"expires_at":5000,"offers":[]}}"#
        );
        store
            .slates
            .insert(older.as_bytes(), json.as_bytes())
            .unwrap();
        // An id the service never made is kept by itself.
        let foreign = record("imported-7", 5_000);
        store.save_slate(&foreign).unwrap();
        assert!(store.slates.contains_key("imported-7").unwrap());

        assert_eq!(
            store.slate(&json_live.slate_id, 2_000).unwrap(),
            Some(json_live)
        );
        assert_eq!(
            store.slate(&compact.slate_id, 2_000).unwrap(),
            Some(compact)
        );
        assert_eq!(store.slate("imported-7", 2_000).unwrap(), Some(foreign));
        let older = store.slate(&older, 2_000).unwrap().unwrap();
        assert_eq!(
            (older.tier.as_str(), older.stage.as_str()),
            ("unknown", "unknown")
        );

        assert_eq!(store.sweep(2_000).unwrap(), 1);
        assert!(
            !store
                .slates
                .contains_key(json_gone.slate_id.as_bytes())
                .unwrap()
        );
        assert_eq!(store.slates.len(), 4);
    }

    #[test]
    fn the_sweep_drops_expired_records_from_a_window_and_keeps_the_rest() {
        let (_dir, store) = open();
        let t = T;
        let (keep, gone) = (record(&id(t, 1), 5_000), record(&id(t, 2), 1_500));
        let alone = record(&id(t + 10_000, 3), 1_500);
        store.save_slates(&[&keep, &gone, &alone]).unwrap();

        assert_eq!(store.sweep(2_000).unwrap(), 2);
        assert_eq!(store.windows.len(), 1, "the emptied window is removed");
        assert_eq!(store.slate(&keep.slate_id, 2_000).unwrap(), Some(keep));
        assert_eq!(store.sweep(2_000).unwrap(), 0);
    }

    #[test]
    fn the_sweep_keeps_one_copy_of_a_record_written_twice_and_drops_a_damaged_tail() {
        let (_dir, store) = open();
        let (first, second) = (record(&id(T, 1), 5_000), record(&id(T, 2), 5_000));
        // A write pass that failed partway is retried whole: the first record twice.
        store.save_slates(&[&first]).unwrap();
        store.save_slates(&[&first, &second]).unwrap();
        assert_eq!(
            store.slate(&first.slate_id, 2_000).unwrap().as_ref(),
            Some(&first)
        );
        assert_eq!(store.sweep(2_000).unwrap(), 1);
        assert_eq!(store.sweep(2_000).unwrap(), 0);

        let window = slate_window(&first.slate_id).unwrap();
        let mut bytes = store.windows.get(window).unwrap().unwrap().to_vec();
        let whole = bytes.len();
        bytes.extend_from_slice(&[7, 0, b's']);
        store.windows.insert(window, bytes).unwrap();
        store.sweep(2_000).unwrap();
        assert_eq!(store.windows.get(window).unwrap().unwrap().len(), whole);
        for r in [&first, &second] {
            assert_eq!(store.slate(&r.slate_id, 2_000).unwrap().as_ref(), Some(r));
        }
    }

    #[test]
    fn an_id_too_long_for_a_window_is_kept_by_itself() {
        let (_dir, store) = open();
        let long = format!("{}{}", id(T, 1), "x".repeat(MAX_WINDOW_ID));
        let slate = record(&long, 5_000);
        store.save_slate(&slate).unwrap();
        assert!(store.windows.is_empty());
        assert_eq!(store.slate(&long, 2_000).unwrap(), Some(slate));
    }

    #[test]
    fn a_damaged_record_or_window_is_reported_under_its_key() {
        let (_dir, store) = open();
        let t = T;
        let mut bytes = encode_slate(&record("sl_cut", 5_000));
        bytes.truncate(bytes.len() / 2);
        store.slates.insert("sl_cut", bytes).unwrap();
        match store.slate("sl_cut", 2_000) {
            Err(StoreError::Corrupt { key, message }) => {
                assert_eq!(key, "sl_cut");
                assert!(message.contains("compact slate record"), "{message}");
            }
            other => panic!("expected a corrupt-record error, got {other:?}"),
        }

        let slate = record(&id(t, 1), 5_000);
        store.save_slate(&slate).unwrap();
        let window = slate_window(&slate.slate_id).unwrap();
        let mut bytes = store.windows.get(window).unwrap().unwrap().to_vec();
        bytes.truncate(bytes.len() - 3);
        store.windows.insert(window, bytes).unwrap();
        match store.slate(&slate.slate_id, 2_000) {
            Err(StoreError::Corrupt { key, message }) => {
                assert!(key.contains(&slate.slate_id), "{key}");
                assert!(message.contains("cut short"), "{message}");
            }
            other => panic!("expected a corrupt-window error, got {other:?}"),
        }
    }

    /// An event id recorded by an earlier version (its time alone) is still seen, as
    /// nothing in particular, so it stays a duplicate; and it is swept by its time.
    #[test]
    fn event_ids_recorded_by_earlier_versions_are_read_and_swept() {
        let (_dir, store) = open();
        store.events.insert("old", &1_000u64.to_be_bytes()).unwrap();
        let subject = SubjectKey("5f2c0a9e".into());
        let retain = Retention {
            seconds: 3600,
            count: 10,
        };
        let again = store.record_event("old", "click p/o", &subject, &[], 2_000, retain);
        assert_eq!(
            again.unwrap(),
            Reservation::Seen {
                what: String::new()
            }
        );
        let now = 1_000 + crate::store::EVENT_MEMORY_SECS + 1;
        assert_eq!(store.sweep(now).unwrap(), 1);
        let after = store.record_event("old", "click p/o", &subject, &[], now, retain);
        assert_eq!(after.unwrap(), Reservation::Made);
    }
}
