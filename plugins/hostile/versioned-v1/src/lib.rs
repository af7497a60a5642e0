//! Version 1.0.0 of the `versioned` plugin: bids offer `v1-offer`.
use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, export_plugin,
};

/// Version 1.
pub struct Versioned;

impl OfferPlugin for Versioned {
    fn describe() -> PluginInfo {
        PluginInfo::new("versioned", "1.0.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        Ok(vec![
            Offer::new("v1-offer", "Version one", Reward::CashbackBps(100)).bid(100, 0.5),
        ])
    }
}

export_plugin!(Versioned);
