//! A probe for host tests. Logs exactly the features it was given (one line, so tests can
//! check what the host passes a partner and what it withholds) and bids as configured:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `offers` | `1` | number of offers, ids `echo-1`, `echo-2`, ... |
//! | `value` | `25` | bid value of each |
//! | `relevance` | `0.5` | relevance of each |
//! | `category` | `general` | category of each |
//! | `duplicate` | `false` | repeat the first offer id in every bid |
use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, config_or, export_plugin,
    info,
};

/// Echoes its features into the log.
pub struct Echo;

impl OfferPlugin for Echo {
    fn describe() -> PluginInfo {
        PluginInfo::new("echo", "0.1.0", &["general"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        info(&format!("{features:?}"));
        let offers: u32 = config_or("offers", 1)?;
        let value: u64 = config_or("value", 25)?;
        let relevance: f32 = config_or("relevance", 0.5)?;
        let category: String = config_or("category", "general".to_string())?;
        let duplicate: bool = config_or("duplicate", false)?;
        Ok((1..=offers)
            .map(|i| {
                let id = if duplicate { 1 } else { i };
                Offer::new(
                    format!("echo-{id}"),
                    format!("Echo offer {i}"),
                    Reward::CashbackBps(100),
                )
                .category(category.clone())
                .bid(value, relevance)
            })
            .collect())
    }
}

export_plugin!(Echo);
