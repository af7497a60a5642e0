//! The plugin trait, the export macro and the glue between the SDK's types and the
//! generated WIT bindings.

use crate::wit::offerhost::plugin::types as w;
use crate::{
    Affinity, Bid, Channel, Context, DayOfWeek, Features, LifecycleStage, Money, PartOfDay,
    PluginError, PluginInfo, Reward, Rfm, Season, Tier,
};

/// An offer plugin. Implement it on a unit struct and export it with
/// [`export_plugin!`](crate::export_plugin).
///
/// The host creates a fresh instance for every call, so there is nothing to keep in
/// `self`: both functions are associated functions, and statics do not survive between
/// calls.
pub trait OfferPlugin {
    /// Name, version and categories of the plugin. Called at upload time, without
    /// configuration.
    fn describe() -> PluginInfo;

    /// Bids for one customer. Return an empty list for "no offer".
    fn bid(features: &Features) -> Result<Vec<Bid>, PluginError>;
}

/// Exports a type implementing [`OfferPlugin`] as the plugin's `bidder` interface.
///
/// Call it once, at the top level of the plugin crate:
///
/// ```ignore
/// offerhost_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct OfferhostPluginExport;

            impl $crate::__private::Guest for OfferhostPluginExport {
                fn describe() -> $crate::__private::WitPluginInfo {
                    $crate::__private::describe::<$plugin>()
                }

                fn bid(
                    features: $crate::__private::WitFeatures,
                ) -> ::core::result::Result<
                    $crate::__private::Vec<$crate::__private::WitBid>,
                    $crate::__private::WitPluginError,
                > {
                    $crate::__private::bid::<$plugin>(features)
                }
            }

            // Natively the crate is only a library for unit tests; the component exports
            // exist in the wasm build.
            #[cfg(target_arch = "wasm32")]
    $crate::__private::export!(OfferhostPluginExport with_types_in $crate::wit);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::wit::export;
    pub use crate::wit::exports::offerhost::plugin::bidder::Guest;
    pub use crate::wit::offerhost::plugin::types::{
        Features as WitFeatures, OfferBid as WitBid, PluginError as WitPluginError,
        PluginInfo as WitPluginInfo,
    };
    pub use std::vec::Vec;

    use super::*;

    pub fn describe<P: OfferPlugin>() -> WitPluginInfo {
        let info = P::describe();
        WitPluginInfo {
            name: info.name,
            version: info.version,
            categories: info.categories,
        }
    }

    pub fn bid<P: OfferPlugin>(features: WitFeatures) -> Result<Vec<WitBid>, WitPluginError> {
        let features = Features::from(features);
        match P::bid(&features) {
            Ok(bids) => Ok(bids.into_iter().map(w::OfferBid::from).collect()),
            Err(e) => Err(e.into()),
        }
    }
}

impl From<w::Features> for Features {
    fn from(f: w::Features) -> Self {
        Features {
            tier: f.tier.map(Tier::from),
            lifecycle: f.lifecycle.map(LifecycleStage::from),
            rfm: f.rfm.map(|r| Rfm {
                recency: r.recency,
                frequency: r.frequency,
                monetary: r.monetary,
            }),
            affinities: f
                .affinities
                .into_iter()
                .map(|a| Affinity {
                    category: a.category,
                    weight: a.weight,
                })
                .collect(),
            cobrand_holder: f.cobrand_holder,
            region: f.region,
            placement: f.placement,
            channel: f.channel.into(),
            context: f.context.map(|c| Context {
                day_of_week: c.day_of_week.into(),
                part_of_day: c.part_of_day.into(),
                season: c.season.into(),
                holiday: c.holiday,
            }),
            segments: f.segments,
        }
    }
}

impl From<w::Tier> for Tier {
    fn from(t: w::Tier) -> Self {
        match t {
            w::Tier::HighValue => Tier::HighValue,
            w::Tier::Growth => Tier::Growth,
            w::Tier::Mass => Tier::Mass,
            w::Tier::AtRisk => Tier::AtRisk,
            w::Tier::New => Tier::New,
        }
    }
}

