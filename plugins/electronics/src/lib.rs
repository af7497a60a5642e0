//! VoltMart electronics retailer plugin.
//!
//! Customers in the spending or installment-eligible stage of the card life cycle, with an
//! electronics affinity, get 0 % installment months on large tickets. Installment-eligible
//! customers get the longer plan: they are the ones who use it.
//!
//! Configuration (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `installment_months` | `12` | months offered to installment-eligible customers |
//! | `spending_months` | `6` | months offered to other spending customers |
//! | `min_ticket_minor` | `300000` | smallest qualifying purchase, minor units |
//! | `currency` | `CNY` | currency of the minimum ticket |
//! | `min_electronics_affinity` | `0.15` | weakest electronics affinity that still bids |
//! | `bid_minor` | `250` | price per impression, minor units |

use offerhost_sdk::{
    Bid, Features, LifecycleStage, Money, Offer, OfferPlugin, PluginError, PluginInfo, Reward,
    config_or, export_plugin,
};

/// The VoltMart installment plugin.
pub struct VoltMart;

impl OfferPlugin for VoltMart {
    fn describe() -> PluginInfo {
        PluginInfo::new("voltmart-installments", "1.0.0", &["electronics"])
    }

    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
        let long_months: u8 = config_or("installment_months", 12)?;
        let short_months: u8 = config_or("spending_months", 6)?;
        let min_ticket: u64 = config_or("min_ticket_minor", 300_000)?;
        let currency: String = config_or("currency", "CNY".to_string())?;
        let min_affinity: f32 = config_or("min_electronics_affinity", 0.15)?;
        let bid_minor: u64 = config_or("bid_minor", 250)?;

        let electronics = features.affinity("electronics");
        if electronics < min_affinity {
            return Ok(vec![]);
        }
        let (id, months) = match features.lifecycle {
            Some(LifecycleStage::RevolvingInstallmentEligible) => {
                ("voltmart-0pct-long", long_months)
            }
            Some(LifecycleStage::Spending) => ("voltmart-0pct", short_months),
            _ => return Ok(vec![]),
        };
        let title = format!(
            "{months} months 0% installments on VoltMart purchases over {} {currency}",
            min_ticket / 100
        );
        let offer = Offer::new(id, title, Reward::InstallmentMonths(months))
            .category("electronics")
            .min_spend(Money::new(min_ticket, currency))
            .valid_days(60);
        Ok(vec![offer.bid(bid_minor, electronics)])
    }
}

export_plugin!(VoltMart);

#[cfg(test)]
mod tests {
    use super::*;
    use offerhost_sdk::{Channel, testing};

    fn gadget_fan(stage: LifecycleStage) -> Features {
        Features::new("checkout", Channel::Web)
            .with_lifecycle(stage)
            .with_affinity("electronics", 0.4)
    }

    #[test]
    fn installment_eligible_get_the_long_plan() {
        testing::clear_config();
        let bids =
            VoltMart::bid(&gadget_fan(LifecycleStage::RevolvingInstallmentEligible)).unwrap();
        assert_eq!(bids[0].offer.reward, Reward::InstallmentMonths(12));
        assert_eq!(bids[0].offer.min_spend, Some(Money::new(300_000, "CNY")));
    }

    #[test]
    fn spending_customers_get_the_short_plan() {
        testing::clear_config();
        let bids = VoltMart::bid(&gadget_fan(LifecycleStage::Spending)).unwrap();
        assert_eq!(bids[0].offer.id, "voltmart-0pct");
        assert_eq!(bids[0].offer.reward, Reward::InstallmentMonths(6));
    }

    #[test]
    fn early_stages_and_no_affinity_get_nothing() {
        testing::clear_config();
        assert!(
            VoltMart::bid(&gadget_fan(LifecycleStage::BoundNoSpend))
                .unwrap()
                .is_empty()
        );
        let no_interest = Features::new("checkout", Channel::Web)
            .with_lifecycle(LifecycleStage::Spending)
            .with_affinity("grocery", 0.9);
        assert!(VoltMart::bid(&no_interest).unwrap().is_empty());
    }

    #[test]
    fn config_sets_months() {
        testing::set_config([("installment_months", "24")]);
        let bids =
            VoltMart::bid(&gadget_fan(LifecycleStage::RevolvingInstallmentEligible)).unwrap();
        assert_eq!(bids[0].offer.reward, Reward::InstallmentMonths(24));
    }
}
