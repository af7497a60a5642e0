//! Version 2.0.0 of the `versioned` plugin: bids offer `v2-offer`. With config
//! `explode = "true"` it panics on every call, as a plugin broken by a bad setting would.
use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, config_or, export_plugin,
};

/// Version 2.
pub struct Versioned;

impl OfferPlugin for Versioned {
    fn describe() -> PluginInfo {
        PluginInfo::new("versioned", "2.0.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        if config_or("explode", false)? {
            panic!("exploding as configured");
        }
        Ok(vec![
            Offer::new("v2-offer", "Version two", Reward::CashbackBps(200)).bid(100, 0.5),
        ])
    }
}

export_plugin!(Versioned);