impl From<w::LifecycleStage> for LifecycleStage {
    fn from(s: w::LifecycleStage) -> Self {
        match s {
            w::LifecycleStage::Applied => LifecycleStage::Applied,
            w::LifecycleStage::ApprovedNotActivated => LifecycleStage::ApprovedNotActivated,
            w::LifecycleStage::ActivatedNoBinding => LifecycleStage::ActivatedNoBinding,
            w::LifecycleStage::BoundNoSpend => LifecycleStage::BoundNoSpend,
            w::LifecycleStage::Spending => LifecycleStage::Spending,
            w::LifecycleStage::RevolvingInstallmentEligible => {
                LifecycleStage::RevolvingInstallmentEligible
            }
        }
    }
}

impl From<w::Channel> for Channel {
    fn from(c: w::Channel) -> Self {
        match c {
            w::Channel::MobileApp => Channel::MobileApp,
            w::Channel::Web => Channel::Web,
            w::Channel::Push => Channel::Push,
            w::Channel::Statement => Channel::Statement,
            w::Channel::Email => Channel::Email,
        }
    }
}

impl From<w::DayOfWeek> for DayOfWeek {
    fn from(d: w::DayOfWeek) -> Self {
        match d {
            w::DayOfWeek::Monday => DayOfWeek::Monday,
            w::DayOfWeek::Tuesday => DayOfWeek::Tuesday,
            w::DayOfWeek::Wednesday => DayOfWeek::Wednesday,
            w::DayOfWeek::Thursday => DayOfWeek::Thursday,
            w::DayOfWeek::Friday => DayOfWeek::Friday,
            w::DayOfWeek::Saturday => DayOfWeek::Saturday,
            w::DayOfWeek::Sunday => DayOfWeek::Sunday,
        }
    }
}

impl From<w::PartOfDay> for PartOfDay {
    fn from(p: w::PartOfDay) -> Self {
        match p {
            w::PartOfDay::Morning => PartOfDay::Morning,
            w::PartOfDay::Afternoon => PartOfDay::Afternoon,
            w::PartOfDay::Evening => PartOfDay::Evening,
            w::PartOfDay::Night => PartOfDay::Night,
        }
    }
}

impl From<w::Season> for Season {
    fn from(s: w::Season) -> Self {
        match s {
            w::Season::Spring => Season::Spring,
            w::Season::Summer => Season::Summer,
            w::Season::Autumn => Season::Autumn,
            w::Season::Winter => Season::Winter,
        }
    }
}

impl From<Money> for w::Money {
    fn from(m: Money) -> Self {
        w::Money {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

impl From<Reward> for w::Reward {
    fn from(r: Reward) -> Self {
        match r {
            Reward::CashbackBps(bps) => w::Reward::CashbackBps(bps),
            Reward::FixedAmount(m) => w::Reward::FixedAmount(m.into()),
            Reward::PointsMultiplier(x) => w::Reward::PointsMultiplier(x),
            Reward::InstallmentMonths(n) => w::Reward::InstallmentMonths(n),
        }
    }
}

impl From<Bid> for w::OfferBid {
    fn from(b: Bid) -> Self {
        let o = b.offer;
        w::OfferBid {
            offer: w::Offer {
                id: o.id,
                title: o.title,
                reward: o.reward.into(),
                min_spend: o.min_spend.map(w::Money::from),
                category: o.category,
                valid_days: o.valid_days,
            },
            value_minor: b.value_minor,
            relevance: b.relevance,
        }
    }
}

impl From<PluginError> for w::PluginError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::BadConfig(m) => w::PluginError::BadConfig(m),
            PluginError::MissingFeature(m) => w::PluginError::MissingFeature(m),
            PluginError::Internal(m) => w::PluginError::Internal(m),
        }
    }
}
