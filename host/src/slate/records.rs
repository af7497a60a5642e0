//! Slate records written behind the response, for the embedded store.
//!
//! Saving one record in sled costs about as much as a plugin call, on the request's
//! path. With the embedded store the record is instead kept in memory and written by a
//! background thread within [`WRITE_EVERY`], many at a time (the store groups them by
//! the millisecond their slate started, a few writes per pass); until then events find
//! it in memory. A crash can lose the records of the last [`WRITE_EVERY`], on top of
//! the up to 200 ms of writes sled itself keeps in memory before it flushes. A networked
//! store is written before the response instead, so every replica finds the record as
//! soon as the app has the slate.
//!
//! If the store refuses writes, records stay in memory and are retried every
//! [`RETRY_EVERY`]; expired ones are dropped, and past [`MAX_PENDING`] new ones are
//! refused (the slate then says `slate-not-recorded`, as when a direct write fails).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::{SlateRecord, SlateRecordRef, Store, StoreError, decode_slate};

/// How long a record may wait in memory before it is written. Longer passes write each
/// millisecond's records once rather than appending to it pass after pass: at 8 plugins
/// a slate's p99 fell from about 210 µs to 150 µs against passes every 5 ms, as the
/// process wrote a third fewer bytes.
pub const WRITE_EVERY: Duration = Duration::from_millis(50);

/// How often writes are retried while the store refuses them.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

/// Most records held in memory (under 1 KB each with five offers, its table entry
/// included).
pub const MAX_PENDING: usize = 200_000;

/// Largest table kept for the next pass's records: a pass holds about 700 at 14 000
/// slates a second.
const SPARE_MAX: usize = 1 << 16;

/// Records not yet in the store.
pub(super) struct PendingSlates {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    pending: Mutex<Pending>,
    /// One writer at a time, so `writing` is never replaced before it is written.
    write: Mutex<()>,
    stop: AtomicBool,
    failing: AtomicBool,
}

/// A record in the store's compact form, encoded on the request's thread: one block of
/// bytes is cheaper to hand to the writer, and for it to free, than a record of a few
/// dozen strings.
#[derive(Clone)]
struct Encoded {
    /// Past this (unix seconds) no event may refer to it: not retried.
    expires_at: u64,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Pending {
    new: HashMap<String, Encoded>,
    /// Being written now: still found by [`PendingSlates::get`].
    writing: Arc<HashMap<String, Encoded>>,
    /// The last written batch, emptied: the next `new`, so that filling it does not grow
    /// a table from nothing (rehashing, and fresh pages faulted in) on the request's path
    /// every pass.
    spare: HashMap<String, Encoded>,
}

impl PendingSlates {
    /// Starts the writer thread for `store`.
    pub(super) fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<PendingSlates> {
        let shared = Arc::new(Shared {
            store,
            clock,
            pending: Mutex::default(),
            write: Mutex::new(()),
            stop: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("offerhost-slate-writer".into())
                .spawn(move || {
                    let mut wait = WRITE_EVERY;
                    while !shared.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(wait);
                        wait = match shared.write() {
                            Ok(()) => WRITE_EVERY,
                            Err(_) => RETRY_EVERY,
                        };
                    }
                })?
        };
        Ok(PendingSlates {
            shared,
            writer: Some(writer),
        })
    }

    /// Keeps `record` until the writer saves it; `false` (and the record dropped) when
    /// [`MAX_PENDING`] records are already waiting.
    pub(super) fn add(&self, record: &SlateRecordRef<'_>) -> bool {
        // Encoded before the lock is taken.
        let encoded = Encoded {
            expires_at: record.expires_at,
            bytes: record.encode(),
        };
        let mut pending = self.shared.pending();
        if pending.new.len() + pending.writing.len() >= MAX_PENDING {
            return false;
        }
        pending.new.insert(record.slate_id.to_string(), encoded);
        true
    }

    /// A record not yet written, if `slate_id` is one and it has not expired at `now`.
    pub(super) fn get(&self, slate_id: &str, now: u64) -> Option<Result<SlateRecord, StoreError>> {
        let bytes = {
            let pending = self.shared.pending();
            let found = (pending.new.get(slate_id))
                .or_else(|| pending.writing.get(slate_id))
                .filter(|e| e.expires_at > now)?;
            found.bytes.clone()
        };
        Some(decode_slate(slate_id, &bytes))
    }

    /// Writes every pending record now.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        self.shared.write()
    }
}

impl Drop for PendingSlates {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Err(e) = self.shared.write() {
            tracing::error!(error = %e, "slate records lost: the store refused them at shutdown");
        }
    }
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Saves what is pending. On failure the records stay pending for the next try.
    fn write(&self) -> Result<(), StoreError> {
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let batch = {
            let mut pending = self.pending();
            if pending.new.is_empty() {
                return Ok(());
            }
            let spare = std::mem::take(&mut pending.spare);
            let batch = Arc::new(std::mem::replace(&mut pending.new, spare));
            pending.writing = batch.clone();
            batch
        };
        let result = {
            let records: Vec<(&str, &[u8])> = (batch.iter())
                .map(|(id, e)| (id.as_str(), e.bytes.as_slice()))
                .collect();
            self.store.save_encoded_slates(&records)
        };
        let mut pending = self.pending();
        pending.writing = Arc::default();
        match &result {
            Ok(()) => {
                // Records are dropped here, off the request's path. A table grown
                // by a backlog (the store refusing writes for a while) is let go.
                if let Ok(mut written) = Arc::try_unwrap(batch)
                    && written.capacity() <= SPARE_MAX
                {
                    drop(pending);
                    written.clear();
                    self.pending().spare = written;
                }
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("slate records are being written again");
                }
            }
            Err(e) => {
                // Put them back (ids are unique, so nothing newer is overwritten), except
                // those no event may refer to any more.
                let now = self.clock.unix();
                let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                for (id, record) in batch {
                    if record.expires_at > now {
                        pending.new.entry(id).or_insert(record);
                    }
                }
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        error = %e,
                        pending = pending.new.len(),
                        "cannot write slate records; keeping them in memory and retrying"
                    );
                }
            }
        }
        result
    }
}
