//! The embedded sled backend.

use std::path::Path;

use serde::Serialize;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use std::collections::BTreeMap;

use super::{CounterAdd, CounterRow, SlateRecord, Store, StoreError, SubjectKey, backend, decode};
use crate::slate::caps::{CapHistory, Retention};
use crate::slate::profile::Profile;

/// Profiles, slates, cap counters and event ids in one sled database.
pub struct SledStore {
    db: sled::Db,
    profiles: sled::Tree,
    slates: sled::Tree,
    caps: sled::Tree,
    events: sled::Tree,
    registry: sled::Tree,
    audit: sled::Tree,
    blobs: sled::Tree,
    counters: sled::Tree,
    members: sled::Tree,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records serialize")
}

/// First byte of a slate record in the compact form: [`SLATE_COMPACT`], then the record
/// in postcard (fields in declaration order, no names). Slate records are most of what
/// this store writes, one per slate served, and every byte written costs a core some
/// time in sled's write-back; the compact form is under half the size of JSON. A change
/// to [`SlateRecord`]'s fields needs a new tag, with the old one still read.
const SLATE_COMPACT: u8 = 1;

fn encode_slate(slate: &SlateRecord) -> Vec<u8> {
    postcard::to_extend(slate, vec![SLATE_COMPACT]).expect("slate records serialize")
}

/// A slate record in either form: compact, or the JSON written before it (starts `{`).
fn decode_slate(key: &str, bytes: &[u8]) -> Result<SlateRecord, StoreError> {
    match bytes.split_first() {
        Some((&SLATE_COMPACT, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                message: format!("compact slate record: {e}"),
            })
        }
        _ => decode(key, bytes),
    }
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

fn cap_key(subject: &SubjectKey, key: &str) -> String {
    format!("{}|{key}", subject.0)
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
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && started.elapsed() < LOCK_WAIT =>
                {
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
        Ok(SledStore {
            profiles: tree("profiles")?,
            slates: tree("slates")?,
            caps: tree("caps")?,
            events: tree("events")?,
            registry: tree("registry")?,
            audit: tree("audit")?,
            blobs: tree("blobs")?,
            counters: tree("counters")?,
            members: tree("members")?,
            db,
        })
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
        self.slates
            .insert(slate.slate_id.as_bytes(), encode_slate(slate))
            .map_err(backend)?;
        Ok(())
    }

    fn save_slates(&self, slates: &[&SlateRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for slate in slates {
            batch.insert(slate.slate_id.as_bytes(), encode_slate(slate));
        }
        self.slates.apply_batch(batch).map_err(backend)
    }

    fn slate(&self, slate_id: &str, now: u64) -> Result<Option<SlateRecord>, StoreError> {
        let Some(bytes) = self.slates.get(slate_id).map_err(backend)? else {
            return Ok(None);
        };
        let record = decode_slate(slate_id, &bytes)?;
        if record.expires_at <= now {
            let _ = self.slates.remove(slate_id);
            return Ok(None);
        }
        Ok(Some(record))
    }

    fn cap_histories(
        &self,
        subject: &SubjectKey,
        keys: &[String],
    ) -> Result<Vec<CapHistory>, StoreError> {
        keys.iter()
            .map(|k| {
                let key = cap_key(subject, k);
                match self.caps.get(&key).map_err(backend)? {
                    Some(bytes) => decode(&key, &bytes),
                    None => Ok(CapHistory::default()),
                }
            })
            .collect()
    }

    fn try_reserve(
        &self,
        event_id: &str,
        subject: &SubjectKey,
        limits: &[(String, Option<u64>, u32)],
        cap_keys: &[String],
        now: u64,
        retention: Retention,
    ) -> Result<bool, StoreError> {
        let result = (&self.events, &self.caps).transaction(|(events, caps)| {
            let read = |key: &str| -> Result<CapHistory, ConflictableTransactionError<StoreError>> {
                match caps.get(key)? {
                    Some(bytes) => decode(key, &bytes).map_err(ConflictableTransactionError::Abort),
                    None => Ok(CapHistory::default()),
                }
            };
            for (k, window, max) in limits {
                let history = read(&cap_key(subject, k))?;
                let seen = history.count_within(*window, now);
                if seen >= *max as u64 {
                    return Ok(false);
                }
            }
            if events.get(event_id)?.is_some() {
                return Ok(false);
            }
            events.insert(event_id.as_bytes(), &now.to_be_bytes())?;
            for k in cap_keys {
                let key = cap_key(subject, k);
                let mut history = read(&key)?;
                history.record(now, retention);
                caps.insert(key.as_bytes(), encode(&history))?;
            }
            Ok(true)
        });
        match result {
            Ok(r) => Ok(r),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn add_counters(&self, adds: &[CounterAdd]) -> Result<(), StoreError> {
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
        match result {
            Ok(done) => Ok(done),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(key).map_err(backend)?.map(|b| b.to_vec()))
    }

    fn put_blob(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.blobs.insert(key, bytes).map(|_| ()).map_err(backend)
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

    fn sweep(&self, now: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
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
            let at = bytes
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if at < cutoff && self.events.remove(&key).map_err(backend)?.is_some() {
                removed += 1;
            }
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

    #[test]
    fn slate_records_are_written_compact_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let slate = record("sl_1", 5_000);
        store.save_slates(&[&slate]).unwrap();

        let stored = store.slates.get("sl_1").unwrap().unwrap();
        assert_eq!(stored[0], SLATE_COMPACT);
        let json = serde_json::to_vec(&slate).unwrap();
        assert!(
            stored.len() * 2 < json.len(),
            "compact {} bytes, JSON {} bytes",
            stored.len(),
            json.len()
        );
        assert_eq!(store.slate("sl_1", 2_000).unwrap(), Some(slate));
    }

    #[test]
    fn slate_records_written_as_json_are_still_read_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (old_live, old_expired) = (record("sl_old", 5_000), record("sl_gone", 1_500));
        for r in [&old_live, &old_expired] {
            let json = serde_json::to_vec(r).unwrap();
            store.slates.insert(r.slate_id.as_bytes(), json).unwrap();
        }
        // Fields added later than the first JSON records default when absent.
        store
            .slates
            .insert(
                "sl_older",
                br#"{"slate_id":"sl_older","subject":"ab","placement":"app-home","served_at":1000,"expires_at":5000,"offers":[]}"#.as_slice(),
            )
            .unwrap();
        store.save_slate(&record("sl_new", 5_000)).unwrap();

        assert_eq!(store.slate("sl_old", 2_000).unwrap(), Some(old_live));
        let older = store.slate("sl_older", 2_000).unwrap().unwrap();
        assert_eq!(
            (older.tier.as_str(), older.stage.as_str()),
            ("unknown", "unknown")
        );

        assert_eq!(store.sweep(2_000).unwrap(), 1);
        assert_eq!(store.slate("sl_gone", 1_000).unwrap(), None);
        for id in ["sl_old", "sl_older", "sl_new"] {
            assert!(store.slate(id, 2_000).unwrap().is_some(), "{id} was swept");
        }
    }

    #[test]
    fn a_damaged_compact_record_is_reported_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
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
    }
}
