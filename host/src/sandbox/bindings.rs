//! The one `bindgen!` of the plugin world, and conversions to and from the host's model.

use crate::model;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "offer-plugin",
    imports: {
        // A plugin that writes past its log budget is stopped, so `log` may trap.
        "offerhost:plugin/host.log": trappable,
    },
});

pub(crate) use self::offerhost::plugin::types as wit;

/// The interface name a plugin must export, with the version the host supports.
pub const BIDDER_EXPORT: &str = "offerhost:plugin/bidder@0.1.0";
/// The WIT package version this host speaks.
pub const WIT_VERSION: &str = "0.1.0";

// By value: a slate builds each call's features for that call only, so its strings move
// rather than being copied.
impl From<model::Features> for wit::Features {
    fn from(f: model::Features) -> Self {
        wit::Features {
            tier: f.tier.map(|t| match t {
                model::Tier::HighValue => wit::Tier::HighValue,
                model::Tier::Growth => wit::Tier::Growth,
                model::Tier::Mass => wit::Tier::Mass,
                model::Tier::AtRisk => wit::Tier::AtRisk,
                model::Tier::New => wit::Tier::New,
            }),
            lifecycle: f.lifecycle.map(|s| match s {
                model::LifecycleStage::Applied => wit::LifecycleStage::Applied,
                model::LifecycleStage::ApprovedNotActivated => {
                    wit::LifecycleStage::ApprovedNotActivated
                }
                model::LifecycleStage::ActivatedNoBinding => {
                    wit::LifecycleStage::ActivatedNoBinding
                }
                model::LifecycleStage::BoundNoSpend => wit::LifecycleStage::BoundNoSpend,
                model::LifecycleStage::Spending => wit::LifecycleStage::Spending,
                model::LifecycleStage::RevolvingInstallmentEligible => {
                    wit::LifecycleStage::RevolvingInstallmentEligible
                }
            }),
            rfm: f.rfm.map(|r| wit::Rfm {
                recency: r.recency,
                frequency: r.frequency,
                monetary: r.monetary,
            }),
            affinities: f
                .affinities
                .into_iter()
                .map(|a| wit::Affinity {
                    category: a.category,
                    weight: a.weight,
                })
                .collect(),
            cobrand_holder: f.cobrand_holder,
            region: f.region,
            placement: f.placement,
            channel: match f.channel {
                model::Channel::MobileApp => wit::Channel::MobileApp,
                model::Channel::Web => wit::Channel::Web,
                model::Channel::Push => wit::Channel::Push,
                model::Channel::Statement => wit::Channel::Statement,
                model::Channel::Email => wit::Channel::Email,
            },
            context: f.context.map(|c| wit::Context {
                day_of_week: match c.day_of_week {
                    model::DayOfWeek::Monday => wit::DayOfWeek::Monday,
                    model::DayOfWeek::Tuesday => wit::DayOfWeek::Tuesday,
                    model::DayOfWeek::Wednesday => wit::DayOfWeek::Wednesday,
                    model::DayOfWeek::Thursday => wit::DayOfWeek::Thursday,
                    model::DayOfWeek::Friday => wit::DayOfWeek::Friday,
                    model::DayOfWeek::Saturday => wit::DayOfWeek::Saturday,
                    model::DayOfWeek::Sunday => wit::DayOfWeek::Sunday,
                },
                part_of_day: match c.part_of_day {
                    model::PartOfDay::Morning => wit::PartOfDay::Morning,
                    model::PartOfDay::Afternoon => wit::PartOfDay::Afternoon,
                    model::PartOfDay::Evening => wit::PartOfDay::Evening,
                    model::PartOfDay::Night => wit::PartOfDay::Night,
                },
                season: match c.season {
                    model::Season::Spring => wit::Season::Spring,
                    model::Season::Summer => wit::Season::Summer,
                    model::Season::Autumn => wit::Season::Autumn,
                    model::Season::Winter => wit::Season::Winter,
                },
                holiday: c.holiday,
            }),
            segments: f.segments,
        }
    }
}

fn money(m: wit::Money) -> model::Money {
    model::Money {
        amount_minor: m.amount_minor,
        currency: m.currency,
    }
}

impl From<wit::OfferBid> for model::Bid {
    fn from(b: wit::OfferBid) -> Self {
        let o = b.offer;
        model::Bid {
            offer: model::Offer {
                id: o.id,
                title: o.title,
                reward: match o.reward {
                    wit::Reward::CashbackBps(bps) => model::Reward::CashbackBps(bps),
                    wit::Reward::FixedAmount(m) => model::Reward::FixedAmount(money(m)),
                    wit::Reward::PointsMultiplier(x) => model::Reward::PointsMultiplier(x),
                    wit::Reward::InstallmentMonths(n) => model::Reward::InstallmentMonths(n),
                },
                min_spend: o.min_spend.map(money),
                category: o.category,
                valid_days: o.valid_days,
            },
            value_minor: b.value_minor,
            relevance: b.relevance,
        }
    }
}

/// Longest plugin error message kept.
const MAX_ERROR_MESSAGE: usize = 256;

fn short(mut s: String) -> String {
    if s.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl From<wit::PluginError> for model::PluginError {
    fn from(e: wit::PluginError) -> Self {
        match e {
            wit::PluginError::BadConfig(m) => model::PluginError::BadConfig(short(m)),
            wit::PluginError::MissingFeature(m) => model::PluginError::MissingFeature(short(m)),
            wit::PluginError::Internal(m) => model::PluginError::Internal(short(m)),
        }
    }
}

impl From<wit::PluginInfo> for model::PluginInfo {
    fn from(i: wit::PluginInfo) -> Self {
        model::PluginInfo {
            name: i.name,
            version: i.version,
            categories: i.categories,
        }
    }
}
