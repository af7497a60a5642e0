//! Persistence behind one trait: stored profiles, served slates, cap counters and event
//! idempotency. [`SledStore`] is the embedded default.

mod redis_store;
mod sled_store;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub use redis_store::RedisStore;
pub use sled_store::SledStore;

use std::collections::BTreeMap;

use crate::slate::caps::{CapHistory, Retention};
use crate::slate::profile::Profile;

/// Why the store failed. Callers treat any of these as "unavailable" and fail closed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend reported an error.
    #[error("store backend: {0}")]
    Backend(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt record under {key}: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoding error.
        message: String,
    },
}

/// How long event ids are remembered for idempotency: longer than any slate can be
/// referred to (`slate.retention_hours` is at most 720).
pub const EVENT_MEMORY_SECS: u64 = 30 * 86_400;

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// A subject id after salted hashing: what the store and bucketing see. Raw subject ids
/// are never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubjectKey(pub String);

impl SubjectKey {
    /// Hashes `subject` with `salt`.
    pub fn new(salt: &str, subject: &str) -> Self {
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        h.update([0]);
        h.update(subject.as_bytes());
        let digest = h.finalize();
        SubjectKey(hex::encode(&digest[..16]))
    }
}

/// One offer as it was served, kept so events can refer to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedOffer {
    /// Partner id.
    pub partner: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub plugin_version: String,
    /// Offer id.
    pub offer_id: String,
    /// Category.
    pub category: String,
    /// Bid value, minor units.
    pub value_minor: u64,
    /// The experiment-arm row its version's stats are kept under (see
    /// [`crate::report`]); empty in records written before arms were kept.
    #[serde(default)]
    pub arm: String,
}

/// A served slate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlateRecord {
    /// Slate id.
    pub slate_id: String,
    /// Whose slate (hashed).
    pub subject: SubjectKey,
    /// Placement.
    pub placement: String,
    /// When, unix seconds.
    pub served_at: u64,
    /// Until when events may refer to it, unix seconds.
    pub expires_at: u64,
    /// Offers in rank order.
    pub offers: Vec<ServedOffer>,
    /// The subject's tier when served (`unknown` when the profile had none), for
    /// aggregates.
    #[serde(default = "unknown")]
    pub tier: String,
    /// The subject's life-cycle stage when served, for aggregates.
    #[serde(default = "unknown")]
    pub stage: String,
}

fn unknown() -> String {
    "unknown".into()
}

/// Additions to one row of a counter table (aggregates and experiment stats).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterAdd {
    /// The partition rows are read back by, e.g. `agg|2026-11-24` or `arm|acme/air`.
    pub bucket: String,
    /// The row within the bucket.
    pub row: String,
    /// Named counters and what to add to each.
    pub fields: Vec<(String, u64)>,
    /// Members (hashed subjects) to add to the row's set of distinct members.
    pub members: Vec<String>,
}

/// One row of a counter table as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterRow {
    /// The row key.
    pub row: String,
    /// Its counters.
    pub fields: BTreeMap<String, u64>,
    /// Its distinct members, when asked for.
    pub members: Vec<String>,
}

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Recorded {
    /// First time this event id was seen; counted.
    New,
    /// Seen before; nothing changed.
    Duplicate,
}

/// The operations the service needs from storage. Every write that counts is atomic
/// per event: either the event id and all its counter increments are stored, or none.
pub trait Store: Send + Sync + 'static {
    /// The stored profile of `subject`.
    fn profile(&self, subject: &SubjectKey) -> Result<Option<Profile>, StoreError>;
    /// Stores (replaces) profiles, all or none.
    fn put_profiles(&self, profiles: &[(SubjectKey, Profile)]) -> Result<(), StoreError>;
    /// Stores a served slate.
    fn save_slate(&self, slate: &SlateRecord) -> Result<(), StoreError>;
    /// Stores several served slates.
    fn save_slates(&self, slates: &[&SlateRecord]) -> Result<(), StoreError> {
        slates.iter().try_for_each(|s| self.save_slate(s))
    }
    /// A served slate by id (expired ones are `None`).
    fn slate(&self, slate_id: &str, now: u64) -> Result<Option<SlateRecord>, StoreError>;
    /// The cap histories of `subject` for `keys`, in the same order (empty if none).
    fn cap_histories(
        &self,
        subject: &SubjectKey,
        keys: &[String],
    ) -> Result<Vec<CapHistory>, StoreError>;
    /// Records event `event_id` once. When it is new, also adds one impression at `now`
    /// to each of `cap_keys` of `subject`.
    fn record_event(
        &self,
        event_id: &str,
        subject: &SubjectKey,
        cap_keys: &[String],
        now: u64,
        retention: Retention,
    ) -> Result<Recorded, StoreError> {
        // A reservation against no limits fails only when the event id was seen before.
        Ok(
            if self.try_reserve(event_id, subject, &[], cap_keys, now, retention)? {
                Recorded::New
            } else {
                Recorded::Duplicate
            },
        )
    }
    /// Atomically: if every `limits` entry `(key, window seconds or None for lifetime,
    /// max)` of `subject` is still below its max and `event_id` is new, records the event
    /// with one impression on each of `cap_keys` and returns true; otherwise changes
    /// nothing and returns false. This is how serving counts without overshooting a cap when
    /// several replicas serve the same subject at once.
    fn try_reserve(
        &self,
        event_id: &str,
        subject: &SubjectKey,
        limits: &[(String, Option<u64>, u32)],
        cap_keys: &[String],
        now: u64,
        retention: Retention,
    ) -> Result<bool, StoreError>;
    /// Adds to counter rows. Each increment is atomic on its own (concurrent adds from
    /// any number of replicas are neither lost nor doubled); adding a member already in
    /// a row's set changes nothing.
    fn add_counters(&self, adds: &[CounterAdd]) -> Result<(), StoreError>;
    /// Every row of `bucket`, with its distinct members when `members` is true.
    fn counters(&self, bucket: &str, members: bool) -> Result<Vec<CounterRow>, StoreError>;
    /// The registry document and its revision (0 and `None` before the first commit).
    fn registry(&self) -> Result<(u64, Option<Vec<u8>>), StoreError>;
    /// Atomically: if the registry is still at `expected_rev`, stores `doc` as revision
    /// `expected_rev + 1`, appends `audit` to the audit log and stores `blobs`. Returns
    /// false (changing nothing) when another writer got there first.
    fn commit_registry(
        &self,
        expected_rev: u64,
        doc: &[u8],
        audit: &[u8],
        blobs: &[(String, Vec<u8>)],
    ) -> Result<bool, StoreError>;
    /// A stored blob (component bytes, precompiled artifacts).
    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a blob outside any registry commit (caches such as precompiled artifacts).
    fn put_blob(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Audit entries with sequence number greater than `after`, oldest first, at most
    /// `limit`.
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Forgets slates past their expiry and event ids older than [`EVENT_MEMORY_SECS`]
    /// (backends with native expiry do nothing). Returns how many records it removed.
    fn sweep(&self, _now: u64) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// True when operations cross the network (callers then keep them off async
    /// threads).
    fn is_remote(&self) -> bool {
        false
    }
    /// A cheap read that proves the store answers (for `/readyz`).
    fn ping(&self) -> Result<(), StoreError>;
}
