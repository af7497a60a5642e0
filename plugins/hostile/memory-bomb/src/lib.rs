//! Allocates and touches memory until the host refuses to grow it.
use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

/// Grabs 1 MiB chunks forever.
pub struct Hoarder;

impl OfferPlugin for Hoarder {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-memory-bomb", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
        }
    }
}

export_plugin!(Hoarder);
