//! SkyWays airline co-brand plugin.
//!
//! High-value customers whose spending leans to travel get a miles multiplier on travel
//! spend; holders of the SkyWays co-brand card get a stronger multiplier and a higher bid,
//! because the partner earns on both sides of their spend.
//!
//! Configuration (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `multiplier` | `3.0` | miles multiplier for non-holders |
//! | `holder_multiplier` | `5.0` | miles multiplier for SkyWays card holders |
//! | `min_travel_affinity` | `0.3` | weakest travel affinity that still gets an offer |
//! | `bid_minor` | `200` | price per impression, minor units; holders get 1.5x |

use offerhost_sdk::{
    Bid, Features, Offer, OfferPlugin, PluginError, PluginInfo, Reward, Tier, config_or,
    export_plugin,
};

/// The SkyWays miles plugin.
pub struct SkyWaysMiles;

impl OfferPlugin for SkyWaysMiles {
    fn describe() -> PluginInfo {
        PluginInfo::new("skyways-miles", "1.0.0", &["travel"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        let multiplier: f32 = config_or("multiplier", 3.0)?;
        let holder_multiplier: f32 = config_or("holder_multiplier", 5.0)?;
        let min_affinity: f32 = config_or("min_travel_affinity", 0.3)?;
        let bid_minor: u64 = config_or("bid_minor", 200)?;

        let travel = features.affinity("travel");
        if features.tier != Some(Tier::HighValue) || travel < min_affinity {
            return Ok(vec![]);
        }

        let offer = if features.holds_cobrand_card() {
            Offer::new(
                "skyways-holder-miles",
                format!("{holder_multiplier}x SkyWays miles on flights and hotels"),
                Reward::PointsMultiplier(holder_multiplier),
            )
            .valid_days(30)
            .category("travel")
            .bid(bid_minor * 3 / 2, (travel + 0.2).min(1.0))
        } else {
            Offer::new(
                "skyways-miles",
                format!("{multiplier}x SkyWays miles on travel spend"),
                Reward::PointsMultiplier(multiplier),
            )
            .valid_days(30)
            .category("travel")
            .bid(bid_minor, travel)
        };
        offerhost_sdk::debug(&format!("travel affinity {travel:.2}"));
        Ok(vec![offer])
    }
}

export_plugin!(SkyWaysMiles);

#[cfg(test)]
mod tests {
    use super::*;
    use offerhost_sdk::{Channel, testing};

    fn traveller() -> Features {
        Features::new("app-home", Channel::MobileApp)
            .with_tier(Tier::HighValue)
            .with_affinity("travel", 0.7)
    }

    #[test]
    fn high_value_traveller_gets_miles() {
        testing::clear_config();
        let bids = SkyWaysMiles::bid(&traveller()).unwrap();
        assert_eq!(bids.len(), 1);
        assert_eq!(bids[0].offer.id, "skyways-miles");
        assert_eq!(bids[0].offer.reward, Reward::PointsMultiplier(3.0));
        assert_eq!(bids[0].value_minor, 200);
    }

    #[test]
    fn holders_get_a_stronger_offer_and_a_higher_bid() {
        testing::clear_config();
        let plain = SkyWaysMiles::bid(&traveller()).unwrap();
        let holder = SkyWaysMiles::bid(&traveller().with_cobrand_holder(true)).unwrap();
        assert_eq!(holder[0].offer.id, "skyways-holder-miles");
        assert_eq!(holder[0].offer.reward, Reward::PointsMultiplier(5.0));
        assert!(holder[0].value_minor > plain[0].value_minor);
        assert!(holder[0].relevance > plain[0].relevance);
    }

    #[test]
    fn other_tiers_and_weak_travel_affinity_get_nothing() {
        testing::clear_config();
        let mass = Features::new("app-home", Channel::MobileApp)
            .with_tier(Tier::Mass)
            .with_affinity("travel", 0.9);
        assert!(SkyWaysMiles::bid(&mass).unwrap().is_empty());
        let homebody = Features::new("app-home", Channel::MobileApp)
            .with_tier(Tier::HighValue)
            .with_affinity("travel", 0.1);
        assert!(SkyWaysMiles::bid(&homebody).unwrap().is_empty());
        // A withheld tier is unknown, not high-value.
        let unknown = Features::new("app-home", Channel::MobileApp).with_affinity("travel", 0.9);
        assert!(SkyWaysMiles::bid(&unknown).unwrap().is_empty());
    }

    #[test]
    fn config_tunes_the_multiplier_and_rejects_garbage() {
        testing::set_config([("multiplier", "4")]);
        let bids = SkyWaysMiles::bid(&traveller()).unwrap();
        assert_eq!(bids[0].offer.reward, Reward::PointsMultiplier(4.0));
        testing::set_config([("multiplier", "many")]);
        let err = SkyWaysMiles::bid(&traveller()).unwrap_err();
        assert!(matches!(err, PluginError::BadConfig(m) if m.contains("multiplier")));
    }
}
