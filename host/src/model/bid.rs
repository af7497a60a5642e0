//! What plugins return, as the host holds it, and the per-bid validation rules.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::features::is_slug;

/// An amount in minor units of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units, `1..=100_000_000`.
    pub amount_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
}

/// What the customer gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// Cash back, basis points `1..=10_000`.
    CashbackBps(u32),
    /// Fixed amount.
    FixedAmount(Money),
    /// Points multiplier `1.0..=50.0`.
    PointsMultiplier(f32),
    /// Interest-free months `2..=36`.
    InstallmentMonths(u8),
}

/// A partner's offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Offer {
    /// Partner's stable offer id.
    pub id: String,
    /// Title shown to the customer.
    pub title: String,
    /// The reward.
    pub reward: Reward,
    /// Minimum qualifying spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_spend: Option<Money>,
    /// Category id.
    pub category: String,
    /// Days valid once shown.
    pub valid_days: u16,
}

/// An offer and its price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bid {
    /// The offer.
    pub offer: Offer,
    /// Price per impression, minor units of the issuer's currency.
    pub value_minor: u64,
    /// Plugin's relevance estimate `0.0..=1.0`.
    pub relevance: f32,
}

/// The error variant a plugin may return instead of bids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum PluginError {
    /// Missing or malformed configuration.
    BadConfig(String),
    /// A feature the plugin needs was withheld.
    MissingFeature(String),
    /// Anything else.
    Internal(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::BadConfig(m) => write!(f, "bad config: {m}"),
            PluginError::MissingFeature(m) => write!(f, "missing feature: {m}"),
            PluginError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

/// What a plugin says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin's own version.
    pub version: String,
    /// Categories it bids in.
    pub categories: Vec<String>,
}

/// Why the host dropped a bid. The kebab-case code is stable: ops dashboards and the
/// slate's diagnostics use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Offer id empty, longer than 64 bytes or outside `A-Z a-z 0-9 . _ -`.
    BadOfferId,
    /// Title empty, longer than 120 bytes or containing control characters.
    BadTitle,
    /// Category not a kebab-case id of 1..=32 bytes.
    BadCategory,
    /// Reward outside its documented range (or not a finite number).
    BadReward,
    /// A money amount outside `1..=100_000_000` or a currency that is not three
    /// uppercase letters.
    BadMoney,
    /// `valid-days` outside `1..=365`.
    BadValidDays,
    /// `value-minor` outside `1..=1_000_000`.
    BadValue,
    /// Relevance not a finite number in `0.0..=1.0`.
    BadRelevance,
    /// The same offer id appeared earlier in the same answer; the first is kept.
    DuplicateOffer,
    /// Bid value below the placement's reserve price (`floor_minor`).
    BelowFloor,
    /// The placement excludes the offer's category.
    ExcludedCategory,
    /// The customer has reached a frequency cap that covers the offer.
    Capped,
    /// The cap counters could not be read, so capped offers are not shown (fail closed).
    CapsUnavailable,
    /// The partner already has `max_per_partner` offers in the slate.
    PartnerLimit,
    /// Every slot was taken by offers with higher expected value.
    Outranked,
}

impl DropReason {
    /// The stable kebab-case code.
    pub fn code(self) -> &'static str {
        match self {
            DropReason::BadOfferId => "bad-offer-id",
            DropReason::BadTitle => "bad-title",
            DropReason::BadCategory => "bad-category",
            DropReason::BadReward => "bad-reward",
            DropReason::BadMoney => "bad-money",
            DropReason::BadValidDays => "bad-valid-days",
            DropReason::BadValue => "bad-value",
            DropReason::BadRelevance => "bad-relevance",
            DropReason::DuplicateOffer => "duplicate-offer",
            DropReason::BelowFloor => "below-floor",
            DropReason::ExcludedCategory => "excluded-category",
            DropReason::Capped => "capped",
            DropReason::CapsUnavailable => "caps-unavailable",
            DropReason::PartnerLimit => "partner-limit",
            DropReason::Outranked => "outranked",
        }
    }
}

/// Most bytes of an offer id.
pub const MAX_OFFER_ID: usize = 64;
/// Most bytes of a title.
pub const MAX_TITLE: usize = 120;
/// Highest bid value per impression, minor units.
pub const MAX_VALUE_MINOR: u64 = 1_000_000;
/// Highest money amount, minor units.
pub const MAX_AMOUNT_MINOR: u64 = 100_000_000;

