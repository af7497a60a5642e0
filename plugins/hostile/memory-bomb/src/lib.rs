//! Allocates memory in 8 MiB blocks until the host refuses to grow it. It touches one
//! byte per block, so it runs into the memory limit long before its fuel runs out.
use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

/// Grabs 8 MiB blocks forever.
pub struct Hoarder;

impl OfferPlugin for Hoarder {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-memory-bomb", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = Vec::<u8>::with_capacity(8 << 20);
            block.push(0xA5);
            hoard.push(std::hint::black_box(block));
        }
    }
}

export_plugin!(Hoarder);
