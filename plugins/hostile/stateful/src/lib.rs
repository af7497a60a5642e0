//! Counts its own calls in a static, as a plugin trying to track customers across calls
//! would. With a fresh instance per call it must always see call number 1.
use std::sync::atomic::{AtomicU64, Ordering};

use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, export_plugin,
};

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Bids its own call count as the bid value.
pub struct Tracker;

impl OfferPlugin for Tracker {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-stateful", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(vec![
            Offer::new(
                format!("call-{n}"),
                format!("call number {n}"),
                Reward::CashbackBps(100),
            )
            .bid(n, 0.5),
        ])
    }
}

export_plugin!(Tracker);
