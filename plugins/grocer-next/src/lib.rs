//! FreshMart grocer plugin, release 1.1.0: the next version of `freshmart-cashback`,
//! which the demo runs as a canary beside 1.0.0.
//!
//! What changed: growth-tier customers get 1.00 % more cash back (config
//! `growth_bonus_bps`, default `100`), to win them over while their spending grows.
//! Every other rule and configuration key is 1.0.0's (see `plugins/grocer`).

use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

#[path = "../../grocer/src/offers.rs"]
mod offers;

/// FreshMart cash back, 1.1.0.
pub struct FreshMartNext;

impl OfferPlugin for FreshMartNext {
    fn describe() -> PluginInfo {
        PluginInfo::new("freshmart-cashback", "1.1.0", &["grocery"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        offers::cashback(features, 100)
    }
}

export_plugin!(FreshMartNext);

#[cfg(test)]
mod tests {
    use super::*;
    use offerhost_sdk::{Channel, Reward, Tier, testing};

    fn shopper(tier: Tier) -> Features {
        Features::new("checkout", Channel::MobileApp)
            .with_tier(tier)
            .with_affinity("grocery", 0.5)
    }

    #[test]
    fn growth_customers_get_the_bonus_and_mass_customers_do_not() {
        testing::clear_config();
        let growth = &FreshMartNext::bid(&shopper(Tier::Growth)).unwrap()[0];
        assert_eq!(growth.offer.reward, Reward::CashbackBps(400));
        let mass = &FreshMartNext::bid(&shopper(Tier::Mass)).unwrap()[0];
        assert_eq!(mass.offer.reward, Reward::CashbackBps(300));
    }

    #[test]
    fn the_bonus_is_configurable() {
        testing::set_config([("growth_bonus_bps", "50")]);
        let growth = &FreshMartNext::bid(&shopper(Tier::Growth)).unwrap()[0];
        assert_eq!(growth.offer.reward, Reward::CashbackBps(350));
    }

    #[test]
    fn same_plugin_name_as_the_active_release() {
        assert_eq!(FreshMartNext::describe().name, "freshmart-cashback");
        assert_eq!(FreshMartNext::describe().version, "1.1.0");
    }
}
