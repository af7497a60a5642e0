//! Claims to be version 1.0.0 of `versioned` but is different code: the registry must
//! refuse it instead of silently replacing what was deployed.
use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, export_plugin,
};

/// Not really version 1.
pub struct Versioned;

impl OfferPlugin for Versioned {
    fn describe() -> PluginInfo {
        PluginInfo::new("versioned", "1.0.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        Ok(vec![
            Offer::new("v1-offer", "Version one, rebuilt", Reward::CashbackBps(150)).bid(100, 0.5),
        ])
    }
}

export_plugin!(Versioned);
