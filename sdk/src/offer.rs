//! What a plugin returns: offers, rewards, bids and errors.

use std::fmt;

/// An amount of money in minor units (cents, fen, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Money {
    /// Amount in minor units, `1..=100_000_000`.
    pub amount_minor: u64,
    /// ISO 4217 code, three uppercase letters.
    pub currency: String,
}

impl Money {
    /// `amount_minor` of `currency`: `Money::new(5000, "CNY")` is 50.00 CNY.
    pub fn new(amount_minor: u64, currency: impl Into<String>) -> Self {
        Money {
            amount_minor,
            currency: currency.into(),
        }
    }
}

/// What the customer gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Reward {
    /// Cash back in basis points, `1..=10_000` (150 = 1.5 %).
    CashbackBps(u32),
    /// A fixed amount credited once the conditions are met.
    FixedAmount(Money),
    /// Reward-points multiplier, `1.0..=50.0`.
    PointsMultiplier(f32),
    /// Interest-free installment months, `2..=36`.
    InstallmentMonths(u8),
}

/// One offer. Build it with [`Offer::new`] and the chained setters, then turn it into a
/// [`Bid`] with [`Offer::bid`].
///
/// ```
/// use offerhost_sdk::{Money, Offer, Reward};
///
/// let bid = Offer::new("fresh-5pct", "5% back on groceries", Reward::CashbackBps(500))
///     .category("grocery")
///     .min_spend(Money::new(10_000, "CNY"))
///     .valid_days(14)
///     .bid(120, 0.4);
/// assert_eq!(bid.value_minor, 120);
/// assert_eq!(bid.offer.category, "grocery");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Stable offer id, 1..=64 bytes of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// Title shown to the customer, 1..=120 bytes.
    pub title: String,
    /// The reward.
    pub reward: Reward,
    /// Minimum qualifying spend.
    pub min_spend: Option<Money>,
    /// Category id of the offer.
    pub category: String,
    /// Days the offer stays valid once shown, `1..=365`.
    pub valid_days: u16,
}

impl Offer {
    /// A new offer in category `general`, valid for 30 days, without minimum spend.
    pub fn new(id: impl Into<String>, title: impl Into<String>, reward: Reward) -> Self {
        Offer {
            id: id.into(),
            title: title.into(),
            reward,
            min_spend: None,
            category: "general".to_string(),
            valid_days: 30,
        }
    }

    /// Sets the category id.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }

    /// Sets the minimum qualifying spend.
    pub fn min_spend(mut self, min_spend: Money) -> Self {
        self.min_spend = Some(min_spend);
        self
    }

    /// Sets how many days the offer stays valid once shown.
    pub fn valid_days(mut self, days: u16) -> Self {
        self.valid_days = days;
        self
    }

    /// Bids `value_minor` per impression with the plugin's `relevance` estimate (`0.0..=1.0`).
    pub fn bid(self, value_minor: u64, relevance: f32) -> Bid {
        Bid {
            offer: self,
            value_minor,
            relevance,
        }
    }
}

/// An offer with the price the partner pays to show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    /// The offer.
    pub offer: Offer,
    /// Price per impression in minor units of the issuer's currency, `1..=1_000_000`.
    pub value_minor: u64,
    /// Relevance estimate `0.0..=1.0`.
    pub relevance: f32,
}

/// Why a plugin could not bid. Returning no bids is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// A configuration value is missing or malformed: names the key and the problem.
    BadConfig(String),
    /// The features lack something the plugin needs.
    MissingFeature(String),
    /// Any other failure.
    Internal(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::BadConfig(m) => write!(f, "bad config: {m}"),
            PluginError::MissingFeature(m) => write!(f, "missing feature: {m}"),
            PluginError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Plugin name, kebab-case.
    pub name: String,
    /// The plugin's own semver version.
    pub version: String,
    /// Category ids the plugin bids in.
    pub categories: Vec<String>,
}

impl PluginInfo {
    /// Info for `name` at `version`, bidding in `categories`.
    pub fn new(name: &str, version: &str, categories: &[&str]) -> Self {
        PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
        }
    }
}
