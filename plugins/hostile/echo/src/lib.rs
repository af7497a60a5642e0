//! Logs exactly what it was given, one line, so tests can check what the host passes a
//! partner (and what it withholds). Bids one offer so it shows up in slates.
use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, export_plugin, info,
};

/// Echoes its features into the log.
pub struct Echo;

impl OfferPlugin for Echo {
    fn describe() -> PluginInfo {
        PluginInfo::new("echo", "0.1.0", &["general"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        info(&format!("{features:?}"));
        Ok(vec![
            Offer::new("echo-offer", "Echo", Reward::CashbackBps(100))
                .category("general")
                .bid(25, 0.5),
        ])
    }
}

export_plugin!(Echo);
