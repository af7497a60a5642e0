//! Panics in `bid`, as a buggy partner plugin would (an `expect` on data it assumed).
use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, export_plugin,
};

/// Panics on every call.
pub struct Crasher;

impl OfferPlugin for Crasher {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-panic", "0.1.0", &["general"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        let region = features.region.as_deref().unwrap_or("none");
        let code: u32 = region.parse().expect("region code is numeric");
        Ok(vec![
            Offer::new(format!("r{code}"), "never", Reward::CashbackBps(1)).bid(1, 0.1),
        ])
    }
}

export_plugin!(Crasher);
