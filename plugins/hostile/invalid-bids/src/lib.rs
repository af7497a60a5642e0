//! Returns one valid bid among bids that break every rule the host checks.
use offerhost_sdk::{
    Bid, Features, Money, Offer, OfferPlugin, PluginError, PluginInfo, Reward, export_plugin,
};

/// Bids garbage, plus one good bid that must survive.
pub struct Garbage;

fn offer(id: &str, reward: Reward) -> Offer {
    Offer::new(id, "A perfectly normal offer", reward).category("general")
}

impl OfferPlugin for Garbage {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-invalid-bids", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        Ok(vec![
            offer("good-offer", Reward::CashbackBps(200)).bid(50, 0.5),
            offer("", Reward::CashbackBps(200)).bid(50, 0.5),
            offer("bad id with spaces", Reward::CashbackBps(200)).bid(50, 0.5),
            offer("negative-relevance", Reward::CashbackBps(200)).bid(50, -1.0),
            offer("nan-relevance", Reward::CashbackBps(200)).bid(50, f32::NAN),
            offer("zero-value", Reward::CashbackBps(200)).bid(0, 0.5),
            offer("absurd-value", Reward::CashbackBps(200)).bid(u64::MAX, 0.5),
            offer("absurd-cashback", Reward::CashbackBps(1_000_000)).bid(50, 0.5),
            offer("inf-multiplier", Reward::PointsMultiplier(f32::INFINITY)).bid(50, 0.5),
            offer("one-month", Reward::InstallmentMonths(1)).bid(50, 0.5),
            offer(
                "bad-currency",
                Reward::FixedAmount(Money::new(1000, "yuan")),
            )
            .bid(50, 0.5),
            offer("no-expiry", Reward::CashbackBps(200))
                .valid_days(0)
                .bid(50, 0.5),
            Offer::new("empty-title", "", Reward::CashbackBps(200)).bid(50, 0.5),
            Offer::new(
                "control-title",
                "free\u{7}money\n",
                Reward::CashbackBps(200),
            )
            .bid(50, 0.5),
            offer("bad-category", Reward::CashbackBps(200))
                .category("Not A Category!")
                .bid(50, 0.5),
            offer("good-offer", Reward::CashbackBps(300)).bid(60, 0.6),
        ])
    }
}

export_plugin!(Garbage);