impl Bid {
    /// Checks one bid against the contract. Duplicates are checked by the caller.
    pub fn check(&self) -> Result<(), (DropReason, String)> {
        let o = &self.offer;
        let id_ok = !o.id.is_empty()
            && o.id.len() <= MAX_OFFER_ID
            && o.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err((
                DropReason::BadOfferId,
                format!(
                    "offer id {:?} must be 1..={MAX_OFFER_ID} bytes of A-Z a-z 0-9 . _ -",
                    truncate(&o.id)
                ),
            ));
        }
        if o.title.is_empty() || o.title.len() > MAX_TITLE || o.title.chars().any(char::is_control)
        {
            return Err((
                DropReason::BadTitle,
                format!(
                    "title of {} bytes must be 1..={MAX_TITLE} bytes without control characters",
                    o.title.len()
                ),
            ));
        }
        if !is_slug(&o.category, 32) {
            return Err((
                DropReason::BadCategory,
                format!(
                    "category {:?} is not a kebab-case id of 1..=32 bytes",
                    truncate(&o.category)
                ),
            ));
        }
        match &o.reward {
            Reward::CashbackBps(bps) if !(1..=10_000).contains(bps) => {
                return Err((
                    DropReason::BadReward,
                    format!("cashback {bps} bps is outside 1..=10000"),
                ));
            }
            Reward::PointsMultiplier(x) if !(1.0..=50.0).contains(x) => {
                return Err((
                    DropReason::BadReward,
                    format!("points multiplier {x} is outside 1.0..=50.0"),
                ));
            }
            Reward::InstallmentMonths(n) if !(2..=36).contains(n) => {
                return Err((
                    DropReason::BadReward,
                    format!("{n} installment months is outside 2..=36"),
                ));
            }
            Reward::FixedAmount(m) => check_money("reward", m)?,
            _ => {}
        }
        if let Some(m) = &o.min_spend {
            check_money("min spend", m)?;
        }
        if !(1..=365).contains(&o.valid_days) {
            return Err((
                DropReason::BadValidDays,
                format!("valid days {} is outside 1..=365", o.valid_days),
            ));
        }
        if !(1..=MAX_VALUE_MINOR).contains(&self.value_minor) {
            return Err((
                DropReason::BadValue,
                format!(
                    "bid value {} is outside 1..={MAX_VALUE_MINOR}",
                    self.value_minor
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.relevance) {
            return Err((
                DropReason::BadRelevance,
                format!("relevance {} is outside 0.0..=1.0", self.relevance),
            ));
        }
        Ok(())
    }

    /// Bytes of strings this bid carries, for the output-size limit.
    pub fn string_bytes(&self) -> usize {
        let o = &self.offer;
        let money = |m: &Option<&Money>| m.map_or(0, |m| m.currency.len());
        let reward_money = match &o.reward {
            Reward::FixedAmount(m) => Some(m),
            _ => None,
        };
        o.id.len()
            + o.title.len()
            + o.category.len()
            + money(&reward_money)
            + money(&o.min_spend.as_ref())
    }
}

fn check_money(what: &str, m: &Money) -> Result<(), (DropReason, String)> {
    let currency_ok = m.currency.len() == 3 && m.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok || !(1..=MAX_AMOUNT_MINOR).contains(&m.amount_minor) {
        return Err((
            DropReason::BadMoney,
            format!(
                "{what} {} {:?} needs 1..={MAX_AMOUNT_MINOR} minor units and an ISO 4217 code",
                m.amount_minor,
                truncate(&m.currency)
            ),
        ));
    }
    Ok(())
}

/// Keeps diagnostics short when a plugin returns huge strings.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A bid the host refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectedBid {
    /// Position of the bid in the plugin's answer.
    pub index: usize,
    /// Its offer id (shortened when absurdly long).
    pub offer_id: String,
    /// Stable reason code.
    pub reason: DropReason,
    /// Human-readable detail.
    pub detail: String,
}

/// Splits one plugin answer into the bids that follow the contract and those that do not.
/// Of several bids with the same offer id the first valid one is kept.
pub fn screen_bids(bids: Vec<Bid>) -> (Vec<Bid>, Vec<RejectedBid>) {
    let mut kept: Vec<Bid> = Vec::with_capacity(bids.len());
    let mut rejected = Vec::new();
    for (index, bid) in bids.into_iter().enumerate() {
        let verdict = match bid.check() {
            Err(e) => Err(e),
            Ok(()) if kept.iter().any(|k| k.offer.id == bid.offer.id) => Err((
                DropReason::DuplicateOffer,
                format!("offer id {:?} was already bid in this answer", bid.offer.id),
            )),
            Ok(()) => Ok(()),
        };
        match verdict {
            Ok(()) => kept.push(bid),
            Err((reason, detail)) => rejected.push(RejectedBid {
                index,
                offer_id: truncate(&bid.offer.id).to_string(),
                reason,
                detail,
            }),
        }
    }
    (kept, rejected)
}

#[cfg(test)]
mod tests {
    use super::DropReason::{self, *};

    #[test]
    fn drop_reason_codes_are_their_serde_names() {
        let all: [DropReason; 15] = [
            BadOfferId,
            BadTitle,
            BadCategory,
            BadReward,
            BadMoney,
            BadValidDays,
            BadValue,
            BadRelevance,
            DuplicateOffer,
            BelowFloor,
            ExcludedCategory,
            Capped,
            CapsUnavailable,
            PartnerLimit,
            Outranked,
        ];
        for r in all {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
    }
}
