//! Floods the host with output. Config `mode` picks the flood:
//! `many-bids` (default; `count` bids, 1 000 by default), `huge-strings` (a title of
//! `bytes` bytes, 4 MiB by default) or `log-flood` (`count` log lines of 1 KiB).
use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, config_or, export_plugin,
};

/// Returns far more than the host accepts.
pub struct Flood;

impl OfferPlugin for Flood {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-oversized", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        let mode: String = config_or("mode", "many-bids".to_string())?;
        match mode.as_str() {
            "many-bids" => {
                let count: usize = config_or("count", 1_000)?;
                Ok((0..count)
                    .map(|i| {
                        Offer::new(format!("flood-{i}"), "flood", Reward::CashbackBps(100))
                            .bid(10, 0.5)
                    })
                    .collect())
            }
            "huge-strings" => {
                let bytes: usize = config_or("bytes", 4 << 20)?;
                let title = "x".repeat(bytes);
                Ok(vec![
                    Offer::new("huge", title, Reward::CashbackBps(100)).bid(10, 0.5),
                ])
            }
            "log-flood" => {
                let count: usize = config_or("count", 10_000)?;
                let line = "y".repeat(1024);
                for _ in 0..count {
                    offerhost_sdk::info(&line);
                }
                Ok(vec![])
            }
            other => Err(PluginError::BadConfig(format!("unknown mode {other:?}"))),
        }
    }
}

export_plugin!(Flood);
