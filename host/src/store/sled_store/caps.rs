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
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::super::{StoreError, backend, decode};
use super::settled;
use crate::slate::caps::CapHistory;

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

/// Writes `counter`'s lifetime total apart, as it leaves `subject`'s record (nothing of
/// it inside the longest cap window any more).
pub(super) fn keep_total(
    totals: &TransactionalTree,
    subject: &str,
    counter: &Counter<'_>,
) -> Result<(), UnabortableTransactionError> {
    let key = total_key(subject, &counter.key);
    totals.insert(key.as_bytes(), &encode_total(counter.history.lifetime))?;
    Ok(())
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
        Some((&RECORD_V1, rest)) => {
            let counters: Counters<'a> =
                postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
            // Looked up by binary search: out of order, it would be misread, not refused.
            if !counters.is_sorted_by(|a, b| a.key < b.key) {
                return Err(corrupt("counters out of order or repeated".into()));
            }
            Ok(counters)
        }
        Some((v, _)) => Err(corrupt(format!("unknown record layout {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Where `key` is in `counters`, or where it would go.
pub(super) fn find(counters: &Counters<'_>, key: &str) -> Result<usize, usize> {
    counters.binary_search_by(|c| c.key.as_ref().cmp(key))
}

/// Moves the counters kept one key each (the layout before subject records, in tree
/// `caps`) into the subject records and totals, then drops the old tree. Run when the
/// store opens, before anything reads caps. Each subject moves in one transaction that
/// also removes its old keys, so a start interrupted partway moves the rest at the next
/// one and nothing is counted twice. Counters already in the new layout (a store
/// upgraded, downgraded and upgraded again) are added to, not replaced. Old entries
/// that cannot be read are kept as they were in tree `caps_unreadable`.
pub(super) fn move_per_key_counters(
    db: &sled::Db,
    recent: &sled::Tree,
    totals: &sled::Tree,
) -> Result<(), StoreError> {
    const OLD: &str = "caps";
    const UNREADABLE: &str = "caps_unreadable";
    if !db.tree_names().iter().any(|n| n.as_ref() == OLD.as_bytes()) {
        return Ok(());
    }
    let old = db.open_tree(OLD).map_err(backend)?;
    if !old.is_empty() {
        tracing::info!("moving cap counters to one record per subject (once, at this upgrade)");
    }
    let (mut moved, mut unreadable) = (0usize, 0usize);
    // The old tree is ordered by key, so one subject's counters come together. Whole
    // subjects go in batches of about MOVE_BATCH counters, one transaction each.
    let mut pending: Vec<(String, Vec<OldCounter>)> = Vec::new();
    let mut in_batch = 0;
    for entry in old.iter() {
        let (key, bytes) = entry.map_err(backend)?;
        let text = String::from_utf8_lossy(&key).into_owned();
        let parsed = match text.split_once('|') {
            Some((who, counter)) => decode::<CapHistory>(&format!("caps/{text}"), &bytes)
                .map(|history| (who.to_string(), counter.to_string(), history))
                .map_err(|e| e.to_string()),
            None => Err("no subject in the key".to_string()),
        };
        let (who, counter, history) = match parsed {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(
                    key = %text,
                    %error,
                    "a cap counter that cannot be read is kept aside in tree {UNREADABLE}"
                );
                db.open_tree(UNREADABLE)
                    .and_then(|aside| aside.insert(&key, bytes))
                    .map_err(backend)?;
                old.remove(&key).map_err(backend)?;
                unreadable += 1;
                continue;
            }
        };
        if pending.last().is_none_or(|(subject, _)| *subject != who) {
            if in_batch >= MOVE_BATCH {
                store_subjects(&old, recent, totals, &pending)?;
                pending.clear();
                in_batch = 0;
            }
            pending.push((who, Vec::new()));
        }
        if let Some((_, counters)) = pending.last_mut() {
            counters.push(OldCounter {
                old_key: key,
                counter,
                history,
            });
        }
        in_batch += 1;
        moved += 1;
        if moved.is_multiple_of(100_000) {
            tracing::info!(moved, "moving cap counters");
        }
    }
    store_subjects(&old, recent, totals, &pending)?;
    db.flush().map_err(backend)?;
    db.drop_tree(OLD).map_err(backend)?;
    if moved + unreadable > 0 {
        tracing::info!(moved, unreadable, "cap counters moved");
    }
    Ok(())
}

/// About how many counters [`move_per_key_counters`] moves in one transaction.
const MOVE_BATCH: usize = 1_000;

/// One counter of the old layout, with its key there.
struct OldCounter {
    old_key: sled::IVec,
    counter: String,
    history: CapHistory,
}

/// Moves subjects' counters from the old layout, adding them to what the new one holds:
/// those with timestamps into the subject's record, the others to their totals.
fn store_subjects(
    old: &sled::Tree,
    recent: &sled::Tree,
    totals: &sled::Tree,
    subjects: &[(String, Vec<OldCounter>)],
) -> Result<(), StoreError> {
    if subjects.is_empty() {
        return Ok(());
    }
    let result = (old, recent, totals).transaction(|(old, recent, totals)| {
        for (subject, pending) in subjects {
            move_subject(old, recent, totals, subject, pending)?;
        }
        Ok(())
    });
    settled(result)
}

/// One subject's part of [`store_subjects`].
fn move_subject(
    old: &TransactionalTree,
    recent: &TransactionalTree,
    totals: &TransactionalTree,
    subject: &str,
    pending: &[OldCounter],
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let abort = ConflictableTransactionError::Abort;
    let existing = recent.get(subject)?;
    let mut counters = match &existing {
        Some(bytes) => decode_counters(subject, bytes).map_err(abort)?,
        None => Vec::new(),
    };
    for OldCounter {
        old_key,
        counter,
        history,
    } in pending
    {
        match find(&counters, counter) {
            Ok(i) => {
                let into = &mut counters[i].history;
                into.lifetime += history.lifetime;
                into.recent.extend_from_slice(&history.recent);
                into.recent.sort_unstable();
            }
            Err(i) => {
                let key = total_key(subject, counter);
                let total = match totals.get(key.as_bytes())? {
                    Some(bytes) => decode_total(subject, counter, &bytes).map_err(abort)?,
                    None => 0,
                };
                let lifetime = total + history.lifetime;
                if history.recent.is_empty() {
                    totals.insert(key.as_bytes(), &encode_total(lifetime))?;
                } else {
                    let history = CapHistory {
                        lifetime,
                        recent: history.recent.clone(),
                    };
                    let key = Cow::Owned(counter.clone());
                    counters.insert(i, Counter { key, history });
                }
            }
        }
        old.remove(old_key)?;
    }
    if !counters.is_empty() {
        recent.insert(subject.as_bytes(), encode_counters(&counters))?;
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
        // Out of order or repeated, binary search would misread it: refused.
        for (a, b) in [(1, 0), (0, 0)] {
            let shuffled = vec![counters[a].clone(), counters[b].clone()];
            let e = decode_counters("s", &encode_counters(&shuffled)).unwrap_err();
            assert!(e.to_string().contains("out of order"), "{e}");
        }
    }
}
