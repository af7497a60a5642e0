//! "Come back" reactivation plugin for the issuer's partner mall.
//!
//! At-risk customers who have not bought for a long time (recency bucket 1 or 2) get a
//! fixed bonus once they spend a minimum amount again: the classic win-back coupon.
//! The poorer the recency, the higher the bid, because those customers are the ones the
//! issuer is about to lose.
//!
//! Configuration (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `bonus_minor` | `3000` | bonus credited, minor units of `currency` |
//! | `min_spend_minor` | `20000` | spend needed to earn the bonus, minor units |
//! | `currency` | `CNY` | currency of bonus and minimum spend |
//! | `max_recency` | `2` | highest recency bucket that counts as lapsed |
//! | `bid_minor` | `150` | price per impression at recency 1 (with the default `max_recency`); less above |

use offerhost_sdk::{
    Bid, Features, Money, Offer, OfferPlugin, PluginError, PluginInfo, Reward, Tier, config_or,
    export_plugin,
};

/// The win-back plugin.
pub struct ComeBack;

impl OfferPlugin for ComeBack {
    fn describe() -> PluginInfo {
        PluginInfo::new("mall-comeback", "1.0.0", &["online-shopping"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        let bonus: u64 = config_or("bonus_minor", 3000)?;
        let min_spend: u64 = config_or("min_spend_minor", 20_000)?;
        let currency: String = config_or("currency", "CNY".to_string())?;
        let max_recency: u8 = config_or("max_recency", 2)?;
        let bid_minor: u64 = config_or("bid_minor", 150)?;
        if !(1..=5).contains(&max_recency) {
            return Err(PluginError::BadConfig(format!(
                "`max_recency` = {max_recency} is outside 1..=5"
            )));
        }

        if features.tier != Some(Tier::AtRisk) {
            return Ok(vec![]);
        }
        let Some(rfm) = features.rfm else {
            return Err(PluginError::MissingFeature(
                "rfm: recency is needed to find lapsed customers".to_string(),
            ));
        };
        if rfm.recency > max_recency {
            return Ok(vec![]);
        }
        let lapse = (max_recency + 1 - rfm.recency) as u64; // 1 = just lapsed
        let title = format!(
            "Spend {} {}, get {} {} back",
            min_spend / 100,
            currency,
            bonus / 100,
            currency
        );
        let offer = Offer::new(
            "comeback-bonus",
            title,
            Reward::FixedAmount(Money::new(bonus, currency.clone())),
        )
        .category("online-shopping")
        .min_spend(Money::new(min_spend, currency))
        .valid_days(21);
        let relevance = 0.3 + 0.1 * lapse as f32;
        Ok(vec![offer.bid(
            (bid_minor * lapse / max_recency as u64).max(1),
            relevance.min(1.0),
        )])
    }
}

export_plugin!(ComeBack);

#[cfg(test)]
mod tests {
    use super::*;
    use offerhost_sdk::{Channel, testing};

    fn lapsed(recency: u8) -> Features {
        Features::new("app-home", Channel::MobileApp)
            .with_tier(Tier::AtRisk)
            .with_rfm(recency, 1, 2)
    }

    #[test]
    fn lapsed_customers_get_a_bonus_after_min_spend() {
        testing::clear_config();
        let bids = ComeBack::bid(&lapsed(1)).unwrap();
        assert_eq!(bids.len(), 1);
        let offer = &bids[0].offer;
        assert_eq!(offer.reward, Reward::FixedAmount(Money::new(3000, "CNY")));
        assert_eq!(offer.min_spend, Some(Money::new(20_000, "CNY")));
        assert_eq!(offer.title, "Spend 200 CNY, get 30 CNY back");
    }

    #[test]
    fn the_longer_the_lapse_the_higher_the_bid() {
        testing::clear_config();
        let long = &ComeBack::bid(&lapsed(1)).unwrap()[0];
        let short = &ComeBack::bid(&lapsed(2)).unwrap()[0];
        assert!(long.value_minor > short.value_minor);
        assert!(long.relevance > short.relevance);
    }

    #[test]
    fn recent_or_healthy_customers_get_nothing() {
        testing::clear_config();
        assert!(ComeBack::bid(&lapsed(4)).unwrap().is_empty());
        let healthy = Features::new("app-home", Channel::MobileApp)
            .with_tier(Tier::Mass)
            .with_rfm(1, 1, 1);
        assert!(ComeBack::bid(&healthy).unwrap().is_empty());
    }

    #[test]
    fn withheld_rfm_is_reported_not_guessed() {
        testing::clear_config();
        let no_rfm = Features::new("app-home", Channel::MobileApp).with_tier(Tier::AtRisk);
        assert!(matches!(
            ComeBack::bid(&no_rfm),
            Err(PluginError::MissingFeature(_))
        ));
    }

    #[test]
    fn config_sets_bonus_and_validates_recency() {
        testing::set_config([("bonus_minor", "5000")]);
        let bid = &ComeBack::bid(&lapsed(1)).unwrap()[0];
        assert_eq!(
            bid.offer.reward,
            Reward::FixedAmount(Money::new(5000, "CNY"))
        );
        testing::set_config([("max_recency", "9")]);
        assert!(matches!(
            ComeBack::bid(&lapsed(1)),
            Err(PluginError::BadConfig(_))
        ));
    }
}
