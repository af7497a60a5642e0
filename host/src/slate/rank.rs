//! Policy and ranking over the screened bids of every plugin.

use std::sync::Arc;
use std::time::Duration;

use crate::config::PlacementConfig;
use crate::model::{Bid, DropReason};
use crate::sandbox::{LogLine, Outcome};

use super::DroppedBid;
use super::caps::{CapCheck, CappedOffer};
use super::deployment::{DeployedPlugin, Variant};
use crate::store::StoreError;

/// Atomically counts one impression of an offer if every cap allows it (serve-time
/// counting); `Ok(false)` when a cap is reached.
pub(super) type Reserve<'a> = dyn FnMut(CappedOffer<'_>) -> Result<bool, StoreError> + 'a;

/// One plugin's part of a slate.
pub(super) struct PluginRun {
    pub(super) plugin: Arc<DeployedPlugin>,
    pub(super) variant: Arc<Variant>,
    /// Offer id of its best-scoring valid bid, for shadow comparison: only set for a
    /// plugin with a shadow version.
    pub(super) top_offer: Option<String>,
    pub(super) outcome: Outcome,
    pub(super) latency: Duration,
    pub(super) fuel_used: u64,
    pub(super) exec_us: u64,
    pub(super) returned: u32,
    /// Bids that follow the contract.
    pub(super) bids: Vec<Bid>,
    /// Bids dropped, with reasons; ranking adds to it.
    pub(super) dropped: Vec<DroppedBid>,
    pub(super) logs: Vec<LogLine>,
}

/// Records why `bid` is not in the slate, keeping only its offer id; the detail is
/// written out only when someone will read it (diagnostics were asked for).
fn drop_bid(
    run: &mut PluginRun,
    bid: Bid,
    reason: DropReason,
    explain: bool,
    detail: impl FnOnce(&Bid) -> String,
) {
    let detail = if explain { detail(&bid) } else { String::new() };
    run.dropped.push(DroppedBid {
        offer_id: bid.offer.id,
        reason,
        detail,
    });
}

/// Applies placement policy and caps and picks up to `slots` offers. Returns
/// `(run index, bid, score)` in rank order. `caps` is `None` when the cap store could
/// not be read: then every offer is dropped (all caps cover all offers), fail closed.
/// Drop details are written only when `explain` is set.
pub(super) fn rank(
    runs: &mut [PluginRun],
    placement: &PlacementConfig,
    slots: usize,
    explain: bool,
    caps: Option<CapCheck<'_>>,
    mut reserve: Option<&mut Reserve<'_>>,
) -> Vec<(usize, Bid, f64)> {
    let total_bids: usize = runs.iter().map(|r| r.bids.len()).sum();
    let mut candidates: Vec<(usize, Bid, f64)> = Vec::with_capacity(total_bids);
    for (i, run) in runs.iter_mut().enumerate() {
        let bids = std::mem::take(&mut run.bids);
        if run.plugin.shadow.is_some() {
            run.top_offer = top_offer(&bids);
        }
        for bid in bids {
            if placement.excluded_categories.contains(&bid.offer.category) {
                let detail = |bid: &Bid| {
                    format!(
                        "category {:?} is excluded from {}",
                        bid.offer.category, placement.id
                    )
                };
                drop_bid(run, bid, DropReason::ExcludedCategory, explain, detail);
            } else if bid.value_minor < placement.floor_minor {
                let detail = |bid: &Bid| {
                    format!(
                        "bid {} is below the floor {}",
                        bid.value_minor, placement.floor_minor
                    )
                };
                drop_bid(run, bid, DropReason::BelowFloor, explain, detail);
            } else {
                // Relevance is an f32; round its f64 image so scores print as written.
                let relevance = (bid.relevance as f64 * 1e6).round() / 1e6;
                let score = bid.value_minor as f64 * relevance * run.plugin.weight;
                candidates.push((i, bid, score));
            }
        }
    }
    candidates.sort_by(|(ia, a, sa), (ib, b, sb)| {
        sb.total_cmp(sa)
            .then_with(|| b.value_minor.cmp(&a.value_minor))
            .then_with(|| runs[*ia].plugin.partner.cmp(&runs[*ib].plugin.partner))
            .then_with(|| a.offer.id.cmp(&b.offer.id))
    });

    let mut picked: Vec<(usize, Bid, f64)> = Vec::with_capacity(slots.min(candidates.len()));
    for (i, bid, score) in candidates {
        // A partner may deploy several plugins: count its offers, not one plugin's.
        let per_partner = picked
            .iter()
            .filter(|(j, _, _)| runs[*j].plugin.partner == runs[i].plugin.partner)
            .count();
        let verdict = match &caps {
            None => Some((DropReason::CapsUnavailable, None)),
            Some(check) => {
                let taken =
                    (picked.iter()).map(|(j, b, _)| CappedOffer::of(&runs[*j].plugin.partner, b));
                check
                    .blocking_cap(CappedOffer::of(&runs[i].plugin.partner, &bid), taken)
                    .map(|cap| (DropReason::Capped, Some(cap)))
            }
        };
        let run = &mut runs[i];
        if let Some((reason, cap)) = verdict {
            let detail = |_: &Bid| match cap {
                Some(cap) => format!("cap reached: {cap}"),
                None => "cap counters unreadable; failing closed".to_string(),
            };
            drop_bid(run, bid, reason, explain, detail);
        } else if per_partner >= placement.max_per_partner as usize {
            let detail = |_: &Bid| {
                format!(
                    "partner already has {} offer(s) in this slate",
                    placement.max_per_partner
                )
            };
            drop_bid(run, bid, DropReason::PartnerLimit, explain, detail);
        } else if picked.len() >= slots {
            let detail = |_: &Bid| format!("all {slots} slots taken by higher scores");
            drop_bid(run, bid, DropReason::Outranked, explain, detail);
        } else {
            // The offer's keys as strings, built only for a reservation.
            let reserved = reserve
                .as_mut()
                .map(|r| r(CappedOffer::of(&run.plugin.partner, &bid)));
            match reserved {
                Some(Ok(false)) => {
                    let detail = |_: &Bid| "cap reached (counted by a concurrent slate)".into();
                    drop_bid(run, bid, DropReason::Capped, explain, detail);
                    continue;
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "cap reservation failed; failing closed");
                    let detail = |_: &Bid| "cap counters unwritable; failing closed".into();
                    drop_bid(run, bid, DropReason::CapsUnavailable, explain, detail);
                    continue;
                }
                Some(Ok(true)) | None => {}
            }
            picked.push((i, bid, score));
        }
    }
    picked
}

/// The offer id of the bid with the highest value × relevance.
pub(super) fn top_offer(bids: &[Bid]) -> Option<String> {
    bids.iter()
        .max_by(|a, b| {
            (a.value_minor as f64 * a.relevance as f64)
                .total_cmp(&(b.value_minor as f64 * b.relevance as f64))
        })
        .map(|b| b.offer.id.clone())
}
