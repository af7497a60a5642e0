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

use crate::slate::caps::{CapHistory, CapRecord, Retention};
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
///
/// Its compact form ([`encode_slate`]) is postcard, fields in declaration order with no
/// names: [`SlateRecordRef`] must keep the same fields in the same order.
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

/// A served slate as the service fills it in from the slate it has just ranked, every
/// string borrowed: encoding it ([`SlateRecordRef::encode`]) copies each string once,
/// into the record's bytes, instead of into an owned [`SlateRecord`] first. Serializes
/// exactly as [`SlateRecord`] does.
#[derive(Debug, Serialize)]
pub struct SlateRecordRef<'a> {
    /// Slate id.
    pub slate_id: &'a str,
    /// Whose slate (hashed).
    pub subject: &'a SubjectKey,
    /// Placement.
    pub placement: &'a str,
    /// When, unix seconds.
    pub served_at: u64,
    /// Until when events may refer to it, unix seconds.
    pub expires_at: u64,
    /// Offers in rank order.
    pub offers: Vec<ServedOfferRef<'a>>,
    /// The subject's tier when served.
    pub tier: &'a str,
    /// The subject's life-cycle stage when served.
    pub stage: &'a str,
}

/// A [`ServedOffer`], borrowed; serializes exactly as it does.
#[derive(Debug, Serialize)]
pub struct ServedOfferRef<'a> {
    /// Partner id.
    pub partner: &'a str,
    /// Plugin name.
    pub plugin: &'a str,
    /// Plugin version.
    pub plugin_version: &'a str,
    /// Offer id.
    pub offer_id: &'a str,
    /// Category.
    pub category: &'a str,
    /// Bid value, minor units.
    pub value_minor: u64,
    /// The experiment-arm row.
    pub arm: &'a str,
}

impl SlateRecordRef<'_> {
    /// The record in the compact form, as [`encode_slate`] writes a [`SlateRecord`].
    pub fn encode(&self) -> Vec<u8> {
        encode_slate(self)
    }

    /// An owned copy.
    pub fn to_record(&self) -> SlateRecord {
        SlateRecord {
            slate_id: self.slate_id.to_string(),
            subject: self.subject.clone(),
            placement: self.placement.to_string(),
            served_at: self.served_at,
            expires_at: self.expires_at,
            offers: (self.offers.iter())
                .map(|o| ServedOffer {
                    partner: o.partner.to_string(),
                    plugin: o.plugin.to_string(),
                    plugin_version: o.plugin_version.to_string(),
                    offer_id: o.offer_id.to_string(),
                    category: o.category.to_string(),
                    value_minor: o.value_minor,
                    arm: o.arm.to_string(),
                })
                .collect(),
            tier: self.tier.to_string(),
            stage: self.stage.to_string(),
        }
    }
}

/// First byte of a slate record in the compact form: [`SLATE_COMPACT`], then the record
/// in postcard (fields in declaration order, no names). Slate records are most of what
/// the embedded store writes, one per slate served, and every byte written costs a core
/// some time in sled's write-back; the compact form is under half the size of JSON. A
/// change to [`SlateRecord`]'s fields needs a new tag, with the old one still read.
pub(crate) const SLATE_COMPACT: u8 = 1;

/// `slate` ([`SlateRecord`] or [`SlateRecordRef`]) in the compact form.
pub(crate) fn encode_slate(slate: &impl Serialize) -> Vec<u8> {
    // Five offers come to about 500 bytes: one allocation, no growing.
    let mut out = Vec::with_capacity(768);
    out.push(SLATE_COMPACT);
    postcard::to_extend(slate, out).expect("slate records serialize")
}

