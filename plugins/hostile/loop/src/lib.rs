//! Spins forever in `bid`. The host must stop it by fuel or by deadline.
use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

/// Never returns from `bid`.
pub struct Spinner;

impl OfferPlugin for Spinner {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-loop", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        let mut x: u64 = 1;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export_plugin!(Spinner);
