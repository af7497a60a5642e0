//! FreshMart's cash-back offer, shared by every release of `freshmart-cashback`.

use offerhost_sdk::{Bid, Features, Money, Offer, PluginError, Reward, Tier, config_or};

/// The cash-back bid for `features`, if the customer fits. Growth-tier customers get
/// `growth_bonus_bps` on top of the rate (config `growth_bonus_bps` overrides it).
pub fn cashback(features: &Features, growth_bonus_bps: u32) -> Result<Vec<Bid>, PluginError> {
    let weekday_bps: u32 = config_or("cashback_bps", 300)?;
    let weekend_bps: u32 = config_or("weekend_cashback_bps", 500)?;
    let growth_bonus: u32 = config_or("growth_bonus_bps", growth_bonus_bps)?;
    let min_affinity: f32 = config_or("min_grocery_affinity", 0.2)?;
    let min_spend: u64 = config_or("min_spend_minor", 5000)?;
    let currency: String = config_or("currency", "CNY".to_string())?;
    let bid_minor: u64 = config_or("bid_minor", 60)?;

    let grocery = features.affinity("grocery");
    let tier_fits = matches!(features.tier, Some(Tier::Mass | Tier::Growth));
    if !tier_fits || grocery < min_affinity {
        return Ok(vec![]);
    }
    let weekend = features
        .context
        .is_some_and(|c| c.day_of_week.is_weekend() || c.holiday);
    let (id, mut bps) = if weekend {
        ("freshmart-weekend", weekend_bps)
    } else {
        ("freshmart-everyday", weekday_bps)
    };
    if features.tier == Some(Tier::Growth) {
        bps = bps.saturating_add(growth_bonus);
    }
    let title = format!("{}.{:02}% back at FreshMart", bps / 100, bps % 100);
    let offer = Offer::new(id, title, Reward::CashbackBps(bps))
        .category("grocery")
        .min_spend(Money::new(min_spend, currency))
        .valid_days(7);
    Ok(vec![offer.bid(bid_minor, grocery)])
}
