//! FreshMart grocer plugin.
//!
//! Mass and growth customers with a grocery habit get cash back at FreshMart; weekends
//! and holidays, when families stock up, get a higher rate.
//!
//! Configuration (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `cashback_bps` | `300` | cash back on weekdays, basis points |
//! | `weekend_cashback_bps` | `500` | cash back on weekends and holidays, basis points |
//! | `min_grocery_affinity` | `0.2` | weakest grocery affinity that still gets an offer |
//! | `min_spend_minor` | `5000` | minimum basket, minor units of `currency` |
//! | `currency` | `CNY` | currency of the minimum basket |
//! | `bid_minor` | `60` | price per impression, minor units |
//!
//! The offer logic lives in `offers.rs`, shared with the next release
//! (`plugins/grocer-next`).

use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

mod offers;

/// The FreshMart cash-back plugin.
pub struct FreshMart;

impl OfferPlugin for FreshMart {
    fn describe() -> PluginInfo {
        PluginInfo::new("freshmart-cashback", "1.0.0", &["grocery"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        offers::cashback(features, 0)
    }
}

export_plugin!(FreshMart);

#[cfg(test)]
mod tests {
    use super::*;
    use offerhost_sdk::{
        Channel, Context, DayOfWeek, Money, PartOfDay, Reward, Season, Tier, testing,
    };

    fn shopper(tier: Tier) -> Features {
        Features::new("checkout", Channel::MobileApp)
            .with_tier(tier)
            .with_affinity("grocery", 0.5)
    }

    fn on(day: DayOfWeek) -> Context {
        Context {
            day_of_week: day,
            part_of_day: PartOfDay::Morning,
            season: Season::Autumn,
            holiday: false,
        }
    }

    #[test]
    fn mass_and_growth_grocery_shoppers_get_cashback() {
        testing::clear_config();
        for tier in [Tier::Mass, Tier::Growth] {
            let bids = FreshMart::bid(&shopper(tier)).unwrap();
            assert_eq!(bids.len(), 1);
            assert_eq!(bids[0].offer.reward, Reward::CashbackBps(300));
            assert_eq!(bids[0].offer.min_spend, Some(Money::new(5000, "CNY")));
            assert_eq!(bids[0].offer.title, "3.00% back at FreshMart");
        }
    }

    #[test]
    fn weekends_pay_more() {
        testing::clear_config();
        let sat = shopper(Tier::Mass).with_context(on(DayOfWeek::Saturday));
        let tue = shopper(Tier::Mass).with_context(on(DayOfWeek::Tuesday));
        assert_eq!(
            FreshMart::bid(&sat).unwrap()[0].offer.reward,
            Reward::CashbackBps(500)
        );
        assert_eq!(
            FreshMart::bid(&tue).unwrap()[0].offer.reward,
            Reward::CashbackBps(300)
        );
    }

    #[test]
    fn high_value_and_non_grocery_customers_get_nothing() {
        testing::clear_config();
        assert!(
            FreshMart::bid(&shopper(Tier::HighValue))
                .unwrap()
                .is_empty()
        );
        let diner = Features::new("checkout", Channel::MobileApp)
            .with_tier(Tier::Mass)
            .with_affinity("dining", 0.9);
        assert!(FreshMart::bid(&diner).unwrap().is_empty());
    }

    #[test]
    fn config_sets_rate_and_currency() {
        testing::set_config([("cashback_bps", "250"), ("currency", "USD")]);
        let bid = &FreshMart::bid(&shopper(Tier::Growth)).unwrap()[0];
        assert_eq!(bid.offer.reward, Reward::CashbackBps(250));
        assert_eq!(bid.offer.min_spend.as_ref().unwrap().currency, "USD");
    }
}
