//! Cap counters in sled: one record per subject for the counters with recent
//! impressions, and a total per counter for the rest.
//!
//! A slate's cap check reads every counter its offers touch (18 for eight offers under
//! the example's five caps), and most of them have no impressions. Stored one key per
//! counter, that was a lookup each, hit or miss, about 0.33 us apiece. Here it is one
//! lookup of the subject's record, whose size is bounded by the impressions within the
//! longest cap window: a counter whose impressions all fall out of it keeps only its
//! lifetime total, stored apart and read only when a lifetime cap asks for it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::super::{StoreError, backend, decode};
use crate::slate::caps::{CapHistory, Retention};

/// The first byte of a subject's record: its layout.
const RECORD_V1: u8 = 1;

/// One counter in a subject's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Counter<'a> {
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    pub history: CapHistory,
}

/// A subject's counters with recent impressions, sorted by key.
pub(super) type Counters<'a> = Vec<Counter<'a>>;

/// The key of a counter's lifetime total: subject, `|`, counter key.
pub(super) fn total_key(subject: &str, key: &str) -> String {
    format!("{subject}|{key}")
}

pub(super) fn encode_total(total: u64) -> [u8; 8] {
    total.to_be_bytes()
}

pub(super) fn decode_total(subject: &str, key: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: format!("cap_totals/{}", total_key(subject, key)),
        message: format!("{} bytes, not 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

pub(super) fn encode_counters(counters: &Counters<'_>) -> Vec<u8> {
    postcard::to_extend(counters, vec![RECORD_V1]).expect("cap records serialize")
}

pub(super) fn decode_counters<'a>(
    subject: &str,
    bytes: &'a [u8],
) -> Result<Counters<'a>, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        key: format!("cap_recent/{subject}"),
        message,
    };
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown record layout {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Where `key` is in `counters`, or where it would go.
pub(super) fn find(counters: &Counters<'_>, key: &str) -> Result<usize, usize> {
    counters.binary_search_by(|c| c.key.as_ref().cmp(key))
}

/// Whether a counter still has an impression inside the longest window at `now`.
pub(super) fn is_recent(history: &CapHistory, now: u64, retention: Retention) -> bool {
    let cutoff = now.saturating_sub(retention.seconds);
    history.recent.iter().any(|&t| t > cutoff)
}

/// Moves the counters kept one key each (the layout before subject records, in tree
/// `caps`) into the subject records and totals, then drops the old tree. Run when the
/// store opens, before anything reads caps. Rerunning after a crash partway is safe: a
/// counter moved twice is written with the same value.
pub(super) fn move_per_key_counters(
    db: &sled::Db,
    recent: &sled::Tree,
    totals: &sled::Tree,
) -> Result<(), StoreError> {
    const OLD: &str = "caps";
    if !db.tree_names().iter().any(|n| n.as_ref() == OLD.as_bytes()) {
        return Ok(());
    }
    let old = db.open_tree(OLD).map_err(backend)?;
    let total = old.len();
    if total > 0 {
        tracing::info!(
            counters = total,
            "moving cap counters to one record per subject (once, at this upgrade)"
        );
    }
    let (mut moved, mut skipped) = (0usize, 0usize);
    // The old tree is ordered by key, so one subject's counters come together.
    let mut subject = String::new();
    let mut pending: Vec<(String, CapHistory)> = Vec::new();
    for entry in old.iter() {
        let (key, bytes) = entry.map_err(backend)?;
        let text = String::from_utf8_lossy(&key);
        let Some((who, counter)) = text.split_once('|') else {
            tracing::warn!(key = %text, "skipping a cap counter with no subject in its key");
            skipped += 1;
            continue;
        };
        let history: CapHistory = match decode(&format!("caps/{text}"), &bytes) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a cap counter that does not decode");
                skipped += 1;
                continue;
            }
        };
        if who != subject {
            store_subject(recent, totals, &subject, &mut pending)?;
            subject = who.to_string();
        }
        pending.push((counter.to_string(), history));
        moved += 1;
        if moved.is_multiple_of(100_000) {
            tracing::info!(moved, of = total, "moving cap counters");
        }
    }
    store_subject(recent, totals, &subject, &mut pending)?;
    recent.flush().map_err(backend)?;
    totals.flush().map_err(backend)?;
    db.drop_tree(OLD).map_err(backend)?;
    if total > 0 {
        tracing::info!(moved, skipped, "cap counters moved");
    }
    Ok(())
}

/// Writes one subject's counters from the old layout: those with timestamps into its
/// record (replacing any entry of the same key), the others as totals.
fn store_subject(
    recent: &sled::Tree,
    totals: &sled::Tree,
    subject: &str,
    pending: &mut Vec<(String, CapHistory)>,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let existing = recent.get(subject).map_err(backend)?;
    let mut counters = match &existing {
        Some(bytes) => decode_counters(subject, bytes)?,
        None => Vec::new(),
    };
    let before = counters.len();
    for (key, history) in pending.drain(..) {
        if history.recent.is_empty() {
            (totals.insert(total_key(subject, &key), &encode_total(history.lifetime)))
                .map_err(backend)?;
            continue;
        }
        match find(&counters, &key) {
            Ok(i) => counters[i].history = history,
            Err(i) => counters.insert(
                i,
                Counter {
                    key: Cow::Owned(key),
                    history,
                },
            ),
        }
    }
    if !counters.is_empty() || before > 0 {
        (recent.insert(subject, encode_counters(&counters))).map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_other_layouts() {
        let counters = vec![
            Counter {
                key: "offer:p/o".into(),
                history: CapHistory {
                    lifetime: 7,
                    recent: vec![100, 200],
                },
            },
            Counter {
                key: "slate".into(),
                history: CapHistory {
                    lifetime: 1,
                    recent: vec![300],
                },
            },
        ];
        let bytes = encode_counters(&counters);
        assert_eq!(decode_counters("s", &bytes).unwrap(), counters);
        assert_eq!(find(&counters, "slate"), Ok(1));
        assert_eq!(find(&counters, "partner:p"), Err(1));

        let mut other = bytes.clone();
        other[0] = 9;
        let e = decode_counters("s", &other).unwrap_err().to_string();
        assert!(e.contains("unknown record layout 9"), "{e}");
        assert!(decode_counters("s", &[]).is_err());
        assert!(decode_counters("s", &bytes[..bytes.len() - 1]).is_err());
    }
}
