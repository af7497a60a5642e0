//! The smallest useful plugin: describes itself and bids nothing. Benchmarks use it to
//! measure the cost of the call path itself.
use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

/// Bids nothing.
pub struct Minimal;

impl OfferPlugin for Minimal {
    fn describe() -> PluginInfo {
        PluginInfo::new("minimal", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        Ok(Vec::new())
    }
}

export_plugin!(Minimal);
