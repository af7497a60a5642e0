//! What a plugin receives: the anonymized segment features of one customer.

/// The issuer's value tier for the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Top spenders with long tenure and broad usage.
    HighValue,
    /// Customers whose spend is rising or who show potential to rise.
    Growth,
    /// The broad base: regular but modest usage.
    Mass,
    /// Dormant or declining customers the issuer wants to win back.
    AtRisk,
    /// Accounts opened recently, too new to have a history.
    New,
}

/// Where the customer is in the card life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleStage {
    /// Applied for the card, not yet approved.
    Applied,
    /// Approved, card not activated.
    ApprovedNotActivated,
    /// Activated, not yet bound to a wallet or payment app.
    ActivatedNoBinding,
    /// Bound to a wallet, no purchase yet.
    BoundNoSpend,
    /// Spending regularly.
    Spending,
    /// Revolves a balance or is eligible for installment plans.
    RevolvingInstallmentEligible,
}

/// The channel the slate will be shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The issuer's mobile banking app.
    MobileApp,
    /// The issuer's website.
    Web,
    /// A push notification.
    Push,
    /// The monthly statement.
    Statement,
    /// An e-mail campaign.
    Email,
}

/// Day of the week, in the customer's region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DayOfWeek {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl DayOfWeek {
    /// True on Saturday and Sunday.
    pub fn is_weekend(self) -> bool {
        matches!(self, DayOfWeek::Saturday | DayOfWeek::Sunday)
    }
}

/// Coarse part of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartOfDay {
    /// 05:00 to 11:59.
    Morning,
    /// 12:00 to 17:59.
    Afternoon,
    /// 18:00 to 22:59.
    Evening,
    /// 23:00 to 04:59.
    Night,
}

/// Meteorological season.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Season {
    /// Spring.
    Spring,
    /// Summer.
    Summer,
    /// Autumn.
    Autumn,
    /// Winter.
    Winter,
}

/// RFM buckets, each a quintile `1..=5`; 5 is always the best value for the issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rfm {
    /// 5 = purchased very recently, 1 = long ago or never.
    pub recency: u8,
    /// 5 = most purchases over the last 90 days.
    pub frequency: u8,
    /// 5 = highest spend over the last 90 days.
    pub monetary: u8,
}

/// How strongly the customer's spending leans to one category.
#[derive(Debug, Clone, PartialEq)]
pub struct Affinity {
    /// Category id, lowercase kebab-case (`travel`, `grocery`, ...).
    pub category: String,
    /// Weight `0.0..=1.0`.
    pub weight: f32,
}

/// Coarse time context of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    /// Day of the week.
    pub day_of_week: DayOfWeek,
    /// Part of the day.
    pub part_of_day: PartOfDay,
    /// Season.
    pub season: Season,
    /// Public holiday or shopping festival.
    pub holiday: bool,
}

/// The anonymized features of one customer, as the calling partner may see them.
///
/// A field the partner's allow-list does not grant is `None` (or empty). Treat a missing
/// field as "unknown", never as a particular value.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Value tier.
    pub tier: Option<Tier>,
    /// Card life-cycle stage.
    pub lifecycle: Option<LifecycleStage>,
    /// RFM buckets.
    pub rfm: Option<Rfm>,
    /// Up to 8 category affinities, strongest first.
    pub affinities: Vec<Affinity>,
    /// Whether the customer holds this partner's own co-brand card.
    pub cobrand_holder: Option<bool>,
    /// Coarse ISO 3166-2 region code such as `cn-sh`.
    pub region: Option<String>,
    /// Placement id, for example `app-home` or `checkout`.
    pub placement: String,
    /// Channel of the placement.
    pub channel: Channel,
    /// Coarse time context.
    pub context: Option<Context>,
    /// Issuer segment labels this partner may see.
    pub segments: Vec<String>,
}

impl Features {
    /// Features with only the placement and channel set: a starting point for unit tests,
    /// completed with the `with_*` methods.
    pub fn new(placement: impl Into<String>, channel: Channel) -> Self {
        Features {
            tier: None,
            lifecycle: None,
            rfm: None,
            affinities: Vec::new(),
            cobrand_holder: None,
            region: None,
            placement: placement.into(),
            channel,
            context: None,
            segments: Vec::new(),
        }
    }

    /// The customer's weight for `category`, `0.0` when it is not among the affinities.
    pub fn affinity(&self, category: &str) -> f32 {
        self.affinities
            .iter()
            .find(|a| a.category == category)
            .map_or(0.0, |a| a.weight)
    }

    /// The strongest affinity, if any.
    pub fn top_affinity(&self) -> Option<&Affinity> {
        self.affinities
            .iter()
            .max_by(|a, b| a.weight.total_cmp(&b.weight))
    }

    /// True only when the host says the customer holds this partner's card.
    pub fn holds_cobrand_card(&self) -> bool {
        self.cobrand_holder == Some(true)
    }

    /// True when the issuer labels the customer with `segment`.
    pub fn in_segment(&self, segment: &str) -> bool {
        self.segments.iter().any(|s| s == segment)
    }

    /// Sets the tier.
    pub fn with_tier(mut self, tier: Tier) -> Self {
        self.tier = Some(tier);
        self
    }

    /// Sets the life-cycle stage.
    pub fn with_lifecycle(mut self, stage: LifecycleStage) -> Self {
        self.lifecycle = Some(stage);
        self
    }

    /// Sets the RFM buckets.
    pub fn with_rfm(mut self, recency: u8, frequency: u8, monetary: u8) -> Self {
        self.rfm = Some(Rfm {
            recency,
            frequency,
            monetary,
        });
        self
    }

    /// Adds one category affinity.
    pub fn with_affinity(mut self, category: impl Into<String>, weight: f32) -> Self {
        self.affinities.push(Affinity {
            category: category.into(),
            weight,
        });
        self
    }

    /// Sets the co-brand holder flag.
    pub fn with_cobrand_holder(mut self, holder: bool) -> Self {
        self.cobrand_holder = Some(holder);
        self
    }

    /// Sets the coarse region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the time context.
    pub fn with_context(mut self, context: Context) -> Self {
        self.context = Some(context);
        self
    }

    /// Adds one segment label.
    pub fn with_segment(mut self, segment: impl Into<String>) -> Self {
        self.segments.push(segment.into());
        self
    }
}