/// A slate record in either form: compact, or JSON (starts `{`) as the embedded store
/// wrote them before the compact form.
pub(crate) fn decode_slate(key: &str, bytes: &[u8]) -> Result<SlateRecord, StoreError> {
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
    /// When the row's whole bucket may be forgotten (unix seconds): from then on the
    /// store drops it (Redis by key expiry, sled at its next sweep). `None` keeps it.
    pub expires_at: Option<u64>,
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

/// What [`Store::slate_reads`] read.
#[derive(Debug, Default)]
pub struct SlateReads {
    /// The stored profile, when it was asked for.
    pub profile: Option<Result<Option<Profile>, StoreError>>,
    /// The cap record, when it was asked for and the store keeps one.
    pub caps: Option<Result<CapRecord, StoreError>>,
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

/// What [`Store::try_reserve`] and [`Store::record_event`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The event is recorded, its impressions counted.
    Made,
    /// A limit was reached; nothing changed.
    Capped,
    /// The event id was recorded before; nothing changed. `what` is what it was recorded
    /// as (empty for records kept before events said what they were).
    Seen {
        /// The earlier record's description.
        what: String,
    },
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
    /// Stores served slates already in the compact form ([`SlateRecordRef::encode`]),
    /// as `(slate id, bytes)`. The embedded store keeps them as they are; others decode
    /// them first.
    fn save_encoded_slates(&self, slates: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let records = (slates.iter())
            .map(|(id, bytes)| decode_slate(id, bytes))
            .collect::<Result<Vec<_>, _>>()?;
        self.save_slates(&records.iter().collect::<Vec<_>>())
    }
    /// A served slate by id (expired ones are `None`).
    fn slate(&self, slate_id: &str, now: u64) -> Result<Option<SlateRecord>, StoreError>;
    /// The cap histories of `subject` for `keys`, in the same order (empty if none).
    /// Lifetime totals are read only when `lifetime` is true (some cap is a lifetime
    /// cap); otherwise a history's `lifetime` may be short, so that a store can leave
    /// out counters with no recent impressions.
    fn cap_histories(
        &self,
        subject: &SubjectKey,
        keys: &[String],
        lifetime: bool,
    ) -> Result<Vec<CapHistory>, StoreError>;
    /// Every counter of `subject` with impressions inside the longest cap window (as of
    /// the subject's last write), sorted by key, when the store keeps them together: a
    /// slate then reads them before its plugins run, without listing the keys its
    /// offers touch. `None` (the default) when the store reads by key only
    /// ([`Store::cap_histories`]). Lifetime totals of counters left out are not in it,
    /// so a slate under a lifetime cap reads by key.
    fn cap_record(&self, subject: &SubjectKey) -> Option<Result<CapRecord, StoreError>> {
        let _ = subject;
        None
    }
    /// What a slate reads before its plugins run: `subject`'s stored profile when
    /// `profile`, and its cap record ([`Store::cap_record`]) when `caps`. A networked
    /// store reads both in one round trip.
    fn slate_reads(&self, subject: &SubjectKey, profile: bool, caps: bool) -> SlateReads {
        SlateReads {
            profile: profile.then(|| self.profile(subject)),
            caps: caps.then(|| self.cap_record(subject)).flatten(),
        }
    }
    /// Records event `event_id`, described by `what`, once. When it is new, also adds one
    /// impression at `now` to each of `cap_keys` of `subject`; when it is not, says what
    /// it was recorded as, so that an id reused for another event can be told from a
    /// retry.
    fn record_event(
        &self,
        event_id: &str,
        what: &str,
        subject: &SubjectKey,
        cap_keys: &[String],
        now: u64,
        retention: Retention,
    ) -> Result<Reservation, StoreError> {
        // A reservation against no limits is refused only when the event id was seen.
        self.try_reserve(event_id, what, subject, &[], cap_keys, now, retention)
    }
    /// Atomically: if every `limits` entry `(key, window seconds or None for lifetime,
    /// max)` of `subject` is still below its max and `event_id` is new, records the event
    /// (described by `what`) with one impression on each of `cap_keys`; otherwise changes
    /// nothing. This is how serving counts without overshooting a cap when several
    /// replicas serve the same subject at once.
    #[allow(clippy::too_many_arguments)]
    fn try_reserve(
        &self,
        event_id: &str,
        what: &str,
        subject: &SubjectKey,
        limits: &[(String, Option<u64>, u32)],
        cap_keys: &[String],
        now: u64,
        retention: Retention,
    ) -> Result<Reservation, StoreError>;
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
    /// Stores `bytes` under `key` unless a blob is there already, in one atomic step;
    /// returns the blob under `key` afterwards. Writers racing to create a shared
    /// secret all end up with the same one.
    fn put_blob_if_absent(&self, key: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Audit entries with sequence number greater than `after`, oldest first, at most
    /// `limit`.
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Forgets slates past their expiry, event ids older than [`EVENT_MEMORY_SECS`] and
    /// counter buckets past theirs ([`CounterAdd::expires_at`]); backends with native
    /// expiry do nothing. Returns how many records it removed.
    fn sweep(&self, _now: u64) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Forgets the cap records of subjects with no impression inside `retention` (the
    /// longest cap window) as of `now`, keeping each counter's lifetime total, as the
    /// subject's next write would: a subject who never comes back leaves nothing but
    /// its totals. Backends with native expiry do nothing. Returns how many records
    /// it removed.
    fn sweep_caps(&self, _now: u64, _retention: Retention) -> Result<u64, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed record writes the very bytes the owned one does, so records encoded
    /// on the request's path read back as [`SlateRecord`]s.
    #[test]
    fn a_borrowed_record_encodes_as_the_owned_one() {
        let subject = SubjectKey::new("salt", "someone");
        let offers = [
            ("p-air", "air-miles", "ofr-1", "travel", 4200),
            ("p-shop", "cashback", "ofr-2", "retail", 90),
        ];
        let borrowed = SlateRecordRef {
            slate_id: "sl_0000000004d2aaaaaaaaaaaaaaaa",
            subject: &subject,
            placement: "app-home",
            served_at: 1_700_000_000,
            expires_at: 1_700_086_400,
            offers: (offers.iter())
                .map(
                    |(partner, plugin, offer_id, category, value)| ServedOfferRef {
                        partner,
                        plugin,
                        plugin_version: "1.2.0",
                        offer_id,
                        category,
                        value_minor: *value,
                        arm: "1.2.0|live|-",
                    },
                )
                .collect(),
            tier: "high-value",
            stage: "spending",
        };
        let owned = borrowed.to_record();
        assert_eq!(owned.offers[1].offer_id, "ofr-2");
        assert_eq!(borrowed.encode(), encode_slate(&owned));
        assert_eq!(decode_slate("k", &borrowed.encode()).unwrap(), owned);
    }
}
